/**
 * A scripted runner for worker tests: a server registered through the admin API, a runner enrolled
 * with a fresh key pair, and a WebSocket speaking the real protocol (challenge → signed hello →
 * signed messages) against the real RunnerHub. Shared by the servers and hub test files.
 */
import { env, exports } from "cloudflare:workers";
import { runDurableObjectAlarm } from "cloudflare:test";
import { expect } from "vitest";
import { getRunnerHubStub } from "../../src/runner-hub/client.ts";
import type { EnrollRunnerResponse, HubStatus, JobView, ServerView } from "../../src/shared/api.ts";
import type { TaskEvent } from "../../src/shared/events.ts";
import { generateKeySeed, importPrivateKey, importPublicKey, signValue } from "../../src/shared/jobs.ts";
import { connectProof, HubMessage, type RunnerBodyInput } from "../../src/shared/runner-protocol.ts";
import { adminKey, BASE, call } from "./helpers.ts";

export type ErrorJson = { error: { code: string; message: string; requestId: string } };
export interface Enrollment {
  token: string;
  expiresAt: string;
  command: string;
}
export type HubOf<T extends HubMessage["type"]> = Extract<HubMessage, { type: T }>;

/** The ack lease the worker project's bindings set (RUNNER_ACK_LEASE_SECONDS). */
export const LEASE_MS = Number(env.RUNNER_ACK_LEASE_SECONDS) * 1000;

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
export const newHandle = () => `srv-${crypto.randomUUID().slice(0, 8)}`;

