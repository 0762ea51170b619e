/**
 * What producers (the runner hub, workflows, the API) can rely on from a TaskStream: a retried event
 * is stored once, batches keep their order, concurrent appends leave the task's row matching the
 * stream, a terminal event is never refused for its size, and a store made by the first schema is
 * upgraded in place.
 */
import { env } from "cloudflare:workers";
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { createDb } from "../../src/db/client.ts";
import { tasks } from "../../src/db/schema.ts";
import { getTaskStream, getTaskStreamStub } from "../../src/tasks/stream-client.ts";
import { MAX_EVENT_DATA_CHARS, MAX_EVENT_MESSAGE_CHARS } from "../../src/shared/limits.ts";
import type { TaskEvent } from "../../src/shared/events.ts";
import { adminKey, call } from "./helpers.ts";
import { append, appendOk, newTask } from "./stream-helpers.ts";

async function taskRow(taskId: string) {
  const handle = createDb({ databaseUrl: env.DATABASE_URL, wsProxy: env.DB_WS_PROXY });
  try {
    const [row] = await handle.db.select().from(tasks).where(eq(tasks.id, taskId));
    return row;
  } finally {
    await handle.close();
  }
}

async function history(taskId: string): Promise<TaskEvent[]> {
  return (await getTaskStream(env, taskId).read({ limit: 1000 })).events;
}

