/**
 * TaskStream: one Durable Object per task. Holds the task's ordered event log in its SQLite storage,
 * assigns `seq` (1, 2, 3… with no gaps, across evictions), and fans each event out to every watcher
 * over hibernatable WebSockets.
 *
 * Flow control: a watcher acknowledges (`event:ack`) what it has received. The stream never has more
 * than WATCHER_ACK_WINDOW unacknowledged events in flight to one watcher: history is replayed page by
 * page as acks arrive, and a caught-up watcher that falls a full window behind on live events is
 * closed (code 4008) so it cannot hold memory or slow the others; it resumes with `after=<last seq>`.
 */
import { DurableObject } from "cloudflare:workers";
import { eq } from "drizzle-orm";
import { createDb, isDbUnavailable } from "../db/client.ts";
import { tasks } from "../db/schema.ts";
import {
  isTerminal,
  normalizeEventInput,
  NotJsonError,
  type TaskEvent,
  type TaskEventType,
  type TaskSocketClientMessage,
  type TaskSocketServerMessage,
  WATCHER_ACK_WINDOW,
} from "../shared/events.ts";

export type AppendResult =
  | { ok: true; event: TaskEvent }
  | { ok: false; code: "invalid_request" | "not_found" | "conflict" | "db_unavailable"; message: string };

export interface ReadResult {
  events: TaskEvent[];
  lastSeq: number;
  closed: boolean;
}

/** What each socket remembers across hibernation (serializeAttachment). */
interface WatcherState {
  /** Highest seq the watcher acknowledged. */
  acked: number;
  /** Highest seq sent to it while replaying history; once caught up it follows the live stream. */
  sent: number;
  caughtUp: boolean;
}

type TaskStatus = (typeof tasks.$inferSelect)["status"];

