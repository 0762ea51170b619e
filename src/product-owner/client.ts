/**
 * How the rest of the system reaches a chat's ProductOwner agent (src/durable/product-owner.ts): the
 * Telegram update it takes, the header the chat route signs a WebSocket in with, and the agent by name.
 */
import { getAgentByName } from "agents";
import type { TelegramFrom } from "./chat-users.ts";

/** A Telegram update as the webhook hands it over: checked and reduced to what the agent uses. */
export type InboundUpdate = {
  updateId: number;
  /** The webhook request's trace: the turn, and any task it starts, carry it on. */
  traceparent?: string;
  chat: { id: number; type: string };
  from: TelegramFrom;
} & ({ type: "telegram:message"; messageId: number; text: string } | { type: "telegram:callback"; callbackId: string; data: string; messageId?: number });

/** Header the chat route sets (after signing the person in) on the WebSocket upgrade it forwards: a ChatSession. */
export const CHAT_SESSION_HEADER = "x-orchestrator-chat-session";

export async function getProductOwner(env: Env, name: string) {
  return getAgentByName(env.PRODUCT_OWNER, name);
}
