import { env } from "cloudflare:workers";
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { TaskStream } from "../../src/durable/task-stream.ts";
import { getTaskStream, getTaskStreamStub } from "../../src/tasks/stream-client.ts";
import { WATCHER_ACK_WINDOW, type TaskEvent } from "../../src/shared/events.ts";
import { adminKey, call, createUserWithKey } from "./helpers.ts";
import { append, appendOk, newTask, openWatcher } from "./stream-helpers.ts";

type ErrorJson = { error: { code: string; message: string } };
const seqs = (events: TaskEvent[]) => events.map((e) => e.seq);
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe("TaskStream: appending", () => {
  it("assigns seq 1, 2, 3… and keeps the history in order", async () => {
    const { taskId, userKey } = await newTask();
    const first = await appendOk(taskId, { type: "task.started", message: "Engineering task started" });
    expect(first).toMatchObject({ seq: 1, taskId, type: "task.started" });
    expect(first.at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    await appendOk(taskId, { type: "step.started", step: "Architect", message: "analyzing requirements..." });
    await appendOk(taskId, { type: "log", step: "Architect", message: "spec written", traceId: "t-1" });
    const res = await call(`/api/tasks/${taskId}/events`, { key: userKey });
    const body = await res.json<{ events: TaskEvent[]; lastSeq: number; closed: boolean }>();
    expect(seqs(body.events)).toEqual([1, 2, 3]);
    expect(body).toMatchObject({ lastSeq: 3, closed: false });
    const paged = await call(`/api/tasks/${taskId}/events?after=1&limit=1`, { key: userKey });
    expect(seqs((await paged.json<{ events: TaskEvent[] }>()).events)).toEqual([2]);
    // The task row follows the stream.
    const shown = await call(`/api/tasks/${taskId}`, { key: userKey });
    expect((await shown.json<{ task: { status: string }; stream: { lastSeq: number } }>()).task.status).toBe("running");
  });

  it("rejects a malformed event with the zod issue and stores nothing", async () => {
    const { taskId } = await newTask();
    for (const bad of [
      { type: "task.exploded", message: "x" },
      { type: "log" },
      { type: "log", message: "x", seq: 7 },
      { type: "log", message: "x", at: "yesterday" },
    ]) {
      const res = await append(taskId, bad);
      expect(res.status, JSON.stringify(bad)).toBe(400);
      const body = await res.json<ErrorJson>();
      expect(body.error.code).toBe("invalid_request");
      expect(body.error.message.length).toBeGreaterThan(5);
    }
    expect((await getTaskStream(env, taskId).info()).lastSeq).toBe(0);
    expect((await appendOk(taskId, { type: "log", message: "fine" })).seq).toBe(1);
  });

  it("serialises Dates in data to ISO strings and refuses what JSON cannot carry", async () => {
    const { taskId } = await newTask();
    const stream = getTaskStream(env, taskId);
    const when = new Date("2026-11-24T10:00:00.000Z");
    const ok = await stream.append(taskId, { type: "log", message: "dated", data: { when, nested: [{ at: when }] } });
    expect(ok).toMatchObject({ ok: true, event: { data: { when: "2026-11-24T10:00:00.000Z", nested: [{ at: "2026-11-24T10:00:00.000Z" }] } } });
    const refusals = [
      [{ size: 10n }, "data.size is a bigint"],
      [{ m: new Map([["a", 1]]) }, "data.m is a Map instance"],
      [{ ratio: Number.NaN }, "data.ratio is NaN"],
    ] as const;
    for (const [data, reason] of refusals) {
      const refused = await stream.append(taskId, { type: "log", message: "x", data });
      expect(refused.ok).toBe(false);
      expect("message" in refused ? refused.message : "").toContain(reason);
    }
    expect((await stream.info()).lastSeq).toBe(1);
  });

  it("keeps seq strictly increasing after the object is evicted", async () => {
    const { taskId } = await newTask();
    await appendOk(taskId, { type: "log", message: "one" });
    await appendOk(taskId, { type: "log", message: "two" });
    await evictDurableObject(getTaskStreamStub(env, taskId));
    expect((await appendOk(taskId, { type: "log", message: "three" })).seq).toBe(3);
  });

  it("closes on a terminal event: the task row is updated and later appends get 409", async () => {
    const { taskId, userKey } = await newTask();
    await appendOk(taskId, { type: "task.started", message: "go" });
    await appendOk(taskId, { type: "task.completed", message: "done", data: { url: "https://weather.example.test" } });
    const shown = await call(`/api/tasks/${taskId}`, { key: userKey });
    const body = await shown.json<{ task: { status: string; result: unknown; finishedAt: string | null }; stream: { closed: boolean } }>();
    expect(body.task).toMatchObject({ status: "completed", result: { url: "https://weather.example.test" } });
    expect(body.task.finishedAt).toBeTruthy();
    expect(body.stream.closed).toBe(true);
    const late = await append(taskId, { type: "log", message: "too late" });
    expect(late.status).toBe(409);
    expect((await late.json<ErrorJson>()).error.code).toBe("conflict");
  });

  it("records a failure's reason on the task", async () => {
    const { taskId, userKey } = await newTask("deploy");
    await appendOk(taskId, { type: "task.failed", message: "health check failed after 3 tries" });
    const body = await (await call(`/api/tasks/${taskId}`, { key: userKey })).json<{ task: { status: string; error: string } }>();
    expect(body.task).toMatchObject({ status: "failed", error: "health check failed after 3 tries" });
  });

  it("deletes the history when retention ends, and a finished task still takes no events", async () => {
    const { taskId } = await newTask();
    await appendOk(taskId, { type: "task.cancelled", message: "stopped by the user" });
    const stream = getTaskStreamStub(env, taskId);
    expect(await runDurableObjectAlarm(stream)).toBe(true);
    expect(await stream.info()).toMatchObject({ lastSeq: 0, closed: true });
    await evictDurableObject(stream);
    expect((await append(taskId, { type: "log", message: "ghost" })).status).toBe(409);
  });

  it("stores nothing when Postgres is unreachable for a status change, and takes the retry", async () => {
    const { taskId, userKey } = await newTask();
    const stream = getTaskStream(env, taskId);
    const result = await runInDurableObject(getTaskStreamStub(env, taskId), async (instance: TaskStream) => {
      // The same object and storage; only its database address points where nothing listens.
      const real = Reflect.get(instance, "env") as Env;
      Reflect.set(instance, "env", { ...real, DB_WS_PROXY: "127.0.0.1:1" });
      try {
        return await instance.append(taskId, { type: "task.completed", message: "done" });
      } finally {
        Reflect.set(instance, "env", real);
      }
    });
    expect(result).toMatchObject({ ok: false, code: "db_unavailable" });
    expect(await stream.info()).toMatchObject({ lastSeq: 0, closed: false });
    const retried = await appendOk(taskId, { type: "task.completed", message: "done" });
    expect(retried.seq).toBe(1);
    const body = await (await call(`/api/tasks/${taskId}`, { key: userKey })).json<{ task: { status: string } }>();
    expect(body.task.status).toBe("completed");
  });
});

describe("TaskStream: watching over WebSocket", () => {
  it("delivers live events in order, exactly once, to every watcher", async () => {
    const { taskId, userKey } = await newTask();
    const a = await openWatcher(taskId, { key: userKey });
    const b = await openWatcher(taskId);
    for (let i = 1; i <= 20; i++) await appendOk(taskId, { type: "log", message: `line ${i}` });
    expect(seqs(await a.waitForEvents(20))).toEqual(range(1, 20));
    expect(seqs(await b.waitForEvents(20))).toEqual(range(1, 20));
    a.ws.close();
    b.ws.close();
  });

  it("replays history after `after` and continues live with no gap and no duplicate", async () => {
    const { taskId } = await newTask();
    for (let i = 1; i <= 5; i++) await appendOk(taskId, { type: "log", message: `before ${i}` });
    const first = await openWatcher(taskId);
    await first.waitForEvents(5);
    first.ws.close(); // a dropped connection
    for (let i = 6; i <= 8; i++) await appendOk(taskId, { type: "log", message: `while away ${i}` });
    const resumed = await openWatcher(taskId, { after: 5 });
    await appendOk(taskId, { type: "log", message: "after resume" });
    expect(seqs(await resumed.waitForEvents(4))).toEqual([6, 7, 8, 9]);
    // A last event as a barrier: one socket's frames come in order, so a repeat would come before it.
    await appendOk(taskId, { type: "log", message: "barrier" });
    expect(seqs(await resumed.waitForEvents(5))).toEqual([6, 7, 8, 9, 10]);
  });

  it("replays a history longer than the ack window page by page", async () => {
    const { taskId } = await newTask();
    const total = WATCHER_ACK_WINDOW * 2 + 10;
    const stream = getTaskStream(env, taskId);
    for (let i = 1; i <= total; i++) await stream.append(taskId, { type: "log", message: `n${i}` });
    const watcher = await openWatcher(taskId);
    expect(seqs(await watcher.waitForEvents(total, 15_000))).toEqual(range(1, total));
  }, 30_000);

  it("keeps watchers across eviction (hibernation) and resumes numbering", async () => {
    const { taskId } = await newTask();
    const watcher = await openWatcher(taskId);
    await appendOk(taskId, { type: "log", message: "before eviction" });
    await watcher.waitForEvents(1);
    await evictDurableObject(getTaskStreamStub(env, taskId), { webSockets: "hibernate" });
    await appendOk(taskId, { type: "log", message: "after eviction" });
    expect(seqs(await watcher.waitForEvents(2))).toEqual([1, 2]);
    expect(watcher.closed()).toBeNull();
  });

  it("drops a watcher that stops acknowledging, without slowing the others", async () => {
    const { taskId } = await newTask();
    const stuck = await openWatcher(taskId, { ack: false });
    const healthy = await openWatcher(taskId);
    const total = WATCHER_ACK_WINDOW + 20;
    for (let i = 1; i <= total; i++) await appendOk(taskId, { type: "log", message: `e${i}` });
    const closed = await stuck.waitForClose();
    expect(closed.code).toBe(4008);
    expect(closed.reason).toMatch(/after=0/);
    expect(stuck.events.length).toBeLessThanOrEqual(WATCHER_ACK_WINDOW);
    expect(seqs(await healthy.waitForEvents(total))).toEqual(range(1, total));
    expect((await getTaskStream(env, taskId).info()).watchers).toBe(1);
  }, 30_000);

  it("closes watchers after the terminal event, and a late watcher gets the history then the end", async () => {
    const { taskId } = await newTask();
    const live = await openWatcher(taskId);
    await appendOk(taskId, { type: "task.started", message: "go" });
    await appendOk(taskId, { type: "task.completed", message: "done" });
    expect((await live.waitForClose()).code).toBe(1000);
    expect(seqs(live.events)).toEqual([1, 2]);
    const late = await openWatcher(taskId);
    expect((await late.waitForClose()).code).toBe(1000);
    expect(seqs(late.events)).toEqual([1, 2]);
  });

  it("answers a malformed client message with stream:error and keeps the watcher", async () => {
    const { taskId } = await newTask();
    const watcher = await openWatcher(taskId);
    const errors: unknown[] = [];
    watcher.ws.addEventListener("message", (message) => {
      const frame = JSON.parse(String(message.data)) as { type: string };
      if (frame.type === "stream:error") errors.push(frame);
    });
    watcher.ws.send("not json");
    watcher.ws.send(JSON.stringify({ type: "event:ack", seq: -1 }));
    await appendOk(taskId, { type: "log", message: "still here" });
    await watcher.waitForEvents(1);
    // A third bad frame as a barrier: the stream answers one socket's frames in order, so its error
    // comes after any the first two caused.
    watcher.ws.send("[]");
    const deadline = Date.now() + 5_000;
    while (errors.length < 3 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(errors).toEqual(Array.from({ length: 3 }, () => ({ type: "stream:error", code: "invalid_message", message: 'Send {"type":"event:ack","seq":N}' })));
    expect(watcher.closed()).toBeNull();
  });

  it("answers a plain GET on the ws endpoint with 400", async () => {
    const { taskId } = await newTask();
    const res = await call(`/api/tasks/${taskId}/ws`, { key: adminKey() });
    expect(res.status).toBe(400);
  });
});

describe("tasks API: ownership", () => {
  it("hides another user's task everywhere with 404", async () => {
    const { taskId } = await newTask();
    const stranger = await createUserWithKey("stranger");
    for (const path of [`/api/tasks/${taskId}`, `/api/tasks/${taskId}/events`, `/api/tasks/${taskId}/view-link`]) {
      const res = await call(path, { key: stranger.key });
      expect(res.status, path).toBe(404);
    }
    const ws = await call(`/api/tasks/${taskId}/ws`, { key: stranger.key, headers: { upgrade: "websocket" } });
    expect(ws.status).toBe(404);
    expect((await (await call("/api/tasks", { key: stranger.key })).json<{ tasks: unknown[] }>()).tasks).toEqual([]);
  });

  it("lists a user's tasks, filters them, and answers 404 for unknown tasks", async () => {
    const { taskId, userKey } = await newTask("deploy");
    const list = await (await call("/api/tasks?type=deploy", { key: userKey })).json<{ tasks: { id: string }[] }>();
    expect(list.tasks.map((t) => t.id)).toEqual([taskId]);
    expect((await (await call("/api/tasks?type=engineering", { key: userKey })).json<{ tasks: unknown[] }>()).tasks).toEqual([]);
    expect((await call("/api/tasks/eng_nope", { key: userKey })).status).toBe(404);
    expect((await call("/api/tasks?status=bogus", { key: userKey })).status).toBe(400);
  });

  it("keeps task creation and event appends for admins", async () => {
    const { taskId, userKey } = await newTask();
    expect((await call("/api/tasks", { method: "POST", key: userKey, json: { type: "deploy" } })).status).toBe(403);
    expect((await call(`/api/tasks/${taskId}/events`, { method: "POST", key: userKey, json: { type: "log", message: "x" } })).status).toBe(403);
    expect((await call("/api/tasks/eng_nope/events", { method: "POST", key: adminKey(), json: { type: "log", message: "x" } })).status).toBe(404);
  });

  it("creates a task for a project's owner", async () => {
    const { key, userId } = await createUserWithKey();
    const project = await (await call("/api/projects", { method: "POST", key, json: { name: `p-${crypto.randomUUID().slice(0, 8)}` } })).json<{ project: { id: string } }>();
    const res = await call("/api/tasks", { method: "POST", key: adminKey(), json: { type: "engineering", projectId: project.project.id } });
    expect(res.status).toBe(201);
    const { task } = await res.json<{ task: { id: string; ownerId: string; projectId: string } }>();
    expect(task).toMatchObject({ ownerId: userId, projectId: project.project.id });
    expect(task.id).toMatch(/^eng_/);
    const unknown = await call("/api/tasks", { method: "POST", key: adminKey(), json: { type: "engineering", projectId: "prj_none" } });
    expect(unknown.status).toBe(400);
  });
});
