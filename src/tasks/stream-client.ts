/**
 * How the rest of the system reaches a task's TaskStream Durable Object (src/durable/task-stream.ts):
 * what its calls answer, and the client over its stub.
 */
import type { TaskEvent } from "../shared/events.ts";

export type AppendFailure = { ok: false; code: "invalid_request" | "not_found" | "conflict" | "db_unavailable"; message: string };

/** `duplicate`: the producer's eventId was already stored; `event` is the stored one. */
export type AppendResult = { ok: true; event: TaskEvent; duplicate?: boolean } | AppendFailure;

/**
 * A batch: the stored events in order (repeats of a known eventId as the stored event), and the
 * inputs that were not stored, by index, with why (invalid, or after the stream ended).
 */
export type AppendManyResult =
  | { ok: true; events: TaskEvent[]; rejected: { index: number; code: "invalid_request" | "conflict"; message: string }[] }
  | AppendFailure;

export interface ReadResult {
  events: TaskEvent[];
  lastSeq: number;
  closed: boolean;
}

export interface TaskStreamClient {
  append(taskId: string, input: unknown): Promise<AppendResult>;
  appendMany(taskId: string, inputs: unknown[]): Promise<AppendManyResult>;
  read(options?: { after?: number; limit?: number }): Promise<ReadResult>;
  /** Makes `agent` the task's watcher; answers what it would have been told already (TaskEvent[]). */
  watch(taskId: string, agent: string): Promise<unknown>;
  info(): Promise<{ lastSeq: number; closed: boolean; watchers: number }>;
  fetch(request: Request): Promise<Response>;
}

/**
 * The stream of one task. Where Workers' RPC typing cannot express a result (watch's events, whose
 * `data` holds `unknown`), this client answers `unknown`, for the caller to read through its schema.
 */
export function getTaskStream(env: Env, taskId: string): TaskStreamClient {
  const stub = getTaskStreamStub(env, taskId);
  return {
    append: (id, input) => stub.append(id, input),
    appendMany: (id, inputs) => stub.appendMany(id, inputs),
    read: (options) => stub.read(options),
    watch: (id, agent) => stub.watch(id, agent),
    info: () => stub.info(),
    fetch: (request) => stub.fetch(request),
  };
}

/** The raw stub, for tests that run code inside the object or evict it. */
export function getTaskStreamStub(env: Env, taskId: string) {
  return env.TASK_STREAM.get(env.TASK_STREAM.idFromName(taskId));
}
