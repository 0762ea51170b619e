/**
 * The runner daemon: keeps one outbound WebSocket to the server's RunnerHub, checks every job it is
 * sent (src/shared/jobs.ts#verifyJob, then the payload schema), journals it before running it, runs
 * up to `concurrency` jobs at once with each job's timeout, honours signed cancels, and reports
 * progress, log lines and results as messages signed with its own key.
 */
import { totalmem } from "node:os";
import { join } from "node:path";
import Docker from "dockerode";
import WebSocket from "ws";
import { describePayloadIssues, JobPayloads, payloadSecrets } from "../../src/shared/job-payloads.ts";
import { MAX_LOG_LINE_CHARS, MAX_LOG_LINES_PER_JOB, MAX_REPORT_MESSAGE_CHARS, truncateText } from "../../src/shared/limits.ts";
import { importPrivateKey, importPublicKey, type JobType, SignedJobHead, signValue, verifyJob, verifyValue } from "../../src/shared/jobs.ts";
import {
  CancelEnvelope,
  connectProof,
  HEARTBEAT_INTERVAL_MS,
  HubMessage,
  type LogLine,
  type RunnerBodyInput,
  type RunnerMessage,
} from "../../src/shared/runner-protocol.ts";
import type { RunnerConfig } from "./config.ts";
import { BotGateway } from "./bot-gateway.ts";
import { EgressGateway } from "./egress.ts";
import { removeJobContainers } from "./executors/docker-run.ts";
import { executors } from "./executors/index.ts";
import { endJobSpan, type JobTracing, jobTracing } from "./tracing.ts";
import type { AbortReason, ExecutorOutcome } from "./executors/types.ts";
import { Journal, type ResultBody } from "./journal.ts";
import { secretMasker } from "./mask.ts";
import { RUNNER_VERSION } from "./version.ts";

export { RUNNER_VERSION };

export interface DaemonLogger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
}

/** JSON lines on stderr, like the worker's logs. */
export const stderrLogger: DaemonLogger = {
  info: (msg, fields) => process.stderr.write(`${JSON.stringify({ level: "info", at: new Date().toISOString(), msg, ...fields })}\n`),
  warn: (msg, fields) => process.stderr.write(`${JSON.stringify({ level: "warn", at: new Date().toISOString(), msg, ...fields })}\n`),
};

interface RunningJob {
  id: string;
  type: JobType;
  controller: AbortController;
  done: Promise<void>;
}

const LOG_FLUSH_MS = 50;
/** Lines per log message, and characters: a batch of long lines is split to keep messages small. */
const LOG_BATCH_MAX = 500;
const LOG_BATCH_MAX_CHARS = 256 * 1024;
/** Messages kept while disconnected; beyond this, log lines are dropped (results are journaled anyway). */
const OFFLINE_QUEUE_MAX = 5000;
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 30_000;

export class RunnerDaemon {
  private readonly config: RunnerConfig;
  private readonly log: DaemonLogger;
  private readonly journal: Journal;
  private readonly running = new Map<string, RunningJob>();
  /** Accepted jobs waiting for a free slot (the hub normally sends no more than the slots). */
  private readonly waiting: (() => void)[] = [];
  private active = 0;
  /** Cancels that arrived before their job: the job is refused when it comes. */
  private readonly cancelledEarly = new Set<string>();
  private readonly queue: RunnerBodyInput[] = [];
  private socket: WebSocket | null = null;
  /** The connection's challenge, used as the session of every message once the hub has welcomed us. */
  private session: string | null = null;
  private challenge: string | null = null;
  private inbox: Promise<void> = Promise.resolve();
  private flushing = false;
  private stopping = false;
  private attempt = 0;
  private heartbeat: NodeJS.Timeout | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private keys: Promise<{ privateKey: CryptoKey; controlPlane: CryptoKey }>;
  private readonly connectedWaiters: (() => void)[] = [];
  private readonly egress: EgressGateway;
  private readonly botGateway: BotGateway | null;
  private botGatewayUp = false;
  private botGatewayRetry: NodeJS.Timeout | null = null;
  /** The trace of each job still reporting, stamped on its messages. */
  private readonly traces = new Map<string, string>();
  private readonly tracing: JobTracing;

