/**
 * The model relay's door: only a live job credential gets through, and a credential whose spend cap is
 * used up gets an OpenAI-shaped 402 before any call is made. (The calls themselves, streamed and
 * priced, go through it in the engineering tests, from opencode in a container.)
 */
import { env } from "cloudflare:workers";
import { eq, sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { createDb } from "../../src/db/client.ts";
import { jobCredentials } from "../../src/db/schema.ts";
import { chargeCredential, mintJobCredentials, revokeJobCredentials } from "../../src/models/job-credentials.ts";
import { adminKey, call, createUserWithKey } from "./helpers.ts";

type OpenAiError = { error: { message: string; type: string; code: string } };

async function credential(spendCapUsd: number, purpose = "develop 1") {
  const { userId } = await createUserWithKey("relayed");
  const task = (await (await call("/api/tasks", { method: "POST", key: adminKey(), json: { type: "engineering", ownerId: userId } })).json<{ task: { id: string } }>()).task;
  const handle = createDb({ databaseUrl: env.DATABASE_URL, wsProxy: env.DB_WS_PROXY });
  try {
    const { modelKey } = await mintJobCredentials(env, handle.db, { taskId: task.id, projectId: null, userId, purpose, ttlSeconds: 600, model: { agent: "developer", name: "gpt-4.1", spendCapUsd } });
    return { key: modelKey ?? "", taskId: task.id, db: handle };
  } catch (error) {
    await handle.close();
    throw error;
  }
}

const complete = (key: string) => call("/relay/v1/chat/completions", { method: "POST", headers: { authorization: `Bearer ${key}` }, json: { model: "anything", messages: [{ role: "user", content: "hi" }] } });

describe("the model relay", () => {
  it("refuses what is not a live job credential: none, an API key, a made-up one, a revoked one", async () => {
    const { key: apiKey } = await createUserWithKey();
    const live = await credential(1);
    try {
      expect((await call("/relay/v1/models", { headers: { authorization: `Bearer ${live.key}` } })).status).toBe(200);
      for (const presented of ["", apiKey, adminKey(), "orj_madeupmadeupmadeupmadeupmadeupmadeup00"]) {
        const res = await complete(presented);
        expect(res.status, presented.slice(0, 8)).toBe(401);
        expect((await res.json<OpenAiError>()).error).toMatchObject({ type: "invalid_request_error", code: "invalid_api_key" });
      }
      await revokeJobCredentials(env, live.db.db, live.taskId, "develop 1");
      expect((await complete(live.key)).status).toBe(401);
    } finally {
      await live.db.close();
    }
  });

  it("answers 402 once the job's spend cap is used up, before any model call", async () => {
    const capped = await credential(0.5);
    try {
      const [row] = await capped.db.db.select().from(jobCredentials).where(eq(jobCredentials.taskId, capped.taskId));
      await chargeCredential(capped.db.db, row?.id ?? "", 0.5);
      const res = await complete(capped.key);
      expect(res.status).toBe(402);
      expect((await res.json<OpenAiError>()).error).toMatchObject({ type: "insufficient_quota", code: "budget_exceeded", message: expect.stringContaining("$0.50") as string });
      // An expired one is refused like a revoked one.
      await capped.db.db.update(jobCredentials).set({ expiresAt: sql`now() - interval '1 second'` }).where(eq(jobCredentials.taskId, capped.taskId));
      expect((await complete(capped.key)).status).toBe(401);
    } finally {
      await capped.db.close();
    }
  });
});
