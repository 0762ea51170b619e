/**
 * `orchestrator search "<query>" [--project P] [--scope S] [--top-k N] [--max-tokens N]
 * [--min-similarity X] [--mode hybrid|fts|vector] [--json]`: the knowledge index's hybrid search
 * (GET /api/rag/search) over what the key may see, printed with each result's source, score and
 * why it matched.
 */
import { parseArgs } from "node:util";
import { SearchResponse } from "../src/rag/contract.ts";
import { apiGet } from "./api.ts";
import { loadConfig } from "./config.ts";

export interface SearchCli {
  out(line: string): void;
  usage(message: string): never;
}

/** The first lines of a result's text, indented under its title line. */
function excerpt(text: string, lines = 3, width = 110): string[] {
  return text
    .split("\n")
    .map((line) => line.trimEnd())
    .filter((line) => line.trim())
    .slice(0, lines)
    .map((line) => `   ${line.length > width ? `${line.slice(0, width - 1)}…` : line}`);
}

export async function searchCommand(args: string[], cli: SearchCli): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      project: { type: "string" },
      scope: { type: "string" },
      "top-k": { type: "string" },
      "max-tokens": { type: "string" },
      "min-similarity": { type: "string" },
      mode: { type: "string" },
      json: { type: "boolean" },
    },
  });
  const text = positionals.join(" ").trim();
  if (!text) cli.usage('search needs what to look for, e.g. orchestrator search "ERR_QUOTA_4471"');
  const query = new URLSearchParams({ q: text });
  const options: [string, string | undefined][] = [
    ["project", values.project],
    ["scope", values.scope],
    ["top_k", values["top-k"]],
    ["max_tokens", values["max-tokens"]],
    ["min_similarity", values["min-similarity"]],
    ["mode", values.mode],
  ];
  for (const [name, value] of options) if (value !== undefined) query.set(name, value);
  const found = await apiGet(loadConfig(), `/api/rag/search?${query.toString()}`, values.project ? `project ${values.project}` : "search", SearchResponse);
  if (values.json) return cli.out(JSON.stringify(found));
  for (const warning of found.warnings) process.stderr.write(`orchestrator: ${warning}\n`);
  if (found.results.length === 0) return cli.out(`Nothing found for "${text}".`);
  found.results.forEach((hit, index) => {
    const where = [hit.source, hit.heading].filter(Boolean).join(" › ");
    const how = hit.matchedBy === "fts" ? "fts" : `${hit.matchedBy} (similarity ${hit.similarity?.toFixed(2) ?? "?"})`;
    cli.out(`${index + 1}. ${where}  ${hit.scope}${hit.project ? `  ${hit.project.name}` : ""}  score ${hit.score.toFixed(4)}  ${how}`);
    for (const line of excerpt(hit.text)) cli.out(line);
  });
  cli.out(`${found.results.length} result${found.results.length === 1 ? "" : "s"}, ${found.tokens} tokens${found.overBudget ? ` (${found.overBudget} more left out by the ${found.budget.maxTokens}-token budget)` : ""}`);
}
