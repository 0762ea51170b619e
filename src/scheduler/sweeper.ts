/**
 * `sweeper`: what a crash, an outage or a stopped workflow left half-done, finished or undone.
 *
 * - tasks whose workflow has ended without a terminal event: failed, saying so (a deploy's release
 *   stopped and its route put back first);
 * - releases still `deploying` long after their job's budget: stopped, their port freed;
 * - Telegram messages the queue never got: handed to it;
 * - job credentials whose job never ended them: revoked.
 */
import { and, eq, inArray, lt, notInArray } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { deployments, tasks } from "../db/schema.ts";
import type { Logger } from "../lib/log.ts";
import { settleStoppedDeploy } from "../deploy/deploys.ts";
import { revokeExpiredCredentials, revokeJobCredentials } from "../models/job-credentials.ts";
import { appendTaskEvent } from "../tasks/tasks.ts";
import { sweepOutbox } from "../telegram/telegram-outbox.ts";
import { FINAL_TASK_STATUSES } from "../shared/api.ts";
import { TASK_WORKFLOWS, workflowBinding } from "../tasks/workflows.ts";

/** A task quiet this long is asked about its workflow; a younger one may still be starting it. */
const TASK_QUIET_MS = 2 * 60_000;
/**
 * A release `deploying` this long has outlived any job of its deploy: the release job's queue time,
 * run time and margin (20 + 15 + 5 minutes), and a few minutes more.
 */
const RELEASE_STALE_MS = 45 * 60_000;
/** Workflow states that never change again. */
const ENDED = new Set(["complete", "errored", "terminated"]);

export interface SweepResult {
  failedTasks: string[];
  staleReleases: string[];
  outbox: number;
  credentials: number;
}

export async function sweep(db: Db, env: Env, log: Logger, options: { taskQuietMs?: number; releaseStaleMs?: number } = {}): Promise<SweepResult> {
  const result: SweepResult = { failedTasks: [], staleReleases: [], outbox: 0, credentials: 0 };
  const quietSince = new Date(Date.now() - (options.taskQuietMs ?? TASK_QUIET_MS));
  const open = await db
    .select()
    .from(tasks)
    .where(and(notInArray(tasks.status, [...FINAL_TASK_STATUSES]), inArray(tasks.type, ["engineering", "deploy", "provision"]), lt(tasks.updatedAt, quietSince)))
    .limit(100);
  for (const task of open) {
    const name = TASK_WORKFLOWS[task.type];
    if (!name) continue;
    let status: string;
    try {
      status = (await (await workflowBinding(env, name).get(task.id)).status()).status;
    } catch {
      // No workflow of that id: a task driven from outside (POST /api/tasks), not this sweep's.
      continue;
    }
    if (!ENDED.has(status)) continue;
    try {
      await revokeJobCredentials(env, db, task.id);
      const settled = task.type === "deploy" ? await settleStoppedDeploy(env, db, task, `its workflow ended (${status}) without finishing`) : { stopped: [] };
      await appendTaskEvent(env, task.id, {
        type: "task.failed",
        message: `its workflow ended (${status}) without finishing the task${settled.stopped.length ? `; release ${settled.stopped.join(", ")} stopped` : ""}`,
        data: { workflowStatus: status, stoppedReleases: settled.stopped },
      });
      result.failedTasks.push(task.id);
    } catch (error) {
      log.warn("sweeper: a task left behind could not be ended", { taskId: task.id, error: error instanceof Error ? error.message : String(error) });
    }
  }

  const staleSince = new Date(Date.now() - (options.releaseStaleMs ?? RELEASE_STALE_MS));
  const stale = await db
    .select({ deployment: deployments, task: tasks })
    .from(deployments)
    .innerJoin(tasks, eq(tasks.id, deployments.taskId))
    .where(and(eq(deployments.status, "deploying"), lt(deployments.createdAt, staleSince), inArray(tasks.status, [...FINAL_TASK_STATUSES])))
    .limit(50);
  for (const { task } of stale) {
    try {
      result.staleReleases.push(...(await settleStoppedDeploy(env, db, task, "still deploying after its deploy ended")).stopped);
    } catch (error) {
      log.warn("sweeper: a stale release could not be stopped", { taskId: task.id, error: error instanceof Error ? error.message : String(error) });
    }
  }

  result.outbox = await sweepOutbox(env, db);
  result.credentials = await revokeExpiredCredentials(env, db);
  return result;
}
