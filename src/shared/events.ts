import * as z from "zod";
import { fitData, MAX_EVENT_DATA_CHARS, MAX_EVENT_MESSAGE_CHARS, truncateText } from "./limits.ts";
import { Traceparent } from "./trace.ts";

/** The one event format for chat, WebSocket, SSE and CLI (docs/design.md, "Contracts"). */
export const TaskEventType = z.enum([
  "task.started",
  "step.started",
  "step.progress",
  "step.completed",
  "log",
  "task.needs_input",
  "task.completed",
  "task.failed",
  "task.cancelled",
]);
export type TaskEventType = z.infer<typeof TaskEventType>;

export const TERMINAL_EVENT_TYPES = ["task.completed", "task.failed", "task.cancelled"] as const satisfies TaskEventType[];
export const isTerminal = (type: TaskEventType) => (TERMINAL_EVENT_TYPES as readonly string[]).includes(type);

/** ISO-8601 UTC with milliseconds, as `Date.prototype.toISOString` writes it: never a Date object. */
export const IsoTimestamp = z.iso.datetime();

/** A producer's own id for an event: a repeat with the same id is the same event, stored once. */
export const EventId = z.string().min(1).max(200);

export const TaskEvent = z.strictObject({
  seq: z.number().int().positive(),
  taskId: z.string().min(1),
  at: IsoTimestamp,
  type: TaskEventType,
  step: z.string().min(1).max(100).optional(),
  message: z.string().max(MAX_EVENT_MESSAGE_CHARS),
  data: z.record(z.string(), z.unknown()).optional(),
  traceId: z.string().min(1).max(100).optional(),
  traceparent: Traceparent.optional(),
  eventId: EventId.optional(),
});
export type TaskEvent = z.infer<typeof TaskEvent>;

/** What a producer appends: the stream assigns `seq` and `taskId`, and `at` defaults to now. */
export const TaskEventInput = z.strictObject({
  type: TaskEventType,
  step: z.string().min(1).max(100).optional(),
  message: z.string().max(MAX_EVENT_MESSAGE_CHARS),
  at: IsoTimestamp.optional(),
  data: z.record(z.string(), z.unknown()).optional(),
  traceId: z.string().min(1).max(100).optional(),
  traceparent: Traceparent.optional(),
  /** Makes the append idempotent: a repeat returns the event already stored under this id. */
  eventId: EventId.optional(),
});
export type TaskEventInput = z.infer<typeof TaskEventInput>;

/**
 * Brings an event within the limits instead of letting it be refused: the message is truncated
 * with a marker and over-large data keeps only its small fields (`whereFull` tells the reader
 * where the rest is). Producers whose events must not be lost (the runner hub, terminal events)
 * pass them through this.
 */
export function fitEventInput<T extends { message: string; data?: Record<string, unknown> }>(event: T, whereFull: string): T {
  const message = truncateText(event.message, MAX_EVENT_MESSAGE_CHARS);
  const data = event.data === undefined ? undefined : fitData(event.data, MAX_EVENT_DATA_CHARS, whereFull);
  if (message === event.message && data === event.data) return event;
  return { ...event, message, ...(data !== undefined ? { data } : {}) };
}

export class NotJsonError extends Error {
  readonly path: string;
  constructor(path: string, what: string) {
    super(`data${path} is ${what}, which is not JSON; send strings, numbers, booleans, null, arrays or plain objects`);
    this.path = path;
  }
}

/**
 * Returns `value` as plain JSON: Dates become ISO-8601 strings; anything JSON would silently drop
 * or mangle (undefined, functions, symbols, bigint, NaN/Infinity, Map/Set/class instances, cycles)
 * throws a NotJsonError naming where it is.
 */
export function toJsonValue(value: unknown, path = "", seen = new Set<object>()): unknown {
  if (value === null || typeof value === "string" || typeof value === "boolean") return value;
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new NotJsonError(path, String(value));
    return value;
  }
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) throw new NotJsonError(path, "an invalid Date");
    return value.toISOString();
  }
  if (typeof value !== "object") throw new NotJsonError(path, typeof value === "undefined" ? "undefined" : `a ${typeof value}`);
  if (seen.has(value)) throw new NotJsonError(path, "a circular reference");
  seen.add(value);
  try {
    if (Array.isArray(value)) return value.map((item, index) => toJsonValue(item, `${path}[${index}]`, seen));
    const proto = Object.getPrototypeOf(value) as unknown;
    if (proto !== Object.prototype && proto !== null) {
      throw new NotJsonError(path, `a ${(value as { constructor?: { name?: string } }).constructor?.name ?? "class"} instance`);
    }
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, toJsonValue(item, `${path}.${key}`, seen)]));
  } finally {
    seen.delete(value);
  }
}

/**
 * Validates producer input and normalises it into the stored shape (minus seq/taskId).
 * Throws a ZodError or NotJsonError with a message fit for a 400. A terminal event is never refused
 * for its size: it is fitted (fitEventInput) instead, since refusing it would leave the task open.
 */
