/**
 * Tasks and their event streams: the one code path for the API, the runner hub and the workflows.
 */
import { and, desc, eq, type SQL } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { isForeignKeyViolation } from "../db/errors.ts";
import { projects, tasks } from "../db/schema.ts";
import { getTaskStream } from "./stream-client.ts";
import { AppError, notFound } from "../lib/app-error.ts";
import type { Principal } from "../lib/context.ts";
import { newId } from "../lib/crypto.ts";
import type { TaskEvent } from "../shared/events.ts";

export type Task = typeof tasks.$inferSelect;
export type { TaskType } from "../shared/api.ts";
import type { TaskType } from "../shared/api.ts";

const ID_PREFIX: Record<TaskType, string> = { engineering: "eng", deploy: "dep", provision: "prv", maintenance: "mnt" };

/** Who may see a task: admins all, users their own, a view token only its task. */
export function taskVisibleTo(principal: Principal): SQL | undefined {
  if (principal.viewTaskId) return eq(tasks.id, principal.viewTaskId);
  if (principal.projectId) return and(eq(tasks.projectId, principal.projectId), eq(tasks.ownerId, principal.userId ?? ""));
  if (principal.isAdmin) return undefined;
  return eq(tasks.ownerId, principal.userId ?? "");
}

/** Loads a task the caller may see, or throws 404 (also for another user's task). */
export async function loadTask(db: Db, principal: Principal, taskId: string): Promise<Task> {
  if (principal.viewTaskId && principal.viewTaskId !== taskId) notFound("Task");
  const [task] = await db
    .select()
    .from(tasks)
    .where(and(eq(tasks.id, taskId), taskVisibleTo(principal)));
  if (!task) notFound("Task");
  return task;
}

export async function listTasks(
  db: Db,
  principal: Principal,
  filter: { type?: TaskType; status?: Task["status"]; projectId?: string; limit: number; offset: number },
): Promise<Task[]> {
  return db
    .select()
    .from(tasks)
    .where(
      and(
        taskVisibleTo(principal),
        filter.type ? eq(tasks.type, filter.type) : undefined,
        filter.status ? eq(tasks.status, filter.status) : undefined,
        filter.projectId ? eq(tasks.projectId, filter.projectId) : undefined,
      ),
    )
    .orderBy(desc(tasks.createdAt), desc(tasks.id))
    .limit(filter.limit)
    .offset(filter.offset);
}

/** Creates a queued task. Without an owner it belongs to the project's owner, else to the caller. */
export async function createTask(
  db: Db,
  input: { type: TaskType; projectId?: string; ownerId?: string; input?: Record<string, unknown>; callerId: string },
): Promise<Task> {
  let ownerId = input.ownerId;
  if (input.projectId) {
    const [project] = await db.select({ ownerId: projects.ownerId }).from(projects).where(eq(projects.id, input.projectId));
    if (!project) throw new AppError("invalid_request", `No project with id ${input.projectId}`);
    ownerId ??= project.ownerId;
  }
  let task: Task | undefined;
  try {
    [task] = await db
      .insert(tasks)
      .values({
        id: newId(ID_PREFIX[input.type]),
        type: input.type,
        projectId: input.projectId,
        ownerId: ownerId ?? input.callerId,
        input: input.input ?? {},
      })
      .returning();
  } catch (error) {
    if (isForeignKeyViolation(error)) throw new AppError("invalid_request", `No user with id ${ownerId ?? input.callerId}`);
    throw error;
  }
  if (!task) throw new Error("insert returned no row");
  return task;
}

/**
 * Appends an event to a task's stream. The stream validates it, assigns its seq, fans it out and,
 * for status-changing events, updates the task's row. Failures are AppErrors fit for a response.
 */
export async function appendTaskEvent(env: Env, taskId: string, input: unknown): Promise<TaskEvent> {
  return (await appendTaskEventOnce(env, taskId, input)).event;
}

/** appendTaskEvent, also saying whether the event was a repeat of one already stored (same eventId). */
export async function appendTaskEventOnce(env: Env, taskId: string, input: unknown): Promise<{ event: TaskEvent; duplicate: boolean }> {
  const result = await getTaskStream(env, taskId).append(taskId, input);
  if (result.ok) return { event: result.event, duplicate: result.duplicate === true };
  throw new AppError(result.code, result.message);
}
