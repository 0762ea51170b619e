/**
 * ProductOwner: one `agents` SDK Agent per chat (`tg:<chatId>` for Telegram, `web:<userId>` for the
 * web console and the CLI). Everything that reaches it (messages, button presses, a secret typed in
 * the chat, the end of a task it started) is put on its durable queue at once and handled one at a
 * time, in order: Telegram's webhook gets its answer in milliseconds, a message that arrives while a
 * turn is running is answered after it, and nothing is interleaved or lost across evictions.
 *
 * This class wires the conversation's parts (src/product-owner/: chat-in, chat-out, converse,
 * questions, followed-tasks, escalation) and holds what the SDK and the rest of the system call.
 */
import { Agent, type Connection, type ConnectionContext, type WSMessage } from "agents";
import type { Db } from "../db/client.ts";
import { isDbUnavailable, withDb } from "../db/client.ts";
import type { Principal } from "../lib/context.ts";
import { createLogger } from "../lib/log.ts";
import { inSpan } from "../lib/spans.ts";
import { type Inbound, inboundOfText, keyTag, parseCallbackData, parseClientMessage, resolvePerson, sessionOf, SIGNED_OUT } from "../product-owner/chat-in.ts";
import { ChatOut } from "../product-owner/chat-out.ts";
import type { TelegramFrom } from "../product-owner/chat-users.ts";
import type { InboundUpdate } from "../product-owner/client.ts";
import type { ChatContext, Person } from "../product-owner/context.ts";
import { type ChatAddress, ConversationStore } from "../product-owner/conversation-store.ts";
import { converse } from "../product-owner/converse.ts";
import { Escalation } from "../product-owner/escalation.ts";
import { FollowedTasks } from "../product-owner/followed-tasks.ts";
import { Questions } from "../product-owner/questions.ts";
import type { SessionState } from "../shared/chat.ts";
import type { TaskEvent } from "../shared/events.ts";
import { newTraceparent, traceIdOf, traceparentIn } from "../shared/trace.ts";

/** No retries: a turn that failed half-way must not run its tools twice. */
const ONCE = { retry: { maxAttempts: 1 } };
/** Times a turn is put off (2, 4, 8… s) while the database cannot be reached before it starts. */
const DB_RETRIES = 6;

