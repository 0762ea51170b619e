import { describe, expect, it } from "vitest";
import { adminKey, call, createUserWithKey } from "./helpers.ts";

type ErrorJson = { error: { code: string; message: string; requestId: string } };

describe("API keys", () => {
  it("refuses /api/* without a key, with a clear 401", async () => {
    const res = await call("/api/projects");
    expect(res.status).toBe(401);
    const body = await res.json<ErrorJson>();
    expect(body.error.code).toBe("unauthorized");
    expect(body.error.message).toMatch(/Authorization: Bearer/);
    expect(body.error.requestId).toBe(res.headers.get("x-request-id"));
  });

  it("refuses a wrong key and a malformed header", async () => {
    expect((await call("/api/projects", { key: "ork_doesnotexist0000000000000000000000000000" })).status).toBe(401);
    expect((await call("/api/projects", { headers: { authorization: "Basic abc" } })).status).toBe(401);
    expect((await call("/api/projects", { key: `${adminKey()}x` })).status).toBe(401);
  });

  it("accepts the bootstrap admin key and a key the admin issued", async () => {
    expect((await call("/api/users", { key: adminKey() })).status).toBe(200);
    const { key } = await createUserWithKey();
    expect(key).toMatch(/^ork_[a-z0-9]{40}$/);
    expect((await call("/api/projects", { key })).status).toBe(200);
  });

  it("keeps admin routes from user keys", async () => {
    const { key, userId } = await createUserWithKey();
    const res = await call("/api/users", { method: "POST", key, json: { name: "mallory" } });
    expect(res.status).toBe(403);
    expect((await res.json<ErrorJson>()).error.code).toBe("forbidden");
    const keyRes = await call("/api/keys", { method: "POST", key, json: { userId, name: "escalate", scopes: ["admin"] } });
    expect(keyRes.status).toBe(403);
  });

  it("refuses an expired key", async () => {
    const { userId } = await createUserWithKey();
    const soon = new Date(Date.now() + 1500).toISOString();
    const res = await call("/api/keys", { method: "POST", key: adminKey(), json: { userId, name: "short", expiresAt: soon } });
    expect(res.status).toBe(201);
    const { key } = await res.json<{ key: string }>();
    expect((await call("/api/projects", { key })).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 1700));
    expect((await call("/api/projects", { key })).status).toBe(401);
  });

  it("gives admin scope only to admin users", async () => {
    const { userId } = await createUserWithKey();
    const res = await call("/api/keys", { method: "POST", key: adminKey(), json: { userId, name: "x", scopes: ["admin"] } });
    expect(res.status).toBe(400);
    expect((await res.json<ErrorJson>()).error.message).toMatch(/isAdmin/);

    const adminUser = await call("/api/users", { method: "POST", key: adminKey(), json: { name: "ops", isAdmin: true } });
    const { user } = await adminUser.json<{ user: { id: string } }>();
    const keyRes = await call("/api/keys", { method: "POST", key: adminKey(), json: { userId: user.id, name: "ops", scopes: ["admin"] } });
    expect(keyRes.status).toBe(201);
    const { key } = await keyRes.json<{ key: string }>();
    expect((await call("/api/users", { key })).status).toBe(200);
  });

  it("never returns key hashes, and a key is shown only when created", async () => {
    const { userId } = await createUserWithKey();
    const res = await call("/api/keys", { method: "POST", key: adminKey(), json: { userId, name: "shown-once" } });
    const body = await res.json<{ key: string; apiKey: Record<string, unknown> }>();
    expect(body.apiKey).not.toHaveProperty("keyHash");
    expect(body.apiKey.prefix).toBe(body.key.slice(0, 12));
  });

  it("rate-limits each key on its own", async () => {
    const { key } = await createUserWithKey();
    // 300 requests a minute per key, in fixed windows: 610 requests within two windows must
    // exceed the limit in one of them, wherever the window boundary falls.
    // Sent 50 at a time: one by one, a busy machine took longer than the test's time for them.
    let limited: Response | undefined;
    for (let sent = 0; sent < 610 && !limited; sent += 50) {
      const batch = await Promise.all(Array.from({ length: Math.min(50, 610 - sent) }, () => call("/api/nothing-here", { key })));
      limited = batch.find((res) => res.status === 429);
    }
    expect(limited?.status).toBe(429);
    expect((await limited?.json<ErrorJson>())?.error.code).toBe("rate_limited");
    // Another key is unaffected.
    const other = await createUserWithKey();
    expect((await call("/api/projects", { key: other.key })).status).toBe(200);
  }, 90_000);
});

describe("users", () => {
  it("creates users and refuses a duplicate Telegram id with 409", async () => {
    const telegramId = Math.floor(Math.random() * 1e12);
    const first = await call("/api/users", { method: "POST", key: adminKey(), json: { name: "ann", telegramId } });
    expect(first.status).toBe(201);
    const again = await call("/api/users", { method: "POST", key: adminKey(), json: { name: "bob", telegramId } });
    expect(again.status).toBe(409);
    expect((await again.json<ErrorJson>()).error.code).toBe("conflict");
  });

  it("refuses unknown fields and wrong types with the field named", async () => {
    const res = await call("/api/users", { method: "POST", key: adminKey(), json: { name: "x", role: "root" } });
    expect(res.status).toBe(400);
    expect((await res.json<ErrorJson>()).error.message).toMatch(/role/);
    const typed = await call("/api/users", { method: "POST", key: adminKey(), json: { name: 5 } });
    expect(typed.status).toBe(400);
    expect((await typed.json<ErrorJson>()).error.message).toMatch(/name/);
  });
});
