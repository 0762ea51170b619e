// The bot with no network, for the tests: what it would send to Telegram is recorded instead.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Update } from "grammy/types";
import { createBot } from "../src/bot.ts";
import { Store } from "../src/store.ts";

/** A bot, its store in a temporary directory; `say` sends it a message as a person would, `replies` lists what it answered. */
export function botForTest() {
  const store = new Store(mkdtempSync(join(tmpdir(), "bot-test-")));
  const bot = createBot("123:test", store);
  bot.botInfo = { id: 123, is_bot: true, first_name: "Test", username: "test_bot", can_join_groups: true, can_read_all_group_messages: false, supports_inline_queries: false, can_connect_to_business: false, has_main_web_app: false, has_topics_enabled: false, allows_users_to_create_topics: false, can_manage_bots: false, supports_join_request_queries: false };
  const sent: { method: string; payload: Record<string, unknown> }[] = [];
  bot.api.config.use((_prev, method, payload) => {
    sent.push({ method, payload });
    return Promise.resolve({ ok: true, result: { message_id: sent.length, date: 0, chat: { id: 1, type: "private" } } } as never);
  });
  const say = (text: string, chatId = 42) => {
    const update: Update = {
      update_id: sent.length + 1,
      message: { message_id: 1, date: 0, chat: { id: chatId, type: "private", first_name: "Ada" }, from: { id: chatId, is_bot: false, first_name: "Ada" }, text, ...(text.startsWith("/") ? { entities: [{ type: "bot_command", offset: 0, length: text.split(" ")[0]?.length ?? 0 }] } : {}) },
    };
    return bot.handleUpdate(update);
  };
  const replies = () => sent.filter((call) => call.method === "sendMessage").map((call) => call.payload.text);
  return { bot, store, say, replies };
}
