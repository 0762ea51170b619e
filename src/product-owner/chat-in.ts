/**
 * What arrives at a Product Owner conversation, before it is queued: Telegram's updates and the chat
 * WebSocket's messages read into an `Inbound`, a secret sealed, the session a socket signed in as;
 * and, when a queued item is handled, who sent it.
 */
import type { WSMessage } from "agents";
import type { Db } from "../db/client.ts";
import { packSealed, sealText } from "../lib/secrets.ts";
import { personPrincipal, principalOfKeyId } from "../platform/auth.ts";
import { ChatSession, ClientMessage, type ServerMessage } from "../shared/chat.ts";
import { type TelegramFrom, telegramUser, userById } from "./chat-users.ts";
import { CHAT_SESSION_HEADER } from "./client.ts";
import type { ChatContext, Person } from "./context.ts";
import type { ChatAddress, ChatUser } from "./conversation-store.ts";

/** `keyId`: the key the web or CLI session that sent it signed in with (Telegram has none: the person is their Telegram account). */
export type Inbound = { traceparent?: string; keyId?: string } & (
  | { type: "chat:message"; text: string; from?: TelegramFrom }
  | { type: "chat:choice"; actionId: string; choice: string; from?: TelegramFrom; callbackId?: string; messageId?: number }
  | { type: "chat:secret"; actionId: string; sealed: string; messageId?: number }
);

/** The connection tag of every socket signed in with a key, so that revoking the key closes them. */
export const keyTag = (keyId: string) => `key:${keyId}`;
/** Close code for a socket whose key was revoked (4401: the console's "sign in again"). */
export const SIGNED_OUT = 4401;

/**
 * A secret asked for is sealed before it is queued: it is never stored in the clear, nor shown. It is
 * taken only from the person it was asked of (their Telegram account); anyone else's text is a message.
 */
export async function inboundOfText(chat: ChatContext, text: string, sender: { from?: TelegramFrom; keyId?: string }, messageId: number | undefined, traceparent: string): Promise<Inbound> {
  const secret = chat.store.actions().find(({ action }) => action.kind === "secret" && (action.askedOf === undefined || action.askedOf === sender.from?.id));
  const who = { ...(sender.from ? { from: sender.from } : {}), ...(sender.keyId ? { keyId: sender.keyId } : {}) };
  if (secret) {
    const sealed = packSealed(await sealText(chat.env.SECRETS_ENCRYPTION_KEY, "project-secrets", text.trim(), `chat:${chat.name}`));
    return { type: "chat:secret", actionId: secret.id, sealed, ...(messageId ? { messageId } : {}), ...(sender.keyId ? { keyId: sender.keyId } : {}), traceparent } satisfies Inbound;
  }
  return { type: "chat:message", text, ...who, traceparent } satisfies Inbound;
}

/** The session a connection signed in as (the chat route checked it), or null. */
export function sessionOf(chatName: string, request: Request): ChatSession | null {
  const parsed = ChatSession.safeParse(safeJson(request.headers.get(CHAT_SESSION_HEADER)));
  return parsed.success && chatName === `web:${parsed.data.user.userId}` ? parsed.data : null;
}

/** A socket's frame read as a ClientMessage, or the error to answer it with. */
export function parseClientMessage(raw: WSMessage): { ok: true; message: ClientMessage } | { ok: false; error: ServerMessage } {
  try {
    const parsed = ClientMessage.safeParse(JSON.parse(typeof raw === "string" ? raw : new TextDecoder().decode(raw)));
    if (!parsed.success) {
      return { ok: false, error: { type: "chat:error", code: "invalid_message", message: parsed.error.issues.map((issue) => `${issue.path.join(".") || "message"}: ${issue.message}`).join("; ") } };
    }
    return { ok: true, message: parsed.data };
  } catch {
    return { ok: false, error: { type: "chat:error", code: "invalid_message", message: 'Send JSON: {"type":"chat:message","text":"…"}' } };
  }
}

/**
 * Who sent it, and what their tools may reach: in the web console and the CLI, the key the session
 * signed in with (checked again now: a revoked key's message is dropped and its sockets closed); in
 * Telegram, the person's own account.
 */
export async function resolvePerson(chat: ChatContext, deps: { say(text: string): Promise<unknown>; endKey(keyId: string): unknown }, db: Db, inbound: Inbound): Promise<Person | null> {
  const address = chat.store.get<ChatAddress>("address");
  if (address?.channel === "web") {
    const principal = inbound.keyId ? await principalOfKeyId(db, inbound.keyId) : null;
    const user = principal?.userId === address.userId ? await userById(db, address.userId) : null;
    if (!principal || !user) {
      chat.log.warn("chat message from a key that no longer works, dropped", { chat: chat.name, keyId: inbound.keyId ?? null, ...chat.traceFields() });
      if (inbound.keyId) deps.endKey(inbound.keyId);
      return null;
    }
    return { user: { ...user, isAdmin: principal.isAdmin }, principal };
  }
  const from = inbound.type === "chat:secret" ? undefined : inbound.from;
  const user = from ? await telegramUser(db, chat.env, from) : (chat.store.get<ChatUser>("user") ?? null);
  if (!user) {
    await deps.say(`Hello! This Orchestrator is open to invited people only. Ask an admin to add you: your Telegram id is ${from?.id ?? "unknown"}.`);
    return null;
  }
  chat.store.set("user", user);
  return { user, principal: personPrincipal(user) };
}

function safeJson(text: string | null): unknown {
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** `a:<actionId>:<choice>`: what the agent's inline keyboards carry. */
export function parseCallbackData(data: string): { actionId: string; choice: string } {
  const match = /^a:([A-Za-z0-9_]{1,40}):([a-z0-9_-]{1,20})$/.exec(data);
  return match ? { actionId: match[1] ?? "", choice: match[2] ?? "" } : { actionId: "", choice: "" };
}
