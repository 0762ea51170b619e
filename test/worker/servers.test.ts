/**
 * Servers, runner enrollment and the RunnerHub, as an admin and a runner daemon see them: the admin
 * API's answers, the one-time enrollment token, and a scripted runner speaking the real WebSocket
 * protocol (challenge → signed hello → signed jobs and messages) inside workerd, against Postgres.
 * The real runner process is covered by the Node tests; this file checks the hub's side of the wire.
 */
import { env } from "cloudflare:workers";
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { createDb } from "../../src/db/client.ts";
import { servers } from "../../src/db/schema.ts";
import type { Outbox } from "../../src/lib/outbox.ts";
import { getRunnerHubStub } from "../../src/runner-hub/client.ts";
import { sha256Hex } from "../../src/lib/crypto.ts";
import type { EnrollRunnerResponse, JobView, ServerView } from "../../src/shared/api.ts";
import { generateKeySeed, importPrivateKey, verifyJob, verifyValue } from "../../src/shared/jobs.ts";
import { adminKey, BASE, call, createUserWithKey } from "./helpers.ts";
import {
  connect,
  createServer,
  enroll,
  enqueue,
  type Enrollment,
  type ErrorJson,
  getJob,
  getServer,
  newHandle,
  online,
  passAckLease,
  enrolledRunner,
  strangerKey,
  taskEvents,
  until,
} from "./runner-helpers.ts";
import { newTask } from "./stream-helpers.ts";

// ---- Tests ----

