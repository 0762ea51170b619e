/**
 * RunnerHub: one Durable Object per server. It holds the server's job queue in SQLite, signs each
 * job for the server's one runner, and talks to that runner over the WebSocket the runner opened
 * (outbound from the VPS, `/runner/connect`).
 *
 * A job's life: queued → delivered (sent; the runner must accept within the ack lease, else it is
 * sent again) → running (accepted; heartbeats that list it renew its lease) → succeeded | failed |
 * cancelled. A job still undelivered at its envelope's `exp` fails as "undelivered". Delivery is
 * at least once; the runner's journal makes execution at most once per job id.
 *
 * Runner messages are signed with the runner's enrolled key and bound to the connection's challenge.
 * Progress and log lines go to the job's TaskStream in the order they arrived; results go to the
 * job's row, to anyone waiting on it (RPC `wait`, the API's `?wait=`), and to the task's stream.
 */
import { DurableObject } from "cloudflare:workers";
import { eq } from "drizzle-orm";
import { createDb } from "../db/client.ts";
import { servers } from "../db/schema.ts";
import { AppError } from "../lib/app-error.ts";
import { newId, randomToken } from "../lib/crypto.ts";
import { loadJobSigningKey } from "../lib/job-signing.ts";
import { appendTaskEvent } from "../services/tasks.ts";
import type { CreateJob, JobOutcomeView, JobState, JobView } from "../shared/api.ts";
import type { TaskEventInput } from "../shared/events.ts";
import { describePayloadIssues, JobPayloads, redactPayload } from "../shared/job-payloads.ts";
import { CLOCK_SKEW_SECONDS, type JobEnvelope, signJob, signValue, verifyValue, importPublicKey } from "../shared/jobs.ts";
import {
  type CancelEnvelope,
  connectProof,
  HEARTBEAT_INTERVAL_MS,
  type HubMessage,
  RunnerBody,
  RunnerMessage,
} from "../shared/runner-protocol.ts";

/** Who this hub serves; the worker passes it from Postgres on every call, so it follows re-enrollment. */
export interface HubIdentity {
  serverId: string;
  handle: string;
  runnerId: string | null;
  runnerPublicKey: string | null;
}

export interface HubStatus {
  connected: boolean;
  connectedAt: string | null;
  lastHeartbeatAt: string | null;
  jobs: Record<JobState, number>;
}

/** What the hub queues: the API's job, or one from a workflow that wants waking when it finishes. */
export type HubJobInput = CreateJob & {
  /** The workflow instance to wake: `sendEvent({type: <job id>, payload: <the finished job as JSON>})`. */
  notify?: { workflow: "provision-server"; instanceId: string };
};

export type EnqueueResult =
  | { ok: true; job: JobView }
  /** `unknown_server`: the hub has not been told who it serves yet; call again with the identity. */
  | { ok: false; code: "invalid_request" | "conflict" | "unknown_server"; message: string };

interface SocketState {
  challenge: string;
  /** Closed for not saying hello in time; it may linger until the peer completes the close. */
  closing?: boolean;
  openedAt: number;
  authenticated: boolean;
  runnerId: string | null;
  concurrency: number;
}

interface OutboxRow extends Record<string, SqlStorageValue> {
  seq: number;
  /** `task`: a task event (task_id, event); `workflow`: a workflow wake-up (task_id = instance id, event = its payload). */
  kind: string;
  task_id: string;
  job_id: string;
  event: string;
  attempts: number;
  next_at: number;
}

interface JobRow extends Record<string, SqlStorageValue> {
  id: string;
  type: string;
  task_id: string | null;
  finish_task: number;
  envelope: string;
  signature: string;
  state: string;
  attempts: number;
  lease_until: number | null;
  expires_at: number;
  timeout_seconds: number;
  created_at: number;
  updated_at: number;
  started_at: number | null;
  finished_at: number | null;
  outcome: string | null;
  cancel_requested: number;
  /** The signed cancel, kept to be sent again (before the job itself) after a reconnect. */
  cancel_message: string | null;
  /** CreateJob["notify"] as JSON: the workflow instance to wake when the job finishes. */
  notify: string | null;
  idem_key: string | null;
}

/** How long a runner that stops heartbeating keeps a running job before it counts as lost. */
const RUNNING_LEASE_MS = 3 * HEARTBEAT_INTERVAL_MS;
/** Time for a reconnecting runner to report a job that outlived its connection. */
const RESULT_GRACE_MS = 60_000;
const AUTH_TIMEOUT_MS = 15_000;
/** About two hours of retries (backoff capped at a minute) before a task event is given up. */
const TASK_EVENT_MAX_ATTEMPTS = 130;
const WORKFLOW_WAKE_MAX_ATTEMPTS = 5;
const OUTBOX_IN_FLIGHT_MS = 30_000;
/**
 * When an undelivered job fails: at `exp` if it was never sent; if it was sent, only once the runner
 * could no longer accept it either (exp + clock skew) and its acceptance had time to arrive.
 */
