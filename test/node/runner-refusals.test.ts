/**
 * What a runner refuses, and that it runs nothing then. The hub here is a scripted WebSocket server
 * that speaks the real protocol (src/shared/runner-protocol.ts) and plays the attacker: it sends
 * tampered, foreign, expired, unknown and replayed jobs to a real `orchestrator-runner run` process
 * that drives the real Docker engine. The same hub then drops the connection and withholds an ack (the
 * runner reconnects and re-sends its result) and sends more jobs than the runner has slots.
 */
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Docker from "dockerode";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { WebSocketServer, type WebSocket } from "ws";
import { TEST_IMAGE } from "../../scripts/lib/docker-engine.ts";
import { waitFor } from "../../scripts/lib/processes.ts";
import { generateKeySeed, importPrivateKey, importPublicKey, type JobEnvelope, signJob, type SignedJob, verifyValue } from "../../src/shared/jobs.ts";
import { MAX_LOG_LINE_CHARS } from "../../src/shared/limits.ts";
import { connectProof, RunnerBody, RunnerMessage } from "../../src/shared/runner-protocol.ts";
import { runnerCli } from "../../scripts/lib/local-runner.ts";
import type { Spawned } from "../../scripts/lib/processes.ts";

const RUNNER_ID = "run_refusals";
let docker: Docker;
let hub: ScriptedHub;
let controlPlane: { privateKey: CryptoKey; publicKey: string };
let configPath: string;
let stateDir: string;
let runner: Spawned | null = null;

/** A hub that authenticates the runner like the real one and records its verified messages. */
class ScriptedHub {
  readonly server: WebSocketServer;
  readonly messages: RunnerBody[] = [];
  socket: WebSocket | null = null;
  /** How many times the runner has said hello (connections). */
  hellos = 0;
  ackResults = true;
  runnerKey: CryptoKey | null = null;
  private challenge = "";

  private received: Promise<void> = Promise.resolve();

  constructor(server: WebSocketServer, runnerPublicKey: string) {
    this.server = server;
    void importPublicKey(runnerPublicKey).then((key) => (this.runnerKey = key));
    server.on("connection", (socket) => {
      this.challenge = `challenge-${Math.random().toString(36).slice(2)}-${Date.now()}`;
      socket.send(JSON.stringify({ type: "session:challenge", challenge: this.challenge }));
      // One message at a time, in the order they came: each waits on a signature check, and two
      // checks may finish out of order (log batches were recorded swapped on a busy machine).
      socket.on("message", (data) => {
        // A failure still surfaces as an uncaught error (as before), and the next message is still read.
        this.received = this.received
          .then(() => this.onMessage(socket, (data as Buffer).toString()))
          .catch((error: unknown) => queueMicrotask(() => { throw error; }));
      });
    });
  }

  get port(): number {
    return (this.server.address() as { port: number }).port;
  }

  private async onMessage(socket: WebSocket, text: string) {
    const message = RunnerMessage.parse(JSON.parse(text));
    const key = this.runnerKey;
    if (!key) throw new Error("runner key not imported yet");
    if (message.type === "session:hello") {
      if (!(await verifyValue(key, connectProof(message.runnerId, this.challenge), message.signature))) return socket.close(4401, "bad hello");
      this.socket = socket;
      this.hellos++;
      socket.send(JSON.stringify({ type: "session:welcome", runnerId: message.runnerId, server: "scripted" }));
      return;
    }
    if (!(await verifyValue(key, message.body, message.signature))) throw new Error("runner message with a bad signature");
    const body = RunnerBody.parse(message.body);
    this.messages.push(body);
    if (body.type === "job:result" && this.ackResults) socket.send(JSON.stringify({ type: "result:stored", jobId: body.jobId }));
  }

  send(job: unknown) {
    this.socket?.send(JSON.stringify({ type: "job:offer", job }));
  }

  /** The runner's answer about one job: its refusal, or its result. */
  answer(jobId: string, kinds: RunnerBody["type"][] = ["job:refused", "job:result"]) {
    return waitFor(
      () => this.messages.find((m) => "jobId" in m && m.jobId === jobId && kinds.includes(m.type)),
      20_000,
      () => `no answer for ${jobId}: ${JSON.stringify(this.messages.filter((m) => m.type !== "runner:heartbeat"))}`,
    );
  }

  about(jobId: string) {
    return this.messages.filter((m) => "jobId" in m && m.jobId === jobId);
  }
}

async function startRunner() {
  const child = runnerCli(["run", "--config", configPath]);
  runner = child;
  await waitFor(() => (child.output().includes('"msg":"connected"') ? true : undefined), 20_000, () => child.output(), () => child.child.exitCode !== null);
}