export class ProductOwner extends Agent<Env> {
  static override options = { sendIdentityOnConnect: false };
  private readonly store: ConversationStore;
  private readonly chat: ChatContext;
  private readonly out: ChatOut;
  private readonly escalation: Escalation;
  private readonly questions: Questions;
  private readonly followed: FollowedTasks;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    const store = (this.store = new ConversationStore(ctx.storage));
    const name = () => this.name;
    this.chat = {
      get name() {
        return name();
      },
      env,
      store,
      log: createLogger(env.LOG_LEVEL, { component: "product-owner" }),
      traceFields: () => (this.traceparent ? { traceId: traceIdOf(this.traceparent) } : {}),
      toolContext: (db: Db, principal: Principal) => ({ db, env: this.env, principal, ...(this.traceparent ? { traceparent: this.traceparent } : {}) }),
    };
    this.out = new ChatOut(this.chat, { broadcast: (frame) => this.broadcast(frame), turnDb: () => this.turnDb });
    this.escalation = new Escalation(this.chat, (text) => this.out.say(text));
    const recordApproval = this.escalation.recordApproval.bind(this.escalation);
    this.questions = new Questions(this.chat, { out: this.out, recordApproval, started: (...args) => this.followed.started(...args) });
    this.followed = new FollowedTasks(this.chat, { out: this.out, recordApproval, onTaskEvent: (event) => this.onTaskEvent(event) });
  }

  // The SDK's own frames (state, identity, MCP) are not part of this chat's protocol.
  override shouldSendProtocolMessages(): boolean {
    return false;
  }

  // ---- what arrives ----

  /** From the Telegram webhook: queued at once (a secret is sealed first); redelivered updates are dropped. */
  async receiveTelegram(update: InboundUpdate): Promise<{ duplicate: boolean }> {
    // One person's conversation: a group's members would share its questions, its secrets and its reach.
    if (update.chat.type !== "private") return { duplicate: false };
    if (!this.store.firstSight(update.updateId)) return { duplicate: true };
    try {
      this.store.set("address", { channel: "telegram", chatId: update.chat.id, chatType: update.chat.type } satisfies ChatAddress);
      const trace = { traceparent: update.traceparent ?? newTraceparent() };
      if (update.type === "telegram:callback") {
        await this.queue("handle", { type: "chat:choice", ...parseCallbackData(update.data), from: update.from, callbackId: update.callbackId, ...(update.messageId ? { messageId: update.messageId } : {}), ...trace } satisfies Inbound, ONCE);
      } else {
        await this.enqueueText(update.text, { from: update.from }, update.messageId, trace.traceparent);
      }
    } catch (error) {
      // Not taken: Telegram sends it again (the webhook answers 5xx), and it must not look seen then.
      this.store.forgetUpdate(update.updateId);
      throw error;
    }
    return { duplicate: false };
  }

  private async enqueueText(text: string, sender: { from?: TelegramFrom; keyId?: string }, messageId: number | undefined, traceparent: string): Promise<void> {
    await this.queue("handle", await inboundOfText(this.chat, text, sender, messageId, traceparent), ONCE);
  }

  override getConnectionTags(_connection: Connection, ctx: ConnectionContext): string[] {
    const session = sessionOf(this.name, ctx.request);
    return session ? [keyTag(session.keyId)] : [];
  }

  override onConnect(connection: Connection, ctx: ConnectionContext): void {
    const session = sessionOf(this.name, ctx.request);
    if (!session) {
      connection.close(SIGNED_OUT, "not signed in");
      return;
    }
    connection.setState({ keyId: session.keyId });
    this.store.set("address", { channel: "web", userId: session.user.userId } satisfies ChatAddress);
    this.out.send(connection, { type: "chat:history", entries: this.store.entries(), state: this.store.state });
  }

  /** A revoked key: every socket signed in with it is closed at once (its next message would be refused anyway). */
  endKey(keyId: string): number {
    let closed = 0;
    for (const connection of this.getConnections(keyTag(keyId))) {
      connection.close(SIGNED_OUT, "the key this chat signed in with was revoked");
      closed++;
    }
    return closed;
  }

  override async onMessage(connection: Connection, raw: WSMessage): Promise<void> {
    const parsed = parseClientMessage(raw);
    if (!parsed.ok) {
      this.out.send(connection, parsed.error);
      return;
    }
    const message = parsed.message;
    const keyId = (connection.state as { keyId?: unknown } | null)?.keyId;
    if (typeof keyId !== "string") {
      connection.close(SIGNED_OUT, "not signed in");
      return;
    }
    // Each message from the console or the CLI starts a trace of its own.
    if (message.type === "chat:message") await this.enqueueText(message.text, { keyId }, undefined, newTraceparent());
    else await this.queue("handle", { type: "chat:choice", actionId: message.actionId, choice: message.choice, keyId, traceparent: newTraceparent() } satisfies Inbound, ONCE);
  }

  /** From a task's stream (it was started from this chat): a question for the person, or its end. */
  async onTaskEvent(event: TaskEvent): Promise<void> {
    await this.queue("taskEvent", event, ONCE);
  }

  /**
   * Something the person should hear that no message of theirs asked for (a service that keeps
   * failing its health checks): queued like everything else, and told in their chat.
   */
  async notify(text: string, telegramChatId?: number): Promise<void> {
    if (telegramChatId && !this.store.get<ChatAddress>("address")) this.store.set("address", { channel: "telegram", chatId: telegramChatId, chatType: "private" } satisfies ChatAddress);
    await this.queue("notice", { text }, ONCE);
  }

  async notice({ text }: { text: string }): Promise<void> {
    this.traceparent = newTraceparent();
    await this.session(async () => {
      await this.out.say(text);
      this.store.appendTurn({ role: "user", content: `[The system told the person: ${text}]` });
    });
  }

  /** Storage size and conversation length, for operators and the benchmark. */
  stats(): { bytes: number; turns: number; entries: number; state: SessionState; summary: boolean } {
    return { bytes: this.store.bytes(), turns: this.store.turns().length, entries: this.store.entries().length, state: this.store.state, summary: Boolean(this.store.get("summary")) };
  }

  // ---- the queue's callbacks: one at a time, in order ----

  async handle(inbound: Inbound & { attempt?: number }): Promise<void> {
    this.traceparent = inbound.traceparent;
    await inSpan(`product_owner.${inbound.type.slice("chat:".length)}`, { "orchestrator.chat": this.name, traceparent: inbound.traceparent }, () =>
      this.session(async (db) => {
        let person: Person | null;
        try {
          person = await resolvePerson(this.chat, { say: (text) => this.out.say(text), endKey: (keyId) => this.endKey(keyId) }, db, inbound);
        } catch (error) {
          // Nothing has happened yet (no model call, no tool): an unreachable database is waited out, not escalated.
          const attempt = (inbound.attempt ?? 0) + 1;
          if (!isDbUnavailable(error) || attempt > DB_RETRIES) throw error;
          this.chat.log.warn("database unavailable before a turn; it runs again shortly", { chat: this.name, attempt, ...this.chat.traceFields() });
          await this.schedule(2 ** attempt, "handle", { ...inbound, attempt });
          return;
        }
        if (!person) return;
        await this.followed.catchUp(db);
        if (inbound.type === "chat:message") {
          await converse(this.chat, { out: this.out, askToConfirm: (...args) => this.questions.askToConfirm(...args), started: (...args) => this.followed.started(...args), escalate: (...args) => this.escalation.escalate(...args) }, db, person, inbound.text);
        } else if (inbound.type === "chat:choice") await this.questions.choose(db, person, inbound);
        else await this.questions.takeSecret(db, person, inbound);
      }),
    );
  }

  /** The trace of the item being handled: the tasks it starts carry it on. */
  private traceparent: string | undefined;

  async taskEvent(event: TaskEvent): Promise<void> {
    // What it does now (a deploy after a build, say) belongs to the task's trace, not the last message's.
    this.traceparent = traceparentIn(event.traceId);
    await this.session((db) => this.followed.heard(db, event));
  }

  /** Runs one queued item with a database handle and the session state around it. */
  private async session(work: (db: Db) => Promise<void>): Promise<void> {
    this.out.setSession("PROCESSING");
    void this.out.typing();
    try {
      await withDb(this.env, async (db) => {
        this.turnDb = db;
        try {
          await work(db);
        } catch (error) {
          await this.escalation.failed(db, error);
        } finally {
          this.turnDb = null;
        }
      });
    } catch (error) {
      this.chat.log.error("product owner turn failed", { chat: this.name, ...this.chat.traceFields(), error: error instanceof Error ? error.message : String(error) });
    } finally {
      this.out.setSession(this.store.actions().length > 0 ? "AWAITING" : "IDLE");
    }
  }

  private turnDb: Db | null = null;
}