const DEADLINE_SQL = `CASE WHEN attempts = 0 THEN expires_at ELSE expires_at + ? END`;

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

export class RunnerHub extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  /** Runner messages are handled one at a time, in arrival order, across awaits. */
  private inbox: Promise<void> = Promise.resolve();
  /** Task events are appended in order, one at a time. */
  private outbox: Promise<void> = Promise.resolve();
  private draining = false;
  private readonly waiters = new Map<string, Set<(job: JobView) => void>>();
  private runnerKey: { publicKey: string; key: Promise<CryptoKey> } | null = null;
  private lastSeenWrite = 0;
  /** Who this hub serves (kept in meta; cached, since every job view names the server). */
  private known: HubIdentity | null;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(`CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`);
    this.sql.exec(`CREATE TABLE IF NOT EXISTS jobs (
      id TEXT PRIMARY KEY, type TEXT NOT NULL, task_id TEXT, finish_task INTEGER NOT NULL DEFAULT 0,
      envelope TEXT NOT NULL, signature TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
      lease_until INTEGER, expires_at INTEGER NOT NULL, timeout_seconds INTEGER NOT NULL,
      created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, started_at INTEGER, finished_at INTEGER, outcome TEXT,
      cancel_requested INTEGER NOT NULL DEFAULT 0, cancel_message TEXT, notify TEXT, idem_key TEXT)`);
    this.sql.exec(`CREATE UNIQUE INDEX IF NOT EXISTS jobs_idem ON jobs (idem_key) WHERE idem_key IS NOT NULL`);
    this.sql.exec(`CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, created_at)`);
    this.sql.exec(`CREATE TABLE IF NOT EXISTS task_outbox (
      seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL DEFAULT 'task', task_id TEXT NOT NULL, job_id TEXT NOT NULL, event TEXT NOT NULL,
      attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL DEFAULT 0)`);
    this.known = JSON.parse(this.meta().get("identity") ?? "null") as HubIdentity | null;
  }

  // ---- RPC: the API and workflows ----

  /** Validates, signs and queues a job for this server's runner, and sends it at once if the runner is connected. */
  async enqueue(given: HubIdentity | null, input: HubJobInput): Promise<EnqueueResult> {
    if (given) this.remember(given);
    const identity = this.known;
    if (!identity) return { ok: false, code: "unknown_server", message: "this hub does not know its server yet" };
    if (!identity.runnerId) return { ok: false, code: "conflict", message: `Server ${identity.handle} has no enrolled runner yet` };
    if (input.idempotencyKey) {
      const existing = this.sql.exec<JobRow>(`SELECT * FROM jobs WHERE idem_key = ?`, input.idempotencyKey).toArray()[0];
      if (existing) return { ok: true, job: this.view(existing) };
    }
    const payload = JobPayloads[input.type].safeParse(input.payload);
    if (!payload.success) {
      const summary = describePayloadIssues(payload.error);
      return { ok: false, code: "invalid_request", message: `Invalid ${input.type} payload: ${summary}` };
    }
    const now = Date.now();
    const iat = Math.floor(now / 1000);
    const envelope: JobEnvelope = {
      v: 1,
      id: newId("job"),
      runner: identity.runnerId,
      type: input.type,
      ...(input.taskId ? { taskId: input.taskId } : {}),
      payload: payload.data,
      iat,
      exp: iat + input.ttlSeconds,
      nonce: randomToken(24),
    };
    const signed = await signJob(await this.signingKey(), envelope);
    this.sql.exec(
      `INSERT INTO jobs (id, type, task_id, finish_task, envelope, signature, state, expires_at, timeout_seconds, created_at, updated_at, notify, idem_key)
       VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?)`,
      envelope.id, input.type, input.taskId ?? null, input.finishTask ? 1 : 0, JSON.stringify(signed.envelope), signed.signature,
      envelope.exp * 1000, payload.data.timeoutSeconds, now, now, input.notify ? JSON.stringify(input.notify) : null, input.idempotencyKey ?? null,
    );
    this.pump();
    await this.scheduleAlarm();
    return { ok: true, job: this.view(this.row(envelope.id)) };
  }

  /** Called at enrollment, so jobs can be queued without a database lookup. */
  setIdentity(identity: HubIdentity): void {
    this.remember(identity);
  }

  listJobs(options: { state?: JobState; limit: number }): JobView[] {
    const rows = options.state
      ? this.sql.exec<JobRow>(`SELECT * FROM jobs WHERE state = ? ORDER BY created_at DESC LIMIT ?`, options.state, options.limit)
      : this.sql.exec<JobRow>(`SELECT * FROM jobs ORDER BY created_at DESC LIMIT ?`, options.limit);
    return rows.toArray().map((row) => this.view(row));
  }

  /** Resolves with the job once it has finished, or as it is when `timeoutMs` runs out. */
  async wait(id: string, timeoutMs: number): Promise<JobView | null> {
    const row = this.findRow(id);
    if (!row) return null;
    const current = this.view(row);
    if (isFinished(current.state) || timeoutMs <= 0) return current;
    return new Promise<JobView>((resolve) => {
      const set = this.waiters.get(id) ?? new Set();
      this.waiters.set(id, set);
      const done = (job: JobView) => {
        clearTimeout(timer);
        set.delete(done);
        resolve(job);
      };
      const timer = setTimeout(() => done(this.view(this.row(id))), timeoutMs);
      set.add(done);
    });
  }

  /**
   * Cancels a job. One never sent ends at once. One that was ever sent may be running on the runner
   * even if its acceptance was lost, so the runner is told through a signed cancel, sent now and
   * again before any redelivery; the runner's result then ends the job as cancelled.
   */
  async cancel(id: string): Promise<JobView | null> {
    const row = this.findRow(id);
    if (!row) return null;
    if (row.state === "queued" && row.attempts === 0) {
      await this.finish(row, { ok: false, reason: "cancelled", message: "cancelled before it reached the runner" }, "cancelled");
    } else if (!isFinished(row.state as JobState) && !row.cancel_requested) {
      const runner = (JSON.parse(row.envelope) as JobEnvelope).runner;
      const iat = Math.floor(Date.now() / 1000);
      const cancel: CancelEnvelope = { v: 1, kind: "cancel", jobId: row.id, runner, iat, exp: iat + 24 * 3600 };
      const message: HubMessage = { t: "cancel", cancel, signature: await signValue(await this.signingKey(), cancel) };
      this.sql.exec(`UPDATE jobs SET cancel_requested = 1, cancel_message = ?, updated_at = ? WHERE id = ?`, JSON.stringify(message), Date.now(), id);
      const socket = this.runnerSocket();
      if (socket) this.send(socket, message);
    }
    return this.view(this.row(id));
  }

  status(): HubStatus {
    const counts = Object.fromEntries(["queued", "delivered", "running", "succeeded", "failed", "cancelled"].map((s) => [s, 0])) as Record<JobState, number>;
    for (const { state, n } of this.sql.exec<{ state: string; n: number }>(`SELECT state, COUNT(*) AS n FROM jobs GROUP BY state`)) {
      counts[state as JobState] = n;
    }
    const socket = this.runnerSocket();
    const meta = this.meta();
    return {
      connected: socket !== null,
      connectedAt: socket ? (meta.get("connected_at") ?? null) : null,
      lastHeartbeatAt: meta.get("last_heartbeat_at") ?? null,
      jobs: counts,
    };
  }

  // ---- The runner's WebSocket ----

  override fetch(request: Request): Response {
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") return new Response("expected a WebSocket upgrade", { status: 426 });
    const identity = JSON.parse(request.headers.get("x-hub-identity") ?? "null") as HubIdentity | null;
    if (!identity?.runnerId || !identity.runnerPublicKey) return new Response("no enrolled runner for this server", { status: 404 });
    this.remember(identity);
    const pair = new WebSocketPair();
    const state: SocketState = { challenge: randomToken(32), openedAt: Date.now(), authenticated: false, runnerId: null, concurrency: 1 };
    this.ctx.acceptWebSocket(pair[1]);
    pair[1].serializeAttachment(state);
    this.send(pair[1], { t: "challenge", challenge: state.challenge });
    this.ctx.waitUntil(this.scheduleAlarm(Date.now() + AUTH_TIMEOUT_MS));
    return new Response(null, { status: 101, webSocket: pair[0] });
  }

  override webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): void {
    this.inbox = this.inbox.then(() => this.handleMessage(ws, message)).catch((error: unknown) => {
      console.error(JSON.stringify({ level: "error", msg: "runner message failed", error: String(error) }));
    });
  }

  override async webSocketClose(ws: WebSocket): Promise<void> {
    await this.onSocketGone(ws);
  }

  override async webSocketError(ws: WebSocket): Promise<void> {
    await this.onSocketGone(ws);
  }

  private async onSocketGone(ws: WebSocket): Promise<void> {
    const state = ws.deserializeAttachment() as SocketState | null;
    if (!state?.authenticated || this.runnerSocket(ws)) return;
    // Sent but not accepted: send again once the runner is back (its journal refuses a second run).
    this.sql.exec(`UPDATE jobs SET state = 'queued', lease_until = NULL, updated_at = ? WHERE state = 'delivered'`, Date.now());
    await this.setServerStatus("offline");
    await this.scheduleAlarm();
  }

  private async handleMessage(ws: WebSocket, raw: string | ArrayBuffer): Promise<void> {
    const state = ws.deserializeAttachment() as SocketState;
    let parsed: RunnerMessage;
    try {
      parsed = RunnerMessage.parse(JSON.parse(typeof raw === "string" ? raw : new TextDecoder().decode(raw)));
    } catch {
      ws.close(4400, "malformed message");
      return;
    }
    if (!state.authenticated) {
      await this.authenticate(ws, state, parsed);
      return;
    }
    if (parsed.t !== "msg") {
      ws.close(4400, "already authenticated");
      return;
    }
    if (!(await verifyValue(await this.runnerPublicKey(), parsed.body, parsed.signature))) {
      ws.close(4401, "bad message signature");
      return;
    }
    const body = RunnerBody.safeParse(parsed.body);
    if (!body.success && (parsed.body as { session?: unknown } | null)?.session !== state.challenge) {
      ws.close(4400, "message from another session");
      return;
    }
    if (!body.success) {
      // Signed by the runner but not understood (e.g. an over-long report). Closing would only bring it
      // back with the same message, forever; a result ends its job as failed and is acknowledged.
      await this.onUnreadableBody(ws, parsed.body, body.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; "));
      return;
    }
    if (body.data.session !== state.challenge) {
      ws.close(4400, "message from another session");
      return;
    }
    await this.handleBody(ws, body.data);
  }

  private async onUnreadableBody(ws: WebSocket, raw: unknown, problem: string): Promise<void> {
    const fields = (raw ?? {}) as { kind?: unknown; jobId?: unknown };
    console.error(JSON.stringify({ level: "warn", msg: "unreadable runner message", kind: fields.kind, problem: problem.slice(0, 500) }));
    if (fields.kind !== "result" || typeof fields.jobId !== "string") return;
    const row = this.findRow(fields.jobId);
    if (row && !isFinished(row.state as JobState)) {
      await this.finish(row, { ok: false, reason: "failed", message: `the runner's result could not be read: ${problem.slice(0, 500)}` });
    }
    this.send(ws, { t: "ack", jobId: fields.jobId });
  }

  private async authenticate(ws: WebSocket, state: SocketState, message: RunnerMessage): Promise<void> {
    const identity = this.identity();
    if (message.t !== "hello" || message.runnerId !== identity.runnerId) {
      ws.close(4401, message.t === "hello" ? "unknown runner id for this server" : "expected hello");
      return;
    }
    if (!(await verifyValue(await this.runnerPublicKey(), connectProof(message.runnerId, state.challenge), message.signature))) {
      ws.close(4401, "the challenge signature does not match the enrolled runner key");
      return;
    }
    for (const other of this.ctx.getWebSockets()) {
      if (other !== ws && (other.deserializeAttachment() as SocketState | null)?.authenticated) other.close(4000, "replaced by a newer connection");
    }
    ws.serializeAttachment({ ...state, authenticated: true, runnerId: message.runnerId, concurrency: message.concurrency } satisfies SocketState);
    const now = new Date().toISOString();
    this.setMeta("connected_at", now);
    this.setMeta("last_heartbeat_at", now);
    this.send(ws, { t: "welcome", runnerId: message.runnerId, server: identity.handle });
    // Jobs sent on an earlier connection and never accepted are sent again.
    this.sql.exec(`UPDATE jobs SET state = 'queued', lease_until = NULL WHERE state = 'delivered'`);
    for (const row of this.sql.exec<JobRow>(`SELECT * FROM jobs WHERE state = 'running' AND cancel_message IS NOT NULL`).toArray()) {
      this.send(ws, JSON.parse(row.cancel_message ?? "null") as HubMessage);
    }
    this.pump();
    // Not awaited: Postgres being slow must not hold up the runner's messages behind this one.
    this.ctx.waitUntil(this.setServerStatus("online"));
    await this.scheduleAlarm();
  }

  private async handleBody(ws: WebSocket, body: RunnerBody): Promise<void> {
    const now = Date.now();
    switch (body.kind) {
      case "heartbeat": {
        this.setMeta("last_heartbeat_at", new Date(now).toISOString());
        for (const id of body.running) {
          this.sql.exec(`UPDATE jobs SET lease_until = ? WHERE id = ? AND state = 'running'`, now + RUNNING_LEASE_MS, id);
        }
        const state = ws.deserializeAttachment() as SocketState;
        if (state.concurrency !== body.concurrency) ws.serializeAttachment({ ...state, concurrency: body.concurrency });
        if (now - this.lastSeenWrite > HEARTBEAT_INTERVAL_MS / 2) this.ctx.waitUntil(this.setServerStatus("online"));
        this.pump();
        return;
      }
      case "accepted": {
        const row = this.findRow(body.jobId);
        if (!row || !(["delivered", "queued", "running"].includes(row.state) || wasUndelivered(row))) return;
        if (row.state !== "running") {
          this.sql.exec(
            `UPDATE jobs SET state = 'running', started_at = COALESCE(started_at, ?), lease_until = ?, updated_at = ? WHERE id = ?`,
            now, now + RUNNING_LEASE_MS, now, row.id,
          );
          this.toTask(row, { type: "step.started", step: row.type, message: `${row.type} job ${row.id} started on ${this.identity().handle}`, data: { jobId: row.id } });
        }
        await this.scheduleAlarm();
        return;
      }
      case "progress": {
        const row = this.findRow(body.jobId);
        if (row && !isFinished(row.state as JobState)) {
          this.toTask(row, { type: "step.progress", step: body.step, message: body.message, data: { ...body.data, jobId: row.id } });
        }
        return;
      }
      case "log": {
        const row = this.findRow(body.jobId);
        if (row && !isFinished(row.state as JobState)) {
          for (const line of body.lines) this.toTask(row, { type: "log", step: row.type, message: line.line, data: { stream: line.stream, jobId: row.id } });
        }
        return;
      }
      case "refused": {
        const row = body.jobId ? this.findRow(body.jobId) : undefined;
        if (row && !isFinished(row.state as JobState)) {
          await this.finish(row, { ok: false, reason: "refused", message: `the runner refused the job (${body.reason}): ${body.message}`, data: { refusal: body.reason } });
        }
        return;
      }
      case "result": {
        const row = this.findRow(body.jobId);
        // A job given up as undelivered that the runner did take: its real outcome wins.
        if (row && (!isFinished(row.state as JobState) || wasUndelivered(row))) {
          const outcome: JobOutcomeView = {
            ok: body.ok,
            message: body.message,
            ...(body.reason ? { reason: body.reason } : {}),
            ...(body.exitCode !== undefined ? { exitCode: body.exitCode } : {}),
            ...(body.data ? { data: body.data } : {}),
          };
          await this.finish(row, outcome, body.ok ? "succeeded" : body.reason === "cancelled" ? "cancelled" : "failed");
        }
        // Acknowledged even when already known, so the runner can drop it from its outbox.
        this.send(ws, { t: "ack", jobId: body.jobId });
        this.pump();
        return;
      }
    }
  }

  // ---- Timers: leases, deadlines, unauthenticated sockets ----

  override async alarm(): Promise<void> {
    const now = Date.now();
    for (const ws of this.ctx.getWebSockets()) {
      const state = ws.deserializeAttachment() as SocketState | null;
      if (state && !state.authenticated && !state.closing && now - state.openedAt >= AUTH_TIMEOUT_MS) {
        ws.serializeAttachment({ ...state, closing: true } satisfies SocketState);
        closeQuietly(ws, 4401, "no hello in time");
      }
    }
    const connected = this.runnerSocket() !== null;
    const expired = this.sql.exec<JobRow>(`SELECT * FROM jobs WHERE state IN ('queued', 'delivered') AND ${DEADLINE_SQL} <= ?`, this.deliveryGraceMs(), now).toArray();
    for (const row of expired) {
      const offline = connected ? "" : ` (runner offline since ${this.meta().get("disconnected_at") ?? "it was enrolled"})`;
      const message = row.attempts === 0
        ? `the runner of ${this.identity().handle} did not take the job before its deadline${offline}`
        : `the runner of ${this.identity().handle} did not confirm the job before its deadline${offline}; if it reports the job later, that outcome replaces this one`;
      await this.finish(row, { ok: false, reason: "undelivered", message });
    }
    // Sent, never accepted: send again.
    this.sql.exec(`UPDATE jobs SET state = 'queued', lease_until = NULL, updated_at = ? WHERE state = 'delivered' AND lease_until <= ?`, now, now);
    for (const row of this.sql.exec<JobRow>(`SELECT * FROM jobs WHERE state = 'running' AND lease_until <= ?`, now).toArray()) {
      // A connected runner that stopped listing the job no longer has it. A disconnected one gets until
      // the job's own timeout plus a grace period to come back and report.
      const deadline = (row.started_at ?? now) + row.timeout_seconds * 1000 + RESULT_GRACE_MS;
      if (!connected && deadline > now) {
        this.sql.exec(`UPDATE jobs SET lease_until = ? WHERE id = ?`, deadline, row.id);
        continue;
      }
      await this.finish(row, {
        ok: false,
        reason: "interrupted",
        message: connected ? "the runner no longer reports this job (it restarted or lost it); it is not run again" : "the runner went offline while the job ran and did not report back; it is not run again",
      });
    }
    this.pump();
    this.drainTaskEvents();
    await this.scheduleAlarm();
  }

  // ---- Internals ----

  /** Sends queued jobs, oldest first, while the runner has free slots. */
  private pump(): void {
    const socket = this.runnerSocket();
    if (!socket) return;
    const { concurrency } = socket.deserializeAttachment() as SocketState;
    const active = this.sql.exec<{ n: number }>(`SELECT COUNT(*) AS n FROM jobs WHERE state IN ('delivered', 'running')`).one().n;
    const free = concurrency - active;
    if (free <= 0) return;
    const now = Date.now();
    const lease = now + Number(this.env.RUNNER_ACK_LEASE_SECONDS || 15) * 1000;
    for (const row of this.sql.exec<JobRow>(`SELECT * FROM jobs WHERE state = 'queued' AND expires_at > ? ORDER BY created_at LIMIT ?`, now, free).toArray()) {
      this.sql.exec(`UPDATE jobs SET state = 'delivered', attempts = attempts + 1, lease_until = ?, updated_at = ? WHERE id = ?`, lease, now, row.id);
      // A cancelled job that may have reached the runner: the cancel goes first, so the runner
      // answers the job with a cancelled result whether or not it had seen it.
      if (row.cancel_message) this.send(socket, JSON.parse(row.cancel_message) as HubMessage);
      this.send(socket, { t: "job", job: { envelope: JSON.parse(row.envelope) as unknown, signature: row.signature } });
    }
  }

  private async finish(row: JobRow, outcome: JobOutcomeView, state: JobState = outcome.ok ? "succeeded" : "failed"): Promise<void> {
    const now = Date.now();
    this.sql.exec(
      `UPDATE jobs SET state = ?, outcome = ?, finished_at = ?, updated_at = ?, lease_until = NULL WHERE id = ?`,
      state, JSON.stringify(outcome), now, now, row.id,
    );
    // A finished job is never sent again: its secrets need not be kept.
    const envelope = JSON.parse(row.envelope) as JobEnvelope;
    const redacted = redactPayload(row.type, envelope.payload);
    if (redacted !== envelope.payload) this.sql.exec(`UPDATE jobs SET envelope = ? WHERE id = ?`, JSON.stringify({ ...envelope, payload: redacted }), row.id);
    const job = this.view(this.row(row.id));
    const step = row.type;
    const data = { jobId: row.id, ok: outcome.ok, ...(outcome.reason ? { reason: outcome.reason } : {}), ...(outcome.exitCode !== undefined ? { exitCode: outcome.exitCode } : {}) };
    this.toTask(row, { type: "step.completed", step, message: `${row.type} ${outcome.ok ? "succeeded" : state === "cancelled" ? "was cancelled" : "failed"}: ${outcome.message}`, data });
    if (row.finish_task) {
      this.toTask(row, outcome.ok
        ? { type: "task.completed", message: outcome.message, data: { jobId: row.id, ...outcome.data } }
        : state === "cancelled"
          ? { type: "task.cancelled", message: outcome.message, data: { jobId: row.id } }
          : { type: "task.failed", message: outcome.message, data }); 
    }
    // A waiting workflow is woken through the same ordered outbox, after the task's events.
    if (row.notify) {
      const notify = JSON.parse(row.notify) as NonNullable<HubJobInput["notify"]>;
      this.sql.exec(`INSERT INTO task_outbox (kind, task_id, job_id, event) VALUES ('workflow', ?, ?, ?)`, notify.instanceId, row.id, JSON.stringify({ workflow: notify.workflow, job }));
      this.drainTaskEvents();
    }
    // Waiters hear about it after the task's stream has it, so a caller that reads the stream next sees it all.
    const waiters = [...(this.waiters.get(row.id) ?? [])];
    this.waiters.delete(row.id);
    if (waiters.length) {
      await this.jobEventsSettled(row.id);
      for (const resolve of waiters) resolve(job);
    }
  }

  /** Queues a task event behind the ones before it; a failing append is logged, never reordered. */
  /**
   * Task events go through a table, appended in order by one drain: one the stream cannot take yet
   * (Postgres down: a status change needs it) is retried with backoff, holding back the ones after
   * it, and survives the hub being evicted. Events the stream refuses for good are logged and dropped.
   */
  private toTask(row: JobRow, event: TaskEventInput): void {
    if (!row.task_id) return;
    this.sql.exec(`INSERT INTO task_outbox (task_id, job_id, event) VALUES (?, ?, ?)`, row.task_id, row.id, JSON.stringify(event));
    this.drainTaskEvents();
  }

  private drainTaskEvents(): void {
    if (this.draining) return;
    this.draining = true;
    this.outbox = this.drainLoop().finally(() => {
      this.draining = false;
      // An event queued while the loop was finishing is picked up here. Only a head that is due counts:
      // one waiting out a backoff must not restart the loop (that would spin without yielding).
      if (this.outboxHeadDue()) this.drainTaskEvents();
    });
    this.ctx.waitUntil(this.outbox);
  }

  private outboxHead(): OutboxRow | undefined {
    return this.sql.exec<OutboxRow>(`SELECT * FROM task_outbox ORDER BY seq LIMIT 1`).toArray()[0];
  }

  private outboxHeadDue(): boolean {
    const head = this.outboxHead();
    return head !== undefined && head.next_at <= Date.now();
  }

  /** Resolves once this job's events have been appended (or are waiting out a failure): what waiters wait for. */
  private async jobEventsSettled(jobId: string): Promise<void> {
    for (let round = 0; round < 1000; round++) {
      await this.outbox;
      const pending = this.sql.exec(`SELECT 1 FROM task_outbox WHERE job_id = ? AND attempts = 0 LIMIT 1`, jobId).toArray().length > 0;
      if (!pending) return;
      if (!this.draining) {
        if (!this.outboxHeadDue()) return;
        this.drainTaskEvents();
      }
    }
  }

  private async drainLoop(): Promise<void> {
    for (;;) {
      const head = this.outboxHead();
      if (!head) return;
      if (head.next_at > Date.now()) {
        await this.scheduleAlarm(head.next_at);
        return;
      }
      // In flight: should the hub be reset mid-append, the alarm picks the row up again after this.
      this.sql.exec(`UPDATE task_outbox SET next_at = ? WHERE seq = ?`, Date.now() + OUTBOX_IN_FLIGHT_MS, head.seq);
      try {
        if (head.kind === "workflow") await this.wakeWorkflow(head);
        else await appendTaskEvent(this.env, head.task_id, JSON.parse(head.event) as TaskEventInput);
        this.sql.exec(`DELETE FROM task_outbox WHERE seq = ?`, head.seq);
      } catch (error) {
        const code = error instanceof AppError ? error.code : "internal_error";
        const message = error instanceof Error ? error.message : String(error);
        // A workflow that is gone (or an event it cannot take) does not come back: a few tries, then dropped.
        const maxAttempts = head.kind === "workflow" ? WORKFLOW_WAKE_MAX_ATTEMPTS : TASK_EVENT_MAX_ATTEMPTS;
        const permanent = ["invalid_request", "not_found", "conflict"].includes(code) || /not.?found/i.test(message) || head.attempts >= maxAttempts;
        console.error(JSON.stringify({ level: "warn", msg: permanent ? "task event dropped" : "task event delayed", taskId: head.task_id, jobId: head.job_id, code, error: message }));
        if (permanent) {
          this.sql.exec(`DELETE FROM task_outbox WHERE seq = ?`, head.seq);
          continue;
        }
        const retryAt = Date.now() + Math.min(60_000, 1000 * 2 ** head.attempts);
        this.sql.exec(`UPDATE task_outbox SET attempts = attempts + 1, next_at = ? WHERE seq = ?`, retryAt, head.seq);
        await this.scheduleAlarm(retryAt);
        return;
      }
    }
  }

  private async wakeWorkflow(row: OutboxRow): Promise<void> {
    const { workflow, job } = JSON.parse(row.event) as { workflow: NonNullable<HubJobInput["notify"]>["workflow"]; job: JobView };
    const binding = { "provision-server": this.env.PROVISION_SERVER }[workflow];
    const instance = await binding.get(row.task_id);
    // As JSON text: a job's payload and data are free-form, which Workflows' typing cannot express.
    await instance.sendEvent({ type: job.id, payload: JSON.stringify(job) });
  }

  private async scheduleAlarm(at?: number): Promise<void> {
    const next = this.sql
      .exec<{ at: number | null }>(
        `SELECT MIN(t) AS at FROM (
           SELECT MIN(${DEADLINE_SQL}) AS t FROM jobs WHERE state IN ('queued', 'delivered')
           UNION ALL SELECT MIN(lease_until) FROM jobs WHERE state IN ('delivered', 'running')
           UNION ALL SELECT next_at FROM (SELECT next_at FROM task_outbox ORDER BY seq LIMIT 1))`,
        this.deliveryGraceMs(),
      )
      .one().at;
    // Sockets that have not said hello yet are closed at their deadline.
    const pendingAuth = this.ctx
      .getWebSockets()
      .map((ws) => ws.deserializeAttachment() as SocketState | null)
      .filter((state): state is SocketState => state !== null && !state.authenticated && !state.closing)
      .map((state) => state.openedAt + AUTH_TIMEOUT_MS);
    const candidates = [next, at, ...pendingAuth].filter((t): t is number => typeof t === "number");
    if (!candidates.length) return;
    const wanted = Math.min(...candidates);
    const current = await this.ctx.storage.getAlarm();
    if (current === null || wanted < current || current < Date.now()) await this.ctx.storage.setAlarm(Math.max(wanted, Date.now() + 10));
  }

  private runnerSocket(except?: WebSocket): WebSocket | null {
    for (const ws of this.ctx.getWebSockets()) {
      if (ws !== except && (ws.deserializeAttachment() as SocketState | null)?.authenticated && ws.readyState === WebSocket.OPEN) return ws;
    }
    return null;
  }

  private send(ws: WebSocket, message: HubMessage): void {
    try {
      ws.send(JSON.stringify(message));
    } catch {
      // A socket closing under us: the job stays delivered and its lease brings it back.
    }
  }

  private async setServerStatus(status: "online" | "offline"): Promise<void> {
    const now = new Date();
    this.lastSeenWrite = now.getTime();
    if (status === "offline") this.setMeta("disconnected_at", now.toISOString());
    const { serverId } = this.identity();
    const handle = createDb({ databaseUrl: this.env.DATABASE_URL, wsProxy: this.env.DB_WS_PROXY });
    try {
      await handle.db.update(servers).set({ status, lastSeenAt: now }).where(eq(servers.id, serverId));
    } catch (error) {
      // The connection state lives here; Postgres catches up on the next heartbeat.
      console.error(JSON.stringify({ level: "warn", msg: "server status not written", serverId, error: error instanceof Error ? error.message : String(error) }));
    } finally {
      this.ctx.waitUntil(handle.close().catch(() => undefined));
    }
  }

  private deliveryGraceMs(): number {
    return (CLOCK_SKEW_SECONDS + Number(this.env.RUNNER_ACK_LEASE_SECONDS || 15)) * 1000;
  }

  private signingKey(): Promise<CryptoKey> {
    return loadJobSigningKey(this.env).then((k) => k.privateKey);
  }

  private runnerPublicKey(): Promise<CryptoKey> {
    const publicKey = this.identity().runnerPublicKey ?? "";
    if (this.runnerKey?.publicKey !== publicKey) this.runnerKey = { publicKey, key: importPublicKey(publicKey) };
    return this.runnerKey.key;
  }

  private remember(identity: HubIdentity): void {
    if (JSON.stringify(identity) === JSON.stringify(this.known)) return;
    const previous = this.known;
    this.known = identity;
    this.setMeta("identity", JSON.stringify(identity));
    if (previous?.runnerId && (previous.runnerId !== identity.runnerId || previous.runnerPublicKey !== identity.runnerPublicKey)) {
      // Re-enrolled (e.g. after a key leak): jobs signed for the old runner would be refused by the
      // new one, so they end now, through finish() (task events, waiters, workflows, redaction); and
      // the old runner's connection is no longer trusted.
      const outcome: JobOutcomeView = { ok: false, reason: "undelivered", message: "the server's runner was re-enrolled before it took this job; submit it again" };
      // finish() marks the row before its first await, so every job is failed by the time this returns.
      for (const row of this.sql.exec<JobRow>(`SELECT * FROM jobs WHERE state IN ('queued', 'delivered')`).toArray()) this.ctx.waitUntil(this.finish(row, outcome));
      for (const ws of this.ctx.getWebSockets()) closeQuietly(ws, 4401, "this runner was replaced by a new enrollment");
    }
  }

  private identity(): HubIdentity {
    if (!this.known) throw new Error("RunnerHub used before it was told its server");
    return this.known;
  }

  private meta(): Map<string, string> {
    return new Map(this.sql.exec<{ key: string; value: string }>(`SELECT key, value FROM meta`).toArray().map((r) => [r.key, r.value]));
  }

  private setMeta(key: string, value: string): void {
    this.sql.exec(`INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value);
  }

  private findRow(id: string): JobRow | undefined {
    return this.sql.exec<JobRow>(`SELECT * FROM jobs WHERE id = ?`, id).toArray()[0];
  }

  private row(id: string): JobRow {
    const row = this.findRow(id);
    if (!row) throw new Error(`job ${id} vanished`);
    return row;
  }

  private view(row: JobRow): JobView {
    const envelope = JSON.parse(row.envelope) as JobEnvelope;
    return {
      id: row.id,
      server: this.identity().handle,
      type: row.type,
      taskId: row.task_id,
      state: row.state as JobState,
      attempts: row.attempts,
      createdAt: new Date(row.created_at).toISOString(),
      updatedAt: new Date(row.updated_at).toISOString(),
      expiresAt: new Date(row.expires_at).toISOString(),
      startedAt: iso(row.started_at),
      finishedAt: iso(row.finished_at),
      payload: redactPayload(row.type, envelope.payload),
      outcome: row.outcome ? (JSON.parse(row.outcome) as JobOutcomeView) : null,
    };
  }
}

/** Closes a socket that may already be closing; a second close must not abort the caller. */
function closeQuietly(ws: WebSocket, code: number, reason: string): void {
  try {
    ws.close(code, reason);
  } catch {
    // already closed
  }
}

function wasUndelivered(row: JobRow): boolean {
  return row.state === "failed" && row.outcome !== null && (JSON.parse(row.outcome) as JobOutcomeView).reason === "undelivered";
}

function isFinished(state: JobState): boolean {
  return state === "succeeded" || state === "failed" || state === "cancelled";
}

/** A typed client for the hub; every caller goes through it (RPC typings lose `unknown`-heavy types). */
export interface RunnerHubClient {
  enqueue(identity: HubIdentity | null, input: HubJobInput): Promise<EnqueueResult>;
  setIdentity(identity: HubIdentity): Promise<void>;
  listJobs(options: { state?: JobState; limit: number }): Promise<JobView[]>;
  wait(id: string, timeoutMs: number): Promise<JobView | null>;
  cancel(id: string): Promise<JobView | null>;
  status(): Promise<HubStatus>;
  fetch(request: Request): Promise<Response>;
}

/** The hub of a server, by handle (unique and never renamed), so job calls need no database lookup. */
export function getRunnerHub(env: Env, handle: string): RunnerHubClient {
  const stub = getRunnerHubStub(env, handle);
  return {
    enqueue: (identity, input) => stub.enqueue(identity, input),
    setIdentity: (identity) => stub.setIdentity(identity),
    listJobs: (options) => stub.listJobs(options) as Promise<JobView[]>,
    wait: (id, timeoutMs) => stub.wait(id, timeoutMs),
    cancel: (id) => stub.cancel(id),
    status: () => stub.status(),
    fetch: (request) => stub.fetch(request),
  };
}

export function getRunnerHubStub(env: Env, handle: string): DurableObjectStub<RunnerHub> {
  return env.RUNNER_HUB.get(env.RUNNER_HUB.idFromName(handle));
}