  constructor(config: RunnerConfig, log: DaemonLogger = stderrLogger) {
    this.config = config;
    this.log = log;
    this.egress = new EgressGateway(new Docker({ socketPath: config.docker.socketPath }), withBotGateway(config));
    this.botGateway = config.botGateway ? new BotGateway(config.botGateway, config.privateKey, join(config.stateDir, "bot-gateway.port")) : null;
    this.journal = new Journal(config.stateDir);
    this.tracing = jobTracing(config);
    this.keys = Promise.all([importPrivateKey(config.privateKey), importPublicKey(config.controlPlanePublicKey)]).then(([own, controlPlane]) => {
      if (own.publicKey !== config.publicKey) throw new Error("the config's privateKey does not match its publicKey");
      return { privateKey: own.privateKey, controlPlane };
    });
  }

  /** Reports jobs a previous run left unfinished, then connects (and keeps reconnecting until stop()). */
  async start(): Promise<void> {
    await this.keys;
    if (this.botGateway) await this.startBotGateway();
    await this.recoverInterrupted();
    this.connect();
  }

  /**
   * The Bot API gateway, tried again every 15 s until it listens (Docker's bridge may come up after the
   * runner at boot). Until then new bot releases call the Bot API directly and their message checks fail
   * saying why; bots released before, whose address is the gateway, cannot reach Telegram: hence the error.
   */
  private async startBotGateway(): Promise<void> {
    try {
      await this.botGateway?.start();
      this.botGatewayUp = true;
    } catch (error) {
      this.log.warn("the Bot API gateway could not listen: bots released through it cannot reach Telegram until it does; trying again in 15 s", { error: String(error) });
      if (!this.stopping) this.botGatewayRetry = setTimeout(() => void this.startBotGateway(), 15_000);
    }
  }

  /** Resolves once the hub has welcomed this runner (tests and the CLI's startup message use it). */
  connected(): Promise<void> {
    if (this.session && this.socket?.readyState === WebSocket.OPEN) return Promise.resolve();
    return new Promise((resolve) => this.connectedWaiters.push(resolve));
  }

  /** Stops taking jobs, stops running ones (reported as interrupted), sends what it can, and disconnects. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    if (this.botGatewayRetry) clearTimeout(this.botGatewayRetry);
    for (const job of this.running.values()) job.controller.abort("shutdown" satisfies AbortReason);
    await Promise.race([Promise.all([...this.running.values()].map((job) => job.done)), sleep(15_000)]);
    await Promise.race([this.drain(), sleep(3_000)]);
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.socket?.close(1000, "runner stopping");
    this.journal.close();
    await this.botGateway?.close();
    await this.tracing.shutdown();
  }

  // ---- Connection ----

  private connect(): void {
    if (this.stopping) return;
    const url = new URL("/runner/connect", this.config.edge);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("runner", this.config.runnerId);
    const socket = new WebSocket(url, { handshakeTimeout: 15_000, headers: { "user-agent": `orchestrator-runner/${RUNNER_VERSION}` } });
    this.socket = socket;
    socket.on("message", (data) => {
      // One at a time, in order: a cancel must not overtake the job it cancels.
      const text = (data as Buffer).toString();
      this.inbox = this.inbox
        .then(() => this.onMessage(socket, text))
        .catch((error: unknown) => this.log.warn("message handling failed", { error: String(error) }));
    });
    socket.on("unexpected-response", (_request, response) => {
      let body = "";
      response.on("data", (chunk: Buffer) => (body += chunk.toString()));
      response.on("end", () => {
        this.log.warn("the control plane refused the connection", { status: response.statusCode, body: body.slice(0, 500) });
        socket.terminate();
      });
    });
    socket.on("error", (error) => this.log.warn("connection error", { error: error.message }));
    socket.on("close", (code, reason) => {
      if (this.socket !== socket) return;
      this.session = null;
      this.socket = null;
      if (this.heartbeat) clearInterval(this.heartbeat);
      this.heartbeat = null;
      if (this.stopping) return;
      // Full jitter, so a fleet of runners does not reconnect in step after an outage.
      const delay = Math.random() * Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** this.attempt++);
      this.log.warn("disconnected; reconnecting", { code, reason: reason.toString(), inMs: Math.round(delay) });
      this.reconnectTimer = setTimeout(() => this.connect(), delay);
    });
  }

  private async onMessage(socket: WebSocket, text: string): Promise<void> {
    let message: HubMessage;
    try {
      message = HubMessage.parse(JSON.parse(text));
    } catch {
      this.log.warn("ignored a malformed message from the hub");
      return;
    }
    switch (message.type) {
      case "session:challenge": {
        const { privateKey } = await this.keys;
        const hello: RunnerMessage = {
          type: "session:hello",
          runnerId: this.config.runnerId,
          signature: await signValue(privateKey, connectProof(this.config.runnerId, message.challenge)),
          version: RUNNER_VERSION,
          concurrency: this.config.concurrency,
          releasePorts: this.config.releasePorts,
          memoryMb: Math.floor(totalmem() / 1_048_576),
        };
        this.challenge = message.challenge;
        socket.send(JSON.stringify(hello));
        return;
      }
      case "session:welcome": {
        // Messages go out only now: before the welcome, a refused hello would lose them.
        this.session = this.challenge;
        this.attempt = 0;
        this.log.info("connected", { server: message.server, runnerId: message.runnerId });
        // Results the hub may not have, once each, after what is queued: a job's log lines stay ahead of
        // its result (the hub ignores lines for a finished job).
        const queued = new Set(this.queue.flatMap((m) => (m.type === "job:result" ? [m.jobId] : [])));
        this.queue.push(...this.journal.unacknowledged().filter((result) => !queued.has(result.jobId)));
        this.heartbeat = setInterval(() => this.sendHeartbeat(), HEARTBEAT_INTERVAL_MS);
        this.sendHeartbeat();
        for (const resolve of this.connectedWaiters.splice(0)) resolve();
        return;
      }
      case "job:offer":
        await this.onJob(message.job);
        return;
      case "job:cancel":
        await this.onCancel(message.cancel, message.signature);
        return;
      case "result:stored":
        this.journal.recordAcked(message.jobId);
        this.traces.delete(message.jobId);
        return;
    }
  }

  private sendHeartbeat(): void {
    this.send({ type: "runner:heartbeat", running: [...this.running.keys()], concurrency: this.config.concurrency });
  }

  /** Queues a message; messages are signed and sent in order by one flusher. */
  private send(body: RunnerBodyInput): void {
    if (!this.session && this.queue.length >= OFFLINE_QUEUE_MAX) {
      const index = this.queue.findIndex((queued) => queued.type === "job:log" || queued.type === "runner:heartbeat" || queued.type === "job:progress");
      if (index >= 0) this.queue.splice(index, 1);
    }
    this.queue.push(body);
    void this.flush();
  }