async function stopRunner() {
  if (!runner) return;
  runner.child.kill("SIGTERM");
  await runner.exited;
  runner = null;
}

let counter = 0;
function envelope(overrides: Partial<JobEnvelope> = {}): JobEnvelope {
  const now = Math.floor(Date.now() / 1000);
  counter++;
  return {
    v: 1,
    id: `job_refusal_${counter}_${now}`,
    runner: RUNNER_ID,
    type: "docker.run",
    payload: { image: TEST_IMAGE, cmd: ["echo", "ran"] },
    iat: now,
    exp: now + 600,
    nonce: `nonce-${counter}-${Math.random().toString(36).slice(2)}`,
    ...overrides,
  };
}

async function containersFor(jobId: string) {
  return docker.listContainers({ all: true, filters: { label: [`orchestrator.job=${jobId}`] } });
}

async function expectRefused(job: SignedJob | Record<string, unknown>, jobId: string, reason: string) {
  hub.send(job);
  const answer = await hub.answer(jobId);
  expect(answer).toMatchObject({ type: "job:refused", reason });
  expect(hub.about(jobId).map((m) => m.type)).toEqual(["job:refused"]);
  expect(await containersFor(jobId)).toEqual([]);
  return answer;
}

beforeAll(async () => {
  docker = new Docker({ socketPath: inject("dockerSocket") });
  const cp = await generateKeySeed();
  controlPlane = { privateKey: (await importPrivateKey(cp.seed)).privateKey, publicKey: cp.publicKey };
  const own = await generateKeySeed();
  const server = new WebSocketServer({ host: "127.0.0.1", port: 0, path: "/runner/connect" });
  await new Promise((resolve) => server.once("listening", resolve));
  hub = new ScriptedHub(server, own.publicKey);
  const dir = mkdtempSync(join(tmpdir(), "orchestrator-refusals-"));
  configPath = join(dir, "config.json");
  stateDir = join(dir, "state");
  writeFileSync(
    configPath,
    JSON.stringify({
      edge: `http://127.0.0.1:${hub.port}`,
      runnerId: RUNNER_ID,
      server: "scripted",
      privateKey: own.seed,
      publicKey: own.publicKey,
      controlPlanePublicKey: cp.publicKey,
      stateDir,
      docker: { socketPath: inject("dockerSocket") },
      // Where a caddy.sync would write, had the runner taken it; the release ports are the defaults.
      caddy: { configPath: join(stateDir, "caddy.json"), adminSocket: join(dir, "no-caddy-here.sock") },
    }),
    { mode: 0o600 },
  );
  await startRunner();
}, 120_000);

afterAll(async () => {
  await stopRunner();
  hub?.server.close();
});

describe("the runner refuses, and runs nothing", () => {
  it("a tampered payload", async () => {
    const signed = await signJob(controlPlane.privateKey, envelope());
    const tampered = { ...signed, envelope: { ...signed.envelope, payload: { image: TEST_IMAGE, cmd: ["sh", "-c", "echo pwned"] } } };
    await expectRefused(tampered, signed.envelope.id, "bad_signature");
  });

  it("a job signed with another key", async () => {
    const other = await importPrivateKey((await generateKeySeed()).seed);
    const signed = await signJob(other.privateKey, envelope());
    await expectRefused(signed, signed.envelope.id, "bad_signature");
  });

  it("an expired job", async () => {
    const now = Math.floor(Date.now() / 1000);
    const signed = await signJob(controlPlane.privateKey, envelope({ iat: now - 1000, exp: now - 300 }));
    const answer = await expectRefused(signed, signed.envelope.id, "expired");
    expect(answer.type === "job:refused" && answer.message).toContain("expired at");
  });

  it("another runner's job", async () => {
    const signed = await signJob(controlPlane.privateKey, envelope({ runner: "run_someone_else" }));
    await expectRefused(signed, signed.envelope.id, "wrong_runner");
  });

  it("an unknown job type", async () => {
    const signed = await signJob(controlPlane.privateKey, envelope({ type: "shell.exec", payload: { command: "rm -rf /" } }));
    await expectRefused(signed, signed.envelope.id, "unknown_type");
  });

  it("a payload outside its job type's schema (a network that is no policy)", async () => {
    const signed = await signJob(controlPlane.privateKey, envelope({ payload: { image: TEST_IMAGE, network: "bridge" } }));
    await expectRefused(signed, signed.envelope.id, "malformed_payload");
  });

  it("provision.yml through an ansible.playbook job, even signed: its variables would reach root's systemd units", async () => {
    const marker = join(tmpdir(), `pwned-${Date.now()}`);
    const signed = await signJob(
      controlPlane.privateKey,
      envelope({ type: "ansible.playbook", payload: { playbook: "provision.yml", extraVars: { caddy_binary: `/bin/sh -c 'touch ${marker}'` } } }),
    );
    const answer = await expectRefused(signed, signed.envelope.id, "malformed_payload");
    expect(answer.type === "job:refused" && answer.message).toContain("provision.yml runs through the provision job type");
    expect(existsSync(marker)).toBe(false);
  });

  it("an env file outside the deployments root, even signed", async () => {
    const target = join(tmpdir(), `outside-${Date.now()}.env`);
    const signed = await signJob(controlPlane.privateKey, envelope({ type: "ansible.playbook", payload: { playbook: "write-env.yml", extraVars: { dest: target, project: "app" } } }));
    await expectRefused(signed, signed.envelope.id, "malformed_payload");
    expect(existsSync(target)).toBe(false);
  });
});

