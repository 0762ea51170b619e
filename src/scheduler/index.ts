/**
 * The scheduler (Cron Triggers, wrangler.toml `[triggers]`): which jobs each cron runs, each under its
 * Lock lease so that overlapping runs never do the same work twice.
 */
import { withDb } from "../db/client.ts";
import { createLogger } from "../lib/log.ts";
import { inSpan } from "../lib/spans.ts";
import { newTraceparent, traceIdOf } from "../shared/trace.ts";
import { githubSync } from "./github-sync.ts";
import { healthChecker } from "./health-checker.ts";
import { serverSync } from "./server-sync.ts";
import { sweep } from "./sweeper.ts";
import { withLock } from "./with-lock.ts";

export interface SchedulerJob {
  name: "server_sync" | "health_checker" | "github_sync" | "sweeper";
  /** The cron expression (as in wrangler.toml) that runs it. */
  cron: string;
  /** The lease: longer than a run takes, short enough that a dead holder's next run is not skipped twice. */
  leaseMs: number;
  run(db: Parameters<Parameters<typeof withDb>[1]>[0], env: Env, log: ReturnType<typeof createLogger>, runId: string): Promise<unknown>;
}

export const SCHEDULER_JOBS: readonly SchedulerJob[] = [
  { name: "server_sync", cron: "*/5 * * * *", leaseMs: 120_000, run: (db, env, log) => serverSync(db, env, log) },
  { name: "health_checker", cron: "* * * * *", leaseMs: 90_000, run: (db, env, log, runId) => healthChecker(db, env, log, runId) },
  { name: "github_sync", cron: "*/15 * * * *", leaseMs: 300_000, run: (db, env, log) => githubSync(db, env, log) },
  // What a crash or a stopped workflow left half-done (tasks, releases, queued messages, credentials).
  { name: "sweeper", cron: "* * * * *", leaseMs: 120_000, run: (db, env, log) => sweep(db, env, log) },
];

/** Runs the jobs of one cron tick; each job's outcome is logged, and one failing does not stop the others. */
export async function runScheduled(cron: string, env: Env, scheduledTime = Date.now()): Promise<Record<string, unknown>> {
  const runId = `${cron.replace(/\s+/g, "_")}@${new Date(scheduledTime).toISOString()}-${crypto.randomUUID().slice(0, 8)}`;
  // Each tick is a trace of its own: its jobs' log lines and spans share its id.
  const traceparent = newTraceparent();
  const log = createLogger(env.LOG_LEVEL, { component: "scheduler", runId, traceId: traceIdOf(traceparent) });
  const outcomes: Record<string, unknown> = {};
  await Promise.all(
    SCHEDULER_JOBS.filter((job) => job.cron === cron).map(async (job) => {
      try {
        const run = await inSpan(`scheduler.${job.name}`, { "orchestrator.scheduler.run": runId, traceparent }, () => withLock(env, log, job.name, runId, job.leaseMs, () => withDb(env, (db) => job.run(db, env, log, runId))));
        outcomes[job.name] = run.ran ? { ran: true, result: run.result } : { ran: false, heldBy: run.heldBy };
        if (run.ran) log.info("scheduler job done", { job: job.name, result: run.result });
      } catch (error) {
        outcomes[job.name] = { ran: true, error: error instanceof Error ? error.message : String(error) };
        log.error("scheduler job failed", { job: job.name, error: error instanceof Error ? error.message : String(error) });
      }
    }),
  );
  return outcomes;
}
