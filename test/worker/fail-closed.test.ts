/**
 * Failing closed: a caller with no user sees no project, a 500 says nothing of its cause, and a
 * control plane that cannot sign does not use up the enrollment token it was handed.
 */
import { env } from "cloudflare:workers";
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { and } from "drizzle-orm";
import { Hono } from "hono";
import { requestId } from "hono/request-id";
import { describe, expect, it } from "vitest";
import { createDb } from "../../src/db/client.ts";
import { projects } from "../../src/db/schema.ts";
import { AppError } from "../../src/lib/app-error.ts";
import type { AppEnv } from "../../src/lib/context.ts";
import { INTERNAL_ERROR_MESSAGE, onError } from "../../src/platform/errors.ts";
import { projectVisibleTo } from "../../src/projects/projects.ts";
import { generateKeySeed } from "../../src/shared/jobs.ts";
import { app } from "../../src/worker.ts";
import { call, createUserWithKey, uniqueName } from "./helpers.ts";
import { createServer } from "./runner-helpers.ts";

describe("failing closed", () => {
  it("shows a caller without a user no project at all, and an admin every one", async () => {
    const { key } = await createUserWithKey();
    expect((await call("/api/projects", { method: "POST", key, json: { name: uniqueName() } })).status).toBe(201);
    const handle = createDb({ databaseUrl: env.DATABASE_URL, wsProxy: env.DB_WS_PROXY });
    try {
      const count = async (principal: Parameters<typeof projectVisibleTo>[0]) => (await handle.db.select().from(projects).where(and(projectVisibleTo(principal)))).length;
      expect(await count({ userId: null, keyId: "k", scopes: ["user"], isAdmin: false })).toBe(0);
      expect(await count({ userId: "usr_someone_else", keyId: "k", scopes: ["user"], isAdmin: false })).toBe(0);
      expect(await count({ userId: null, keyId: "k", scopes: ["admin"], isAdmin: true })).toBeGreaterThan(0);
    } finally {
      await handle.close();
    }
  });

  it("answers an internal error with the generic message and the request id only", async () => {
    const probe = new Hono<AppEnv>().use(requestId()).onError(onError);
    probe.get("/boom", () => {
      throw new AppError("internal_error", "postgres://admin:hunter2@db.internal failed");
    });
    const res = await probe.request("/boom", {}, env);
    expect(res.status).toBe(500);
    const body = await res.json<{ error: { code: string; message: string; requestId: string } }>();
    expect(body.error).toEqual({ code: "internal_error", message: INTERNAL_ERROR_MESSAGE, requestId: res.headers.get("x-request-id") ?? body.error.requestId });
    expect(JSON.stringify(body)).not.toContain("hunter2");
  });

  it("does not use up an enrollment token when the control plane cannot sign", async () => {
    const { enrollment } = await createServer();
    const { publicKey } = await generateKeySeed();
    const enroll = async (bindings: Env) => {
      const ctx = createExecutionContext();
      const res = await app.fetch(
        new Request("http://orchestrator.test/runner/enroll", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ token: enrollment.token, publicKey }) }),
        bindings,
        ctx,
      );
      await waitOnExecutionContext(ctx);
      return res;
    };
    const broken = await enroll({ ...env, JOB_SIGNING_KEY: "not-a-key" });
    expect(broken.status).toBe(500);
    // Once the key is fixed, the same token still works.
    expect((await enroll(env)).status).toBe(201);
  });
});
