/**
 * The RAG benchmark's BEIR loader and metric (bench/rag.ts) on the tiny fixture, the committed
 * npm-docs labels checked against the installed corpus they were made from, and `npm run bench --
 * rag --beir` end to end on the tiny fixture through the local stack.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { isRelevant, labelledPackages, loadBeir, meanReciprocalRank, NPM_DOCS_DIR, npmDocsCorpus, parseBeir, serverTimings } from "../../bench/rag.ts";
import { spawnCollecting } from "../../scripts/lib/processes.ts";
import { ROOT } from "../../scripts/lib/local-stack.ts";

const TINY = join(ROOT, "bench", "fixtures", "rag", "beir-tiny");

describe("the BEIR loader", () => {
  it("reads corpus.jsonl, queries.jsonl and qrels/test.tsv, keeping only positive judgements", () => {
    const dataset = loadBeir(TINY);
    expect(dataset.corpus.map((doc) => doc.id)).toEqual(["d1", "d2", "d3", "d4", "d5", "6"]);
    expect(dataset.corpus[0]).toEqual({ id: "d1", title: "Ferry timetable", text: expect.stringContaining("lighthouse island") as string });
    expect(dataset.queries.map((query) => query.id)).toEqual(["q1", "q2", "q3", "q4", "q5"]);
    expect([...dataset.qrels.entries()].map(([query, docs]) => [query, [...docs]])).toEqual([
      ["q1", ["d1"]],
      ["q2", ["d3"]],
      ["q3", ["d2"]],
      ["q4", ["6"]],
    ]);
  });

  it("says which line of which file is not JSON", () => {
    expect(() => parseBeir({ queries: '{"_id": "q1", "text": "x"}\nnot json\n', qrels: "" })).toThrow("queries.jsonl:2: not a JSON object");
    expect(() => parseBeir({ corpus: '{"title": "no id"}', queries: "", qrels: "" })).toThrow('corpus.jsonl: a line without "_id"');
  });

  it("counts a result relevant by document, and by the query's sentence when it has one", () => {
    const relevant = new Set(["npm/x/README.md"]);
    expect(isRelevant({ id: "q", text: "t" }, relevant, { source: "npm/x/README.md", text: "anything" })).toBe(true);
    expect(isRelevant({ id: "q", text: "t" }, relevant, { source: "npm/y/README.md", text: "anything" })).toBe(false);
    const query = { id: "q", text: "t", answer: "The parser is lenient." };
    expect(isRelevant(query, relevant, { source: "npm/x/README.md", text: "Intro.\n\nThe parser\nis lenient. More." })).toBe(true);
    expect(isRelevant(query, relevant, { source: "npm/x/README.md", text: "Another chunk of the same file." })).toBe(false);
  });

  it("computes MRR@5 from the rank of each query's first relevant result", () => {
    expect(meanReciprocalRank([1, 2, null, 6])).toBeCloseTo((1 + 0.5) / 4, 10);
    expect(meanReciprocalRank([5])).toBeCloseTo(0.2, 10);
    expect(meanReciprocalRank([])).toBe(0);
    expect(serverTimings("access;dur=31.0, fts;dur=7.5, search;dur=52.2")).toEqual({ access: 31, fts: 7.5, search: 52.2 });
  });
});

describe("the npm-docs labelled set", () => {
  it("has 500 queries, each with one relevant document whose text holds the query's sentence", () => {
    const labels = loadBeir(NPM_DOCS_DIR);
    expect(labels.queries).toHaveLength(500);
    const { documents } = npmDocsCorpus(Number.POSITIVE_INFINITY, labelledPackages());
    const byId = new Map(documents.map((doc) => [doc.id, doc.text.replace(/\s+/g, " ").toLowerCase()]));
    let checked = 0;
    for (const query of labels.queries) {
      const relevant = [...(labels.qrels.get(query.id) ?? [])];
      expect(relevant, query.id).toHaveLength(1);
      expect(query.answer, query.id).toBeTruthy();
      const text = byId.get(relevant[0] ?? "");
      // A package upgraded since the labels were made may have dropped a document; the bench leaves those out.
      if (text === undefined) continue;
      expect(text, query.id).toContain((query.answer ?? "").replace(/\s+/g, " ").toLowerCase());
      checked++;
    }
    expect(checked).toBeGreaterThan(450);
    const manifest = JSON.parse(readFileSync(join(NPM_DOCS_DIR, "manifest.json"), "utf8")) as { packages: Record<string, string> };
    for (const licence of Object.values(manifest.packages)) expect(licence).toMatch(/\((MIT|MIT-0|ISC|Apache-2\.0|BSD-[23]-Clause|0BSD|Unlicense|CC0-1\.0|BlueOak-1\.0\.0|MIT OR Apache-2\.0|Apache-2\.0 OR MIT|\(MIT OR CC0-1\.0\))\)$/);
  });
});

describe("npm run bench -- rag --beir", () => {
  it("ingests a BEIR corpus, runs its judged queries and prints one JSON line", { timeout: 180_000 }, async () => {
    const bench = spawnCollecting(process.execPath, [join(ROOT, "bench", "run.ts"), "rag", "--beir", TINY], { cwd: ROOT, env: { ...process.env, OPENAI_API_KEY: "" } });
    expect(await bench.exited, bench.output()).toBe(0);
    const [line] = bench
      .output()
      .split("\n")
      .filter((text) => text.startsWith('{"bench":"rag"'))
      .map((text) => JSON.parse(text) as Record<string, unknown>);
    expect(line).toMatchObject({ documents: 6, chunks: 6, queries: 4, queries_left_out: 1, backend: "local", goal_p95_ms: 50 });
    expect(line?.embeddings).toMatch(/^synthetic/);
    expect(Number(line?.search_p95_ms)).toBeGreaterThanOrEqual(Number(line?.search_p50_ms));
    expect(Number(line?.search_work_p50_ms)).toBeGreaterThan(0);
    expect(Number(line?.ingest_chunks_per_s)).toBeGreaterThan(0);
    // Full text misses the paraphrase (q3) and the plural (q4: "months"); the vectors and the fusion find all four first.
    expect(line?.mrr_at_5).toEqual({ fts: 0.5, vector: 1, hybrid: 1 });
  });
});
