/**
 * What goes out of a Product Owner conversation: the entries the person sees (stored, and broadcast
 * to the web console's and the CLI's sockets), Telegram's messages (sent, a question closed, a
 * message deleted, "typing"), and the session's state.
 */
import type { Connection } from "agents";
import type { Db } from "../db/client.ts";
import { withDb } from "../db/client.ts";
import { newId } from "../lib/crypto.ts";
import type { ChatEntry, ServerMessage, SessionState } from "../shared/chat.ts";
import { sendToChat } from "../telegram/telegram-outbox.ts";
import type { ChatContext } from "./context.ts";
import type { ChatAddress } from "./conversation-store.ts";
import { botApi } from "./telegram-api.ts";

export interface ChatOutDeps {
  /** Sends a frame to every socket of the chat. */
  broadcast(frame: string): void;
  /** The database handle of the item being handled, if one is. */
  turnDb(): Db | null;
}

export class ChatOut {
  private readonly chat: ChatContext;
  private readonly deps: ChatOutDeps;

  constructor(chat: ChatContext, deps: ChatOutDeps) {
    this.chat = chat;
    this.deps = deps;
  }

  setSession(state: SessionState): void {
    if (this.chat.store.state === state) return;
    this.chat.store.set("state", state);
    this.broadcastMessage({ type: "chat:state", state });
  }

  addEntry(entry: ChatEntry): void {
    this.chat.store.addEntry(entry);
    this.broadcastMessage({ type: "chat:entry", entry });
  }

  async say(text: string, extra: Partial<ChatEntry> = {}): Promise<ChatEntry> {
    const entry: ChatEntry = { id: newId("msg"), at: new Date().toISOString(), from: "agent", text, ...extra };
    this.addEntry(entry);
    const address = this.chat.store.get<ChatAddress>("address");
    if (address?.channel === "telegram") {
      const markup = entry.actionId && entry.buttons ? { inline_keyboard: [entry.buttons.map((button) => ({ text: button.label, callback_data: `a:${entry.actionId}:${button.choice}` }))] } : undefined;
      const send = (db: Db) => sendToChat(this.chat.env, db, address.chatId, text, markup);
      const turnDb = this.deps.turnDb();
      await (turnDb ? send(turnDb) : withDb(this.chat.env, send));
    }
    return entry;
  }

  /** A question answered: its buttons go, and what was chosen is shown under it. */
  async closeQuestion(actionId: string, telegramMessageId: number | undefined, note: string): Promise<void> {
    const entry = this.chat.store.entries().find((candidate) => candidate.actionId === actionId);
    if (entry) {
      const { buttons: _buttons, ...rest } = entry;
      const closed = { ...rest, text: `${entry.text}\n${note}` };
      this.chat.store.updateEntry(closed);
      this.broadcastMessage({ type: "chat:entry", entry: closed });
    }
    const address = this.chat.store.get<ChatAddress>("address");
    if (address?.channel === "telegram" && telegramMessageId && entry) {
      await botApi(this.chat.env)?.editMessageText(address.chatId, telegramMessageId, `${entry.text}\n${note}`).catch((error: unknown) => this.chat.log.warn("could not close a question", { chat: this.chat.name, error: String(error) }));
    }
  }

  async deleteMessage(messageId: number): Promise<boolean> {
    const address = this.chat.store.get<ChatAddress>("address");
    if (address?.channel !== "telegram") return true;
    try {
      return (await botApi(this.chat.env)?.deleteMessage(address.chatId, messageId)) ?? false;
    } catch (error) {
      this.chat.log.warn("could not delete a message holding a secret", { chat: this.chat.name, error: error instanceof Error ? error.message : String(error) });
      return false;
    }
  }

  async typing(): Promise<void> {
    const address = this.chat.store.get<ChatAddress>("address");
    if (address?.channel !== "telegram") return;
    await botApi(this.chat.env)?.sendChatAction(address.chatId, "typing").catch(() => undefined);
  }

  send(connection: Connection, message: ServerMessage): void {
    connection.send(JSON.stringify(message));
  }

  broadcastMessage(message: ServerMessage): void {
    this.deps.broadcast(JSON.stringify(message));
  }
}
