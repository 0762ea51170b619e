/**
 * Where the RunnerHub's outbox delivers, one lane per destination: a task's stream (`task:<id>`),
 * batched and made idempotent by event ids, and a workflow instance (`workflow:<name>:<id>`), woken
 * with the finished job. A destination that will never take an item throws Undeliverable.
 */
import type { Logger } from "../lib/log.ts";
import type { JobView } from "../shared/api.ts";
import type { TaskEventInput } from "../shared/events.ts";
import { WorkflowName, workflowBinding } from "../tasks/workflows.ts";
import type { OutboxItem } from "../lib/outbox.ts";
import { getTaskStream } from "../tasks/stream-client.ts";

export type TaskLaneBody = { jobId: string; event: TaskEventInput };
export type WorkflowLaneBody = { jobId: string; job: JobView };

export const taskLane = (taskId: string) => `task:${taskId}`;
export const workflowLane = (workflow: string, instanceId: string) => `workflow:${workflow}:${instanceId}`;

/** A destination's answer that retrying cannot change: the items are dropped (and logged). */
export class Undeliverable extends Error {}

export async function deliverToLane(env: Env, log: Logger, lane: string, items: OutboxItem[]): Promise<void> {
  const [kind, first = "", ...rest] = lane.split(":");
  if (kind === "task") return deliverTaskEvents(env, log, [first, ...rest].join(":"), items);
  if (kind === "workflow") return wakeWorkflow(env, lane, first, rest.join(":"), items);
  throw new Undeliverable(`unknown outbox lane ${lane}`);
}

async function deliverTaskEvents(env: Env, log: Logger, taskId: string, items: OutboxItem[]): Promise<void> {
  const inputs = items.map((item) => {
    const body = item.body as TaskLaneBody;
    // The item's seq never repeats in a hub: a redelivery after a reset is stored once.
    return { ...body.event, eventId: `job:${body.jobId}:${item.seq}` };
  });
  const result = await getTaskStream(env, taskId).appendMany(taskId, inputs);
  if (!result.ok) {
    if (result.code === "db_unavailable") throw new Error(result.message);
    throw new Undeliverable(`task ${taskId}: ${result.code}: ${result.message}`);
  }
  if (result.rejected.length) log.warn("task stream refused some job events", { taskId, refused: result.rejected.length, first: result.rejected[0]?.message });
}

async function wakeWorkflow(env: Env, lane: string, workflow: string, instanceId: string, items: OutboxItem[]): Promise<void> {
  const name = WorkflowName.safeParse(workflow);
  if (!name.success) throw new Undeliverable(`no workflow named ${workflow}`);
  for (const item of items) {
    const body = item.body as WorkflowLaneBody;
    try {
      const instance = await workflowBinding(env, name.data).get(instanceId);
      // As JSON text: a job's payload and data are free-form, which Workflows' typing cannot express.
      await instance.sendEvent({ type: body.jobId, payload: JSON.stringify(body.job) });
    } catch (error) {
      // An instance that does not exist or has ended will never take it (and reads its jobs back anyway).
      const message = error instanceof Error ? error.message : String(error);
      if (/not.?found|terminat|complete|errored|finished/i.test(message)) throw new Undeliverable(`workflow ${lane}: ${message}`);
      throw error;
    }
  }
}
