/**
 * `/api/telegram/outbox` (admin): what the system sent or failed to send to Telegram chats
 * (`GET ?status=queued|sent|failed`), and `POST {chatId, text}` to send a message through it.
 */
import { createRoute } from "@hono/zod-openapi";
import { z } from "zod";
import { apiDoc, apiRouter, errors, jsonBody, jsonResponse } from "../platform/openapi.ts";
import { requireScope } from "../platform/auth.ts";
import { listOutbox, sendToChat } from "../telegram/telegram-outbox.ts";

const ListQuery = z.object({ status: z.enum(["queued", "sent", "failed"]).optional(), limit: z.coerce.number().int().min(1).max(500).default(100) });
const SendMessage = z.strictObject({
  chatId: z.union([z.number().int(), z.string().regex(/^(-?\d{1,16}|@[A-Za-z][A-Za-z0-9_]{3,31})$/, "must be a chat id or @channel")]),
  text: z.string().trim().min(1).max(100_000),
});

const OutboxMessage = z.object({
  id: z.string(),
  chatId: z.string(),
  parts: z.number().int(),
  partsSent: z.number().int(),
  status: z.string(),
  attempts: z.number().int(),
  error: z.string().nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
});
const doc = apiDoc("telegram");
const list = createRoute({
  ...doc,
  method: "get",
  path: "/",
  summary: "What was sent, queued or failed to send to Telegram chats, newest first (admin)",
  request: { query: ListQuery },
  responses: { 200: jsonResponse(z.object({ messages: z.array(OutboxMessage) }), "The messages"), ...errors(400, 403) },
});
const send = createRoute({
  ...doc,
  method: "post",
  path: "/",
  summary: "Send a message to a chat through the outbox (admin)",
  request: { body: jsonBody(SendMessage) },
  responses: { 202: jsonResponse(z.object({ id: z.string() }), "The message, queued"), ...errors(400, 403, 409, 413, 415) },
});

export const telegramOutboxRoute = apiRouter();
telegramOutboxRoute.use(requireScope("admin"));
telegramOutboxRoute
  .openapi(list, async (c) => {
    const { status, limit } = c.req.valid("query");
    return c.json({ messages: await listOutbox(c.var.db, status, limit) }, 200);
  })
  .openapi(send, async (c) => {
    const { chatId, text } = c.req.valid("json");
    const id = await sendToChat(c.env, c.var.db, chatId, text);
    return c.json({ id }, 202);
  });