/** The task status an event implies, or undefined when it changes nothing. */
function statusFor(type: TaskEventType): TaskStatus {
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

interface EventRow extends Record<string, SqlStorageValue> {
  seq: number;
  at: string;
  type: string;
  step: string | null;
  message: string;
  data: string | null;
  trace_id: string | null;
}

const DEFAULT_RETENTION_SECONDS = 7 * 24 * 3600;
const READ_PAGE_MAX = 1000;

export class TaskStream extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  private taskId: string | null;
  private lastSeq: number;
  private closed: boolean;
  private status: string | null;
  /** In-memory mirror of each socket's WatcherState; rebuilt from attachments after hibernation. */
  private readonly watchers = new Map<WebSocket, WatcherState>();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.createSchema();
    const meta = new Map(this.sql.exec<{ key: string; value: string }>(`SELECT key, value FROM meta`).toArray().map((r) => [r.key, r.value]));
    this.taskId = meta.get("task_id") ?? null;
    this.closed = meta.has("closed_at");
    this.status = meta.get("status") ?? null;
    this.lastSeq = this.sql.exec<{ last: number | null }>(`SELECT MAX(seq) AS last FROM events`).one().last ?? 0;
    for (const ws of ctx.getWebSockets()) {
      const saved = ws.deserializeAttachment() as WatcherState | null;
      if (!saved) continue;
      // Asleep means idle: a caught-up watcher had been sent everything up to lastSeq.
      this.watchers.set(ws, saved.caughtUp ? { ...saved, sent: this.lastSeq } : saved);
    }
  }

  /** Appends one event (validated and normalised) and fans it out. Terminal events close the stream. */
  async append(taskId: string, input: unknown): Promise<AppendResult> {
    if (this.taskId && this.taskId !== taskId) {
      return { ok: false, code: "invalid_request", message: "This stream belongs to another task" };
    }
    if (this.closed) return { ok: false, code: "conflict", message: "The task has ended; its stream takes no more events" };
    let normalized: Omit<TaskEvent, "seq" | "taskId">;
    try {
      normalized = normalizeEventInput(input);
    } catch (error) {
      return { ok: false, code: "invalid_request", message: describeInvalid(error) };
    }

    // The task's row changes first: if Postgres is unreachable nothing is stored and the caller retries.
    // This is also where a task's existence is checked: the first event always changes the status.
    const status = statusFor(normalized.type);
    if (status !== this.status || isTerminal(normalized.type)) {
      try {
        if (!(await this.updateTaskRow(taskId, normalized, status))) return { ok: false, code: "not_found", message: "Task not found" };
      } catch (error) {
        if (isDbUnavailable(error)) return { ok: false, code: "db_unavailable", message: "The database is unavailable; the event was not stored" };
        throw error;
      }
    }
    // updateTaskRow awaited: re-check, another append may have ended the stream meanwhile.
    if (this.closed) return { ok: false, code: "conflict", message: "The task has ended; its stream takes no more events" };

    const event: TaskEvent = { seq: this.lastSeq + 1, taskId, ...normalized };
    this.ctx.storage.transactionSync(() => {
      this.sql.exec(
        `INSERT INTO events (seq, at, type, step, message, data, trace_id) VALUES (?, ?, ?, ?, ?, ?, ?)`,
        event.seq,
        event.at,
        event.type,
        event.step ?? null,
        event.message,
        event.data === undefined ? null : JSON.stringify(event.data),
        event.traceId ?? null,
      );
      if (!this.taskId) this.sql.exec(`INSERT OR REPLACE INTO meta (key, value) VALUES ('task_id', ?)`, taskId);
      this.sql.exec(`INSERT OR REPLACE INTO meta (key, value) VALUES ('status', ?)`, status);
      if (isTerminal(event.type)) this.sql.exec(`INSERT OR REPLACE INTO meta (key, value) VALUES ('closed_at', ?)`, new Date().toISOString());
    });
    this.taskId = taskId;
    this.lastSeq = event.seq;
    this.status = status;
    if (isTerminal(event.type)) {
      this.closed = true;
      const retention = Number(this.env.TASK_STREAM_RETENTION_SECONDS) || DEFAULT_RETENTION_SECONDS;
      await this.ctx.storage.setAlarm(Date.now() + retention * 1000);
    }
    this.broadcast(event);
    return { ok: true, event };
  }

  /** Pages the history: events with seq > after, oldest first. */
  read(options: { after?: number; limit?: number } = {}): ReadResult {
    const after = Math.max(0, Math.floor(options.after ?? 0));
    const limit = Math.min(READ_PAGE_MAX, Math.max(1, Math.floor(options.limit ?? 100)));
    return { events: this.eventsAfter(after, limit), lastSeq: this.lastSeq, closed: this.closed };
  }

  /** Number of connected watchers and the stream position, for operators and tests. */
  info(): { lastSeq: number; closed: boolean; watchers: number } {
    return { lastSeq: this.lastSeq, closed: this.closed, watchers: this.ctx.getWebSockets().length };
  }

  /** WebSocket upgrades only: `?after=<seq>` replays later history, then the socket follows live. */
  override fetch(request: Request): Response {
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return new Response("TaskStream accepts WebSocket upgrades only", { status: 426 });
    }
    const after = Math.max(0, Math.floor(Number(new URL(request.url).searchParams.get("after") ?? 0) || 0));
    const { 0: client, 1: server } = new WebSocketPair();
    this.ctx.acceptWebSocket(server);
    const state: WatcherState = { acked: Math.min(after, this.lastSeq), sent: Math.min(after, this.lastSeq), caughtUp: false };
    this.watchers.set(server, state);
    // Accepting and replaying happen in this one synchronous turn, so no append can slip between them.
    this.pump(server, state);
    return new Response(null, { status: 101, webSocket: client });
  }

  override webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): void {
    const state = this.watchers.get(ws);
    if (!state) return;
    // Acks are the busiest inbound message: checked by hand rather than through zod.
    const parsed = parseClientMessage(message);
    if (!parsed) {
      this.send(ws, { type: "stream:error", code: "invalid_message", message: 'Send {"type":"event:ack","seq":N}' });
      return;
    }
    const acked = Math.max(state.acked, Math.min(parsed.seq, state.sent));
    if (acked === state.acked && state.caughtUp) return;
    state.acked = acked;
    this.pump(ws, state);
  }

  override webSocketClose(ws: WebSocket, code: number, reason: string): void {
    this.watchers.delete(ws);
    try {
      ws.close(code === 1005 || code === 1006 ? 1000 : code, reason);
    } catch {
      // Already closed.
    }
  }

  override webSocketError(ws: WebSocket): void {
    this.watchers.delete(ws);
  }

  /** Retention is over: the history and its watchers go. */
  override async alarm(): Promise<void> {
    if (!this.closed) return;
    for (const ws of this.ctx.getWebSockets()) ws.close(1001, "stream expired");
    this.watchers.clear();
    const closedAt = new Date().toISOString();
    await this.ctx.storage.deleteAll();
    // A tombstone: without it a late append would start a new history for a finished task.
    this.createSchema();
    this.sql.exec(`INSERT INTO meta (key, value) VALUES ('closed_at', ?), ('task_id', ?)`, closedAt, this.taskId ?? "");
    this.lastSeq = 0;
    this.status = null;
  }

  private createSchema(): void {
    this.sql.exec(`CREATE TABLE IF NOT EXISTS events (
      seq INTEGER PRIMARY KEY, at TEXT NOT NULL, type TEXT NOT NULL, step TEXT,
      message TEXT NOT NULL, data TEXT, trace_id TEXT)`);
    this.sql.exec(`CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`);
  }

  /** Sends replay pages while the watcher's window allows; marks it live once it has everything. */
  private pump(ws: WebSocket, state: WatcherState): void {
    while (!state.caughtUp) {
      const room = state.acked + WATCHER_ACK_WINDOW - state.sent;
      if (room <= 0) break;
      const page = this.eventsAfter(state.sent, room);
      for (const event of page) this.send(ws, { type: "event:appended", event });
      state.sent = page.at(-1)?.seq ?? state.sent;
      if (state.sent >= this.lastSeq) {
        state.caughtUp = true;
        this.send(ws, { type: "stream:live", lastSeq: this.lastSeq, closed: this.closed });
        if (this.closed) ws.close(1000, "task ended");
      }
    }
    ws.serializeAttachment(state);
  }

  private broadcast(event: TaskEvent): void {
    const frame = JSON.stringify({ type: "event:appended", event } satisfies TaskSocketServerMessage);
    for (const ws of this.ctx.getWebSockets()) {
      const state = this.watchers.get(ws);
      // Still replaying: this event reaches it through pump(), in order.
      if (!state?.caughtUp) continue;
      if (event.seq - state.acked > WATCHER_ACK_WINDOW) {
        this.watchers.delete(ws);
        ws.close(4008, `watcher too slow; reconnect with after=${state.acked}`);
        continue;
      }
      try {
        ws.send(frame);
        state.sent = event.seq;
        if (isTerminal(event.type)) ws.close(1000, "task ended");
      } catch {
        this.watchers.delete(ws);
      }
    }
  }

  private send(ws: WebSocket, message: TaskSocketServerMessage): void {
    try {
      ws.send(JSON.stringify(message));
    } catch {
      this.watchers.delete(ws);
    }
  }

  private eventsAfter(after: number, limit: number): TaskEvent[] {
    const taskId = this.taskId ?? "";
    return this.sql
      .exec<EventRow>(`SELECT seq, at, type, step, message, data, trace_id FROM events WHERE seq > ? ORDER BY seq LIMIT ?`, after, limit)
      .toArray()
      .map((row) => ({
        seq: row.seq,
        taskId,
        at: row.at,
        type: row.type as TaskEventType,
        ...(row.step !== null ? { step: row.step } : {}),
        message: row.message,
        ...(row.data !== null ? { data: JSON.parse(row.data) as Record<string, unknown> } : {}),
        ...(row.trace_id !== null ? { traceId: row.trace_id } : {}),
      }));
  }

  /** Moves the task's row to `status`; false when there is no such task. */
  private async updateTaskRow(taskId: string, event: Omit<TaskEvent, "seq" | "taskId">, status: TaskStatus): Promise<boolean> {
    const handle = createDb({ databaseUrl: this.env.DATABASE_URL, wsProxy: this.env.DB_WS_PROXY });
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
        })
        .where(eq(tasks.id, taskId))
        .returning({ id: tasks.id });
      return updated.length > 0;
    } finally {
      this.ctx.waitUntil(handle.close().catch(() => undefined));
    }
  }
}