/** Reads `read()` until `ok` holds, or fails naming what it waited for and the last value seen. */
export async function until<T>(read: () => Promise<T>, ok: (value: T) => boolean, what: string, ms = 5000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await read();
    if (ok(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last seen: ${JSON.stringify(value)}`);
    await sleep(25);
  }
}

// ---- The admin API ----

export async function createServer(handle = newHandle(), extra: Record<string, unknown> = {}): Promise<{ handle: string; server: ServerView; enrollment: Enrollment }> {
  const res = await call("/api/servers", { method: "POST", key: adminKey(), json: { handle, host: `${handle}.example.test`, ...extra } });
  if (res.status !== 201) throw new Error(`create server: ${res.status} ${await res.text()}`);
  return { handle, ...(await res.json<{ server: ServerView; enrollment: Enrollment }>()) };
}

export async function getServer(handle: string): Promise<{ server: ServerView; runner: HubStatus }> {
  const res = await call(`/api/servers/${handle}`, { key: adminKey() });
  if (res.status !== 200) throw new Error(`get server: ${res.status} ${await res.text()}`);
  return res.json();
}

export async function enqueue(handle: string, job: Record<string, unknown> = { type: "noop" }): Promise<JobView> {
  const res = await call(`/api/servers/${handle}/jobs`, { method: "POST", key: adminKey(), json: job });
  if (res.status !== 201) throw new Error(`enqueue: ${res.status} ${await res.text()}`);
  return (await res.json<{ job: JobView }>()).job;
}

export async function getJob(handle: string, jobId: string, waitSeconds = 0): Promise<JobView> {
  const res = await call(`/api/servers/${handle}/jobs/${jobId}?wait=${waitSeconds}`, { key: adminKey() });
  if (res.status !== 200) throw new Error(`get job: ${res.status} ${await res.text()}`);
  return (await res.json<{ job: JobView }>()).job;
}

export async function taskEvents(taskId: string): Promise<TaskEvent[]> {
  const res = await call(`/api/tasks/${taskId}/events`, { key: adminKey() });
  if (res.status !== 200) throw new Error(`task events: ${res.status} ${await res.text()}`);
  return (await res.json<{ events: TaskEvent[] }>()).events;
}

// ---- The runner's side ----

export function enroll(token: string, publicKey: string): Promise<Response> {
  return call("/runner/enroll", { method: "POST", json: { token, publicKey, version: "test" } });
}

export interface Runner {
  handle: string;
  runnerId: string;
  privateKey: CryptoKey;
  /** The control plane's job-signing public key, as enrollment handed it out. */
  controlPlaneKey: CryptoKey;
}

/** A server with an enrolled runner that has a fresh key pair, and has not connected yet. */
export async function enrolledRunner(): Promise<Runner> {
  const { handle, enrollment } = await createServer();
  const { seed, publicKey } = await generateKeySeed();
  const res = await enroll(enrollment.token, publicKey);
  if (res.status !== 201) throw new Error(`enroll: ${res.status} ${await res.text()}`);
  const body = await res.json<EnrollRunnerResponse>();
  return {
    handle,
    runnerId: body.runnerId,
    privateKey: (await importPrivateKey(seed)).privateKey,
    controlPlaneKey: await importPublicKey(body.controlPlanePublicKey),
  };
}

export interface Connection {
  ws: WebSocket;
  /** This connection's challenge: what `hello` signs and what every message's `session` names. */
  challenge: string;
  /** Every hub message received so far, in order. */
  received: HubMessage[];
  /** The oldest not yet taken message of type `t` (waiting for it up to `ms`). */
  next<T extends HubMessage["type"]>(t: T, ms?: number): Promise<HubOf<T>>;
  /** Answers the challenge, signed with `key` (the enrolled one unless given); `extra` adds hello fields. */
  hello(key?: CryptoKey, extra?: Record<string, unknown>): Promise<void>;
  /** A signed runner message; `session` and `key` default to this connection's challenge and the enrolled key. */
  send(body: RunnerBodyInput, options?: { session?: string; key?: CryptoKey }): Promise<void>;
  closed(): { code: number; reason: string } | null;
  waitForClose(ms?: number): Promise<{ code: number; reason: string }>;
}

/** Opens `/runner/connect` as the runner daemon does and reads the challenge (no hello yet). */
export async function connect(runner: Runner): Promise<Connection> {
  const res = await exports.default.fetch(new Request(`${BASE}/runner/connect?runner=${encodeURIComponent(runner.runnerId)}`, { headers: { upgrade: "websocket" } }));
  const ws = res.webSocket;
  if (!ws) throw new Error(`no websocket: ${res.status} ${await res.text()}`);
  ws.accept();
  const received: HubMessage[] = [];
  const pending: HubMessage[] = [];
  const malformed: string[] = [];
  let closed: { code: number; reason: string } | null = null;
  ws.addEventListener("message", (event) => {
    const parsed = HubMessage.safeParse(JSON.parse(String(event.data)));
    if (!parsed.success) {
      malformed.push(String(event.data));
      return;
    }
    received.push(parsed.data);
    pending.push(parsed.data);
  });
  ws.addEventListener("close", (event) => {
    closed = { code: event.code, reason: event.reason };
  });

  async function next<T extends HubMessage["type"]>(t: T, ms = 5000): Promise<HubOf<T>> {
    const deadline = Date.now() + ms;
    for (;;) {
      if (malformed.length) throw new Error(`the hub sent a message outside the protocol: ${malformed[0]}`);
      const index = pending.findIndex((m) => m.type === t);
      if (index >= 0) return pending.splice(index, 1)[0] as HubOf<T>;
      if (Date.now() > deadline) throw new Error(`no "${t}" message within ${ms} ms; received ${JSON.stringify(received)}; closed ${JSON.stringify(closed)}`);
      await sleep(10);
    }
  }

  const { challenge } = await next("session:challenge");
  return {
    ws,
    challenge,
    received,
    next,
    async hello(key = runner.privateKey, extra = {}) {
      const signature = await signValue(key, connectProof(runner.runnerId, challenge));
      ws.send(JSON.stringify({ type: "session:hello", runnerId: runner.runnerId, signature, version: "test", concurrency: 1, ...extra }));
    },
    async send(input, options = {}) {
      const body = { ...input, session: options.session ?? challenge, at: Date.now() };
      ws.send(JSON.stringify({ type: "report:signed", body, signature: await signValue(options.key ?? runner.privateKey, body) }));
    },
    closed: () => closed,
    async waitForClose(ms = 5000) {
      const deadline = Date.now() + ms;
      while (!closed) {
        if (Date.now() > deadline) throw new Error(`socket still open after ${ms} ms; received ${JSON.stringify(received)}`);
        await sleep(10);
      }
      return closed;
    },
  };
}

/** Connects, authenticates and waits for `welcome`. */
export async function online(runner: Runner, hello: Record<string, unknown> = {}): Promise<Connection> {
  const conn = await connect(runner);
  await conn.hello(undefined, hello);
  const welcome = await conn.next("session:welcome");
  expect(welcome).toEqual({ type: "session:welcome", runnerId: runner.runnerId, server: runner.handle });
  return conn;
}

/** A key the hub never saw. */
export async function strangerKey(): Promise<CryptoKey> {
  return (await importPrivateKey((await generateKeySeed()).seed)).privateKey;
}

/**
 * Lets the ack lease run out and makes sure the hub's alarm has run: it normally fires by itself;
 * running it again once the lease has passed changes nothing but covers a runtime that does not.
 */
export async function passAckLease(handle: string): Promise<void> {
  await sleep(LEASE_MS + 300);
  await runDurableObjectAlarm(getRunnerHubStub(env, handle));
}

