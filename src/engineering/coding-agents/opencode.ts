/**
 * opencode (`opencode-ai` on npm), headless: `opencode run --format json` prints one JSON event per
 * line. It reaches the model as an OpenAI-compatible provider defined in OPENCODE_CONFIG_CONTENT, with
 * the key read from the environment by opencode itself (`{env:OPENAI_API_KEY}`); models-fetch,
 * autoupdate, default plugins and LSP downloads are off, so it calls nothing but the model. What a
 * headless one-shot run never uses is off too: its git snapshots of the work tree (for undo in the
 * TUI), the file watcher, the fff file index (search falls back to ripgrep, in the image) and the
 * Claude Code and external skill folders: ~15 % of a round's CPU.
 */
import { z } from "zod";
import { parseJson } from "../../shared/json.ts";
import type { AgentReport, AgentRun, CodingAgent } from "./types.ts";

const PROVIDER = "orchestrator";

/** One line of `opencode run --format json`, as far as the report reads it (a line that does not fit is skipped). */
const OpencodeEvent = z.object({
  type: z.string().nullish(),
  error: z.unknown().optional(),
  part: z
    .object({
      type: z.string().nullish(),
      text: z.string().nullish(),
      tool: z.string().nullish(),
      state: z.object({ status: z.string().nullish(), error: z.string().nullish() }).nullish(),
      tokens: z.object({ input: z.number().nullish(), output: z.number().nullish() }).nullish(),
    })
    .nullish(),
});

/** opencode's error events carry `{name, data: {message, statusCode…}}`. */
const OpencodeError = z.object({ name: z.unknown().optional(), data: z.unknown().optional() });
const ErrorData = z.object({ message: z.string() });

export const opencode: CodingAgent = {
  name: "opencode",
  argv(run: AgentRun) {
    return ["opencode", "run", "--pure", "--format", "json", "--title", "orchestrator round", "-m", `${PROVIDER}/${run.model}`, run.prompt];
  },
  env(run: AgentRun) {
    const config = {
      $schema: "https://opencode.ai/config.json",
      autoupdate: false,
      share: "disabled",
      lsp: false,
      formatter: false,
      snapshot: false,
      permission: { edit: "allow", bash: "allow", webfetch: "deny" },
      provider: {
        [PROVIDER]: {
          npm: "@ai-sdk/openai-compatible",
          name: "Orchestrator model endpoint",
          options: { baseURL: run.baseUrl, apiKey: "{env:OPENAI_API_KEY}" },
          models: { [run.model]: { name: run.model, tool_call: true } },
        },
      },
      model: `${PROVIDER}/${run.model}`,
    };
    return {
      OPENCODE_CONFIG_CONTENT: JSON.stringify(config),
      OPENCODE_DISABLE_AUTOUPDATE: "1",
      OPENCODE_DISABLE_MODELS_FETCH: "1",
      OPENCODE_DISABLE_DEFAULT_PLUGINS: "1",
      OPENCODE_DISABLE_LSP_DOWNLOAD: "1",
      OPENCODE_DISABLE_PROJECT_CONFIG: "1",
      OPENCODE_DISABLE_FFF: "1",
      OPENCODE_EXPERIMENTAL_DISABLE_FILEWATCHER: "true",
      OPENCODE_DISABLE_CLAUDE_CODE: "1",
      OPENCODE_DISABLE_EXTERNAL_SKILLS: "1",
    };
  },
  report(output: string): AgentReport {
    const report: AgentReport = { finalText: "", promptTokens: 0, completionTokens: 0, toolCalls: 0, errors: [] };
    for (const line of output.split("\n")) {
      if (!line.trim().startsWith("{")) continue;
      const parsed = parseJson(OpencodeEvent, line);
      if (!parsed.success) continue;
      const event = parsed.data;
      const part = event.part ?? {};
      if (event.type === "text" && part.text?.trim()) report.finalText = part.text.trim();
      else if (event.type === "tool_use") {
        report.toolCalls++;
        if (part.state?.status === "error") report.errors.push(`${part.tool ?? "tool"}: ${part.state.error ?? "failed"}`);
      } else if (event.type === "step_finish") {
        report.promptTokens += part.tokens?.input ?? 0;
        report.completionTokens += part.tokens?.output ?? 0;
      } else if (event.type === "error") report.errors.push(errorText(event.error));
    }
    return report;
  },
};

function errorText(error: unknown): string {
  if (typeof error === "string") return error;
  const fields = OpencodeError.safeParse(error).data;
  const message = ErrorData.safeParse(fields?.data).data?.message ?? JSON.stringify(error).slice(0, 1000);
  return typeof fields?.name === "string" ? `${fields.name}: ${message}` : message;
}