describe("servers API", () => {
  it("creates a pending server with a one-time enrollment token whose hash only is stored", async () => {
    const handle = newHandle();
    const before = Date.now();
    const { server, enrollment } = await createServer(handle, { labels: { region: "test" }, capacity: 3 });
    expect(server).toMatchObject({ handle, host: `${handle}.example.test`, labels: { region: "test" }, capacity: 3, status: "pending", runnerId: null, enrolledAt: null });
    expect(enrollment.token).toMatch(/^ort_[A-Za-z0-9]{20,}$/);
    // The default lifetime is ENROLLMENT_TOKEN_TTL_SECONDS (3600 in wrangler.toml).
    const expiresIn = Date.parse(enrollment.expiresAt) - before;
    expect(expiresIn).toBeGreaterThan(3590_000);
    expect(expiresIn).toBeLessThan(3610_000);
    expect(enrollment.command).toContain(`--token ${enrollment.token}`);
    expect(enrollment.command).toContain(`--edge ${BASE}`);

    const shown = await getServer(handle);
    expect(shown.server).toMatchObject({ handle, status: "pending", runnerId: null });
    expect(shown.runner).toMatchObject({ connected: false, jobs: { queued: 0, running: 0 } });
    const list = await (await call("/api/servers?limit=200", { key: adminKey() })).json<{ servers: ServerView[] }>();
    expect(list.servers.map((s) => s.handle)).toContain(handle);
    expect(JSON.stringify(list)).not.toContain(enrollment.token);
    expect(JSON.stringify(shown)).not.toContain(enrollment.token);

    const handleDb = createDb({ databaseUrl: env.DATABASE_URL, wsProxy: env.DB_WS_PROXY });
    try {
      const [row] = await handleDb.db.select().from(servers).where(eq(servers.handle, handle));
      expect(row?.enrollmentTokenHash).toBe(await sha256Hex(enrollment.token));
      expect(JSON.stringify(row)).not.toContain(enrollment.token.slice(4));
    } finally {
      await handleDb.close();
    }
  });

  it("keeps every servers route from a user key (403)", async () => {
    const { handle } = await createServer();
    const { key } = await createUserWithKey("not-an-admin");
    const attempts: [string, RequestInit & { json?: unknown }][] = [
      ["/api/servers", { method: "POST", json: { handle: newHandle(), host: "x.example.test" } }],
      ["/api/servers", {}],
      [`/api/servers/${handle}`, {}],
      [`/api/servers/${handle}/enrollment`, { method: "POST", json: {} }],
      [`/api/servers/${handle}/jobs`, { method: "POST", json: { type: "noop" } }],
      [`/api/servers/${handle}/jobs`, {}],
    ];
    for (const [path, init] of attempts) {
      const res = await call(path, { ...init, key });
      expect(res.status, `${init.method ?? "GET"} ${path}`).toBe(403);
      expect((await res.json<ErrorJson>()).error.code).toBe("forbidden");
    }
    expect((await call("/api/servers")).status).toBe(401);
    // Nothing the user tried took effect.
    expect((await getServer(handle)).runner.jobs.queued).toBe(0);
  });

  it("answers bad handles with 400 naming `handle`, a taken one with 409, an unknown one with 404", async () => {
    for (const handle of ["Bad_Handle", "ab", "1abc", "a--b", "x".repeat(41)]) {
      const res = await call("/api/servers", { method: "POST", key: adminKey(), json: { handle, host: "h.example.test" } });
      expect(res.status, handle).toBe(400);
      const body = await res.json<ErrorJson>();
      expect(body.error.code).toBe("invalid_request");
      expect(body.error.message).toMatch(/\bhandle\b/);
    }
    const bad = await call("/api/servers/NOT_A_HANDLE", { key: adminKey() });
    expect(bad.status).toBe(400);
    expect((await bad.json<ErrorJson>()).error.message).toMatch(/\bhandle\b/);

    const { handle, enrollment } = await createServer();
    const again = await call("/api/servers", { method: "POST", key: adminKey(), json: { handle, host: "other.example.test" } });
    expect(again.status).toBe(409);
    const conflict = await again.json<ErrorJson>();
    expect(conflict.error.code).toBe("conflict");
    expect(conflict.error.message).toContain(handle);
    // The first server and its token are untouched by the refused duplicate.
    expect((await getServer(handle)).server.host).toBe(`${handle}.example.test`);
    expect((await enroll(enrollment.token, (await generateKeySeed()).publicKey)).status).toBe(201);

    const missing = newHandle();
    for (const [path, init] of [
      [`/api/servers/${missing}`, {}],
      [`/api/servers/${missing}/enrollment`, { method: "POST", json: {} }],
      [`/api/servers/${missing}/jobs`, { method: "POST", json: { type: "noop" } }],
      [`/api/servers/${missing}/jobs`, {}],
      [`/api/servers/${handle}/jobs/job_nonexistent`, {}],
      [`/api/servers/${handle}/jobs/job_nonexistent/cancel`, { method: "POST" }],
    ] as [string, RequestInit & { json?: unknown }][]) {
      const res = await call(path, { ...init, key: adminKey() });
      expect(res.status, `${init.method ?? "GET"} ${path}`).toBe(404);
      expect(res.headers.get("content-type")).toContain("application/json");
      const body = await res.json<ErrorJson>();
      expect(body.error.code).toBe("not_found");
      expect(body.error.requestId).toBe(res.headers.get("x-request-id"));
    }
  });

  it("refuses a job for a server without a runner (409) and a malformed job (400)", async () => {
    const pending = await createServer();
    const res = await call(`/api/servers/${pending.handle}/jobs`, { method: "POST", key: adminKey(), json: { type: "noop" } });
    expect(res.status).toBe(409);
    expect((await res.json<ErrorJson>()).error.message).toMatch(/no enrolled runner/);

    const runner = await enrolledRunner();
    for (const job of [{ type: "rm -rf" }, { type: "noop", payload: { echo: 5 } }, { type: "noop", ttlSeconds: 1 }, { type: "noop", extra: true }]) {
      const bad = await call(`/api/servers/${runner.handle}/jobs`, { method: "POST", key: adminKey(), json: job });
      expect(bad.status, JSON.stringify(job)).toBe(400);
      expect((await bad.json<ErrorJson>()).error.code).toBe("invalid_request");
    }
    expect((await getServer(runner.handle)).runner.jobs).toMatchObject({ queued: 0, delivered: 0 });
  });
});

