/**
 * The chat's front doors and who may talk: signed chat links, the chat WebSocket's sign-in, and the
 * Telegram signup setting (through the real services against the test Postgres).
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createDb } from "../../src/db/client.ts";
import { signChatToken, signViewToken } from "../../src/lib/view-token.ts";
import { telegramUser } from "../../src/product-owner/chat-users.ts";
import { adminKey, call, createUserWithKey } from "./helpers.ts";

const errorOf = async (res: Response) => (await res.json<{ error: { code: string; message: string } }>()).error;

describe("chat links and the chat WebSocket's sign-in", () => {
  it("gives a user a signed link to the console, and the socket takes it (or the key) and nothing else", async () => {
    const { userId, key } = await createUserWithKey("chatter");
    const link = await call("/api/chat/link", { method: "POST", key, json: {} });
    expect(link.status).toBe(200);
    const body = await link.json<{ token: string; url: string; expiresAt: string }>();
    expect(body.url).toMatch(/\/chat\?token=/);
    // Signed in, but not an upgrade: a clear 400.
    expect((await call(`/chat/ws?token=${encodeURIComponent(body.token)}`)).status).toBe(400);
    expect((await call("/chat/ws", { key })).status).toBe(400);
    // Not signed in, or with something else: 401 and a reason.
    expect(await errorOf(await call("/chat/ws"))).toMatchObject({ code: "unauthorized" });
    expect((await errorOf(await call("/chat/ws?token=garbage"))).message).toMatch(/malformed/);
    const claims = JSON.parse(atob(body.token.split(".")[0]?.replace(/-/g, "+").replace(/_/g, "/") ?? "")) as { k: string };
    const keyId = claims.k;
    const expired = await signChatToken(env.SECRETS_ENCRYPTION_KEY, userId, keyId, 60, Date.now() - 3_600_000);
    expect((await errorOf(await call(`/chat/ws?token=${encodeURIComponent(expired.token)}`))).message).toMatch(/expired/);
    // A live view token is not a chat token.
    const view = await signViewToken(env.SECRETS_ENCRYPTION_KEY, userId, 600);
    expect((await errorOf(await call(`/chat/ws?token=${encodeURIComponent(view.token)}`))).message).toMatch(/not valid/);
    expect((await call("/chat/ws", { key: "ork_wrong" })).status).toBe(401);
  });

  it("takes only a person's own key, not limited to a project, on both the link and the socket", async () => {
    const { userId } = await createUserWithKey("limited");
    const project = await (await call("/api/projects", { method: "POST", key: adminKey(), json: { name: `lim-${crypto.randomUUID().slice(0, 8)}`, ownerId: userId } })).json<{ project: { id: string } }>();
    const issue = async (json: Record<string, unknown>) => (await (await call("/api/keys", { method: "POST", key: adminKey(), json: { userId, name: "k", ...json } })).json<{ key: string }>()).key;
    const limited = await issue({ projectId: project.project.id });
    const runner = await issue({ scopes: ["runner"] });
    for (const [key, why] of [
      [limited, /limited to one project cannot open the chat/],
      [runner, /scope user/],
    ] as const) {
      const link = await call("/api/chat/link", { method: "POST", key, json: {} });
      expect(link.status).toBe(403);
      const socket = await call("/chat/ws", { key, headers: { upgrade: "websocket" } });
      expect(socket.status).toBe(403);
      expect((await errorOf(socket)).message).toMatch(why);
    }
  });

  it("ends a chat link with the key it was made with", async () => {
    const { key } = await createUserWithKey("revoker");
    const link = await (await call("/api/chat/link", { method: "POST", key, json: {} })).json<{ token: string }>();
    // Signed in (then refused only as not being an upgrade) while the key works...
    expect((await call(`/chat/ws?token=${encodeURIComponent(link.token)}`)).status).toBe(400);
    const [listed] = (await (await call("/api/keys", { key })).json<{ keys: { id: string }[] }>()).keys;
    expect((await call(`/api/keys/${listed?.id ?? ""}`, { method: "DELETE", key })).status).toBe(200);
    // ...and not after it was revoked.
    const after = await call(`/chat/ws?token=${encodeURIComponent(link.token)}`);
    expect(after.status).toBe(401);
    expect((await errorOf(after)).message).toMatch(/revoked or has expired: sign in again/);
  });

  it("shows an agent's storage to admins only, and names agents strictly", async () => {
    const { key } = await createUserWithKey("nosy");
    expect((await call("/api/chat/agents/tg:123", { key })).status).toBe(403);
    expect((await call("/api/chat/agents/bogus", { key: adminKey() })).status).toBe(400);
    const stats = await call("/api/chat/agents/tg:424242", { key: adminKey() });
    expect(stats.status).toBe(200);
    expect(await stats.json()).toMatchObject({ turns: 0, entries: 0, state: "IDLE", summary: false });
  });

  it("refuses the Telegram webhook when it has no secret configured, instead of taking anyone's updates", async () => {
    const res = await call("/telegram/webhook", { method: "POST", json: { update_id: 1 } });
    expect(res.status).toBe(409);
    expect((await errorOf(res)).message).toMatch(/TELEGRAM_WEBHOOK_SECRET/);
  });
});

describe("who may talk to the bot", () => {
  const handle = () => createDb({ databaseUrl: env.DATABASE_URL, wsProxy: env.DB_WS_PROXY });
  const someone = () => ({ id: 10_000_000 + Math.floor(Math.random() * 1_000_000_000), firstName: "Grace", username: "grace_h" });

  it("lets nobody new in when signup is closed, anyone when open, and the listed admins either way", async () => {
    const connection = handle();
    const { db } = connection;
    try {
      const stranger = someone();
      expect(await telegramUser(db, { TELEGRAM_SIGNUP: "closed" }, stranger)).toBeNull();
      const joined = await telegramUser(db, { TELEGRAM_SIGNUP: "open" }, stranger);
      expect(joined).toMatchObject({ name: "@grace_h", isAdmin: false, telegramId: stranger.id });
      // Known now: let in whatever the setting says.
      expect((await telegramUser(db, { TELEGRAM_SIGNUP: "closed" }, stranger))?.userId).toBe(joined?.userId);
      const boss = someone();
      expect(await telegramUser(db, { TELEGRAM_SIGNUP: "closed", TELEGRAM_ADMIN_IDS: `1, ${boss.id}` }, boss)).toMatchObject({ isAdmin: true });
    } finally {
      await connection.close();
    }
  });
});
