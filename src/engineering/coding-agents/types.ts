/**
 * A coding agent CLI, as the Developer step runs it in the coding-worker container: its command line,
 * its configuration (environment), and how to read what it printed. Adding an agent is one file
 * implementing this, listed in ./index.ts.
 */
export interface AgentRun {
  /** The model endpoint's base URL, as the container reaches it (through the egress proxy). */
  baseUrl: string;
  model: string;
  /** The one-line instruction; the full brief is TASK.md in the repository's root. */
  prompt: string;
}

export interface AgentReport {
  /** The agent's last words to the person. */
  finalText: string;
  promptTokens: number;
  completionTokens: number;
  toolCalls: number;
  /** Errors the agent reported (model errors, tool failures). */
  errors: string[];
}

export interface CodingAgent {
  readonly name: string;
  /** The command, run in the repository's checkout with stdin closed. */
  argv(run: AgentRun): string[];
  /**
   * Environment for the container, not secret. The model key arrives separately as the secret
   * OPENAI_API_KEY, so the configuration must refer to it by name, never hold it.
   */
  env(run: AgentRun): Record<string, string>;
  /** Reads the agent's output (as written to /out/agent.jsonl) into a report. */
  report(output: string): AgentReport;
}
