/**
 * The Telegram outbox through the real path: POST /api/telegram/outbox → the telegram-outbox queue
 * (wrangler dev's local queues) → its consumer → grammY → the Telegram stand-in. Long texts arrive
 * split on paragraph boundaries and in order; flood control (429 retry_after) is waited out; a chat
 * Telegram refuses is kept as failed, with the reason, for an admin.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type Stack, startStack } from "../../scripts/lib/local-stack.ts";
import { waitFor } from "../../scripts/lib/processes.ts";
import { TelegramServer } from "../../standins/telegram-server.ts";

let stack: Stack;
let telegram: TelegramServer;
let token: string;

interface Outboxed {
  id: string;
  status: string;
  parts: number;
  partsSent: number;
  attempts: number;
  error: string | null;
}

async function outboxed(id: string, until: (row: Outboxed) => boolean): Promise<Outboxed> {
  let last: Outboxed | undefined;
  return waitFor(
    async () => {
      const { body } = await stack.api<{ messages: Outboxed[] }>("/api/telegram/outbox?limit=500");
      last = body.messages.find((row) => row.id === id);
      return last && until(last) ? last : undefined;
    },
    60_000,
    () => `outbox message ${id} is ${JSON.stringify(last)}`,
  );
}

beforeAll(async () => {
  telegram = new TelegramServer();
  await telegram.start();
  token = telegram.addBot({ username: `po_${randomBytes(3).toString("hex")}_bot` });
  stack = await startStack({
    databaseUrl: inject("databaseUrl"),
    dbWsProxy: inject("dbWsProxy"),
    adminKey: inject("adminApiKey"),
    vars: { TELEGRAM_API_URL: telegram.url, TELEGRAM_BOT_TOKEN: token },
  });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
  await telegram?.stop();
});

describe("the Telegram outbox", () => {
  it("sends a long text as parts of at most 4096 characters, split between paragraphs, in order", async () => {
    const paragraphs = Array.from({ length: 9 }, (_, i) => `Paragraph ${i + 1}: ${"word ".repeat(190).trim()}`);
    const text = paragraphs.join("\n\n");
    expect(text.length).toBeGreaterThan(8192);
    const sent = await stack.api<{ id: string }>("/api/telegram/outbox", { json: { chatId: 5001, text } });
    expect(sent.status).toBe(202);
    const row = await outboxed(sent.body.id, (r) => r.status !== "queued");
    expect(row).toMatchObject({ status: "sent", parts: 3, partsSent: 3, error: null });
    const delivered = telegram.messages.filter((m) => m.chatId === 5001).map((m) => m.text);
    expect(delivered).toHaveLength(3);
    expect(delivered.every((part) => part.length <= 4096)).toBe(true);
    // Whole paragraphs, none cut, none lost, in their order.
    expect(delivered.join("\n\n")).toBe(text);
    for (const part of delivered) expect(part.endsWith("word")).toBe(true);
  });

  it("waits out Telegram's flood control (429 retry_after) and then delivers", async () => {
    telegram.floodControl(1, 2);
    const started = Date.now();
    const sent = await stack.api<{ id: string }>("/api/telegram/outbox", { json: { chatId: 5002, text: "after the flood" } });
    const row = await outboxed(sent.body.id, (r) => r.status !== "queued");
    expect(row.status).toBe("sent");
    const arrived = telegram.messages.find((m) => m.chatId === 5002);
    expect(arrived?.text).toBe("after the flood");
    expect(Date.parse(arrived?.at ?? "") - started).toBeGreaterThanOrEqual(2000);
    expect(telegram.calls("sendMessage").filter((r) => String(r.params.chat_id) === "5002").map((r) => r.status)).toEqual([429, 200]);
  });

  it("retries a message while Telegram is down, and sends it once Telegram is back", async () => {
    telegram.setOutage(true);
    const sent = await stack.api<{ id: string }>("/api/telegram/outbox", { json: { chatId: 5004, text: "through the outage" } });
    const waiting = await outboxed(sent.body.id, (r) => r.attempts >= 1);
    expect(waiting).toMatchObject({ status: "queued", partsSent: 0 });
    expect(waiting.error).toMatch(/502|could not be reached/);
    telegram.setOutage(false);
    const row = await outboxed(sent.body.id, (r) => r.status !== "queued");
    expect(row.status).toBe("sent");
    expect(row.attempts).toBeGreaterThanOrEqual(2);
    expect(telegram.messages.filter((m) => m.chatId === 5004).map((m) => m.text)).toEqual(["through the outage"]);
  });

  it("keeps a message Telegram refuses as failed, with the reason, and never shows the bot's token", async () => {
    telegram.blockBot(5003);
    const sent = await stack.api<{ id: string }>("/api/telegram/outbox", { json: { chatId: 5003, text: "hello?" } });
    expect(sent.status).toBe(202);
    const row = await outboxed(sent.body.id, (r) => r.status !== "queued");
    expect(row.status).toBe("failed");
    expect(row.error).toBe("Telegram answered 403: Forbidden: bot was blocked by the user");
    expect(row.attempts).toBe(1);
    const failed = await stack.api<{ messages: Outboxed[] }>("/api/telegram/outbox?status=failed");
    expect(failed.body.messages.map((m) => m.id)).toContain(sent.body.id);
    expect(JSON.stringify(failed.body)).not.toContain(token);
    expect(stack.process.output()).not.toContain(token);
  });

  it("refuses what it cannot send, and is for admins only", async () => {
    for (const bad of [{ chatId: 1, text: "" }, { chatId: "nobody", text: "x" }, { text: "x" }]) {
      const res = await stack.api<{ error: { code: string } }>("/api/telegram/outbox", { json: bad });
      expect(res.status, JSON.stringify(bad)).toBe(400);
    }
    const user = await stack.api<{ user: { id: string } }>("/api/users", { json: { name: "plain" } });
    const key = await stack.api<{ key: string }>("/api/keys", { json: { userId: user.body.user.id, name: "plain", scopes: ["user"] } });
    const refused = await stack.api("/api/telegram/outbox", { key: key.body.key });
    expect(refused.status).toBe(403);
  });
});