describe("the runner runs a signed job only as far as its own configuration allows", () => {
  it("a caddy.sync route to a port outside the release ports: failed, and Caddy's config untouched", async () => {
    const signed = await signJob(controlPlane.privateKey, envelope({ type: "caddy.sync", payload: { routes: [{ domain: "ssh.example.test", upstreamPort: 22 }] } }));
    hub.send(signed);
    const answer = await hub.answer(signed.envelope.id, ["job:result"]);
    expect(answer).toMatchObject({ type: "job:result", ok: false, reason: "failed" });
    expect(answer.type === "job:result" && answer.message).toBe("upstream ports must be this server's release ports 20000-29999; refused: ssh.example.test → 22; nothing was changed");
    expect(existsSync(join(stateDir, "caddy.json"))).toBe(false);
  });

  it("a docker.run on the server's own network, on a runner that does not allow it: failed, no container", async () => {
    const signed = await signJob(controlPlane.privateKey, envelope({ payload: { image: TEST_IMAGE, cmd: ["echo", "on the host"], network: "host" } }));
    hub.send(signed);
    const answer = await hub.answer(signed.envelope.id, ["job:result"]);
    expect(answer).toMatchObject({ type: "job:result", ok: false });
    expect(answer.type === "job:result" && answer.message).toContain('network "host" is refused');
    expect(await containersFor(signed.envelope.id)).toEqual([]);
  });

  it("a replayed job id, also after the runner restarts", async () => {
    const signed = await signJob(controlPlane.privateKey, envelope());
    const id = signed.envelope.id;
    hub.send(signed);
    expect(await hub.answer(id, ["job:result"])).toMatchObject({ type: "job:result", ok: true, exitCode: 0 });
    const lines = () => hub.about(id).flatMap((m) => (m.type === "job:log" ? m.lines.map((l) => l.line) : []));
    expect(lines()).toEqual(["ran"]);
    const ranOnce = hub.about(id).length;

    hub.send(signed);
    await waitFor(() => (hub.about(id).length > ranOnce ? true : undefined), 10_000, () => "no answer to the replay");
    expect(hub.about(id).at(-1)).toMatchObject({ type: "job:refused", reason: "replayed" });

    await stopRunner();
    await startRunner();
    const before = hub.about(id).length;
    // The same id with a fresh nonce, and the same nonce under a fresh id: both are replays.
    hub.send(await signJob(controlPlane.privateKey, { ...signed.envelope, nonce: `fresh-${Date.now()}-nonce` }));
    await waitFor(() => (hub.about(id).length > before ? true : undefined), 10_000, () => "no answer to the replay after restart");
    expect(hub.about(id).at(-1)).toMatchObject({ type: "job:refused", reason: "replayed" });
    const sameNonce = await signJob(controlPlane.privateKey, { ...signed.envelope, id: `${id}_other` });
    hub.send(sameNonce);
    expect(await hub.answer(sameNonce.envelope.id)).toMatchObject({ type: "job:refused", reason: "replayed" });
    expect(lines()).toEqual(["ran"]);
  });

  it("a malformed message, naming no job", async () => {
    const count = hub.messages.length;
    hub.send({ hello: "there" });
    await waitFor(() => hub.messages.slice(count).find((m) => m.type === "job:refused"), 10_000, () => "no refusal");
    expect(hub.messages.slice(count).find((m) => m.type === "job:refused")).toMatchObject({ reason: "malformed" });
  });
});