  private async flush(): Promise<void> {
    if (this.flushing) return;
    this.flushing = true;
    try {
      const { privateKey } = await this.keys;
      while (this.queue.length && this.session && this.socket?.readyState === WebSocket.OPEN) {
        const socket = this.socket;
        const next = this.queue[0];
        if (!next) break;
        const traceparent = "jobId" in next && next.jobId ? this.traces.get(next.jobId) : undefined;
        const body = { ...next, session: this.session, at: Date.now(), ...(traceparent ? { traceparent } : {}) };
        const signature = await signValue(privateKey, body);
        if (socket !== this.socket || socket.readyState !== WebSocket.OPEN) break;
        socket.send(JSON.stringify({ type: "report:signed", body, signature } satisfies RunnerMessage));
        this.queue.shift();
      }
    } finally {
      this.flushing = false;
    }
  }

  private drain(): Promise<void> {
    return new Promise((resolve) => {
      const check = () => (this.queue.length === 0 || !this.session ? resolve() : setTimeout(check, 20));
      check();
    });
  }

  // ---- Jobs ----

  private async onJob(input: unknown): Promise<void> {
    const { controlPlane } = await this.keys;
    const check = await verifyJob(input, {
      publicKey: controlPlane,
      runnerId: this.config.runnerId,
      seen: (id, nonce) => this.journal.seen(id, nonce),
    });
    const named = nameOf(input);
    if (!check.ok) {
      if (check.reason === "replayed" && named && this.answerDuplicate(named)) return;
      this.log.warn("refused a job", { jobId: named, reason: check.reason, message: check.message });
      this.send({ type: "job:refused", ...(named ? { jobId: named } : {}), reason: check.reason, message: truncateText(check.message, MAX_REPORT_MESSAGE_CHARS) });
      return;
    }
    const { envelope } = check;
    const payload = JobPayloads[envelope.type].safeParse(envelope.payload);
    if (!payload.success) {
      const message = `invalid ${envelope.type} payload: ${describePayloadIssues(payload.error)}`;
      this.log.warn("refused a job", { jobId: envelope.id, reason: "malformed_payload", message });
      this.send({ type: "job:refused", jobId: envelope.id, reason: "malformed_payload", message: truncateText(message, MAX_REPORT_MESSAGE_CHARS) });
      return;
    }
    if (this.cancelledEarly.delete(envelope.id)) {
      // Journaled like a finished job, so a redelivery is answered with this result, never run.
      this.journal.recordSeen(envelope.id, envelope.nonce, envelope.exp, envelope.type);
      this.finishWith({ type: "job:result", jobId: envelope.id, ok: false, reason: "cancelled", message: "cancelled before it started" });
      return;
    }
    // Journaled (fsynced) before anything runs: from here on, this id is never run again.
    this.journal.recordSeen(envelope.id, envelope.nonce, envelope.exp, envelope.type);
    if (envelope.traceparent) this.traces.set(envelope.id, envelope.traceparent);
    this.send({ type: "job:accepted", jobId: envelope.id });
    const controller = new AbortController();
    const job: RunningJob = { id: envelope.id, type: envelope.type, controller, done: Promise.resolve() };
    this.running.set(job.id, job);
    job.done = this.execute(job, payload.data, payloadSecrets(envelope.type, envelope.payload));
  }

