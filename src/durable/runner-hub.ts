/**
 * RunnerHub: one Durable Object per server. It signs each job for the server's one runner, queues it
 * (JobStore), sends it over the WebSocket the runner opened (outbound from the VPS, `/runner/connect`),
 * and turns the runner's signed reports (RunnerSession) into job transitions, task events and
 * workflow wake-ups, delivered through a durable outbox with one lane per destination (Outbox).
 *
 * Nothing slow happens while a runner message is handled: messages are handled one at a time, in
 * arrival order, and each only writes SQLite and queues deliveries, so heartbeats are never stuck
 * behind a log backlog. Delivery is at least once; the runner's journal makes execution at most once
 * per job id, and task events carry ids that make their delivery exactly once.
 */
import { DurableObject } from "cloudflare:workers";
import { loadJobSigningKey } from "../runner-hub/job-signing.ts";
import { createLogger, type Logger } from "../lib/log.ts";
import { settings } from "../lib/settings.ts";
import { HubIdentity, type HubStatus, isFinalJobState, type JobOutcomeView, type JobState, type JobView } from "../shared/api.ts";
import { fitEventInput, type TaskEventInput } from "../shared/events.ts";
import { describePayloadIssues, type JobPayload, JobPayloads, outsideReleasePorts } from "../shared/job-payloads.ts";
import { CLOCK_SKEW_SECONDS, importPublicKey, type JobEnvelope, signValue } from "../shared/jobs.ts";
import { type CancelEnvelope, HEARTBEAT_INTERVAL_MS, type HubMessage, type RunnerBody } from "../shared/runner-protocol.ts";
import { WorkflowName } from "../tasks/workflows.ts";
import { earliest, scheduleAlarm } from "../lib/alarm.ts";
import { deliverToLane, type TaskLaneBody, taskLane, Undeliverable, type WorkflowLaneBody, workflowLane } from "../runner-hub/hub-deliveries.ts";
import { envelopeToSend, sealedJob } from "../runner-hub/job-sealing.ts";
import { HUB_MIGRATIONS, type JobNotify, type JobRow, JobStore, jobView, type Transition } from "../runner-hub/job-store.ts";
import { Outbox, type OutboxItem } from "../lib/outbox.ts";
import { AUTH_TIMEOUT_MS, helloOverdue, newSession, readRunnerMessage, type SessionState, type SessionVerdict } from "../runner-hub/runner-session.ts";
import { type EnqueueResult, HUB_IDENTITY_HEADER, type HubJobInput } from "../runner-hub/client.ts";
import { parseJson } from "../shared/json.ts";
import { ServerStatusWriter } from "../runner-hub/server-status.ts";
import { migrate } from "../lib/sql-migrations.ts";

/** How long a runner that stops reporting keeps a running job before it counts as lost. */
const RUNNING_LEASE_MS = 3 * HEARTBEAT_INTERVAL_MS;
/** Time for a reconnecting runner to report a job that outlived its connection. */
const RESULT_GRACE_MS = 60_000;
/** Task events per appendMany; a workflow takes one wake-up at a time. */
const TASK_BATCH = 500;
/** How long a `?wait=` caller waits, beyond the job's end, for the job's events to reach its task. */
const EVENTS_SETTLE_MS = 10_000;


