/**
 * The Bot API calls the Product Owner makes itself, outside the outbox: the ones that must happen at
 * once or not at all (a typing indicator, a button press acknowledged, a message holding a secret
 * deleted). 429s are waited out by grammY's auto-retry; a failure here is logged, never fatal.
 */
import type { Api } from "grammy";
import { telegramApi } from "../telegram/client.ts";

export function botApi(env: { TELEGRAM_API_URL?: string; TELEGRAM_BOT_TOKEN?: string }): Api | null {
  return env.TELEGRAM_BOT_TOKEN ? telegramApi(env, env.TELEGRAM_BOT_TOKEN, "brief") : null;
}
