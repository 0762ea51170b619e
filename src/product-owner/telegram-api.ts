/**
 * The Bot API calls the Product Owner makes itself, outside the outbox: the ones that must happen at
 * once or not at all (a typing indicator, a button press acknowledged, a message holding a secret
 * deleted). 429s are waited out by grammY's auto-retry; a failure here is logged, never fatal.
 */
import { autoRetry } from "@grammyjs/auto-retry";
import { Api } from "grammy";
import { telegramApiRoot } from "../telegram/telegram-bots.ts";

export function botApi(env: { TELEGRAM_API_URL?: string; TELEGRAM_BOT_TOKEN?: string }): Api | null {
  if (!env.TELEGRAM_BOT_TOKEN) return null;
  const api = new Api(env.TELEGRAM_BOT_TOKEN, { apiRoot: telegramApiRoot(env) });
  api.config.use(autoRetry({ maxRetryAttempts: 2, maxDelaySeconds: 10 }));
  return api;
}
