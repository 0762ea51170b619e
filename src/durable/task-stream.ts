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
import { isDbUnavailable } from "../db/client.ts";
import { settings } from "../lib/settings.ts";
import type { TaskStatus } from "../shared/api.ts";
import {
  isTerminal,
  normalizeEventInput,
  NotJsonError,
  type TaskEvent,
  type TaskEventType,
  TaskSocketClientMessage,
  type TaskSocketServerMessage,
  WATCHER_ACK_WINDOW,
  WATCHER_TOO_SLOW,
} from "../shared/events.ts";
import { parseJson } from "../shared/json.ts";
import { migrate, type SqlMigration } from "../lib/sql-migrations.ts";
import type { AppendFailure, AppendManyResult, AppendResult, ReadResult } from "../tasks/stream-client.ts";
import { statusFor, updateTaskRow } from "../tasks/task-row.ts";
import { TaskWatcher } from "../tasks/watchers.ts";

/** What each socket remembers across hibernation (serializeAttachment). */
interface WatcherState {
  /** Highest seq the watcher acknowledged. */
  acked: number;
  /** Highest seq sent to it while replaying history; once caught up it follows the live stream. */
  sent: number;
  caughtUp: boolean;
}

interface EventRow extends Record<string, SqlStorageValue> {
  seq: number;
  at: string;
  type: string;
  step: string | null;
  message: string;
  data: string | null;
  trace_id: string | null;
  traceparent: string | null;
  event_id: string | null;
}

const READ_PAGE_MAX = 1000;
/** Events one appendMany takes. */
export const APPEND_BATCH_MAX = 1000;

type Normalized = Omit<TaskEvent, "seq" | "taskId">;
type Rejection = { index: number; code: "invalid_request" | "conflict"; message: string };
type BatchResult = { ok: true; stored: { event: TaskEvent; duplicate: boolean }[]; rejected: Rejection[] } | AppendFailure;

/** The stream's SQLite schema, version by version (numbered migrations, never IF NOT EXISTS plus a later column). */
export const TASK_STREAM_MIGRATIONS: readonly SqlMigration[] = [
  {
    version: 1,
    name: "events and meta",
    up(sql) {
      // IF NOT EXISTS: stores made before versioning began already have these tables.
      sql.exec(`CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY, at TEXT NOT NULL, type TEXT NOT NULL, step TEXT,
        message TEXT NOT NULL, data TEXT, trace_id TEXT)`);
      sql.exec(`CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`);
    },
  },
  {
    version: 2,
    name: "producer event ids and traceparent",
    up(sql) {
      sql.exec(`ALTER TABLE events ADD COLUMN event_id TEXT`);
      sql.exec(`ALTER TABLE events ADD COLUMN traceparent TEXT`);
      sql.exec(`CREATE UNIQUE INDEX events_event_id ON events (event_id) WHERE event_id IS NOT NULL`);
    },
  },
];

