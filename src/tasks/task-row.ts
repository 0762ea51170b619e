/**
 * The projection of a task's events into its Postgres `tasks` row: the status an event implies, and
 * the row's update. The task's TaskStream (src/durable/task-stream.ts) writes it before it stores
 * the events, so an unreachable database stores nothing and the producer retries.
 */
import { and, eq, notInArray } from "drizzle-orm";
import { createDb } from "../db/client.ts";
import { tasks } from "../db/schema.ts";
import { FINAL_TASK_STATUSES, type TaskStatus } from "../shared/api.ts";
import { isTerminal, type TaskEvent, type TaskEventType } from "../shared/events.ts";
import { PendingInput } from "../shared/task-input.ts";

/** The task status an event implies. */
export function statusFor(type: TaskEventType): TaskStatus {
  switch (type) {
    case "task.completed":
      return "completed";
    case "task.failed":
      return "failed";
    case "task.cancelled":
      return "cancelled";
    case "task.needs_input":
      return "needs_input";
    default:
      return "running";
  }
}

/**
 * Moves the task's row to `status`; false when there is no such task. A row that has reached a
 * final status is never moved back by a non-terminal event. `waitUntil` keeps the connection's close
 * going after the answer.
 */
export async function updateTaskRow(env: Env, waitUntil: (promise: Promise<unknown>) => void, taskId: string, event: Omit<TaskEvent, "seq" | "taskId">, status: TaskStatus): Promise<boolean> {
  const handle = createDb({ databaseUrl: env.DATABASE_URL, wsProxy: env.DB_WS_PROXY });
  try {
    const terminal = isTerminal(event.type);
    const updated = await handle.db
      .update(tasks)
      .set({
        status,
        updatedAt: new Date(),
        ...(terminal ? { finishedAt: new Date(event.at) } : {}),
        ...(event.type === "task.completed" ? { result: event.data ?? {} } : {}),
        ...(event.type === "task.failed" || event.type === "task.cancelled" ? { error: event.message } : {}),
        // What a waiting task asks is kept on its row for the input route, and only while it waits.
        pendingInput: event.type === "task.needs_input" ? (PendingInput.safeParse(event.data).data ?? null) : null,
      })
      .where(terminal ? eq(tasks.id, taskId) : and(eq(tasks.id, taskId), notInArray(tasks.status, FINAL_TASK_STATUSES)))
      .returning({ id: tasks.id });
    if (updated.length > 0 || terminal) return updated.length > 0;
    const [existing] = await handle.db.select({ id: tasks.id }).from(tasks).where(eq(tasks.id, taskId));
    return existing !== undefined;
  } finally {
    waitUntil(handle.close().catch(() => undefined));
  }
}
