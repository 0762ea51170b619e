/**
 * The RunnerHub with a scripted runner on the real protocol, for what must hold once real pipelines
 * run through it: no event or result is lost to its size or to a slow destination, a finished job
 * stays finished, secrets wait sealed, the inbox never waits on slow work, a workflow whose wake-up
 * was lost still learns the job's outcome, and a store from the first hub schema is upgraded.
 */
import { env } from "cloudflare:workers";
import { evictDurableObject, introspectWorkflow, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { getRunnerHubStub } from "../../src/runner-hub/client.ts";
import { getTaskStream, getTaskStreamStub } from "../../src/tasks/stream-client.ts";
import type { JobView } from "../../src/shared/api.ts";
import type { TaskEvent } from "../../src/shared/events.ts";
import { verifyJob } from "../../src/shared/jobs.ts";
import type { SignedJob } from "../../src/shared/jobs.ts";
import { adminKey, call } from "./helpers.ts";
import { enqueue, enrolledRunner, getJob, getServer, online, type Runner, taskEvents, until } from "./runner-helpers.ts";
import { newTask } from "./stream-helpers.ts";

const jobIdOf = (message: { job: unknown }) => (message.job as SignedJob).envelope.id;

/** Every value in a hub's SQLite storage, as one string to search. */
async function hubStorageText(handle: string): Promise<string> {
  return runInDurableObject(getRunnerHubStub(env, handle), (_instance, state) => {
    const tables = state.storage.sql.exec<{ name: string }>(`SELECT name FROM sqlite_master WHERE type = 'table' AND substr(name, 1, 4) != '_cf_'`).toArray();
    return tables.map(({ name }) => JSON.stringify(state.storage.sql.exec(`SELECT * FROM "${name}"`).toArray())).join("\n");
  });
}

/** A task stream whose database address points where nothing listens: its status writes fail until restored. */
async function breakStream(taskId: string): Promise<() => Promise<void>> {
  const stub = getTaskStreamStub(env, taskId);
  await runInDurableObject(stub, (instance) => {
    const real = Reflect.get(instance, "env") as Env;
    Reflect.set(instance, "env", { ...real, DB_WS_PROXY: "127.0.0.1:1" });
  });
  return () =>
    runInDurableObject(stub, (instance) => {
      Reflect.set(instance, "env", env);
    });
}

async function startJob(runner: Runner, conn: Awaited<ReturnType<typeof online>>, job: Record<string, unknown>): Promise<string> {
  await enqueue(runner.handle, job);
  const id = jobIdOf(await conn.next("job:offer"));
  await conn.send({ type: "job:accepted", jobId: id });
  return id;
}

describe("RunnerHub: nothing is lost", () => {
  it("ends the task with its terminal event when the job's outcome is 200 KB, and keeps the whole outcome on the job", async () => {
    const runner = await enrolledRunner();
    const conn = await online(runner);
    const { taskId } = await newTask("deploy");
    const id = await startJob(runner, conn, { type: "noop", taskId, finishTask: true });
    const domains = Array.from({ length: 8500 }, (_, i) => `site-${i}.example.test`);
    await conn.send({ type: "job:result", jobId: id, ok: true, message: "caddy serves 8500 routes", data: { routes: 8500, domains } });
    expect(JSON.stringify(domains).length).toBeGreaterThan(200_000);

    const events = await until(() => taskEvents(taskId), (list) => list.some((e) => e.type === "task.completed"), "the terminal event", 10_000);
    const done = events.find((e) => e.type === "task.completed");
    expect(done?.data).toMatchObject({ jobId: id, routes: 8500 });
    expect(String(done?.data?.truncated)).toContain(`the whole of it is on job ${id}`);
    expect((await getJob(runner.handle, id)).outcome?.data?.domains).toHaveLength(8500);
    const task = await (await call(`/api/tasks/${taskId}`, { key: adminKey() })).json<{ task: { status: string } }>();
    expect(task.task.status).toBe("completed");
  });

  it("delivers another task's events at once while one task's stream keeps failing, then the failed ones in order", { timeout: 30_000 }, async () => {
    const runner = await enrolledRunner();
    const conn = await online(runner, { concurrency: 2 });
    const broken = await newTask();
    const fine = await newTask();
    const restore = await breakStream(broken.taskId);
    const a = await startJob(runner, conn, { type: "noop", taskId: broken.taskId, finishTask: true });
    const b = await startJob(runner, conn, { type: "noop", taskId: fine.taskId, finishTask: true });
    await conn.send({ type: "job:log", jobId: a, lines: [{ stream: "stdout", line: "a1" }] });
    await conn.send({ type: "job:result", jobId: a, ok: true, message: "a done" });
    // a's lane has failed at least once and is backing off.
    const lane = `task:${broken.taskId}`;
    const attempts = () => runInDurableObject(getRunnerHubStub(env, runner.handle), (_instance, state) => state.storage.sql.exec<{ attempts: number }>(`SELECT attempts FROM outbox_lanes WHERE lane = ?`, lane).toArray()[0]?.attempts ?? 0);
    await until(attempts, (count) => count >= 1, "a's lane to fail once");
    const sentAt = Date.now();
    await conn.send({ type: "job:log", jobId: b, lines: [{ stream: "stdout", line: "b1" }] });
    await conn.send({ type: "job:result", jobId: b, ok: true, message: "b done" });
    const fineEvents = await until(() => taskEvents(fine.taskId), (list) => list.some((e) => e.type === "task.completed"), "the healthy task's end", 5_000);
    const latency = Date.now() - sentAt;
    console.log(`healthy task's events delivered ${latency} ms after the runner sent them, while the other task's lane was failing`);
    expect(latency).toBeLessThan(1500);
    expect(fineEvents.map((e) => e.type)).toEqual(["step.started", "log", "step.completed", "task.completed"]);
    expect(await taskEvents(broken.taskId)).toEqual([]);
    const status = (await getServer(runner.handle)).runner;
    expect(status.outbox.pending).toBeGreaterThan(0);

    await restore();
    const recovered = await until(() => taskEvents(broken.taskId), (list) => list.some((e) => e.type === "task.completed"), "the failed lane's retry", 15_000);
    expect(recovered.map((e) => `${e.type}:${e.message}`)).toEqual([`step.started:noop job ${a} started on ${runner.handle}`, "log:a1", "step.completed:noop succeeded: a done", "task.completed:a done"]);
  });

  it("handles a heartbeat at once behind a 50,000-line log backlog, with a ?wait= caller waiting", { timeout: 60_000 }, async () => {
    const runner = await enrolledRunner();
    const conn = await online(runner, { concurrency: 2 });
    const noisy = await newTask();
    const other = await newTask();
    const a = await startJob(runner, conn, { type: "noop", taskId: noisy.taskId });
    const b = await startJob(runner, conn, { type: "noop", taskId: other.taskId });
    const waiting = getJob(runner.handle, b, 30);
    for (let batch = 0; batch < 100; batch++) {
      await conn.send({ type: "job:log", jobId: a, lines: Array.from({ length: 500 }, (_, i) => ({ stream: "stdout" as const, line: `line ${batch * 500 + i + 1}` })) });
    }
    await conn.send({ type: "job:result", jobId: b, ok: true, message: "b done" });
    const before = (await getServer(runner.handle)).runner.lastHeartbeatAt;
    const sentAt = Date.now();
    await conn.send({ type: "runner:heartbeat", running: [a], concurrency: 2 });
    await until(async () => (await getServer(runner.handle)).runner.lastHeartbeatAt, (seen) => seen !== before, "the heartbeat to be handled", 5_000);
    const latency = Date.now() - sentAt;
    console.log(`heartbeat handled ${latency} ms after it was sent, behind 50,000 log lines`);
    expect(latency).toBeLessThan(2000);
    expect((await waiting).state).toBe("succeeded");
    expect((await getJob(runner.handle, a)).state).toBe("running");
    // Every line arrives, in order.
    const stream = getTaskStream(env, noisy.taskId);
    await until(() => stream.info(), (info) => info.lastSeq >= 50_001, "all 50,000 lines in the stream", 45_000);
    const last: TaskEvent[] = (await stream.read({ after: 49_990, limit: 100 })).events;
    expect(last.map((e) => e.message).at(-1)).toBe("line 50000");
  });
});

describe("RunnerHub: a finished job stays finished", () => {
  it("keeps a job failed as undelivered when its acceptance comes late: no second step, a cancel to the runner, the report kept aside", { timeout: 30_000 }, async () => {
    const runner = await enrolledRunner();
    const { taskId } = await newTask();
    const job = await enqueue(runner.handle, { type: "noop", taskId, ttlSeconds: 5 });
    const failed = await until(() => getJob(runner.handle, job.id), (j) => j.state === "failed", "the deadline", 15_000);
    expect(failed.outcome?.reason).toBe("undelivered");

    const conn = await online(runner);
    await conn.send({ type: "job:accepted", jobId: job.id });
    const cancel = await conn.next("job:cancel");
    expect(cancel.cancel.jobId).toBe(job.id);
    await conn.send({ type: "job:result", jobId: job.id, ok: true, message: "ran after all" });
    await conn.next("result:stored");
    const after = await getJob(runner.handle, job.id);
    expect(after).toMatchObject({ state: "failed", outcome: { reason: "undelivered" }, lateOutcome: { ok: true, message: "ran after all" } });
    // Another job of the task as a barrier: the task's events go out in order, so anything the late
    // report caused would come before this job's end.
    const barrier = await startJob(runner, conn, { type: "noop", taskId });
    await conn.send({ type: "job:result", jobId: barrier, ok: true, message: "barrier" });
    const events = await until(() => taskEvents(taskId), (list) => list.some((e) => e.type === "step.completed" && e.data?.jobId === barrier), "the barrier job's end");
    expect(events.filter((e) => e.data?.jobId === job.id).map((e) => e.type)).toEqual(["step.completed"]);
    expect(events.map((e) => e.type)).toEqual(["step.completed", "step.started", "step.completed"]);
  });
});

describe("RunnerHub: secrets", () => {
  it("keeps a job's secrets sealed until the runner has the job, then forgets them", async () => {
    const runner = await enrolledRunner();
    const secret = `s3cret-${crypto.randomUUID()}`;
    const job = await enqueue(runner.handle, { type: "docker.run", payload: { image: "app:1", secretEnv: { API_TOKEN: secret } } });
    expect(job.payload.secretEnv).toEqual({ API_TOKEN: "[redacted]" });
    expect(await hubStorageText(runner.handle)).not.toContain(secret);

    const conn = await online(runner);
    const sent = (await conn.next("job:offer")).job as SignedJob;
    // The runner gets the real value, under a signature that still verifies.
    expect((sent.envelope.payload.secretEnv as Record<string, string>).API_TOKEN).toBe(secret);
    expect((await verifyJob(sent, { publicKey: runner.controlPlaneKey, runnerId: runner.runnerId })).ok).toBe(true);
    const sealed = () => runInDurableObject(getRunnerHubStub(env, runner.handle), (_i, state) => state.storage.sql.exec<{ s: string | null }>(`SELECT sealed_envelope AS s FROM jobs WHERE id = ?`, job.id).one().s);
    expect(await sealed()).toMatch(/^v1\./);
    await conn.send({ type: "job:accepted", jobId: job.id });
    await until(() => getJob(runner.handle, job.id), (j) => j.state === "running", "running");
    expect(await sealed()).toBeNull();
  });
});

describe("RunnerHub: release ports", () => {
  it("refuses a caddy.sync route outside the ports its runner allots, naming it", async () => {
    const runner = await enrolledRunner();
    await online(runner, { releasePorts: { from: 20_000, to: 20_010 } });
    const status = (await getServer(runner.handle)).runner;
    expect(status).toMatchObject({ runnerVersion: "test", releasePorts: { from: 20_000, to: 20_010 } });
    const res = await call(`/api/servers/${runner.handle}/jobs`, {
      method: "POST",
      key: adminKey(),
      json: { type: "caddy.sync", payload: { routes: [{ domain: "ok.example.test", upstreamPort: 20_005 }, { domain: "ssh.example.test", upstreamPort: 22 }] } },
    });
    expect(res.status).toBe(400);
    expect((await res.json<{ error: { message: string } }>()).error.message).toContain("ssh.example.test → 22");
  });
});

describe("RunnerHub: workflows", () => {
  it("finishes a provisioning whose wake-ups were lost, by reading the jobs back", { timeout: 60_000 }, async () => {
    const runner = await enrolledRunner();
    const conn = await online(runner);
    // Every wake-up the hub sends goes nowhere, as if the workflow never got it.
    await runInDurableObject(getRunnerHubStub(env, runner.handle), (instance) => {
      const deliver = (Reflect.get(instance, "deliver") as (lane: string, items: unknown[]) => Promise<void>).bind(instance);
      Reflect.set(instance, "deliver", (lane: string, items: unknown[]) => (lane.startsWith("workflow:") ? Promise.resolve() : deliver(lane, items)));
    });
    const workflows = await introspectWorkflow(env.PROVISION_SERVER);
    try {
      const res = await call(`/api/servers/${runner.handle}/provision`, { method: "POST", key: adminKey(), json: { check: true } });
      expect(res.status).toBe(202);
      const { task } = await res.json<{ task: { id: string } }>();

      const provision = await conn.next("job:offer", 15_000);
      await conn.send({ type: "job:accepted", jobId: jobIdOf(provision) });
      await conn.send({ type: "job:result", jobId: jobIdOf(provision), ok: true, message: "playbook provision.yml (check mode): ok=20 changed=3 failed=0" });
      const facts = await conn.next("job:offer", 15_000);
      await conn.send({ type: "job:accepted", jobId: jobIdOf(facts) });
      await conn.send({ type: "job:result", jobId: jobIdOf(facts), ok: true, message: "playbook facts.yml: ok=5", data: { customStats: { os: "Debian 12" } } });

      const events = await until(() => taskEvents(task.id), (list) => list.some((e) => ["task.completed", "task.failed"].includes(e.type)), "the provisioning to end", 45_000);
      const end = events.at(-1);
      expect(end).toMatchObject({ type: "task.completed", data: { facts: { os: "Debian 12" } } });
      expect(end?.message).toContain("checked: playbook provision.yml (check mode)");
      expect(await workflows.get()).toHaveLength(1);
    } finally {
      await workflows.dispose();
    }
  });
});

describe("RunnerHub: schema migrations", () => {
  const FIRST_SCHEMA = [
    `CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`,
    `CREATE TABLE IF NOT EXISTS jobs (
      id TEXT PRIMARY KEY, type TEXT NOT NULL, task_id TEXT, finish_task INTEGER NOT NULL DEFAULT 0,
      envelope TEXT NOT NULL, signature TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
      lease_until INTEGER, expires_at INTEGER NOT NULL, timeout_seconds INTEGER NOT NULL,
      created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, started_at INTEGER, finished_at INTEGER, outcome TEXT,
      cancel_requested INTEGER NOT NULL DEFAULT 0)`,
    `CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, created_at)`,
  ];

  /** Replaces a hub's store by one made with the first schema (commit 610affe), holding `job` queued. */
  async function firstSchemaStore(runner: Runner, extra: (sql: SqlStorage) => void = () => undefined): Promise<JobView> {
    const job = await enqueue(runner.handle, { type: "noop", payload: { echo: "from the old store" } });
    const stub = getRunnerHubStub(env, runner.handle);
    await runInDurableObject(stub, (_instance, state) => {
      const sql = state.storage.sql;
      const [row] = sql.exec(`SELECT * FROM jobs WHERE id = ?`, job.id).toArray();
      const identity = sql.exec<{ value: string }>(`SELECT value FROM meta WHERE key = 'identity'`).one().value;
      for (const { name } of sql.exec<{ name: string }>(`SELECT name FROM sqlite_master WHERE type = 'table' AND substr(name, 1, 7) != 'sqlite_' AND substr(name, 1, 4) != '_cf_'`).toArray()) sql.exec(`DROP TABLE "${name}"`);
      for (const statement of FIRST_SCHEMA) sql.exec(statement);
      sql.exec(`INSERT INTO meta (key, value) VALUES ('identity', ?)`, identity);
      if (!row) throw new Error("no job row");
      sql.exec(
        `INSERT INTO jobs (id, type, task_id, finish_task, envelope, signature, state, attempts, expires_at, timeout_seconds, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, 'queued', 0, ?, ?, ?, ?)`,
        row.id, row.type, row.task_id, row.finish_task, row.envelope, row.signature, row.expires_at, row.timeout_seconds, row.created_at, row.updated_at,
      );
      extra(sql);
    });
    await evictDurableObject(stub);
    return job;
  }

  it("upgrades a store made by the first hub schema in place, and its queued job still runs", async () => {
    const runner = await enrolledRunner();
    const job = await firstSchemaStore(runner);
    expect((await getJob(runner.handle, job.id)).state).toBe("queued");
    const conn = await online(runner);
    expect(jobIdOf(await conn.next("job:offer"))).toBe(job.id);
    await conn.send({ type: "job:accepted", jobId: job.id });
    await conn.send({ type: "job:result", jobId: job.id, ok: true, message: "noop", data: { echo: "from the old store" } });
    expect((await getJob(runner.handle, job.id, 5)).state).toBe("succeeded");
    const version = await runInDurableObject(getRunnerHubStub(env, runner.handle), (_i, state) => state.storage.sql.exec<{ version: number }>(`SELECT version FROM schema_version`).one().version);
    expect(version).toBe(3);
  });

  it("moves the events waiting in an unversioned store's single queue into lanes, and delivers them", async () => {
    const runner = await enrolledRunner();
    const { taskId } = await newTask();
    await firstSchemaStore(runner, (sql) => {
      // As the last unversioned hub left it: its columns and its task_outbox, with an event not yet appended.
      for (const column of ["cancel_message TEXT", "notify TEXT", "idem_key TEXT"]) sql.exec(`ALTER TABLE jobs ADD COLUMN ${column}`);
      sql.exec(`CREATE TABLE task_outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL DEFAULT 'task', task_id TEXT NOT NULL, job_id TEXT NOT NULL, event TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL DEFAULT 0)`);
      sql.exec(`INSERT INTO task_outbox (task_id, job_id, event) VALUES (?, 'job_old', ?)`, taskId, JSON.stringify({ type: "log", message: "left in the old queue" }));
    });
    await online(runner); // any call wakes the hub; its alarm and drains deliver what it holds
    await runInDurableObject(getRunnerHubStub(env, runner.handle), (instance) => (instance as unknown as { kick(): void }).kick());
    const events = await until(() => taskEvents(taskId), (list) => list.length > 0, "the old queue's event");
    expect(events.map((e) => e.message)).toEqual(["left in the old queue"]);
  });
});
