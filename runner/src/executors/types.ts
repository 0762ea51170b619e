/**
 * The contract between the daemon and each job type's executor. An executor gets a payload already
 * validated against its schema (src/shared/job-payloads.ts), does its work, reports as it goes, and
 * resolves with an outcome. It must stop promptly once `signal` aborts (timeout, cancellation or
 * shutdown): the daemon reports the job from `signal.reason`, whatever the executor returns then.
 */
import type { RunnerConfig } from "../config.ts";
import type { BotGateway } from "../bot-gateway.ts";
import type { EgressGateway } from "../egress.ts";

export interface ExecutorContext {
  jobId: string;
  /** Aborted with an AbortReason when the job must stop. */
  signal: AbortSignal;
  /**
   * One line of output, streamed live to the job's task. The daemon masks secret values, then cuts the
   * line to what a task event holds; `cut` counts characters the executor already dropped from its end.
   */
  log(line: string, stream?: "stdout" | "stderr" | "system", cut?: number): void;
  /** A named step of the job, e.g. "pull", "start", "validate". */
  progress(step: string, message: string, data?: Record<string, unknown>): void;
  config: RunnerConfig;
  /** Networks and proxies for `egress` containers (one per runner: it owns the firewall table). */
  egress: EgressGateway;
  /** Where releases' bots reach the Bot API (config.botGateway); null when the runner has none. */
  botGateway: BotGateway | null;
}

export type AbortReason = "timeout" | "cancelled" | "shutdown";

export interface ExecutorOutcome {
  ok: boolean;
  /** One line a person reads: "exited with code 0", "caddy refused the config: …". */
  message: string;
  exitCode?: number;
  data?: Record<string, unknown>;
  /**
   * Tidying that need not hold up the report (removing a finished container and its network). The
   * daemon runs it after sending the result, while the job still holds its slot.
   */
  afterReport?: () => Promise<void>;
}

export type Executor<P> = (payload: P, context: ExecutorContext) => Promise<ExecutorOutcome>;