export class RunnerHub extends DurableObject<Env> {
  private readonly jobs: JobStore;
  private readonly outbox: Outbox;
  private readonly log: Logger;
  /** Runner messages are handled one at a time, in arrival order, across awaits. */
  private inbox: Promise<void> = Promise.resolve();
  private readonly waiters = new Map<string, Set<(job: JobView) => void>>();
  private runnerKey: { publicKey: string; key: Promise<CryptoKey> } | null = null;
  private readonly serverStatus: ServerStatusWriter;
  /** Whether a drain's alarm planning is already under way (kick). */
  private kicked = false;
  /** Who this hub serves (kept in meta; cached, since every job view names the server). */
  private known: HubIdentity | null;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    // Synchronous, first thing: no request reaches the object before its schema is current.
    migrate(ctx.storage, HUB_MIGRATIONS);
    this.jobs = new JobStore(ctx.storage.sql);
    this.known = JSON.parse(this.meta("identity") ?? "null") as HubIdentity | null;
    this.log = createLogger(env.LOG_LEVEL, { component: "runner-hub", ...(this.known ? { server: this.known.handle } : {}) });
    this.serverStatus = new ServerStatusWriter(env, ctx, this.log);
    this.outbox = new Outbox(ctx.storage.sql, {
      deliver: (lane, items) => this.deliver(lane, items),
      batchSize: (lane) => (lane.startsWith("task:") ? TASK_BATCH : 1),
      classify: (error) => (error instanceof Undeliverable ? "drop" : "retry"),
      log: this.log,
    });
  }

  // ---- RPC: the API and workflows ----

  /** Validates, signs and queues a job for this server's runner, and sends it at once if the runner is connected. */
  async enqueue(given: HubIdentity | null, input: HubJobInput): Promise<EnqueueResult> {
    if (given) this.remember(given);
    const identity = this.known;
    if (!identity) return { ok: false, code: "unknown_server", message: "this hub does not know its server yet" };
    if (!identity.runnerId) return { ok: false, code: "conflict", message: `Server ${identity.handle} has no enrolled runner yet` };
    if (input.idempotencyKey) {
      const existing = this.jobs.byIdempotencyKey(input.idempotencyKey);
      if (existing) return { ok: true, job: this.view(existing) };
    }
    const payload = JobPayloads[input.type].safeParse(input.payload);
    if (!payload.success) return { ok: false, code: "invalid_request", message: `Invalid ${input.type} payload: ${describePayloadIssues(payload.error)}` };
    const outside = this.outsideReleasePorts(input.type, payload.data);
    if (outside) return { ok: false, code: "invalid_request", message: outside };
    if (input.notify && !WorkflowName.safeParse(input.notify.workflow).success) {
      return { ok: false, code: "invalid_request", message: `no workflow named ${input.notify.workflow}` };
    }
    const now = Date.now();
    const job = await sealedJob(this.env, identity.runnerId, input, payload.data, now);
    // Another call with the same key may have queued it while this one was signing.
    const raced = input.idempotencyKey ? this.jobs.byIdempotencyKey(input.idempotencyKey) : undefined;
    if (raced) return { ok: true, job: this.view(raced) };
    const row = this.jobs.insert(job, now);
    await this.pump();
    await this.planAlarm();
    return { ok: true, job: this.view(row) };
  }

  /** A caddy.sync route to a port outside what the runner said it allots (the runner refuses it too). */
  private outsideReleasePorts(type: string, payload: unknown): string | undefined {
    const known = this.meta("release_ports");
    const range = known ? (JSON.parse(known) as HubStatus["releasePorts"]) : null;
    if (type !== "caddy.sync" || !range) return undefined;
    const refusal = outsideReleasePorts((payload as { routes: JobPayload<"caddy.sync">["routes"] }).routes, range);
    return refusal ? `Invalid caddy.sync payload: ${refusal}` : undefined;
  }

  /** Called at enrollment, so jobs can be queued without a database lookup. */
  setIdentity(identity: HubIdentity): void {
    this.remember(identity);
  }

  listJobs(options: { state?: JobState; limit: number }): JobView[] {
    return this.jobs.list(options).map((row) => this.view(row));
  }

  /**
   * Resolves with the job once it has finished and its events are in its task's stream, or as it
   * is when `timeoutMs` runs out.
   */
  async wait(id: string, timeoutMs: number): Promise<JobView | null> {
    const row = this.jobs.get(id);
    if (!row) return null;
    const current = this.view(row);
    if (timeoutMs <= 0) return current;
    if (isFinalJobState(current.state)) {
      await this.eventsSettled(row, Math.min(timeoutMs, EVENTS_SETTLE_MS));
      return this.view(this.jobs.row(id));
    }
    return new Promise<JobView>((resolve) => {
      const set = this.waiters.get(id) ?? new Set();
      this.waiters.set(id, set);
      const done = (job: JobView) => {
        clearTimeout(timer);
        set.delete(done);
        resolve(job);
      };
      const timer = setTimeout(() => done(this.view(this.jobs.row(id))), timeoutMs);
      set.add(done);
    });
  }

  /**
   * Cancels a job. One never sent ends at once. One that was ever sent may be running on the runner
   * even if its acceptance was lost, so the runner is told through a signed cancel, sent now and
   * again before any redelivery; the runner's result then ends the job as cancelled.
   */
  async cancel(id: string): Promise<JobView | null> {
    const row = this.jobs.get(id);
    if (!row) return null;
    if (row.state === "queued" && row.attempts === 0) {
      this.finishJob(row.id, { ok: false, reason: "cancelled", message: "cancelled before it reached the runner" }, "cancelled");
    } else if (!isFinalJobState(row.state as JobState) && !row.cancel_requested) {
      const message = await this.signedCancel(row);
      this.jobs.requestCancel(row.id, JSON.stringify(message), Date.now());
      const socket = this.runnerSocket();
      if (socket) this.send(socket, message);
    }
    return this.view(this.jobs.row(id));
  }

  /** Cancels every job of a task that has not ended (a cancelled task stops its containers); returns them as they now are. */
  async cancelTask(taskId: string): Promise<JobView[]> {
    const cancelled: JobView[] = [];
    for (const row of this.jobs.activeForTask(taskId)) {
      const job = await this.cancel(row.id);
      if (job) cancelled.push(job);
    }
    return cancelled;
  }

  status(): HubStatus {
    const socket = this.runnerSocket();
    const releasePorts = this.meta("release_ports");
    return {
      connected: socket !== null,
      connectedAt: socket ? (this.meta("connected_at") ?? null) : null,
      lastHeartbeatAt: this.meta("last_heartbeat_at") ?? null,
      runnerVersion: this.meta("runner_version") ?? null,
      releasePorts: releasePorts ? (JSON.parse(releasePorts) as HubStatus["releasePorts"]) : null,
      memoryMb: Number(this.meta("memory_mb")) || null,
      jobs: this.jobs.counts(),
      outbox: this.outbox.status(),
    };
  }

  // ---- The runner's WebSocket ----

  override fetch(request: Request): Response {
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") return new Response("expected a WebSocket upgrade", { status: 426 });
    const header = request.headers.get(HUB_IDENTITY_HEADER);
    const parsed = header === null ? null : parseJson(HubIdentity, header);
    if (parsed && !parsed.success) return new Response(`malformed ${HUB_IDENTITY_HEADER} header: ${parsed.error}`, { status: 400 });
    const identity = parsed?.data ?? null;
    if (!identity?.runnerId || !identity.runnerPublicKey) return new Response("no enrolled runner for this server", { status: 404 });
    this.remember(identity);
    const pair = new WebSocketPair();
    const session = newSession(Date.now());
    this.ctx.acceptWebSocket(pair[1]);
    pair[1].serializeAttachment(session);
    this.send(pair[1], { type: "session:challenge", challenge: session.challenge });
    this.ctx.waitUntil(this.planAlarm());
    return new Response(null, { status: 101, webSocket: pair[0] });
  }

  override webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): void {
    this.inbox = this.inbox
      .then(() => this.handleMessage(ws, message))
      .catch((error: unknown) => this.log.error("runner message failed", { error }));
  }

  // Through the inbox: a close must not overtake the hello it follows.
  override webSocketClose(ws: WebSocket): Promise<void> {
    return (this.inbox = this.inbox.then(() => this.onSocketGone(ws)).catch((error: unknown) => this.log.error("runner socket close failed", { error })));
  }

  override webSocketError(ws: WebSocket): Promise<void> {
    return this.webSocketClose(ws);
  }

  private async onSocketGone(ws: WebSocket): Promise<void> {
    const state = ws.deserializeAttachment() as SessionState | null;
    if (!state?.authenticated || this.runnerSocket(ws)) return;
    // Sent but not accepted: sent again once the runner is back (its journal refuses a second run).
    this.jobs.requeueDelivered(Date.now());
    // Not awaited: this runs in the inbox, which must not wait on Postgres.
    this.ctx.waitUntil(this.setServerStatus("offline"));
    await this.planAlarm();
  }

  private async handleMessage(ws: WebSocket, raw: string | ArrayBuffer): Promise<void> {
    const state = ws.deserializeAttachment() as SessionState;
    const identity = this.identity();
    const verdict: SessionVerdict = await readRunnerMessage(state, raw, { runnerId: identity.runnerId ?? "", publicKey: await this.runnerPublicKey() });
    switch (verdict.kind) {
      case "close":
        closeQuietly(ws, verdict.code, verdict.reason);
        return;
      case "hello":
        await this.onHello(ws, verdict.state);
        return;
      case "unreadable":
        this.log.warn("unreadable runner message", { type: verdict.reportType, problem: verdict.problem });
        if (verdict.reportType !== "job:result" || !verdict.jobId) return;
        this.finishJob(verdict.jobId, { ok: false, reason: "failed", message: `the runner's result could not be read: ${verdict.problem}` });
        this.send(ws, { type: "result:stored", jobId: verdict.jobId });
        return;
      case "body":
        await this.handleBody(ws, verdict.body);
        return;
    }
  }

  private async onHello(ws: WebSocket, state: SessionState): Promise<void> {
    for (const other of this.ctx.getWebSockets()) {
      if (other !== ws && (other.deserializeAttachment() as SessionState | null)?.authenticated) closeQuietly(other, 4000, "replaced by a newer connection");
    }
    ws.serializeAttachment(state);
    const now = new Date().toISOString();
    this.setMeta("connected_at", now);
    this.setMeta("last_heartbeat_at", now);
    this.setMeta("runner_version", state.version ?? "");
    this.setMeta("release_ports", JSON.stringify(state.releasePorts));
    this.setMeta("memory_mb", String(state.memoryMb ?? ""));
    this.send(ws, { type: "session:welcome", runnerId: state.runnerId ?? "", server: this.identity().handle });
    // Jobs sent on an earlier connection and never accepted are sent again; cancels of running jobs too.
    this.jobs.requeueDelivered(Date.now());
    for (const row of this.jobs.runningWithCancel()) this.send(ws, JSON.parse(row.cancel_message ?? "null") as HubMessage);
    await this.pump();
    // Not awaited: Postgres being slow must not hold up the runner's messages behind this one.
    this.ctx.waitUntil(this.setServerStatus("online"));
    await this.planAlarm();
  }

  private async handleBody(ws: WebSocket, body: RunnerBody): Promise<void> {
    const now = Date.now();
    switch (body.type) {
      case "runner:heartbeat": {
        this.setMeta("last_heartbeat_at", new Date(now).toISOString());
        this.jobs.renewLeases(body.running, now + RUNNING_LEASE_MS);
        const state = ws.deserializeAttachment() as SessionState;
        if (state.concurrency !== body.concurrency) ws.serializeAttachment({ ...state, concurrency: body.concurrency });
        if (now - this.serverStatus.lastWriteAt > HEARTBEAT_INTERVAL_MS / 2) this.ctx.waitUntil(this.setServerStatus("online"));
        await this.pump();
        return;
      }
      case "job:accepted": {
        const accepted = this.jobs.accept(body.jobId, now, now + RUNNING_LEASE_MS, this.identity().handle);
        if (accepted) {
          this.emit(accepted);
          await this.planAlarm();
          return;
        }
        // Accepted after it was given up here (undelivered): it must not run on with no one listening.
        const row = this.jobs.get(body.jobId);
        if (row && isFinalJobState(row.state as JobState) && !row.cancel_requested) {
          this.log.warn("runner accepted a job that had already ended; cancelling it", { jobId: row.id, state: row.state });
          const message = await this.signedCancel(row);
          this.jobs.requestCancel(row.id, JSON.stringify(message), now);
          this.send(ws, message);
        }
        return;
      }
      case "job:progress":
      case "job:log": {
        const row = this.jobs.get(body.jobId);
        if (!row || isFinalJobState(row.state as JobState)) return;
        // Reports count as a sign of life: a job busy printing is not lost.
        this.jobs.renewLeases([row.id], now + RUNNING_LEASE_MS);
        const events: TaskEventInput[] =
          body.type === "job:progress"
            ? [{ type: "step.progress", step: body.step, message: body.message, data: { ...body.data, jobId: row.id } }]
            : body.lines.map((line) => ({ type: "log", step: row.type, message: line.line, data: { stream: line.stream, jobId: row.id } }));
        this.emit({ row, events });
        return;
      }
      case "job:refused":
        if (body.jobId) {
          this.finishJob(body.jobId, { ok: false, reason: "refused", message: `the runner refused the job (${body.reason}): ${body.message}`, data: { refusal: body.reason } });
        }
        return;
      case "job:result": {
        const outcome: JobOutcomeView = {
          ok: body.ok,
          message: body.message,
          ...(body.reason ? { reason: body.reason } : {}),
          ...(body.exitCode !== undefined ? { exitCode: body.exitCode } : {}),
          ...(body.data ? { data: body.data } : {}),
        };
        const state: JobState = body.ok ? "succeeded" : body.reason === "cancelled" ? "cancelled" : "failed";
        if (!this.finishJob(body.jobId, outcome, state) && this.jobs.recordLateOutcome(body.jobId, outcome)) {
          this.log.warn("runner reported a job that had already ended; kept as its late outcome", { jobId: body.jobId, ok: body.ok });
        }
        // Acknowledged even when already known, so the runner can drop it from its outbox.
        this.send(ws, { type: "result:stored", jobId: body.jobId });
        await this.pump();
        return;
      }
    }
  }

  // ---- Timers: leases, deadlines, unauthenticated sockets, outbox retries ----

  override async alarm(): Promise<void> {
    const now = Date.now();
    for (const ws of this.ctx.getWebSockets()) {
      const state = ws.deserializeAttachment() as SessionState | null;
      if (state && helloOverdue(state, now)) {
        ws.serializeAttachment({ ...state, closing: true } satisfies SessionState);
        closeQuietly(ws, 4401, "no hello in time");
      }
    }
    const connected = this.runnerSocket() !== null;
    const ended = this.jobs.sweep(now, { graceMs: this.deliveryGraceMs(), resultGraceMs: RESULT_GRACE_MS, connected, server: this.identity().handle, offlineSince: this.meta("disconnected_at") ?? null });
    for (const { id, outcome } of ended) this.finishJob(id, outcome);
    await this.pump();
    this.kick();
    await this.planAlarm();
  }

  // ---- Internals ----

  /** What the outbox calls; a field of its own so tests can stand in for a destination. */
  private deliver(lane: string, items: OutboxItem[]): Promise<void> {
    return deliverToLane(this.env, this.log, lane, items);
  }

  /** Ends a job through the store; its events, wake-up and waiters follow. False when it had already ended. */
  private finishJob(id: string, outcome: JobOutcomeView, state: JobState = outcome.ok ? "succeeded" : "failed"): boolean {
    const done = this.jobs.finish(id, outcome, state, Date.now());
    if (!done) return false;
    const last = this.emit(done);
    const notify = done.row.notify ? (JSON.parse(done.row.notify) as JobNotify) : null;
    if (notify) {
      // After the task's events, so the woken workflow finds them in the stream.
      const body: WorkflowLaneBody = { jobId: id, job: this.view(done.row) };
      this.outbox.push(workflowLane(notify.workflow, notify.instanceId), body, last);
      this.kick();
    }
    const waiters = [...(this.waiters.get(id) ?? [])];
    this.waiters.delete(id);
    if (waiters.length) {
      // Outside the inbox: the next runner message must not wait for these deliveries.
      this.ctx.waitUntil(
        this.eventsSettled(done.row, EVENTS_SETTLE_MS).then(() => {
          const job = this.view(this.jobs.row(id));
          for (const resolve of waiters) resolve(job);
        }),
      );
    }
    return true;
  }

  /** Queues a transition's events on the task's lane; returns where the last one is, for whoever must come after. */
  private emit(transition: Transition): { lane: string; seq: number } | undefined {
    const { row, events } = transition;
    if (!row.task_id || events.length === 0) return undefined;
    const lane = taskLane(row.task_id);
    const whereFull = `the whole of it is on job ${row.id} (GET /api/servers/${this.identity().handle}/jobs/${row.id})`;
    let seq = 0;
    for (const event of events) {
      const fitted = fitEventInput(row.traceparent ? { ...event, traceparent: row.traceparent } : event, whereFull);
      seq = this.outbox.push(lane, { jobId: row.id, event: fitted } satisfies TaskLaneBody);
    }
    this.kick();
    return { lane, seq };
  }

  /** Waits until the job's task events have been delivered (or are failing), at most `timeoutMs`. */
  private async eventsSettled(row: JobRow, timeoutMs: number): Promise<void> {
    if (!row.task_id) return;
    const lane = taskLane(row.task_id);
    const last = this.outbox.lastSeq(lane);
    if (last !== null) await this.outbox.whenDelivered(lane, last, timeoutMs);
  }

  /**
   * Delivers what the outbox holds, in the background. The alarm is planned as deliveries start (their
   * watchdog, should the object be reset) and once they are all done (the next retry).
   */
  private kick(): void {
    const idle = this.outbox.drain();
    if (this.kicked) return;
    this.kicked = true;
    this.ctx.waitUntil(
      this.planAlarm()
        .then(() => idle)
        .then(() => {
          this.kicked = false;
          return this.planAlarm();
        })
        .catch((error: unknown) => {
          this.kicked = false;
          this.log.error("outbox drain failed", { error });
        }),
    );
  }

  /** Sends queued jobs, oldest first, while the runner has free slots. */
  private async pump(): Promise<void> {
    const socket = this.runnerSocket();
    if (!socket) return;
    const { concurrency } = socket.deserializeAttachment() as SessionState;
    const free = concurrency - this.jobs.activeCount();
    if (free <= 0) return;
    const now = Date.now();
    const lease = now + settings(this.env).RUNNER_ACK_LEASE_SECONDS * 1000;
    // Marked delivered before any await, so a concurrent pump cannot send the same jobs.
    const batch = this.jobs.deliverable(now, free);
    if (batch.length === 0) return;
    for (const row of batch) this.jobs.markDelivered(row.id, now, lease);
    // Their ack lease is a deadline of its own.
    this.ctx.waitUntil(this.planAlarm());
    for (const row of batch) {
      let envelope: unknown;
      try {
        envelope = await envelopeToSend(this.env, row);
      } catch {
        this.finishJob(row.id, { ok: false, reason: "failed", message: "the job's secrets could not be decrypted (was SECRETS_ENCRYPTION_KEY changed?); submit it again" });
        continue;
      }
      // A cancelled job that may have reached the runner: the cancel goes first, so the runner
      // answers the job with a cancelled result whether or not it had seen it.
      if (row.cancel_message) this.send(socket, JSON.parse(row.cancel_message) as HubMessage);
      this.send(socket, { type: "job:offer", job: { envelope, signature: row.signature } });
    }
  }

  private async signedCancel(row: JobRow): Promise<HubMessage> {
    const runner = (JSON.parse(row.envelope) as JobEnvelope).runner;
    const iat = Math.floor(Date.now() / 1000);
    const cancel: CancelEnvelope = { v: 2, type: "job:cancel", jobId: row.id, runner, iat, exp: iat + 24 * 3600 };
    return { type: "job:cancel", cancel, signature: await signValue(await this.signingKey(), cancel) };
  }

  /** One alarm for every deadline the hub has: jobs, outbox retries, sockets that owe a hello. */
  private async planAlarm(): Promise<void> {
    const pendingHello = this.ctx
      .getWebSockets()
      .map((ws) => ws.deserializeAttachment() as SessionState | null)
      .filter((state): state is SessionState => state !== null && !state.authenticated && !state.closing)
      .map((state) => state.openedAt + AUTH_TIMEOUT_MS);
    await scheduleAlarm(this.ctx.storage, earliest([this.jobs.nextDeadline(this.deliveryGraceMs()), this.outbox.nextAt(), ...pendingHello]));
  }

  private runnerSocket(except?: WebSocket): WebSocket | null {
    for (const ws of this.ctx.getWebSockets()) {
      if (ws !== except && (ws.deserializeAttachment() as SessionState | null)?.authenticated && ws.readyState === WebSocket.OPEN) return ws;
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

  private setServerStatus(status: "online" | "offline"): Promise<void> {
    if (status === "offline") this.setMeta("disconnected_at", new Date().toISOString());
    return this.serverStatus.write(this.identity().serverId, status);
  }

  private deliveryGraceMs(): number {
    return (CLOCK_SKEW_SECONDS + settings(this.env).RUNNER_ACK_LEASE_SECONDS) * 1000;
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
      // new one, so they end now (task events, waiters, workflows, redaction all follow); and the
      // old runner's connection is no longer trusted.
      const outcome: JobOutcomeView = { ok: false, reason: "undelivered", message: "the server's runner was re-enrolled before it took this job; submit it again" };
      for (const row of this.jobs.unaccepted()) this.finishJob(row.id, outcome);
      for (const ws of this.ctx.getWebSockets()) closeQuietly(ws, 4401, "this runner was replaced by a new enrollment");
    }
  }

  private identity(): HubIdentity {
    if (!this.known) throw new Error("RunnerHub used before it was told its server");
    return this.known;
  }

  private meta(key: string): string | undefined {
    return this.ctx.storage.sql.exec<{ value: string }>(`SELECT value FROM meta WHERE key = ?`, key).toArray()[0]?.value;
  }

  private setMeta(key: string, value: string): void {
    this.ctx.storage.sql.exec(`INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value);
  }

  private view(row: JobRow): JobView {
    return jobView(row, this.identity().handle);
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
