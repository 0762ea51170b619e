/**
 * Talking to the Product Owner as a person does: updates delivered through the Telegram stand-in to the
 * worker's webhook, the bot's messages read back from the stand-in, the scripted model's turns. For the
 * Product Owner's test files (test/node/product-owner*.test.ts): each sets its stack once (usePoChat)
 * in its beforeAll; a file's module state is its own.
 */
import { expect } from "vitest";
import { FIXTURE_ENV_ANALYSIS } from "../../scripts/lib/deploy-harness.ts";
import type { Stack } from "../../scripts/lib/local-stack.ts";
import { waitFor } from "../../scripts/lib/processes.ts";
import { demoScenario } from "../../standins/demo-scenario.ts";
import type { ChatRequest, ModelServer, Turn } from "../../standins/model-server.ts";
import type { SentMessage, TelegramServer } from "../../standins/telegram-server.ts";

interface PoChat {
  stack: Stack;
  telegram: TelegramServer;
  model: ModelServer;
  /** The bot's token, as the stand-in knows it. */
  token: string;
}

let current: PoChat | undefined;
let updateId = 70_000;
let userMessageId = 1_000_000;

export function usePoChat(chat: PoChat): void {
  current = chat;
}

function chat(): PoChat {
  if (!current) throw new Error("usePoChat() was not called (in the file's beforeAll)");
  return current;
}

export const nextUpdateId = () => ++updateId;
export const nextMessageId = () => ++userMessageId;
export const from = (id: number) => ({ id, is_bot: false, first_name: `Person ${id}` });

export function textUpdate(chatId: number, text: string, fromId = chatId) {
  return { update_id: nextUpdateId(), message: { message_id: nextMessageId(), date: Math.floor(Date.now() / 1000), chat: { id: chatId, type: "private", first_name: "P" }, from: from(fromId), text } };
}

/** Sends a message as the person of this private chat; the message's id. */
export async function send(chatId: number, text: string): Promise<number> {
  const update = textUpdate(chatId, text);
  expect(await chat().telegram.deliverUpdate(chat().token, update)).toBe(200);
  return update.message.message_id;
}

export const sentTo = (chatId: number) => chat().telegram.messages.filter((m) => m.chatId === chatId);

export async function replies(chatId: number, count: number, ms = 60_000): Promise<SentMessage[]> {
  return waitFor(
    () => (sentTo(chatId).length >= count ? sentTo(chatId) : undefined),
    ms,
    () => `chat ${chatId} got ${sentTo(chatId).length} of ${count} messages: ${JSON.stringify(sentTo(chatId).map((m) => m.text))}\n${chat().stack.process.output().slice(-3000)}`,
  );
}

export async function replyMatching(chatId: number, pattern: RegExp, ms = 60_000): Promise<SentMessage> {
  return waitFor(
    () => sentTo(chatId).find((m) => pattern.test(m.text)),
    ms,
    () => `chat ${chatId} has no message like ${pattern}: ${JSON.stringify(sentTo(chatId).map((m) => m.text))}\n${chat().stack.process.output().slice(-3000)}`,
  );
}

/** Presses a button under a message the bot sent, as the person `fromId`. */
export async function press(message: SentMessage, label: RegExp, fromId = Number(message.chatId)): Promise<number> {
  const keyboard = (message.params.reply_markup as { inline_keyboard: { text: string; callback_data: string }[][] } | string | undefined) ?? { inline_keyboard: [] };
  const rows = typeof keyboard === "string" ? (JSON.parse(keyboard) as { inline_keyboard: { text: string; callback_data: string }[][] }) : keyboard;
  const button = rows.inline_keyboard.flat().find((b) => label.test(b.text));
  if (!button) throw new Error(`no button ${label} under ${JSON.stringify(message.text)}: ${JSON.stringify(rows)}`);
  return chat().telegram.deliverUpdate(chat().token, {
    update_id: nextUpdateId(),
    callback_query: { id: `cb${updateId}`, from: from(fromId), chat_instance: "ci", data: button.callback_data, message: { ...message.message } },
  });
}

export const requestsWith = (text: string) => chat().model.requests.filter((r) => JSON.stringify(r.body).includes(text));
export const toolNames = (request: { body: unknown }) => ((request.body as ChatRequest).tools ?? []).map((t) => t.function.name).sort();

/** Scripted answers ahead of the rules in standins/po-scenario.ts; `times` many requests each. */
export function script(turns: Turn[]): void {
  chat().model.load({
    turns,
    side: [{ name: "env-analyzer", match: { tools: false, anyMessage: "You are the EnvAnalyzer" }, reply: { content: JSON.stringify(FIXTURE_ENV_ANALYSIS) } }, ...(demoScenario().side ?? [])],
  });
}
