/**
 * Model spend: each call is priced from the price table when it is recorded, `GET /api/usage` groups
 * it (a user sees only their own calls), and a used-up budget stops a pipeline before it starts.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { withDb } from "../../src/db/client.ts";
import { recordUsage } from "../../src/models/llm.ts";
import { costOf, DEFAULT_MODEL_PRICES, modelPrices } from "../../src/shared/usage.ts";
import { adminKey, call, createUserWithKey, uniqueName } from "./helpers.ts";

/** A project of the key's user; its budget, when given, set by an admin (an owner may not set it). */
async function project(key: string, budget?: { budgetUsd: number }) {
  const res = await call("/api/projects", { method: "POST", key, json: { name: uniqueName("spend"), description: "x" } });
  expect(res.status).toBe(201);
  const { id } = (await res.json<{ project: { id: string } }>()).project;
  if (budget) expect((await call(`/api/projects/${id}`, { method: "PATCH", key: adminKey(), json: { config: budget } })).status).toBe(200);
  return id;
}

interface Report {
  usage: { key: string | null; calls: number; promptTokens: number; completionTokens: number; costUsd: number }[];
  totalUsd: number;
}

describe("model spend", () => {
  it("prices each call when recorded and reports it by project, agent and user; a user sees only their own", async () => {
    const alice = await createUserWithKey("alice");
    const bob = await createUserWithKey("bob");
    const a = await project(alice.key);
    const b = await project(bob.key);
    await withDb(env, async (db) => {
      await recordUsage(db, env, { agent: "architect", model: "gpt-4.1-mini", promptTokens: 1_000_000, completionTokens: 500_000, projectId: a, userId: alice.userId });
      await recordUsage(db, env, { agent: "developer", model: "gpt-4.1", promptTokens: 2_000_000, completionTokens: 100_000, projectId: a, userId: alice.userId });
      await recordUsage(db, env, { agent: "developer", model: "gpt-4.1", promptTokens: 1_000_000, completionTokens: 0, projectId: b, userId: bob.userId });
    });

    const mine = await call("/api/usage?by=project", { key: alice.key });
    expect(mine.status).toBe(200);
    const report = await mine.json<Report>();
    // 0.4 + 0.8 for the mini call, 4 + 0.8 for the gpt-4.1 one: OpenAI's list prices per million tokens.
    expect(report.usage).toEqual([{ key: a, calls: 2, promptTokens: 3_000_000, completionTokens: 600_000, costUsd: 6 }]);
    expect(report.totalUsd).toBe(6);

    const byAgent = await (await call("/api/usage?by=agent", { key: alice.key })).json<Report>();
    expect(byAgent.usage.map((row) => [row.key, row.costUsd])).toEqual([
      ["developer", 4.8],
      ["architect", 1.2],
    ]);

    const all = await (await call("/api/usage?by=user", { key: adminKey() })).json<Report>();
    expect(all.usage.find((row) => row.key === bob.userId)?.costUsd).toBe(2);
    expect(all.usage.find((row) => row.key === alice.userId)?.costUsd).toBe(6);

    const future = await (await call(`/api/usage?by=project&from=${encodeURIComponent(new Date(Date.now() + 3600_000).toISOString())}`, { key: alice.key })).json<Report>();
    expect(future.usage).toEqual([]);
    for (const bad of ["by=team", "from=yesterday"]) {
      const res = await call(`/api/usage?${bad}`, { key: alice.key });
      expect(res.status, bad).toBe(400);
    }
  });

  it("stops a pipeline before it starts when the project's budget is used up, and says so", async () => {
    const owner = await createUserWithKey("spender");
    const capped = await project(owner.key, { budgetUsd: 1 });
    await withDb(env, (db) => recordUsage(db, env, { agent: "architect", model: "gpt-4.1", promptTokens: 600_000, completionTokens: 0, projectId: capped, userId: owner.userId }));
    const refused = await call(`/api/projects/${capped}/engineering`, { method: "POST", key: owner.key, json: {} });
    expect(refused.status).toBe(402);
    const body = await refused.json<{ error: { code: string; message: string } }>();
    expect(body.error.code).toBe("budget_exceeded");
    expect(body.error.message).toContain("$1.20 of $1.00");
    const tasks = await (await call(`/api/tasks?projectId=${capped}`, { key: owner.key })).json<{ tasks: unknown[] }>();
    expect(tasks.tasks).toEqual([]);

    // Under its budget the same start goes on to the next check (this worker has no model configured).
    const roomy = await project(owner.key, { budgetUsd: 100 });
    const next = await call(`/api/projects/${roomy}/engineering`, { method: "POST", key: owner.key, json: {} });
    expect(next.status).toBe(409);
  });

  it("takes prices from MODEL_PRICES over its own table, and refuses a malformed one by name", () => {
    const prices = modelPrices(JSON.stringify({ "my-model": { promptPerMillion: 1, completionPerMillion: 3 } }));
    expect(costOf(prices, "my-model", 1_000_000, 1_000_000)).toBe(4);
    expect(prices["gpt-4.1"]).toEqual(DEFAULT_MODEL_PRICES["gpt-4.1"]);
    expect(costOf(prices, "unknown-model", 1_000_000, 0)).toBe(0);
    expect(() => modelPrices("{nope")).toThrow("MODEL_PRICES is not JSON");
    expect(() => modelPrices(JSON.stringify({ m: { promptPerMillion: -1, completionPerMillion: 0 } }))).toThrow("MODEL_PRICES: m.promptPerMillion");
  });
});