describe("the runner's connection and slots", () => {
  it("reconnects after the hub drops it, and sends again the result the hub never acknowledged", async () => {
    hub.ackResults = false;
    const signed = await signJob(controlPlane.privateKey, envelope({ type: "noop", payload: { echo: "once" } }));
    hub.send(signed);
    await hub.answer(signed.envelope.id, ["job:result"]);
    const hellos = hub.hellos;
    hub.ackResults = true;
    hub.socket?.close(1012, "hub restarting");
    await waitFor(() => (hub.hellos > hellos ? true : undefined), 15_000, () => "the runner did not reconnect");
    // The unacknowledged result comes again, first, on the new connection; the job is not run again.
    await waitFor(() => (hub.about(signed.envelope.id).filter((m) => m.type === "job:result").length === 2 ? true : undefined), 10_000, () => "result not sent again");
    expect(hub.about(signed.envelope.id).filter((m) => m.type === "job:accepted")).toHaveLength(1);
  });

  it("streams at most 100,000 lines of one job, then says the output was truncated", async () => {
    const signed = await signJob(controlPlane.privateKey, envelope({ payload: { image: TEST_IMAGE, cmd: ["seq", "1", "100050"] } }));
    hub.send(signed);
    expect(await hub.answer(signed.envelope.id, ["job:result"])).toMatchObject({ ok: true, exitCode: 0 });
    const lines = hub.about(signed.envelope.id).flatMap((m) => (m.type === "job:log" ? m.lines : []));
    expect(lines).toHaveLength(100_001);
    expect(lines[99_999]?.line).toBe("100000");
    expect(lines[100_000]).toEqual({ stream: "system", line: "output truncated: only the first 100000 lines are streamed" });
  });

  it("masks a secret that spans the point where a long line is cut, never showing part of it", async () => {
    const secret = `tok-${"s".repeat(190)}-${Date.now()}`;
    const signed = await signJob(controlPlane.privateKey, envelope({
      payload: { image: TEST_IMAGE, cmd: ["sh", "-c", `head -c 16300 /dev/zero | tr '\\0' a; printf '%s' "$TOKEN"; head -c 5000 /dev/zero | tr '\\0' b; echo`], secretEnv: { TOKEN: secret } },
    }));
    hub.send(signed);
    expect(await hub.answer(signed.envelope.id, ["job:result"])).toMatchObject({ ok: true });
    const [line = ""] = hub.about(signed.envelope.id).flatMap((m) => (m.type === "job:log" ? m.lines.map((l) => l.line) : []));
    expect(line.length).toBeLessThanOrEqual(MAX_LOG_LINE_CHARS);
    expect(line).toContain("[secret]");
    expect(line).not.toContain(secret.slice(0, 20));
  });

  it("cuts a 20,000-character line to what a task event holds, saying how much was cut", async () => {
    const signed = await signJob(controlPlane.privateKey, envelope({ payload: { image: TEST_IMAGE, cmd: ["sh", "-c", "head -c 20000 /dev/zero | tr '\\0' z; echo; echo after"] } }));
    hub.send(signed);
    expect(await hub.answer(signed.envelope.id, ["job:result"])).toMatchObject({ ok: true });
    const lines = hub.about(signed.envelope.id).flatMap((m) => (m.type === "job:log" ? m.lines.map((l) => l.line) : []));
    expect(lines).toHaveLength(2);
    expect(lines[0]?.length).toBeLessThanOrEqual(MAX_LOG_LINE_CHARS);
    expect(lines[0]).toMatch(/^z+ … \[truncated: \d+ more characters\]$/);
    const kept = (lines[0] ?? "").replace(/ … .*$/, "").length;
    expect(kept + Number(/truncated: (\d+)/.exec(lines[0] ?? "")?.[1])).toBe(20_000);
    expect(lines[1]).toBe("after");
  });

  it("runs at most `concurrency` (2) jobs at once", async () => {
    const jobs = await Promise.all(
      [1, 2, 3].map((n) => signJob(controlPlane.privateKey, envelope({ payload: { image: TEST_IMAGE, cmd: ["sh", "-c", `echo start ${n}; sleep 1; echo end ${n}`] } }))),
    );
    const start = hub.messages.length;
    for (const job of jobs) hub.send(job);
    for (const job of jobs) expect(await hub.answer(job.envelope.id, ["job:result"])).toMatchObject({ ok: true });
    const lines = hub.messages.slice(start).flatMap((m) => (m.type === "job:log" ? m.lines.map((l) => l.line) : []));
    let running = 0;
    let most = 0;
    for (const line of lines) {
      running += line.startsWith("start") ? 1 : line.startsWith("end") ? -1 : 0;
      most = Math.max(most, running);
    }
    expect(lines.filter((l) => l.startsWith("start"))).toHaveLength(3);
    expect(most).toBe(2);
  });
});
