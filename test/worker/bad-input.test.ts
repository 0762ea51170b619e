import { env } from "cloudflare:workers";
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { app } from "../../src/worker.ts";
import { call, createUserWithKey, uniqueName } from "./helpers.ts";

type ErrorJson = { error: { code: string; message: string; requestId: string } };

describe("bad input", () => {
  it("answers malformed JSON with 400 invalid_json", async () => {
    const { key } = await createUserWithKey();
    const res = await call("/api/projects", {
      method: "POST",
      key,
      headers: { "content-type": "application/json" },
      body: '{"name": "x",',
    });
    expect(res.status).toBe(400);
    expect((await res.json<ErrorJson>()).error.code).toBe("invalid_json");
  });

  it("answers a non-JSON body with 415", async () => {
    const { key } = await createUserWithKey();
    const res = await call("/api/projects", { method: "POST", key, headers: { "content-type": "text/plain" }, body: "name=x" });
    expect(res.status).toBe(415);
    expect((await res.json<ErrorJson>()).error.code).toBe("unsupported_media_type");
  });

  it("answers a body over 1 MiB with 413 and stores nothing", async () => {
    const { key } = await createUserWithKey();
    const name = uniqueName();
    const res = await call("/api/projects", {
      method: "POST",
      key,
      json: { name, description: "x".repeat(1024 * 1024 + 10) },
    });
    expect(res.status).toBe(413);
    expect((await res.json<ErrorJson>()).error.code).toBe("payload_too_large");
    const list = await (await call("/api/projects", { key })).json<{ projects: unknown[] }>();
    expect(list.projects).toEqual([]);
  });

  it("answers an unknown route with a JSON 404", async () => {
    const res = await call("/nowhere");
    expect(res.status).toBe(404);
    const body = await res.json<ErrorJson>();
    expect(body.error.code).toBe("not_found");
    expect(body.error.message).toContain("/nowhere");
  });

  it("answers 503 db_unavailable for API writes while Postgres is unreachable, and nothing is written", async () => {
    const { key } = await createUserWithKey();
    const name = uniqueName();
    const ctx = createExecutionContext();
    const res = await app.request(
      "/api/projects",
      { method: "POST", headers: { authorization: `Bearer ${env.ADMIN_API_KEY}`, "content-type": "application/json" }, body: JSON.stringify({ name }) },
      { ...env, DB_WS_PROXY: "127.0.0.1:1" },
      ctx,
    );
    await waitOnExecutionContext(ctx);
    expect(res.status).toBe(503);
    expect((await res.json<ErrorJson>()).error.code).toBe("db_unavailable");
    // Back on the real database: the name is still free.
    const created = await call("/api/projects", { method: "POST", key, json: { name } });
    expect(created.status).toBe(201);
  });
});