describe("runner enrollment", () => {
  it("refuses a malformed public key (400) without using up the token", async () => {
    const { enrollment } = await createServer();
    for (const publicKey of ["", "short", "!".repeat(43), "a".repeat(44)]) {
      const res = await enroll(enrollment.token, publicKey);
      expect(res.status, publicKey).toBe(400);
      expect((await res.json<ErrorJson>()).error.message).toMatch(/publicKey/);
    }
    expect((await enroll(enrollment.token, (await generateKeySeed()).publicKey)).status).toBe(201);
  });

  it("exchanges the token once for a runner id and the control plane's public key", async () => {
    const { handle, enrollment } = await createServer();
    const { publicKey } = await generateKeySeed();
    const res = await enroll(enrollment.token, publicKey);
    expect(res.status).toBe(201);
    const body = await res.json<EnrollRunnerResponse>();
    expect(body.runnerId).toMatch(/^run_/);
    expect(body.server).toBe(handle);
    expect(body.controlPlanePublicKey).toBe((await importPrivateKey(env.JOB_SIGNING_KEY)).publicKey);

    const shown = await getServer(handle);
    expect(shown.server).toMatchObject({ runnerId: body.runnerId, status: "offline" });
    expect(shown.server.enrolledAt).not.toBeNull();

    const again = await enroll(enrollment.token, (await generateKeySeed()).publicKey);
    expect(again.status).toBe(401);
    const refusal = await again.json<ErrorJson>();
    expect(refusal.error.code).toBe("unauthorized");
    expect(refusal.error.message).toMatch(/already used/);
    // The refused attempt did not replace the runner.
    expect((await getServer(handle)).server.runnerId).toBe(body.runnerId);
    expect((await enroll("ort_madeupmadeupmadeupmadeup", publicKey)).status).toBe(401);
  });

  it("renews the token: the old one stops working, the new one works once and replaces the runner", async () => {
    const { handle, enrollment: first } = await createServer();
    const renewedRes = await call(`/api/servers/${handle}/enrollment`, { method: "POST", key: adminKey(), json: { enrollmentTtlSeconds: 600 } });
    expect(renewedRes.status).toBe(201);
    const renewed = (await renewedRes.json<{ enrollment: Enrollment }>()).enrollment;
    expect(renewed.token).not.toBe(first.token);
    expect(Date.parse(renewed.expiresAt) - Date.now()).toBeLessThan(601_000);
    expect((await enroll(first.token, (await generateKeySeed()).publicKey)).status).toBe(401);

    const original = await enroll(renewed.token, (await generateKeySeed()).publicKey);
    expect(original.status).toBe(201);
    const oldRunnerId = (await original.json<EnrollRunnerResponse>()).runnerId;

    const third = (await (await call(`/api/servers/${handle}/enrollment`, { method: "POST", key: adminKey(), json: {} })).json<{ enrollment: Enrollment }>()).enrollment;
    const replaced = await enroll(third.token, (await generateKeySeed()).publicKey);
    expect(replaced.status).toBe(201);
    const newRunnerId = (await replaced.json<EnrollRunnerResponse>()).runnerId;
    expect(newRunnerId).not.toBe(oldRunnerId);
    expect((await enroll(third.token, (await generateKeySeed()).publicKey)).status).toBe(401);
    expect((await getServer(handle)).server.runnerId).toBe(newRunnerId);

    const oldConnect = await call(`/runner/connect?runner=${oldRunnerId}`, { headers: { upgrade: "websocket" } });
    expect(oldConnect.status).toBe(401);
    expect(oldConnect.webSocket).toBeNull();
    // Jobs are now signed for the new runner.
    const job = await enqueue(handle);
    expect(job.state).toBe("queued");
  });
});

