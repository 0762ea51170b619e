/**
 * The one way this worker makes a Bot API client (grammY's `Api`, or the options a `Bot` takes): at
 * TELEGRAM_API_URL (api.telegram.org in production, the stand-in, standins/telegram-server.ts, in
 * tests), with a time limit per call, and Telegram's 429s waited out as the use allows.
 */
import { autoRetry } from "@grammyjs/auto-retry";
import { Api, type ApiClientOptions } from "grammy";
import { z } from "zod";

/** Long enough for a slow Telegram, short enough that nobody's request hangs on it. */
const CALL_TIMEOUT_SECONDS = 10;

const ApiRoot = z.url({ protocol: /^https?$/ }).default("https://api.telegram.org");

/** The Bot API's base URL, without the trailing slash grammY refuses. */
export function telegramApiRoot(env: { TELEGRAM_API_URL?: string }): string {
  const parsed = ApiRoot.safeParse(env.TELEGRAM_API_URL || undefined);
  if (!parsed.success) throw new Error(`invalid setting TELEGRAM_API_URL: ${parsed.error.issues.map((issue) => issue.message).join("; ")}`);
  return parsed.data.replace(/\/+$/, "");
}

/** What a client, or a `Bot`, is given: where Telegram is, and how long one call may take. */
export function telegramClientOptions(env: { TELEGRAM_API_URL?: string }): ApiClientOptions {
  return { apiRoot: telegramApiRoot(env), timeoutSeconds: CALL_TIMEOUT_SECONDS };
}

/**
 * How a client waits out Telegram's flood control (429 retry_after):
 * - `none`: not at all (an admin's getMe: they see the answer at once);
 * - `brief`: twice, up to 10 s (calls made while a person waits: typing, a button acknowledged, a
 *   message holding a secret deleted);
 * - `outbox`: three times, up to a minute; outages (5xx, network) are thrown instead, for the queue to
 *   retry with backoff rather than hold up every message behind this one.
 */
export type TelegramRetry = "none" | "brief" | "outbox";

export function telegramApi(env: { TELEGRAM_API_URL?: string }, token: string, retry: TelegramRetry): Api {
  const api = new Api(token, telegramClientOptions(env));
  if (retry === "brief") api.config.use(autoRetry({ maxRetryAttempts: 2, maxDelaySeconds: 10 }));
  if (retry === "outbox") api.config.use(autoRetry({ maxRetryAttempts: 3, maxDelaySeconds: 60, rethrowInternalServerErrors: true, rethrowHttpErrors: true }));
  return api;
}