export function normalizeEventInput(input: unknown, now: Date = new Date()): Omit<TaskEvent, "seq" | "taskId"> {
  let raw = input && typeof input === "object" && !Array.isArray(input) ? { ...(input as Record<string, unknown>) } : input;
  if (raw && typeof raw === "object" && "at" in raw && raw.at instanceof Date) raw.at = toJsonValue(raw.at);
  if (isTerminalInput(raw)) raw = fitTerminal(raw);
  const parsed = TaskEventInput.parse(raw);
  const data = parsed.data === undefined ? undefined : (toJsonValue(parsed.data) as Record<string, unknown>);
  if (data && JSON.stringify(data).length > MAX_EVENT_DATA_CHARS) {
    throw new NotJsonError("", `larger than ${MAX_EVENT_DATA_CHARS} characters as JSON`);
  }
  return {
    at: parsed.at ?? now.toISOString(),
    type: parsed.type,
    ...(parsed.step !== undefined ? { step: parsed.step } : {}),
    message: parsed.message,
    ...(data !== undefined ? { data } : {}),
    ...(parsed.traceId !== undefined ? { traceId: parsed.traceId } : {}),
    ...(parsed.traceparent !== undefined ? { traceparent: parsed.traceparent } : {}),
    ...(parsed.eventId !== undefined ? { eventId: parsed.eventId } : {}),
  };
}

type TerminalInput = Record<string, unknown> & { type: (typeof TERMINAL_EVENT_TYPES)[number]; message: string; data?: Record<string, unknown> };

function isTerminalInput(raw: unknown): raw is TerminalInput {
  if (!raw || typeof raw !== "object") return false;
  const { type, message, data } = raw as Record<string, unknown>;
  const dataOk = data === undefined || (typeof data === "object" && data !== null && !Array.isArray(data));
  return typeof type === "string" && isTerminal(type as TaskEventType) && typeof message === "string" && dataOk;
}

function fitTerminal(raw: TerminalInput): TerminalInput {
  try {
    const data = raw.data === undefined ? undefined : (toJsonValue(raw.data) as Record<string, unknown>);
    return fitEventInput({ ...raw, ...(data !== undefined ? { data } : {}) }, "the full result stays with whatever produced it");
  } catch {
    return raw; // data that is not JSON is refused by the normal path, naming where
  }
}

/** Messages on a task's WebSocket, server → client. Tagged `noun:verb`. */
export const TaskSocketServerMessage = z.discriminatedUnion("type", [
  z.object({ type: z.literal("event:appended"), event: TaskEvent }),
  /** Sent once the replay of history is done; `closed` when the task has already ended. */
  z.object({ type: z.literal("stream:live"), lastSeq: z.number().int().min(0), closed: z.boolean() }),
  /**
   * `watcher_too_slow`: this watcher fell WATCHER_ACK_WINDOW events behind on acks and gets no more
   * events on this socket; reconnect with `after`. Sent before the 4008 close because the runtime
   * may deliver a hibernatable socket's close frame only once the object is idle.
   */
  z.object({ type: z.literal("stream:error"), code: z.string(), message: z.string(), after: z.number().int().min(0).optional() }),
]);
export type TaskSocketServerMessage = z.infer<typeof TaskSocketServerMessage>;

/** Messages on a task's WebSocket, client → server. */
export const TaskSocketClientMessage = z.discriminatedUnion("type", [
  /** Acknowledges receipt up to `seq`, which keeps a watcher within its send window. */
  z.object({ type: z.literal("event:ack"), seq: z.number().int().min(0) }),
]);
export type TaskSocketClientMessage = z.infer<typeof TaskSocketClientMessage>;

/** The stream:error code that tells a watcher it was dropped for lagging, and where to resume. */
export const WATCHER_TOO_SLOW = "watcher_too_slow";

/** How many events a watcher may be behind on acks before the stream drops it (it may resume). */
export const WATCHER_ACK_WINDOW = 256;

/**
 * Batches acknowledgements for a watcher: acks after every `every` events, or once the stream
 * has been quiet for `idleMs`, so a fast stream costs one ack per batch rather than one per event.
 */
export function createAcker(sendAck: (seq: number) => void, options: { every?: number; idleMs?: number } = {}) {
  const every = options.every ?? Math.floor(WATCHER_ACK_WINDOW / 2);
  const idleMs = options.idleMs ?? 1000;
  let lastSeen = 0;
  let lastAcked = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const flush = () => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    if (lastSeen > lastAcked) {
      lastAcked = lastSeen;
      try {
        sendAck(lastSeen);
      } catch {
        // The socket is gone; the watcher resumes from its last seq anyway.
      }
    }
  };
  return {
    received(seq: number) {
      lastSeen = Math.max(lastSeen, seq);
      if (lastSeen - lastAcked >= every) flush();
      // Jittered, so a thousand watchers of one stream do not all ack in the same instant.
      else if (!timer) timer = setTimeout(flush, idleMs * (0.5 + Math.random()));
    },
    stop() {
      if (timer) clearTimeout(timer);
      timer = undefined;
    },
  };
}