describe("TaskStream: producer event ids", () => {
  it("stores a retried event once and answers the repeat with the stored event, terminal ones included", async () => {
    const { taskId } = await newTask();
    const first = await appendOk(taskId, { type: "task.started", message: "go", eventId: "wf-1:announce" });
    const again = await append(taskId, { type: "task.started", message: "go", eventId: "wf-1:announce" });
    expect(again.status).toBe(200);
    const repeat = await again.json<{ event: TaskEvent; duplicate: boolean }>();
    expect(repeat).toEqual({ event: first, duplicate: true });

    const done = await appendOk(taskId, { type: "task.completed", message: "done", eventId: "wf-1:report" });
    // The workflow step that sent it is retried after the stream closed: the same event, not a 409.
    const retried = await append(taskId, { type: "task.completed", message: "done", eventId: "wf-1:report" });
    expect(retried.status).toBe(200);
    expect((await retried.json<{ event: TaskEvent }>()).event).toEqual(done);
    // A new event after the end is still refused.
    expect((await append(taskId, { type: "log", message: "late", eventId: "wf-1:late" })).status).toBe(409);
    expect((await history(taskId)).map((e) => [e.seq, e.eventId])).toEqual([
      [1, "wf-1:announce"],
      [2, "wf-1:report"],
    ]);
  });

  it("appends a batch in order with one call, skipping repeats, and reports what it could not store", async () => {
    const { taskId } = await newTask();
    const stream = getTaskStream(env, taskId);
    const batch = Array.from({ length: 300 }, (_, i) => ({ type: "log", message: `line ${i + 1}`, eventId: `job:x:${i + 1}` }));
    const stored = await stream.appendMany(taskId, batch);
    expect(stored.ok && stored.events.map((e) => e.seq)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
    // Redelivered after a reset, with one more event, an invalid one and a terminal one in the middle.
    const replay = await stream.appendMany(taskId, [
      ...batch.slice(298),
      { type: "log", message: "line 301", eventId: "job:x:301" },
      { type: "log" },
      { type: "task.completed", message: "done", eventId: "job:x:done" },
      { type: "log", message: "after the end", eventId: "job:x:302" },
    ]);
    if (!replay.ok) throw new Error(replay.message);
    expect(replay.events.map((e) => e.seq)).toEqual([299, 300, 301, 302]);
    expect(replay.rejected.map((r) => [r.index, r.code])).toEqual([
      [3, "invalid_request"],
      [5, "conflict"],
    ]);
    expect((await stream.info()).lastSeq).toBe(302);
    expect((await taskRow(taskId))?.status).toBe("completed");
  });
});

describe("TaskStream: the task's row", () => {
  it("matches the stream when a slow status write races a later terminal event", async () => {
    const { taskId } = await newTask();
    const stub = getTaskStreamStub(env, taskId);
    // The first status write is slow (a cold connection, a busy database): it must not land after the terminal one.
    await runInDurableObject(stub, (instance) => {
      const write = (Reflect.get(instance, "updateTaskRow") as (...args: unknown[]) => Promise<boolean>).bind(instance);
      let calls = 0;
      Reflect.set(instance, "updateTaskRow", async (...args: unknown[]) => {
        if (++calls === 1) await new Promise((resolve) => setTimeout(resolve, 400));
        return write(...args);
      });
    });
    const stream = getTaskStream(env, taskId);
    const started = stream.append(taskId, { type: "task.started", message: "go" });
    await new Promise((resolve) => setTimeout(resolve, 50));
    const failed = await stream.append(taskId, { type: "task.failed", message: "gave up" });
    expect((await started).ok).toBe(true);
    expect(failed.ok).toBe(true);
    expect((await history(taskId)).map((e) => e.type)).toEqual(["task.started", "task.failed"]);
    expect((await taskRow(taskId))?.status).toBe("failed");
  });

  it("never moves a finished row back, whatever event comes later", async () => {
    const { taskId } = await newTask();
    await appendOk(taskId, { type: "task.started", message: "go" });
    // As if another writer had finished the task while its stream was still open.
    const handle = createDb({ databaseUrl: env.DATABASE_URL, wsProxy: env.DB_WS_PROXY });
    try {
      await handle.db.update(tasks).set({ status: "cancelled" }).where(eq(tasks.id, taskId));
    } finally {
      await handle.close();
    }
    await appendOk(taskId, { type: "task.needs_input", message: "still there?" });
    expect((await taskRow(taskId))?.status).toBe("cancelled");
  });
});

describe("TaskStream: sizes", () => {
  it("stores an over-long or over-large terminal event fitted, never refusing it", async () => {
    const { taskId } = await newTask();
    const huge = { domains: Array.from({ length: 8000 }, (_, i) => `site-${i}.example.test`), routes: 8000, ok: true };
    expect(JSON.stringify(huge).length).toBeGreaterThan(MAX_EVENT_DATA_CHARS);
    const event = await appendOk(taskId, { type: "task.completed", message: "x".repeat(30_000), data: huge });
    expect(event.message.length).toBeLessThanOrEqual(MAX_EVENT_MESSAGE_CHARS);
    expect(event.message).toMatch(/ … \[truncated: \d+ more characters\]$/);
    expect(event.data).toMatchObject({ routes: 8000, ok: true });
    expect(String(event.data?.truncated)).toContain("over the 65536 an event holds");
    expect((await taskRow(taskId))?.status).toBe("completed");
    // A non-terminal event that is too large is still a 400 to its producer, who can fix it.
    const { taskId: other } = await newTask();
    expect((await append(other, { type: "log", message: "x".repeat(MAX_EVENT_MESSAGE_CHARS + 1) })).status).toBe(400);
  });
});

describe("TaskStream: schema migrations", () => {
  it("upgrades a store made by the first schema in place, keeping its history", async () => {
    const { taskId } = await newTask();
    const stub = getTaskStreamStub(env, taskId);
    await runInDurableObject(stub, (_instance, state) => {
      const sql = state.storage.sql;
      for (const table of ["events", "meta", "schema_version"]) sql.exec(`DROP TABLE IF EXISTS ${table}`);
      // The tables exactly as the first TaskStream made them, with history in them.
      sql.exec(`CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY, at TEXT NOT NULL, type TEXT NOT NULL, step TEXT,
        message TEXT NOT NULL, data TEXT, trace_id TEXT)`);
      sql.exec(`CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`);
      sql.exec(`INSERT INTO events (seq, at, type, message) VALUES (1, '2026-11-20T10:00:00.000Z', 'task.started', 'old'), (2, '2026-11-20T10:00:01.000Z', 'log', 'older line')`);
      sql.exec(`INSERT INTO meta (key, value) VALUES ('task_id', ?), ('status', 'running')`, taskId);
    });
    await evictDurableObject(stub);
    const next = await appendOk(taskId, { type: "log", message: "after the upgrade", eventId: "upgrade:1" });
    expect(next.seq).toBe(3);
    expect((await append(taskId, { type: "log", message: "after the upgrade", eventId: "upgrade:1" })).status).toBe(200);
    expect((await history(taskId)).map((e) => e.message)).toEqual(["old", "older line", "after the upgrade"]);
    const version = await runInDurableObject(stub, (_instance, state) => state.storage.sql.exec<{ version: number }>(`SELECT version FROM schema_version`).one().version);
    expect(version).toBe(2);
  });
});

describe("tasks API: bad input", () => {
  it("answers a task for an unknown owner with 400, not 500", async () => {
    const res = await call("/api/tasks", { method: "POST", key: adminKey(), json: { type: "engineering", ownerId: "usr_nobody" } });
    expect(res.status).toBe(400);
    expect((await res.json<{ error: { code: string; message: string } }>()).error).toMatchObject({ code: "invalid_request", message: "No user with id usr_nobody" });
  });
});