function parseClientMessage(message: string | ArrayBuffer): TaskSocketClientMessage | null {
  try {
    const value = JSON.parse(typeof message === "string" ? message : new TextDecoder().decode(message)) as { type?: unknown; seq?: unknown };
    if (value.type !== "event:ack" || typeof value.seq !== "number" || !Number.isInteger(value.seq) || value.seq < 0) return null;
    return { type: "event:ack", seq: value.seq };
  } catch {
    return null;
  }
}

function describeInvalid(error: unknown): string {
  if (error instanceof NotJsonError) return error.message;
  if (error && typeof error === "object" && "issues" in error && Array.isArray(error.issues)) {
    return (error.issues as { path: PropertyKey[]; message: string }[])
      .map((issue) => (issue.path.length ? `${issue.path.map(String).join(".")}: ${issue.message}` : issue.message))
      .join("; ");
  }
  return error instanceof Error ? error.message : "invalid event";
}

export interface TaskStreamClient {
  append(taskId: string, input: unknown): Promise<AppendResult>;
  read(options?: { after?: number; limit?: number }): Promise<ReadResult>;
  info(): Promise<{ lastSeq: number; closed: boolean; watchers: number }>;
  fetch(request: Request): Promise<Response>;
}

/**
 * The stream of one task. Workers' RPC typing cannot express `unknown` inside results (event
 * `data`) and widens them to `unknown`; this client restates the real result types in one place.
 */
export function getTaskStream(env: Env, taskId: string): TaskStreamClient {
  const stub = getTaskStreamStub(env, taskId);
  return {
    append: (id, input) => stub.append(id, input),
    read: (options) => stub.read(options) as Promise<ReadResult>,
    info: () => stub.info(),
    fetch: (request) => stub.fetch(request),
  };
}

/** The raw stub, for tests that run code inside the object or evict it. */
export function getTaskStreamStub(env: Env, taskId: string): DurableObjectStub<TaskStream> {
  return env.TASK_STREAM.get(env.TASK_STREAM.idFromName(taskId));
}