  /** A job the journal knows: say where it is instead of running it again. False if it must be refused. */
  private answerDuplicate(id: string): boolean {
    if (this.running.has(id)) {
      this.send({ type: "job:accepted", jobId: id });
      return true;
    }
    const entry = this.journal.get(id);
    if (entry?.result && !entry.acked) {
      this.send(entry.result);
      return true;
    }
    return false;
  }

  private async execute(job: RunningJob, payload: { timeoutSeconds: number }, secrets: string[]): Promise<void> {
    const { controller } = job;
    const mask = secretMasker(secrets);
    let logged = 0;
    const lines: LogLine[] = [];
    let flushTimer: NodeJS.Timeout | null = null;
    let pendingChars = 0;
    const flushLines = () => {
      if (flushTimer) clearTimeout(flushTimer);
      flushTimer = null;
      while (lines.length) {
        let count = 0;
        let chars = 0;
        while (count < lines.length && count < LOG_BATCH_MAX && (count === 0 || chars + (lines[count]?.line.length ?? 0) <= LOG_BATCH_MAX_CHARS)) {
          chars += lines[count]?.line.length ?? 0;
          count++;
        }
        this.send({ type: "job:log", jobId: job.id, lines: lines.splice(0, count) });
      }
      pendingChars = 0;
    };
    await this.slot();
    const span = this.tracing.startJob({ id: job.id, type: job.type, traceparent: this.traces.get(job.id) });
    const timeout = setTimeout(() => controller.abort("timeout" satisfies AbortReason), payload.timeoutSeconds * 1000);
    let outcome: ExecutorOutcome;
    const started = Date.now();
    try {
      if (controller.signal.aborted) throw new Error("stopped before it started");
      this.log.info("job started", { jobId: job.id, type: job.type });
      const executor = executors[job.type] as (p: unknown, c: Parameters<(typeof executors)["noop"]>[1]) => Promise<ExecutorOutcome>;
      outcome = await executor(payload, {
        jobId: job.id,
        signal: controller.signal,
        config: this.config,
        egress: this.egress,
        botGateway: this.botGatewayUp ? this.botGateway : null,
        log: (line, stream = "stdout", cut = 0) => {
          // A bound on what one job can push through the hub into its task's stream.
          if (++logged > MAX_LOG_LINES_PER_JOB) {
            if (logged === MAX_LOG_LINES_PER_JOB + 1) lines.push({ stream: "system", line: `output truncated: only the first ${MAX_LOG_LINES_PER_JOB} lines are streamed` });
            return;
          }
          // Masked first, then cut: a secret across the cut is hidden whole.
          const text = truncateText(mask(line), MAX_LOG_LINE_CHARS, cut);
          lines.push({ stream, line: text });
          pendingChars += text.length;
          if (lines.length >= LOG_BATCH_MAX || pendingChars >= LOG_BATCH_MAX_CHARS) flushLines();
          else flushTimer ??= setTimeout(flushLines, LOG_FLUSH_MS);
        },
        progress: (step, message, data) => {
          flushLines();
          this.send({ type: "job:progress", jobId: job.id, step: truncateText(step, 100), message: truncateText(mask(message), MAX_REPORT_MESSAGE_CHARS), ...(data ? { data: maskJson(data, mask) } : {}) });
        },
      });
    } catch (error) {
      outcome = { ok: false, message: error instanceof Error ? error.message : String(error) };
    } finally {
      clearTimeout(timeout);
      flushLines();
      this.running.delete(job.id);
    }
    try {
      const result = this.resultFor(job, outcome, controller.signal, payload.timeoutSeconds, mask);
      this.log.info("job finished", { jobId: job.id, ok: result.ok, reason: result.reason, ms: Date.now() - started });
      endJobSpan(span, result, Date.now() - started);
      this.finishWith(result);
      await outcome.afterReport?.().catch((error: unknown) => this.log.warn("tidying after a job failed", { jobId: job.id, error: String(error) }));
    } finally {
      this.release();
    }
  }

