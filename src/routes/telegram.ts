/**
 * `POST /telegram/webhook`: Telegram's updates for the Product Owner's bot. grammY's webhookCallback
 * checks the secret header (401 and nothing processed when it is wrong or missing); each update is
 * handed to its chat's ProductOwner agent, which queues it and answers at once, so Telegram gets its
 * 200 in milliseconds whatever the model is doing. Updates the agent does not handle, and bodies that
 * are not updates at all, get 200 and a log line: a 5xx would only make Telegram send them again.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { Bot, type Context, webhookCallback } from "grammy";
import { Hono } from "hono";
import { getProductOwner, type InboundUpdate } from "../product-owner/client.ts";
import { AppError } from "../lib/app-error.ts";
import type { AppEnv } from "../lib/context.ts";
import { constantTimeEqual } from "../lib/crypto.ts";
import { createLogger } from "../lib/log.ts";
import { authFailed } from "../platform/rate-limit.ts";
import { CHAT_TEXT_LIMIT } from "../shared/chat.ts";
import { telegramClientOptions } from "../telegram/client.ts";
import { sendToChat } from "../telegram/telegram-outbox.ts";
import { withDb } from "../db/client.ts";

type Handler = ReturnType<typeof webhookCallback<Context, "hono">>;

/** One bot per isolate and token: grammY asks getMe once, not on every update. */
const handlers = new Map<string, { bot: Bot; handler: Handler }>();

/** Raised by a handler when the update could not be handed over: Telegram should send it again. */
class HandOverFailed extends Error {}

/** The trace of the webhook request being handled: the update, and the turn it starts, carry it on. */
const requestTrace = new AsyncLocalStorage<string>();

function handlerFor(env: Env): { bot: Bot; handler: Handler } {
  const key = `${env.TELEGRAM_BOT_TOKEN}|${env.TELEGRAM_WEBHOOK_SECRET}|${env.TELEGRAM_API_URL}`;
  const known = handlers.get(key);
  if (known) return known;
  const log = createLogger(env.LOG_LEVEL, { component: "telegram-webhook" });
  const bot = new Bot(env.TELEGRAM_BOT_TOKEN, { client: telegramClientOptions(env) });
  const handOver = async (update: InboundUpdate) => {
    try {
      const agent = await getProductOwner(env, `tg:${update.chat.id}`);
      const traceparent = requestTrace.getStore();
      const { duplicate } = await agent.receiveTelegram(traceparent ? { ...update, traceparent } : update);
      if (duplicate) log.info("duplicate telegram update ignored", { updateId: update.updateId, chatId: update.chat.id });
    } catch (error) {
      throw new HandOverFailed(error instanceof Error ? error.message : String(error));
    }
  };
  // A conversation is one person's: its questions, the secrets it asks for and its reach. In a group
  // its members would share them, so the Product Owner answers only in private chats.
  bot.chatType(["group", "supergroup", "channel"]).on("message:text", async (ctx) => {
    log.info("telegram message in a group refused", { updateId: ctx.update.update_id, chatType: ctx.chat.type });
    try {
      await withDb(env, (db) => sendToChat(env, db, ctx.chat.id, `I only talk in private chats, one person at a time: write to me directly${ctx.me.username ? ` (@${ctx.me.username})` : ""}.`));
    } catch (error) {
      throw new HandOverFailed(error instanceof Error ? error.message : String(error));
    }
  });
  bot.chatType(["group", "supergroup", "channel"]).on("callback_query:data", async (ctx) => {
    await ctx.answerCallbackQuery({ text: "I only talk in private chats." }).catch(() => undefined);
  });
  bot.on("message:text", async (ctx) => {
    const { message } = ctx;
    if (!message.from || message.from.is_bot) return log.info("telegram message from a bot or no one ignored", { updateId: ctx.update.update_id });
    await handOver({
      type: "telegram:message",
      updateId: ctx.update.update_id,
      chat: { id: message.chat.id, type: message.chat.type },
      from: { id: message.from.id, firstName: message.from.first_name, ...(message.from.username ? { username: message.from.username } : {}) },
      messageId: message.message_id,
      text: message.text.slice(0, CHAT_TEXT_LIMIT),
    });
  });
  bot.on("callback_query:data", async (ctx) => {
    const query = ctx.callbackQuery;
    const chat = query.message?.chat;
    if (!chat) return log.info("telegram button press without its message ignored", { updateId: ctx.update.update_id });
    await handOver({
      type: "telegram:callback",
      updateId: ctx.update.update_id,
      chat: { id: chat.id, type: chat.type },
      from: { id: query.from.id, firstName: query.from.first_name, ...(query.from.username ? { username: query.from.username } : {}) },
      callbackId: query.id,
      data: query.data,
      ...(query.message ? { messageId: query.message.message_id } : {}),
    });
  });
  // Edited messages, channel posts, member updates, photos…: not for the agent.
  bot.use((ctx) => log.warn("telegram update not handled", { updateId: ctx.update.update_id, kinds: Object.keys(ctx.update).filter((k) => k !== "update_id") }));
  bot.catch((error) => {
    if (error.error instanceof HandOverFailed) throw error.error;
    log.warn("telegram update failed", { updateId: error.ctx.update.update_id, error: error.error instanceof Error ? error.error.message : String(error.error) });
  });
  const handler = webhookCallback(bot, "hono", { secretToken: env.TELEGRAM_WEBHOOK_SECRET, onTimeout: "return", timeoutMilliseconds: 8000 });
  handlers.set(key, { bot, handler });
  return { bot, handler };
}

export const telegramRoute = new Hono<AppEnv>().post("/webhook", async (c) => {
  if (!c.env.TELEGRAM_BOT_TOKEN || !c.env.TELEGRAM_WEBHOOK_SECRET) {
    throw new AppError("conflict", "The Telegram webhook is not configured: set the TELEGRAM_BOT_TOKEN and TELEGRAM_WEBHOOK_SECRET secrets (docs/product-owner.md: Connecting a real bot)");
  }
  // Checked here too (grammY checks it again) so that a wrong secret counts against the caller's address.
  if (!(await constantTimeEqual(c.req.header("x-telegram-bot-api-secret-token") ?? "", c.env.TELEGRAM_WEBHOOK_SECRET))) {
    await authFailed(c);
    return c.body(null, 401);
  }
  const { bot, handler } = handlerFor(c.env);
  // getMe failing (a revoked token, Telegram down) is an outage, not a malformed update: Telegram retries on the 5xx.
  if (!bot.isInited()) await bot.init();
  try {
    return await requestTrace.run(c.var.traceparent, () => handler(c));
  } catch (error) {
    if (error instanceof HandOverFailed) throw error;
    // Not JSON, or not an update grammY can read.
    c.var.log.warn("malformed telegram update ignored", { error: error instanceof Error ? error.message : String(error) });
    return c.body(null, 200);
  }
});
