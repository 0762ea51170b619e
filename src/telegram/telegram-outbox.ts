/**
 * The Telegram outbox: every message the system sends to a chat goes through the `telegram-outbox`
 * queue. A text longer than Telegram's limit is split on paragraph boundaries (then lines, then
 * words); parts go out in order; 429s wait out `retry_after` (grammY's auto-retry); a failed delivery
 * is retried with backoff and goes on after the parts already sent. A message that cannot be sent is
 * kept as `failed` with the reason, for an admin (`GET /api/telegram/outbox?status=failed`): nothing is
 * dropped silently.
 */
import { and, desc, eq, isNull, lt } from "drizzle-orm";
import { GrammyError, HttpError } from "grammy";
import type { InlineKeyboardMarkup } from "grammy/types";
import { z } from "zod";
import type { Db } from "../db/client.ts";
import { withDb } from "../db/client.ts";
import { telegramOutbox } from "../db/schema.ts";
import { AppError } from "../lib/app-error.ts";
import { newId } from "../lib/crypto.ts";
import { createLogger } from "../lib/log.ts";
import { issuesText } from "../shared/json.ts";
import { telegramApi } from "./client.ts";

/** Telegram's limit for one message's text. */
export const TELEGRAM_TEXT_LIMIT = 4096;
/** Deliveries of one message before it is given up as failed (the queue's max_retries + 1). */
export const MAX_DELIVERIES = 6;

/** A `telegram-outbox` queue message: the outbox row to deliver. */
export const OutboxMessage = z.object({ id: z.string().min(1) });
export type OutboxMessage = z.infer<typeof OutboxMessage>;

export interface OutboxEnv {
  TELEGRAM_API_URL?: string;
  TELEGRAM_BOT_TOKEN?: string;
  TELEGRAM_OUTBOX: Queue<OutboxMessage>;
  DATABASE_URL: string;
  DB_WS_PROXY: string;
  LOG_LEVEL?: string;
}

/** Splits a text into parts of at most `limit` characters, at the largest boundary that fits: paragraph, line, word, anything. */
export function splitMessage(text: string, limit = TELEGRAM_TEXT_LIMIT): string[] {
  const parts: string[] = [];
  let rest = text.trim();
  while (rest.length > limit) {
    const window = rest.slice(0, limit + 1);
    const cut = [window.lastIndexOf("\n\n"), window.lastIndexOf("\n"), window.lastIndexOf(" ")].find((at) => at > limit / 4) ?? limit;
    parts.push(rest.slice(0, cut).trimEnd());
    rest = rest.slice(cut).trimStart();
  }
  if (rest) parts.push(rest);
  return parts;
}

/** Queues a message to a chat (with an inline keyboard under its last part); returns its outbox id. */
export async function sendToChat(env: OutboxEnv, db: Db, chatId: number | string, text: string, replyMarkup?: InlineKeyboardMarkup): Promise<string> {
  if (!env.TELEGRAM_BOT_TOKEN) throw new AppError("conflict", "No Telegram bot is configured: set the TELEGRAM_BOT_TOKEN secret");
  const parts = splitMessage(text);
  if (parts.length === 0) throw new AppError("invalid_request", "The message is empty");
  const id = newId("tgm");
  await db.insert(telegramOutbox).values({ id, chatId: String(chatId), text, parts: parts.length, replyMarkup: replyMarkup ? { ...replyMarkup } : null });
  await enqueueOutbox(env, db, id).catch((error: unknown) =>
    // Kept, not lost: the sweep hands a row the queue never got to it (sweepOutbox).
    createLogger(env.LOG_LEVEL, { component: "telegram-outbox" }).warn("telegram message not queued; the sweep sends it", { outboxId: id, error: error instanceof Error ? error.message : String(error) }),
  );
  return id;
}

/** Hands one outbox row to the queue and records that it did. */
async function enqueueOutbox(env: OutboxEnv, db: Db, id: string): Promise<void> {
  await env.TELEGRAM_OUTBOX.send({ id } satisfies OutboxMessage);
  await db.update(telegramOutbox).set({ enqueuedAt: new Date() }).where(eq(telegramOutbox.id, id));
}