  /** Journals a result (so it survives a restart until the hub acknowledges it), then sends it. */
  private finishWith(result: ResultBody): void {
    try {
      this.journal.recordResult(result);
    } catch (error) {
      // A full disk must not turn a finished job into a crash; the hub still hears about it.
      this.log.warn("could not journal a result", { jobId: result.jobId, error: String(error) });
    }
    this.send(result);
  }

  private resultFor(job: RunningJob, outcome: ExecutorOutcome, signal: AbortSignal, timeoutSeconds: number, mask: (text: string) => string): ResultBody {
    const base = { type: "job:result" as const, jobId: job.id, ...(outcome.exitCode !== undefined ? { exitCode: outcome.exitCode } : {}), ...(outcome.data ? { data: maskJson(outcome.data, mask) } : {}) };
    if (signal.aborted) {
      const reason = signal.reason as AbortReason;
      if (reason === "timeout") return { ...base, ok: false, reason: "timeout", message: `timed out after ${timeoutSeconds} s and was stopped` };
      if (reason === "cancelled") return { ...base, ok: false, reason: "cancelled", message: "cancelled while running and stopped" };
      return { ...base, ok: false, reason: "interrupted", message: "the runner was shutting down and stopped the job; it is not run again" };
    }
    return { ...base, ok: outcome.ok, message: truncateText(mask(outcome.message), MAX_REPORT_MESSAGE_CHARS), ...(outcome.ok ? {} : { reason: "failed" as const }) };
  }

  private async onCancel(cancel: CancelEnvelope, signature: string): Promise<void> {
    const { controlPlane } = await this.keys;
    const now = Math.floor(Date.now() / 1000);
    const valid = CancelEnvelope.safeParse(cancel).success && (await verifyValue(controlPlane, cancel, signature));
    if (!valid || cancel.runner !== this.config.runnerId || cancel.exp < now) {
      this.log.warn("ignored a cancel that is not signed for this runner or has expired", { jobId: cancel.jobId });
      return;
    }
    const job = this.running.get(cancel.jobId);
    if (job) job.controller.abort("cancelled" satisfies AbortReason);
    else if (!this.journal.get(cancel.jobId)) this.cancelledEarly.add(cancel.jobId);
  }

  /** Waits for one of the `concurrency` slots; release() hands it to the next waiting job. */
  private slot(): Promise<void> {
    if (this.active < this.config.concurrency) {
      this.active++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.active--;
  }

  /** Jobs journaled as received but with no result: the runner stopped while they ran. */
  private async recoverInterrupted(): Promise<void> {
    for (const entry of this.journal.unfinished()) {
      // Its containers (a docker.run's) and its egress network (a docker.run's, or the network a release
      // playbook's dependency install runs on): labelled with the job, so found after a crash.
      await removeJobContainers(this.config.docker.socketPath, entry.id).catch((error: unknown) =>
        this.log.warn("could not remove an interrupted job's containers and network", { jobId: entry.id, error: String(error) }),
      );
      this.log.warn("job interrupted by a runner restart", { jobId: entry.id });
      this.journal.recordResult({
        type: "job:result",
        jobId: entry.id,
        ok: false,
        reason: "interrupted",
        message: "the runner stopped while the job ran (crash or restart); it is not run again",
      });
    }
  }
}

function nameOf(input: unknown): string | undefined {
  return SignedJobHead.safeParse(input).data?.envelope.id;
}

function maskJson(data: Record<string, unknown>, mask: (text: string) => string): Record<string, unknown> {
  try {
    return JSON.parse(mask(JSON.stringify(data))) as Record<string, unknown>;
  } catch {
    // A secret that spans JSON syntax: drop the data rather than risk showing it.
    return { redacted: "data withheld: it contained a secret value" };
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/** The egress settings, with the Bot API gateway's address among those releases may reach. */
function withBotGateway(config: RunnerConfig): RunnerConfig["docker"]["egress"] {
  const gateway = config.botGateway;
  // Port 0 is known only once it listens: such a runner (the repository's local ones) lets releases
  // to the gateway's whole address instead, through docker.egress.releaseInternalTargets.
  if (!gateway || gateway.port === 0) return config.docker.egress;
  return { ...config.docker.egress, releaseInternalTargets: [...new Set([...config.docker.egress.releaseInternalTargets, `${gateway.host}:${gateway.port}`])] };
}
