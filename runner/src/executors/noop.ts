import type { JobPayload } from "../../../src/shared/job-payloads.ts";
import type { Executor } from "./types.ts";

/** Answers at once: proves the runner is alive and measures the job path itself (the benchmark). */
export const noop: Executor<JobPayload<"noop">> = (payload) =>
  Promise.resolve({ ok: true, message: "noop", ...(payload.echo !== undefined ? { data: { echo: payload.echo } } : {}) });