/** Rows the queue never got (a send that failed, a worker that stopped between the insert and the send), handed to it now. */
export async function sweepOutbox(env: OutboxEnv, db: Db, olderThanMs = 30_000): Promise<number> {
  const stuck = await db
    .select({ id: telegramOutbox.id })
    .from(telegramOutbox)
    .where(and(isNull(telegramOutbox.enqueuedAt), eq(telegramOutbox.status, "queued"), lt(telegramOutbox.createdAt, new Date(Date.now() - olderThanMs))))
    .limit(200);
  for (const row of stuck) await enqueueOutbox(env, db, row.id);
  return stuck.length;
}

export async function listOutbox(db: Db, status?: string, limit = 100) {
  const rows = await db
    .select({ id: telegramOutbox.id, chatId: telegramOutbox.chatId, parts: telegramOutbox.parts, partsSent: telegramOutbox.partsSent, status: telegramOutbox.status, attempts: telegramOutbox.attempts, error: telegramOutbox.error, createdAt: telegramOutbox.createdAt, updatedAt: telegramOutbox.updatedAt })
    .from(telegramOutbox)
    .where(status ? eq(telegramOutbox.status, status) : undefined)
    .orderBy(desc(telegramOutbox.createdAt))
    .limit(limit);
  return rows.map((row) => ({ ...row, createdAt: row.createdAt.toISOString(), updatedAt: row.updatedAt.toISOString() }));
}

/** Telegram refuses these for good: retrying cannot help (a chat that does not exist, a bot that was blocked). */
function permanent(error: unknown): boolean {
  return error instanceof GrammyError && (error.error_code === 400 || error.error_code === 403 || error.error_code === 401);
}

/** The queue consumer: delivers each message's remaining parts in order. */
export async function deliverOutbox(batch: MessageBatch, env: OutboxEnv): Promise<void> {
  const log = createLogger(env.LOG_LEVEL, { component: "telegram-outbox" });
  // 429s wait out retry_after (up to a minute) inside the call. Outages (5xx, network) go back to the
  // queue with backoff instead: waiting them out here would hold up every message behind this one.
  const api = telegramApi(env, env.TELEGRAM_BOT_TOKEN ?? "", "outbox");
  await withDb(env, async (db) => {
    for (const message of batch.messages) {
      const body = OutboxMessage.safeParse(message.body);
      if (!body.success) {
        // Nothing to deliver or to record it on: no row is named.
        log.warn("telegram-outbox message unreadable, dropped", { messageId: message.id, reason: issuesText(body.error, "body") });
        message.ack();
        continue;
      }
      const [row] = await db.select().from(telegramOutbox).where(eq(telegramOutbox.id, body.data.id));
      if (!row || row.status !== "queued") {
        message.ack();
        continue;
      }
      const parts = splitMessage(row.text);
      let sent = row.partsSent;
      try {
        for (; sent < parts.length; sent++) {
          const last = sent === parts.length - 1;
          await api.sendMessage(row.chatId, parts[sent] ?? "", last && row.replyMarkup ? { reply_markup: row.replyMarkup as unknown as InlineKeyboardMarkup } : {});
          await db.update(telegramOutbox).set({ partsSent: sent + 1, updatedAt: new Date() }).where(eq(telegramOutbox.id, row.id));
        }
        await db.update(telegramOutbox).set({ status: "sent", attempts: row.attempts + 1, error: null, updatedAt: new Date() }).where(eq(telegramOutbox.id, row.id));
        message.ack();
      } catch (error) {
        const reason = error instanceof GrammyError ? `Telegram answered ${error.error_code}: ${error.description}` : error instanceof HttpError ? "Telegram could not be reached" : error instanceof Error ? error.message : String(error);
        const attempts = row.attempts + 1;
        const giveUp = permanent(error) || attempts >= MAX_DELIVERIES;
        await db.update(telegramOutbox).set({ attempts, error: reason, status: giveUp ? "failed" : "queued", updatedAt: new Date() }).where(eq(telegramOutbox.id, row.id));
        if (giveUp) {
          log.warn("telegram message not sent", { outboxId: row.id, chatId: row.chatId, partsSent: sent, parts: parts.length, reason });
          message.ack();
        } else message.retry({ delaySeconds: Math.min(300, 2 ** attempts) });
      }
    }
  });
}