export class TaskStream extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  private taskId: string | null;
  private lastSeq: number;
  private closed: boolean;
  private status: string | null;
  /** In-memory mirror of each socket's WatcherState; rebuilt from attachments after hibernation. */
  private readonly watchers = new Map<WebSocket, WatcherState>();
  /**
   * Appends run one at a time: each awaits Postgres, and without this a slower status write could
   * commit after a later one (a `running` after the terminal `completed`).
   */
  private appending: Promise<unknown> = Promise.resolve();
  private readonly watcher: TaskWatcher;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    // Synchronous, first thing: no request reaches the object before its schema is current.
    migrate(ctx.storage, TASK_STREAM_MIGRATIONS);
    this.watcher = new TaskWatcher(this.sql, env, (promise) => ctx.waitUntil(promise));
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
  append(taskId: string, input: unknown): Promise<AppendResult> {
    return this.exclusive(async () => {
      const result = await this.appendBatch(taskId, [input]);
      if (!result.ok) return result;
      const [first] = result.stored;
      if (first) return { ok: true, event: first.event, ...(first.duplicate ? { duplicate: true } : {}) };
      const [rejected] = result.rejected;
      return { ok: false, code: rejected?.code ?? "invalid_request", message: rejected?.message ?? "invalid event" };
    });
  }

  /**
   * Appends up to APPEND_BATCH_MAX events in order, in one call: the runner hub's path for log
   * backlogs. The task's row is written at most once for the whole batch. Inputs that cannot be
   * stored (invalid, or after a terminal event) are reported, the others stored.
   */
  appendMany(taskId: string, inputs: unknown[]): Promise<AppendManyResult> {
    if (inputs.length > APPEND_BATCH_MAX) {
      return Promise.resolve({ ok: false, code: "invalid_request", message: `at most ${APPEND_BATCH_MAX} events per batch (got ${inputs.length})` });
    }
    return this.exclusive(async () => {
      const result = await this.appendBatch(taskId, inputs);
      return result.ok ? { ok: true, events: result.stored.map((s) => s.event), rejected: result.rejected } : result;
    });
  }

  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.appending.then(work, work);
    this.appending = run.catch(() => undefined);
    return run;
  }

  private async appendBatch(taskId: string, inputs: unknown[]): Promise<BatchResult> {
    if (this.taskId && this.taskId !== taskId) {
      return { ok: false, code: "invalid_request", message: "This stream belongs to another task" };
    }
    const rejected: Rejection[] = [];
    // What to store, in order; a known eventId stands for its stored event instead.
    const plan: ({ kind: "new"; event: Normalized } | { kind: "known"; event: TaskEvent })[] = [];
    const batchIds = new Set<string>();
    let closing = this.closed;
    for (const [index, input] of inputs.entries()) {
      let normalized: Normalized;
      try {
        normalized = normalizeEventInput(input);
      } catch (error) {
        rejected.push({ index, code: "invalid_request", message: describeInvalid(error) });
        continue;
      }
      const known = normalized.eventId ? this.eventById(normalized.eventId) : undefined;
      if (known) {
        plan.push({ kind: "known", event: known });
        continue;
      }
      if (normalized.eventId && batchIds.has(normalized.eventId)) continue;
      if (closing) {
        rejected.push({ index, code: "conflict", message: "The task has ended; its stream takes no more events" });
        continue;
      }
      if (normalized.eventId) batchIds.add(normalized.eventId);
      plan.push({ kind: "new", event: normalized });
      if (isTerminal(normalized.type)) closing = true;
    }
    const fresh = plan.flatMap((step) => (step.kind === "new" ? [step.event] : []));
    if (fresh.length === 0) return { ok: true, stored: plan.map((step) => ({ event: step.event as TaskEvent, duplicate: true })), rejected };

    // The task's row changes first: if Postgres is unreachable nothing is stored and the caller retries.
    // This is also where a task's existence is checked: the first event always changes the status.
    const last = fresh.at(-1) as Normalized;
    const status = statusFor(last.type);
    const terminal = fresh.find((event) => isTerminal(event.type));
    if (status !== this.status || terminal) {
      try {
        if (!(await this.updateTaskRow(taskId, terminal ?? last, status))) return { ok: false, code: "not_found", message: "Task not found" };
      } catch (error) {
        if (isDbUnavailable(error)) return { ok: false, code: "db_unavailable", message: "The database is unavailable; the event was not stored" };
        throw error;
      }
    }

    const stored: { event: TaskEvent; duplicate: boolean }[] = [];
    this.ctx.storage.transactionSync(() => {
      let seq = this.lastSeq;
      for (const step of plan) {
        if (step.kind === "known") {
          stored.push({ event: step.event, duplicate: true });
          continue;
        }
        const event: TaskEvent = { seq: ++seq, taskId, ...step.event };
        this.sql.exec(
          `INSERT INTO events (seq, at, type, step, message, data, trace_id, traceparent, event_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
          event.seq, event.at, event.type, event.step ?? null, event.message,
          event.data === undefined ? null : JSON.stringify(event.data),
          event.traceId ?? null, event.traceparent ?? null, event.eventId ?? null,
        );
        stored.push({ event, duplicate: false });
      }
      if (!this.taskId) this.sql.exec(`INSERT OR REPLACE INTO meta (key, value) VALUES ('task_id', ?)`, taskId);
      this.sql.exec(`INSERT OR REPLACE INTO meta (key, value) VALUES ('status', ?)`, status);
      if (terminal) this.sql.exec(`INSERT OR REPLACE INTO meta (key, value) VALUES ('closed_at', ?)`, new Date().toISOString());
      this.lastSeq = seq;
    });
    this.taskId = taskId;
    this.status = status;
    if (terminal) {
      this.closed = true;
      await this.ctx.storage.setAlarm(Date.now() + settings(this.env).TASK_STREAM_RETENTION_SECONDS * 1000);
    }
    for (const { event, duplicate } of stored) if (!duplicate) this.broadcast(event);
    this.watcher.notify(stored.flatMap(({ event, duplicate }) => (duplicate ? [] : [event])));
    return { ok: true, stored, rejected };
  }

  /**
   * A Product Owner follows this task: it is told of each question (`task.needs_input`) and of the
   * end. Returns what it would have been told already (the open question, or the end), so that an
   * event appended before the watch began is not missed.
   */
  watch(taskId: string, agent: string): TaskEvent[] {
    if (this.taskId && this.taskId !== taskId) return [];
    this.watcher.set(agent);
    const last = this.watcher.lastNoticeSeq();
    if (last === undefined) return [];
    const [event] = this.eventsAfter(last - 1, 1);
    // A question already answered (the task went on) is not asked again.
    return event && (isTerminal(event.type) || this.status === "needs_input") ? [event] : [];
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
    const parsed = parseJson(TaskSocketClientMessage, typeof message === "string" ? message : new TextDecoder().decode(message)).data;
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
    migrate(this.ctx.storage, TASK_STREAM_MIGRATIONS);
    this.sql.exec(`INSERT INTO meta (key, value) VALUES ('closed_at', ?), ('task_id', ?)`, closedAt, this.taskId ?? "");
    this.lastSeq = 0;
    this.status = null;
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
        // Said in a frame first: frames go out at once, a close frame possibly only when the object is idle.
        this.send(ws, { type: "stream:error", code: WATCHER_TOO_SLOW, message: `watcher too slow; reconnect with after=${state.acked}`, after: state.acked });
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
    return this.sql
      .exec<EventRow>(`SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?`, after, limit)
      .toArray()
      .map((row) => this.toEvent(row));
  }

  private eventById(eventId: string): TaskEvent | undefined {
    const row = this.sql.exec<EventRow>(`SELECT * FROM events WHERE event_id = ?`, eventId).toArray()[0];
    return row ? this.toEvent(row) : undefined;
  }

  private toEvent(row: EventRow): TaskEvent {
    return {
      seq: row.seq,
      taskId: this.taskId ?? "",
      at: row.at,
      type: row.type as TaskEventType,
      ...(row.step !== null ? { step: row.step } : {}),
      message: row.message,
      ...(row.data !== null ? { data: JSON.parse(row.data) as Record<string, unknown> } : {}),
      ...(row.trace_id !== null ? { traceId: row.trace_id } : {}),
      ...(row.traceparent !== null ? { traceparent: row.traceparent } : {}),
      ...(row.event_id !== null ? { eventId: row.event_id } : {}),
    };
  }
  /** The task's row follows its events (src/tasks/task-row.ts); a method of its own, for tests to slow it down. */
  private updateTaskRow(taskId: string, event: Normalized, status: TaskStatus): Promise<boolean> {
    return updateTaskRow(this.env, (promise) => this.ctx.waitUntil(promise), taskId, event, status);
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
