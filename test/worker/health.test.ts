import { env } from "cloudflare:workers";
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { app } from "../../src/worker.ts";
import { call } from "./helpers.ts";

describe("GET /healthz", () => {
  it("answers ok after a real database round trip", async () => {
    const res = await call("/healthz");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true, db: "ok" });
    expect(res.headers.get("x-request-id")).toBeTruthy();
  });

  it("answers 503 db_unavailable when Postgres cannot be reached", async () => {
    const ctx = createExecutionContext();
    // Same worker code, pointed at a port where nothing listens.
    const res = await app.request("/healthz", {}, { ...env, DB_WS_PROXY: "127.0.0.1:1" }, ctx);
    await waitOnExecutionContext(ctx);
    expect(res.status).toBe(503);
    const body = await res.json<{ error: { code: string; message: string; requestId: string } }>();
    expect(body.error.code).toBe("db_unavailable");
    expect(body.error.requestId).toBeTruthy();
    expect(JSON.stringify(body)).not.toContain(env.DATABASE_URL);
  });
});