describe("GET /runner/connect", () => {
  it("answers a plain GET with 400 and an unknown runner id with 401, as JSON", async () => {
    const runner = await enrolledRunner();
    const plain = await call(`/runner/connect?runner=${runner.runnerId}`);
    expect(plain.status).toBe(400);
    const body = await plain.json<ErrorJson>();
    expect(body.error.code).toBe("invalid_request");
    expect(body.error.message).toMatch(/WebSocket/);

    // A 0.1 runner (its messages named in `t`, which it could not read from this hub): told what to do.
    const old = await call(`/runner/connect?runner=${runner.runnerId}`, { headers: { upgrade: "websocket", "user-agent": "orchestrator-runner/0.1.0" } });
    expect(old.status).toBe(409);
    expect((await old.json<ErrorJson>()).error.message).toMatch(/older protocol than this control plane: install this release's runner bundle/);

    const unknown = await call("/runner/connect?runner=run_nobody", { headers: { upgrade: "websocket" } });
    expect(unknown.status).toBe(401);
    expect((await unknown.json<ErrorJson>()).error.message).toMatch(/enroll/);
    expect((await call("/runner/connect", { headers: { upgrade: "websocket" } })).status).toBe(400);
  });
});

describe("the runner's WebSocket", () => {
  it("closes a hello signed with another key (4401) and a message before hello; the server does not go online", async () => {
    const runner = await enrolledRunner();
    const forged = await connect(runner);
    expect(forged.challenge.length).toBeGreaterThanOrEqual(16);
    await forged.hello(await strangerKey());
    expect((await forged.waitForClose()).code).toBe(4401);
    expect(forged.received.map((m) => m.type)).toEqual(["session:challenge"]);

    const eager = await connect(runner);
    expect(eager.challenge).not.toBe(forged.challenge);
    await eager.send({ type: "runner:heartbeat", running: [], concurrency: 1 });
    expect((await eager.waitForClose()).code).toBe(4401);

    const shown = await getServer(runner.handle);
    expect(shown.server.status).not.toBe("online");
    expect(shown.runner.connected).toBe(false);
    // A queued job is not sent to a connection that never proved its key.
    const job = await enqueue(runner.handle);
    expect((await getJob(runner.handle, job.id)).state).toBe("queued");
  });

  it("welcomes a correctly signed hello and shows the server online", async () => {
    const runner = await enrolledRunner();
    const conn = await online(runner);
    const shown = await until(() => getServer(runner.handle), (s) => s.server.status === "online", "status online");
    expect(shown.runner.connected).toBe(true);
    expect(shown.runner.connectedAt).not.toBeNull();
    expect(shown.server.lastSeenAt).not.toBeNull();
    conn.ws.close(1000, "done");
  });

  it("sends a queued job signed for this runner, sends it again when not accepted within the lease, and acks its result", { timeout: 20_000 }, async () => {
    const runner = await enrolledRunner();
    // Queued while the runner is away: sent as soon as it connects.
    const queued = await enqueue(runner.handle, { type: "noop", payload: { echo: "hi" } });
    expect(queued).toMatchObject({ state: "queued", attempts: 0, server: runner.handle, type: "noop" });
    const conn = await online(runner);

    const first = await conn.next("job:offer");
    const check = await verifyJob(first.job, { publicKey: runner.controlPlaneKey, runnerId: runner.runnerId });
    expect(check).toMatchObject({ ok: true, envelope: { id: queued.id, runner: runner.runnerId, type: "noop", payload: { echo: "hi" } } });
    // The same job does not verify for another runner.
    expect(await verifyJob(first.job, { publicKey: runner.controlPlaneKey, runnerId: "run_someone_else" })).toMatchObject({ ok: false, reason: "wrong_runner" });
    expect(await getJob(runner.handle, queued.id)).toMatchObject({ state: "delivered", attempts: 1 });

    // Not accepted: after the lease the hub sends the very same signed job again.
    await passAckLease(runner.handle);
    const second = await conn.next("job:offer");
    expect(second.job).toEqual(first.job);
    expect(await getJob(runner.handle, queued.id)).toMatchObject({ state: "delivered", attempts: 2 });

    await conn.send({ type: "job:accepted", jobId: queued.id });
    const running = await until(() => getJob(runner.handle, queued.id), (j) => j.state === "running", "job running");
    expect(running.startedAt).not.toBeNull();
    await conn.send({ type: "job:result", jobId: queued.id, ok: true, message: "echo: hi", exitCode: 0, data: { echo: "hi" } });
    expect(await conn.next("result:stored")).toEqual({ type: "result:stored", jobId: queued.id });
    const done = await getJob(runner.handle, queued.id);
    expect(done).toMatchObject({ state: "succeeded", attempts: 2, outcome: { ok: true, message: "echo: hi", exitCode: 0, data: { echo: "hi" } } });
    expect(done.finishedAt).not.toBeNull();
    // A repeated result is acknowledged again and changes nothing.
    await conn.send({ type: "job:result", jobId: queued.id, ok: false, message: "late duplicate" });
    expect(await conn.next("result:stored")).toEqual({ type: "result:stored", jobId: queued.id });
    expect((await getJob(runner.handle, queued.id)).outcome).toMatchObject({ ok: true, message: "echo: hi" });
    // Only those two deliveries: an accepted job is not sent again.
    expect(conn.received.filter((m) => m.type === "job:offer")).toHaveLength(2);
    conn.ws.close(1000, "done");
  });

  it("puts the job's log lines on its task's stream, in order, and finishes the task", async () => {
    const { taskId } = await newTask("deploy");
    const runner = await enrolledRunner();
    const conn = await online(runner);
    const job = await enqueue(runner.handle, { type: "noop", taskId, finishTask: true });
    expect((await conn.next("job:offer")).job).toMatchObject({ envelope: { id: job.id, taskId } });

    await conn.send({ type: "job:accepted", jobId: job.id });
    await conn.send({ type: "job:log", jobId: job.id, lines: [{ stream: "stdout", line: "line one" }, { stream: "stderr", line: "line two" }] });
    await conn.send({ type: "job:progress", jobId: job.id, step: "noop", message: "halfway", data: { pct: 50 } });
    await conn.send({ type: "job:log", jobId: job.id, lines: [{ stream: "stdout", line: "line three" }] });
    await conn.send({ type: "job:result", jobId: job.id, ok: true, message: "all done" });
    await conn.next("result:stored");

    const events = await until(() => taskEvents(taskId), (e) => e.some((x) => x.type === "task.completed"), "task.completed on the stream");
    expect(events.map((e) => [e.type, e.message])).toEqual([
      ["step.started", `noop job ${job.id} started on ${runner.handle}`],
      ["log", "line one"],
      ["log", "line two"],
      ["step.progress", "halfway"],
      ["log", "line three"],
      ["step.completed", "noop succeeded: all done"],
      ["task.completed", "all done"],
    ]);
    expect(events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(events[2]).toMatchObject({ step: "noop", data: { stream: "stderr", jobId: job.id } });
    const task = await (await call(`/api/tasks/${taskId}`, { key: adminKey() })).json<{ task: { status: string } }>();
    expect(task.task.status).toBe("completed");
    conn.ws.close(1000, "done");
  });

  it("closes the socket on a message with a bad signature (4401): the job is not finished and the server goes offline", async () => {
    const runner = await enrolledRunner();
    const conn = await online(runner);
    await until(() => getServer(runner.handle), (s) => s.server.status === "online", "status online");
    const job = await enqueue(runner.handle);
    await conn.next("job:offer");
    await conn.send({ type: "job:result", jobId: job.id, ok: true, message: "forged success" }, { key: await strangerKey() });
    expect(await conn.waitForClose()).toEqual({ code: 4401, reason: "bad message signature" });
    expect(conn.received.some((m) => m.type === "result:stored")).toBe(false);
    // The connection is gone, so the unaccepted job waits for the next one; nothing of the forgery stuck.
    const after = await until(() => getJob(runner.handle, job.id), (j) => j.state === "queued", "job queued again");
    expect(after).toMatchObject({ attempts: 1, outcome: null, startedAt: null, finishedAt: null });
    const shown = await until(() => getServer(runner.handle), (s) => s.server.status === "offline", "status offline");
    expect(shown.runner.connected).toBe(false);
  });

  it("replaces an older connection, and closes one that sends another connection's session (4400)", async () => {
    const runner = await enrolledRunner();
    const older = await online(runner);
    const job = await enqueue(runner.handle);
    await older.next("job:offer");

    const newer = await online(runner);
    expect((await older.waitForClose()).code).toBe(4000);
    // Sent on the old connection, never accepted: sent again on the new one.
    expect((await newer.next("job:offer")).job).toMatchObject({ envelope: { id: job.id } });
    expect(await getJob(runner.handle, job.id)).toMatchObject({ state: "delivered", attempts: 2 });

    // Correctly signed, but bound to the older connection's challenge: a replay.
    await newer.send({ type: "job:accepted", jobId: job.id }, { session: older.challenge });
    expect(await newer.waitForClose()).toEqual({ code: 4400, reason: "message from another session" });
    const after = await until(() => getJob(runner.handle, job.id), (j) => j.state === "queued", "job queued again");
    expect(after).toMatchObject({ attempts: 2, startedAt: null, outcome: null });
  });

  it("sends a signed cancel for a running job, and records the runner's cancelled result", async () => {
    const runner = await enrolledRunner();
    const conn = await online(runner);
    const job = await enqueue(runner.handle);
    await conn.next("job:offer");
    await conn.send({ type: "job:accepted", jobId: job.id });
    await until(() => getJob(runner.handle, job.id), (j) => j.state === "running", "job running");

    const res = await call(`/api/servers/${runner.handle}/jobs/${job.id}/cancel`, { method: "POST", key: adminKey() });
    expect(res.status).toBe(202);
    expect((await res.json<{ job: JobView }>()).job.state).toBe("running");
    const cancel = await conn.next("job:cancel");
    expect(cancel.cancel).toMatchObject({ v: 2, type: "job:cancel", jobId: job.id, runner: runner.runnerId });
    expect(cancel.cancel.exp).toBeGreaterThan(cancel.cancel.iat);
    expect(await verifyValue(runner.controlPlaneKey, cancel.cancel, cancel.signature)).toBe(true);
    expect(await verifyValue(runner.controlPlaneKey, { ...cancel.cancel, jobId: "job_other" }, cancel.signature)).toBe(false);

    await conn.send({ type: "job:result", jobId: job.id, ok: false, reason: "cancelled", message: "stopped on request" });
    await conn.next("result:stored");
    expect(await getJob(runner.handle, job.id)).toMatchObject({ state: "cancelled", outcome: { ok: false, reason: "cancelled" } });
    conn.ws.close(1000, "done");
  });

  it("cancels a job that was sent but never accepted: the cancel goes out again before every redelivery", { timeout: 20_000 }, async () => {
    const runner = await enrolledRunner();
    const conn = await online(runner);
    const job = await enqueue(runner.handle);
    await conn.next("job:offer");
    const res = await call(`/api/servers/${runner.handle}/jobs/${job.id}/cancel`, { method: "POST", key: adminKey() });
    expect(res.status).toBe(202);
    // It may be running on the runner with its acceptance lost: not cancelled here, but told to the runner.
    expect((await res.json<{ job: JobView }>()).job.state).toBe("delivered");
    await conn.next("job:cancel");
    await passAckLease(runner.handle);
    const order = conn.received.slice(-2).map((m) => m.type);
    expect(order).toEqual(["job:cancel", "job:offer"]);
    await conn.send({ type: "job:result", jobId: job.id, ok: false, reason: "cancelled", message: "cancelled before it started" });
    await conn.next("result:stored");
    expect(await getJob(runner.handle, job.id)).toMatchObject({ state: "cancelled", outcome: { reason: "cancelled" } });
    conn.ws.close(1000, "done");
  });

  it("refuses a job for a task that does not exist (400), before anything is queued", async () => {
    const runner = await enrolledRunner();
    const res = await call(`/api/servers/${runner.handle}/jobs`, { method: "POST", key: adminKey(), json: { type: "noop", taskId: "dep_doesnotexist" } });
    expect(res.status).toBe(400);
    expect((await res.json<{ error: { message: string } }>()).error.message).toBe("No task with id dep_doesnotexist");
    const list = await call(`/api/servers/${runner.handle}/jobs`, { key: adminKey() });
    expect((await list.json<{ jobs: JobView[] }>()).jobs).toEqual([]);
  });

  it("queues a job once per idempotency key, and keeps workflow wake-ups out of the public API", async () => {
    const runner = await enrolledRunner();
    const first = await enqueue(runner.handle, { type: "noop", idempotencyKey: "deploy-42:step-1" });
    const again = await enqueue(runner.handle, { type: "noop", idempotencyKey: "deploy-42:step-1" });
    expect(again.id).toBe(first.id);
    const other = await enqueue(runner.handle, { type: "noop", idempotencyKey: "deploy-42:step-2" });
    expect(other.id).not.toBe(first.id);
    const list = await call(`/api/servers/${runner.handle}/jobs`, { key: adminKey() });
    expect((await list.json<{ jobs: JobView[] }>()).jobs).toHaveLength(2);
    const notify = await call(`/api/servers/${runner.handle}/jobs`, {
      method: "POST",
      key: adminKey(),
      json: { type: "noop", notify: { workflow: "provision-server", instanceId: "x" } },
    });
    expect(notify.status).toBe(400);
  });

  it("ends a job whose signed result it cannot read, acks it, and keeps the runner connected", async () => {
    const runner = await enrolledRunner();
    const conn = await online(runner);
    const job = await enqueue(runner.handle);
    await conn.next("job:offer");
    await conn.send({ type: "job:accepted", jobId: job.id });
    await conn.send({ type: "job:result", jobId: job.id, ok: false, reason: "failed", message: "x".repeat(20_000) });
    await conn.next("result:stored");
    const done = await getJob(runner.handle, job.id);
    expect(done).toMatchObject({ state: "failed", outcome: { reason: "failed" } });
    expect(done.outcome?.message).toContain("could not be read");
    expect(conn.closed()).toBeNull();
    const next = await enqueue(runner.handle);
    expect((await conn.next("job:offer")).job).toMatchObject({ envelope: { id: next.id } });
    conn.ws.close(1000, "done");
  });

  it("cuts off the old runner when the server is enrolled again, and fails the jobs signed for it", async () => {
    const runner = await enrolledRunner();
    const conn = await online(runner);
    await conn.send({ type: "runner:heartbeat", running: [], concurrency: 1 });
    // Busy runner: concurrency 1, so the second job stays queued.
    const first = await enqueue(runner.handle);
    await conn.next("job:offer");
    const second = await enqueue(runner.handle);
    const renew = await call(`/api/servers/${runner.handle}/enrollment`, { method: "POST", key: adminKey(), json: {} });
    expect(renew.status).toBe(201);
    const { enrollment } = await renew.json<{ enrollment: Enrollment }>();
    const { publicKey } = await generateKeySeed();
    expect((await enroll(enrollment.token, publicKey)).status).toBe(201);
    expect(await conn.waitForClose()).toEqual({ code: 4401, reason: "this runner was replaced by a new enrollment" });
    for (const id of [first.id, second.id]) {
      const job = await getJob(runner.handle, id);
      expect(job).toMatchObject({ state: "failed", outcome: { reason: "undelivered" } });
      expect(job.outcome?.message).toContain("re-enrolled");
    }
    expect(conn.received.filter((m) => m.type === "job:offer")).toHaveLength(1);
  });

  it("shows the server offline once the runner disconnects, and queues its unaccepted job again", async () => {
    const runner = await enrolledRunner();
    const conn = await online(runner);
    await until(() => getServer(runner.handle), (s) => s.server.status === "online", "status online");
    const job = await enqueue(runner.handle);
    await conn.next("job:offer");

    conn.ws.close(1000, "shutting down");
    const shown = await until(() => getServer(runner.handle), (s) => s.server.status === "offline", "status offline");
    expect(shown.runner.connected).toBe(false);
    expect(await getJob(runner.handle, job.id)).toMatchObject({ state: "queued", attempts: 1 });
  });

  it("fails a job that no runner took before its deadline with reason undelivered", { timeout: 20_000 }, async () => {
    const runner = await enrolledRunner();
    const job = await enqueue(runner.handle, { type: "noop", ttlSeconds: 5 });
    expect(Date.parse(job.expiresAt) - Date.parse(job.createdAt)).toBeLessThanOrEqual(5000);
    expect((await getJob(runner.handle, job.id)).state).toBe("queued");
    // `?wait=` answers once the job has finished; the hub's alarm at the deadline finishes it.
    let done = await getJob(runner.handle, job.id, 8);
    if (done.state === "queued") {
      // A runtime whose alarms do not fire on their own: run the one due at the deadline.
      await runDurableObjectAlarm(getRunnerHubStub(env, runner.handle));
      done = await getJob(runner.handle, job.id);
    }
    expect(done).toMatchObject({ state: "failed", attempts: 0, outcome: { ok: false, reason: "undelivered" } });
    expect(done.outcome?.message).toMatch(/did not take the job before its deadline/);
    expect(done.outcome?.message).toContain("offline");
    expect(Date.parse(done.finishedAt ?? "")).toBeGreaterThanOrEqual(Date.parse(job.expiresAt));

    // A runner that connects afterwards is not sent the expired job: a new job is its first offer.
    const conn = await online(runner);
    const fresh = await enqueue(runner.handle);
    expect(await verifyJob((await conn.next("job:offer")).job, { publicKey: runner.controlPlaneKey, runnerId: runner.runnerId })).toMatchObject({ ok: true, envelope: { id: fresh.id } });
    expect(conn.received.filter((m) => m.type === "job:offer")).toHaveLength(1);
    conn.ws.close(1000, "done");
  });
});

describe("the hub's task-event outbox", () => {
  it("holds later events behind one waiting out a backoff, without spinning, and delivers them in order when it is due", { timeout: 20_000 }, async () => {
    const runner = await enrolledRunner();
    const { taskId } = await newTask();
    const stub = getRunnerHubStub(env, runner.handle);
    const retryAt = Date.now() + 1500;
    // As after a failed append (Postgres down): the lane waits out its backoff with two events in it.
    await runInDurableObject(stub, (instance, state) => {
      const outbox = Reflect.get(instance, "outbox") as Outbox;
      for (const message of ["first", "second"]) outbox.push(`task:${taskId}`, { jobId: "job_test", event: { type: "log", message } });
      state.storage.sql.exec(`UPDATE outbox_lanes SET attempts = 1, next_at = ? WHERE lane = ?`, retryAt, `task:${taskId}`);
      (instance as unknown as { kick(): void }).kick();
    });
    const alarm = await runInDurableObject(stub, (_instance, state) => state.storage.getAlarm());
    expect(alarm).toBeGreaterThanOrEqual(retryAt - 5);
    const delivered = await until(() => taskEvents(taskId), (events) => events.length === 2, "events after the retry time", 10_000);
    expect(delivered.map((e) => e.message)).toEqual(["first", "second"]);
    // Held until the retry time: each was stored (its `at`) no earlier.
    for (const event of delivered) expect(Date.parse(event.at)).toBeGreaterThanOrEqual(retryAt - 5);
    const left = await runInDurableObject(stub, (_instance, state) => state.storage.sql.exec(`SELECT COUNT(*) AS n FROM outbox_items`).one().n);
    expect(left).toBe(0);
  });
});

