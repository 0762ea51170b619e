/**
 * The sweeper finishes what a crash or a stopped workflow left half-done: a task whose workflow ended
 * behind its back, a message the queue never got, a job credential its job never ended.
 */
import { env } from "cloudflare:workers";
import { eq, sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { createDb } from "../../src/db/client.ts";
import { jobCredentials, telegramOutbox } from "../../src/db/schema.ts";
import { newId } from "../../src/lib/crypto.ts";
import { createLogger } from "../../src/lib/log.ts";
import { sweep } from "../../src/scheduler/sweeper.ts";
import { mintJobCredentials } from "../../src/models/job-credentials.ts";
import { adminKey, call, createUserWithKey, uniqueName } from "./helpers.ts";

const log = createLogger("error");
const withDb = async <T>(work: (db: ReturnType<typeof createDb>["db"]) => Promise<T>) => {
  const handle = createDb({ databaseUrl: env.DATABASE_URL, wsProxy: env.DB_WS_PROXY });
  try {
    return await work(handle.db);
  } finally {
    await handle.close();
  }
};

describe("the sweeper", () => {
  it("fails a task whose workflow was terminated behind its back, within one sweep", async () => {
    const { userId, key } = await createUserWithKey("swept");
    const project = (await (await call("/api/projects", { method: "POST", key, json: { name: uniqueName("swept") } })).json<{ project: { id: string } }>()).project;
    const task = (await (await call("/api/tasks", { method: "POST", key: adminKey(), json: { type: "engineering", projectId: project.id, ownerId: userId } })).json<{ task: { id: string } }>()).task;
    const instance = await env.ENGINEERING.create({ id: task.id, params: { taskId: task.id, projectId: project.id, handle: "nowhere" } });
    await instance.terminate();
    expect((await instance.status()).status).toBe("terminated");
    const before = await (await call(`/api/tasks/${task.id}`, { key })).json<{ task: { status: string } }>();
    expect(before.task.status).not.toBe("failed");

    const result = await withDb((db) => sweep(db, env, log, { taskQuietMs: 0 }));
    expect(result.failedTasks).toContain(task.id);
    const after = await (await call(`/api/tasks/${task.id}`, { key })).json<{ task: { status: string; error: string | null } }>();
    expect(after.task.status).toBe("failed");
    expect(after.task.error).toMatch(/its workflow ended \(terminated\) without finishing the task/);
    // A task driven from outside (no workflow of its id) is left alone.
    const outside = (await (await call("/api/tasks", { method: "POST", key: adminKey(), json: { type: "engineering", ownerId: userId } })).json<{ task: { id: string } }>()).task;
    const again = await withDb((db) => sweep(db, env, log, { taskQuietMs: 0 }));
    expect(again.failedTasks).not.toContain(outside.id);
    expect((await (await call(`/api/tasks/${outside.id}`, { key: adminKey() })).json<{ task: { status: string } }>()).task.status).toBe("queued");
  });

  it("hands the queue a message it never got, and revokes a credential its job never ended", async () => {
    const id = newId("tgm");
    await withDb((db) => db.insert(telegramOutbox).values({ id, chatId: "42", text: "hello", parts: 1, createdAt: new Date(Date.now() - 60_000) }));
    const { userId } = await createUserWithKey("credential");
    const task = (await (await call("/api/tasks", { method: "POST", key: adminKey(), json: { type: "engineering", ownerId: userId } })).json<{ task: { id: string } }>()).task;
    const minted = await withDb((db) => mintJobCredentials(env, db, { taskId: task.id, projectId: null, userId, purpose: "develop 1", ttlSeconds: 1, model: { agent: "developer", name: "gpt-4.1", spendCapUsd: 1 } }));
    await withDb((db) => db.update(jobCredentials).set({ expiresAt: sql`now() - interval '1 minute'` }).where(eq(jobCredentials.taskId, task.id)));

    const result = await withDb((db) => sweep(db, env, log, { taskQuietMs: 3_600_000 }));
    expect(result.outbox).toBeGreaterThanOrEqual(1);
    expect(result.credentials).toBeGreaterThanOrEqual(1);
    const [row] = await withDb((db) => db.select().from(telegramOutbox).where(eq(telegramOutbox.id, id)));
    expect(row?.enqueuedAt).not.toBeNull();
    const [credential] = await withDb((db) => db.select().from(jobCredentials).where(eq(jobCredentials.taskId, task.id)));
    expect(credential?.revokedAt).not.toBeNull();
    // The relay refuses it.
    const relayed = await call("/relay/v1/models", { headers: { authorization: `Bearer ${minted.modelKey ?? ""}` } });
    expect(relayed.status).toBe(401);
  });
});
