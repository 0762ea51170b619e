/**
 * `/api/telegram/outbox` (admin): what the system sent or failed to send to Telegram chats
 * (`GET ?status=queued|sent|failed`), and `POST {chatId, text}` to send a message through it.
 */
import { Hono } from "hono";
import { z } from "zod";
import type { AppEnv } from "../lib/context.ts";
import { validate } from "../lib/validate.ts";
import { requireScope } from "../middleware/auth.ts";
import { listOutbox, sendToChat } from "../services/telegram-outbox.ts";

const ListQuery = z.object({ status: z.enum(["queued", "sent", "failed"]).optional(), limit: z.coerce.number().int().min(1).max(500).default(100) });
const SendMessage = z.strictObject({
  chatId: z.union([z.number().int(), z.string().regex(/^(-?\d{1,16}|@[A-Za-z][A-Za-z0-9_]{3,31})$/, "must be a chat id or @channel")]),
  text: z.string().trim().min(1).max(100_000),
});

export const telegramOutboxRoute = new Hono<AppEnv>()
  .use(requireScope("admin"))
  .get("/", validate("query", ListQuery), async (c) => {
    const { status, limit } = c.req.valid("query");
    return c.json({ messages: await listOutbox(c.var.db, status, limit) });
  })
  .post("/", validate("json", SendMessage), async (c) => {
    const { chatId, text } = c.req.valid("json");
    const id = await sendToChat(c.env, c.var.db, chatId, text);
    return c.json({ id }, 202);
  });
