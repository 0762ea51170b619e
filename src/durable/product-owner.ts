/**
 * ProductOwner: one `agents` SDK Agent per chat (`tg:<chatId>` for Telegram, `web:<userId>` for the
 * web console and the CLI). Everything that reaches it (messages, button presses, a secret typed in
 * the chat, the end of a task it started) is put on its durable queue at once and handled one at a
 * time, in order: Telegram's webhook gets its answer in milliseconds, a message that arrives while a
 * turn is running is answered after it, and nothing is interleaved or lost across evictions.
 */
import { Agent, type Connection, type ConnectionContext, type WSMessage } from "agents";
import { and, eq } from "drizzle-orm";
import { z } from "zod";
import type { Db } from "../db/client.ts";
import { isDbUnavailable, withDb } from "../db/client.ts";
import { incidents, tasks } from "../db/schema.ts";
import { AppError } from "../lib/app-error.ts";
import { newId } from "../lib/crypto.ts";
import { createLogger, type Logger } from "../lib/log.ts";
import { openText, packSealed, sealText, unpackSealed } from "../lib/secrets.ts";
import { inSpan } from "../lib/spans.ts";
import { signViewToken } from "../lib/view-token.ts";
import { ingestConversationSummary } from "../rag/sources.ts";
import { type TelegramFrom, telegramPrincipal, telegramUser, userById } from "../product-owner/chat-users.ts";
import { CHAT_SESSION_HEADER, type InboundUpdate } from "../product-owner/client.ts";
import { principalOfKeyId } from "../platform/auth.ts";
import type { Principal } from "../lib/context.ts";
import { parseIntent } from "../product-owner/intent.ts";
import { runTurn } from "../product-owner/loop.ts";
import { modelCaller } from "../product-owner/model.ts";
import { outcomeText, startedText } from "../product-owner/notices.ts";
import { summariseIfLong } from "../product-owner/summary.ts";
import { botApi } from "../product-owner/telegram-api.ts";
import { toolByName, type Tool } from "../product-owner/tools.ts";
import { systemPrompt } from "../product-owner/prompt.ts";
import { answerTask } from "../task-control/task-control.ts";
import { sendToChat } from "../telegram/telegram-outbox.ts";
import { FINAL_TASK_STATUSES } from "../shared/api.ts";
import { CAPABILITY_GROUPS, type ChatButton, type ChatEntry, ChatSession, ClientMessage, type ServerMessage, type SessionState } from "../shared/chat.ts";
import { TaskEvent } from "../shared/events.ts";
import { PendingInput } from "../shared/task-input.ts";
import { newTraceparent, traceIdOf, traceparentIn } from "../shared/trace.ts";
import { type ChatAddress, type ChatUser, ConversationStore, type PendingAction, type Work } from "../product-owner/conversation-store.ts";
import { getTaskStream } from "../tasks/stream-client.ts";

/** `keyId`: the key the web or CLI session that sent it signed in with (Telegram has none: the person is their Telegram account). */
type Inbound = { traceparent?: string; keyId?: string } & (
  | { kind: "message"; text: string; from?: TelegramFrom }
  | { kind: "choice"; actionId: string; choice: string; from?: TelegramFrom; callbackId?: string; messageId?: number }
  | { kind: "secret"; actionId: string; sealed: string; messageId?: number }
);

/** The connection tag of every socket signed in with a key, so that revoking the key closes them. */
const keyTag = (keyId: string) => `key:${keyId}`;
/** Close code for a socket whose key was revoked (4401: the console's "sign in again"). */
const SIGNED_OUT = 4401;
/** The live view links a chat gives out last a day: a build can take longer than the default hour. */
const CHAT_VIEW_LINK_TTL_SECONDS = 24 * 3600;
const CONFIRM: ChatButton[] = [
  { label: "✅ Confirm", choice: "yes" },
  { label: "✖ Cancel", choice: "no" },
];
/** No retries: a turn that failed half-way must not run its tools twice. */
const ONCE = { retry: { maxAttempts: 1 } };
/** Times a turn is put off (2, 4, 8… s) while the database cannot be reached before it starts. */
const DB_RETRIES = 6;

export class ProductOwner extends Agent<Env> {
  static override options = { sendIdentityOnConnect: false };
  private readonly store: ConversationStore;
  private readonly log: Logger;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.store = new ConversationStore(ctx.storage);
    this.log = createLogger(env.LOG_LEVEL, { component: "product-owner" });
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
      if (update.kind === "callback") {
        await this.queue("handle", { kind: "choice", ...parseCallbackData(update.data), from: update.from, callbackId: update.callbackId, ...(update.messageId ? { messageId: update.messageId } : {}), ...trace } satisfies Inbound, ONCE);
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

  /**
   * A secret asked for is sealed before it is queued: it is never stored in the clear, nor shown. It is
   * taken only from the person it was asked of (their Telegram account); anyone else's text is a message.
   */
  private async enqueueText(text: string, sender: { from?: TelegramFrom; keyId?: string }, messageId: number | undefined, traceparent: string): Promise<void> {
    const secret = this.store.actions().find(({ action }) => action.kind === "secret" && (action.askedOf === undefined || action.askedOf === sender.from?.id));
    const who = { ...(sender.from ? { from: sender.from } : {}), ...(sender.keyId ? { keyId: sender.keyId } : {}) };
    if (secret) {
      const sealed = packSealed(await sealText(this.env.SECRETS_ENCRYPTION_KEY, "project-secrets", text.trim(), `chat:${this.name}`));
      await this.queue("handle", { kind: "secret", actionId: secret.id, sealed, ...(messageId ? { messageId } : {}), ...(sender.keyId ? { keyId: sender.keyId } : {}), traceparent } satisfies Inbound, ONCE);
      return;
    }
    await this.queue("handle", { kind: "message", text, ...who, traceparent } satisfies Inbound, ONCE);
  }

  /** The session a connection signed in as (the chat route checked it), or null. */
  private sessionOf(request: Request): ChatSession | null {
    const parsed = ChatSession.safeParse(safeJson(request.headers.get(CHAT_SESSION_HEADER)));
    return parsed.success && this.name === `web:${parsed.data.user.userId}` ? parsed.data : null;
  }

  override getConnectionTags(_connection: Connection, ctx: ConnectionContext): string[] {
    const session = this.sessionOf(ctx.request);
    return session ? [keyTag(session.keyId)] : [];
  }

  override onConnect(connection: Connection, ctx: ConnectionContext): void {
    const session = this.sessionOf(ctx.request);
    if (!session) {
      connection.close(SIGNED_OUT, "not signed in");
      return;
    }
    connection.setState({ keyId: session.keyId });
    this.store.set("address", { channel: "web", userId: session.user.userId } satisfies ChatAddress);
    this.send(connection, { type: "chat.history", entries: this.store.entries(), state: this.store.state });
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
    let message: ClientMessage;
    try {
      const parsed = ClientMessage.safeParse(JSON.parse(typeof raw === "string" ? raw : new TextDecoder().decode(raw)));
      if (!parsed.success) {
        this.send(connection, { type: "chat.error", code: "invalid_message", message: parsed.error.issues.map((issue) => `${issue.path.join(".") || "message"}: ${issue.message}`).join("; ") });
        return;
      }
      message = parsed.data;
    } catch {
      this.send(connection, { type: "chat.error", code: "invalid_message", message: 'Send JSON: {"type":"chat.message","text":"…"}' });
      return;
    }
    const keyId = (connection.state as { keyId?: unknown } | null)?.keyId;
    if (typeof keyId !== "string") {
      connection.close(SIGNED_OUT, "not signed in");
      return;
    }
    // Each message from the console or the CLI starts a trace of its own.
    if (message.type === "chat.message") await this.enqueueText(message.text, { keyId }, undefined, newTraceparent());
    else await this.queue("handle", { kind: "choice", actionId: message.actionId, choice: message.choice, keyId, traceparent: newTraceparent() } satisfies Inbound, ONCE);
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
      await this.say(text);
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
    await inSpan(`product_owner.${inbound.kind}`, { "orchestrator.chat": this.name, traceparent: inbound.traceparent }, () =>
      this.session(async (db) => {
        let person: Person | null;
        try {
          person = await this.resolvePerson(db, inbound);
        } catch (error) {
          // Nothing has happened yet (no model call, no tool): an unreachable database is waited out, not escalated.
          const attempt = (inbound.attempt ?? 0) + 1;
          if (!isDbUnavailable(error) || attempt > DB_RETRIES) throw error;
          this.log.warn("database unavailable before a turn; it runs again shortly", { chat: this.name, attempt, ...this.traceFields() });
          await this.schedule(2 ** attempt, "handle", { ...inbound, attempt });
          return;
        }
        if (!person) return;
        await this.catchUp(db);
        if (inbound.kind === "message") await this.converse(db, person, inbound.text);
        else if (inbound.kind === "choice") await this.choose(db, person, inbound);
        else await this.takeSecret(db, person, inbound);
      }),
    );
  }

  /** The trace of the item being handled: the tasks it starts carry it on. */
  private traceparent: string | undefined;
  private toolContext(db: Db, principal: Principal) {
    return { db, env: this.env, principal, ...(this.traceparent ? { traceparent: this.traceparent } : {}) };
  }

  async taskEvent(event: TaskEvent): Promise<void> {
    // What it does now (a deploy after a build, say) belongs to the task's trace, not the last message's.
    this.traceparent = traceparentIn(event.traceId);
    await this.session(async (db) => {
      const work = this.store.work(event.taskId);
      if (!work || work.done) return;
      if (event.type === "task.needs_input") await this.ask(db, work, event);
      else if (event.type === "task.completed" || event.type === "task.failed" || event.type === "task.cancelled") await this.tellOutcome(db, work, event);
    });
  }

  /** Runs one queued item with a database handle and the session state around it. */
  private async session(work: (db: Db) => Promise<void>): Promise<void> {
    this.setSession("PROCESSING");
    void this.typing();
    try {
      await withDb(this.env, async (db) => {
        this.turnDb = db;
        try {
          await work(db);
        } catch (error) {
          await this.failed(db, error);
        } finally {
          this.turnDb = null;
        }
      });
    } catch (error) {
      this.log.error("product owner turn failed", { chat: this.name, ...this.traceFields(), error: error instanceof Error ? error.message : String(error) });
    } finally {
      this.setSession(this.store.actions().length > 0 ? "AWAITING" : "IDLE");
    }
  }

  private turnDb: Db | null = null;

  private traceFields(): { traceId?: string } {
    return this.traceparent ? { traceId: traceIdOf(this.traceparent) } : {};
  }

  private async failed(db: Db, error: unknown): Promise<void> {
    if (error instanceof AppError && error.code === "budget_exceeded") {
      await this.say(`I can't go on: ${error.message}. No model call was made.`);
      return;
    }
    this.log.error("product owner turn failed", { chat: this.name, ...this.traceFields(), error: error instanceof Error ? error.message : String(error) });
    await this.escalate(db, "something failed on my side", { error: error instanceof Error ? error.message : String(error) });
  }

  /**
   * Who sent it, and what their tools may reach: in the web console and the CLI, the key the session
   * signed in with (checked again now: a revoked key's message is dropped and its sockets closed); in
   * Telegram, the person's own account.
   */
  private async resolvePerson(db: Db, inbound: Inbound): Promise<Person | null> {
    const address = this.store.get<ChatAddress>("address");
    if (address?.channel === "web") {
      const principal = inbound.keyId ? await principalOfKeyId(db, inbound.keyId) : null;
      const user = principal?.userId === address.userId ? await userById(db, address.userId) : null;
      if (!principal || !user) {
        this.log.warn("chat message from a key that no longer works, dropped", { chat: this.name, keyId: inbound.keyId ?? null, ...this.traceFields() });
        if (inbound.keyId) this.endKey(inbound.keyId);
        return null;
      }
      return { user: { ...user, isAdmin: principal.isAdmin }, principal };
    }
    const from = inbound.kind === "secret" ? undefined : inbound.from;
    const user = from ? await telegramUser(db, this.env, from) : (this.store.get<ChatUser>("user") ?? null);
    if (!user) {
      await this.say(`Hello! This Orchestrator is open to invited people only. Ask an admin to add you: your Telegram id is ${from?.id ?? "unknown"}.`);
      return null;
    }
    this.store.set("user", user);
    return { user, principal: telegramPrincipal(user) };
  }

  // ---- a message from the person ----

  private async converse(db: Db, person: Person, text: string): Promise<void> {
    const { user } = person;
    this.addEntry({ id: newId("msg"), at: new Date().toISOString(), from: "user", text });
    this.store.appendTurn({ role: "user", content: text });
    const call = modelCaller(db, this.env, user.userId);
    const summary = await this.summarise(user, call);
    // PO_CAPABILITIES=all offers every tool (no intent parser): for models that do better that way, and for comparison.
    const groups = this.env.PO_CAPABILITIES === "all" ? [...CAPABILITY_GROUPS] : (await parseIntent(call, text, summary.slice(0, 500))).intent.groups;
    const result = await runTurn(
      {
        call,
        tools: this.toolContext(db, person.principal),
        system: systemPrompt(user, summary),
        history: this.store.turns().map((turn) => turn.message),
        append: (message) => this.store.appendTurn(message),
        say: async (reply) => void (await this.say(reply)),
        confirm: (tool, args) => this.askToConfirm(db, user, tool, args),
        started: async (tool, toolArgs, task) => void (await this.started(tool, task, toolArgs, person.principal)),
        escalate: (reason, detail) => this.escalate(db, reason, detail),
        budgetWarning: async (warning) => void (await this.say(`⚠️ Heads up: ${warning}.`)),
      },
      groups,
    );
    this.store.set("groups", result.groups);
  }

  /** Folds old turns into the running summary when the chat is long, and indexes each new summary for search_knowledge (scope history). */
  private async summarise(user: ChatUser, call: ReturnType<typeof modelCaller>): Promise<string> {
    const summarised = await summariseIfLong(this.store, call);
    const summary = this.store.get<string>("summary") ?? "";
    if (summarised && summary) {
      // Indexing only queues a message; a failure to queue must not cost the person their answer.
      await ingestConversationSummary(this.env, { userId: user.userId, chat: this.name, summary }).catch((error: unknown) =>
        this.log.warn("conversation summary not indexed", { chat: this.name, ...this.traceFields(), error: error instanceof Error ? error.message : String(error) }),
      );
    }
    return summary;
  }

  private async askToConfirm(db: Db, user: ChatUser, tool: Tool, args: unknown): Promise<void> {
    const id = newId("act");
    const question = (tool.confirm as (a: unknown) => string)(args);
    this.store.putAction(id, { kind: "confirm", tool: tool.name, args, question, ...(user.telegramId ? { askedOf: user.telegramId } : {}), ...(tool.financial ? { financial: true } : {}) });
    if (tool.financial) await this.recordApproval(db, "a financial decision", { tool: tool.name, args });
    await this.say(question, { actionId: id, buttons: CONFIRM });
  }

  // ---- a button pressed ----

  private async choose(db: Db, person: Person, inbound: Extract<Inbound, { kind: "choice" }>): Promise<void> {
    const { user } = person;
    const api = botApi(this.env);
    const pending = this.store.actions().find((candidate) => candidate.id === inbound.actionId)?.action;
    if (!pending || pending.kind === "secret") {
      if (inbound.callbackId) await api?.answerCallbackQuery(inbound.callbackId, { text: "This button is no longer valid: it was answered already, or the question is gone." }).catch(() => undefined);
      else this.broadcastMessage({ type: "chat.error", code: "stale_action", message: "That question was answered already, or it is gone." });
      return;
    }
    if (pending.askedOf && inbound.from && inbound.from.id !== pending.askedOf) {
      await api?.answerCallbackQuery(inbound.callbackId ?? "", { text: "Only the person who asked can answer this." }).catch(() => undefined);
      return;
    }
    this.store.takeAction(inbound.actionId);
    const yes = inbound.choice === "yes" || inbound.choice === "continue";
    if (inbound.callbackId) await api?.answerCallbackQuery(inbound.callbackId, { text: yes ? "On it" : "Noted" }).catch(() => undefined);
    await this.closeQuestion(inbound.actionId, inbound.messageId, pending.kind === "confirm" ? (yes ? "✔ Confirmed" : "✖ Cancelled") : `→ ${inbound.choice}`);
    let outcome: string;
    if (pending.kind === "decision") outcome = await this.decide(db, user, pending.taskId, inbound.choice);
    else if (!yes) {
      outcome = "Cancelled: nothing was done.";
      await this.say(outcome);
    } else outcome = await this.runConfirmed(db, person, pending);
    this.store.appendTurn({ role: "user", content: `[${pending.question} The person answered: ${inbound.choice}. Outcome: ${outcome}]` });
  }

  private async runConfirmed(db: Db, person: Person, pending: Extract<PendingAction, { kind: "confirm" }>): Promise<string> {
    const tool = toolByName(pending.tool);
    if (!tool) return "the tool is gone";
    try {
      const result = await tool.run(this.toolContext(db, person.principal), pending.args as never);
      if (result.task) return this.started(tool, result.task, pending.args, person.principal);
      const text = `Done: ${JSON.stringify(result.result).slice(0, 300)}`;
      await this.say(text);
      return text;
    } catch (error) {
      if (error instanceof AppError && error.code !== "internal_error") {
        const text = `I could not do it: ${error.message}`;
        await this.say(text);
        return text;
      }
      throw error;
    }
  }

  private async decide(db: Db, user: ChatUser, taskId: string, choice: string): Promise<string> {
    const [task] = await db.select().from(tasks).where(and(eq(tasks.id, taskId), eq(tasks.ownerId, user.userId)));
    if (!task) return "the task is gone";
    try {
      await answerTask(db, this.env, task, choice === "continue" ? { decision: "continue", rounds: 1 } : { decision: "stop", reason: "stopped from the chat" });
      const text = choice === "continue" ? "Going on for another round." : "Stopped. The work so far stays on its branch.";
      await this.say(text);
      return text;
    } catch (error) {
      const text = `That answer was not taken: ${error instanceof Error ? error.message : String(error)}`;
      await this.say(text);
      return text;
    }
  }

  // ---- a secret typed in the chat ----

  private async takeSecret(db: Db, { user }: Person, inbound: Extract<Inbound, { kind: "secret" }>): Promise<void> {
    const pending = this.store.actions().find((candidate) => candidate.id === inbound.actionId)?.action;
    const removed = inbound.messageId ? await this.deleteMessage(inbound.messageId) : true;
    const deletion = removed ? "I deleted your message that held it." : "Please delete your message that holds it: I could not.";
    if (!pending || pending.kind !== "secret") return;
    const value = await openText(this.env.SECRETS_ENCRYPTION_KEY, "project-secrets", unpackSealed(inbound.sealed), `chat:${this.name}`);
    const [task] = await db.select().from(tasks).where(and(eq(tasks.id, pending.taskId), eq(tasks.ownerId, user.userId)));
    try {
      if (!task) throw new AppError("not_found", "the deploy that asked for it is gone");
      await answerTask(db, this.env, task, { secrets: { [pending.name]: value } });
    } catch (error) {
      // The question stays open: the person may send it again.
      await this.say(`${pending.name} was not taken: ${error instanceof Error ? error.message : String(error)}. Send it again. ${deletion}`);
      return;
    }
    this.store.takeAction(inbound.actionId);
    await this.say(`Saved ${pending.name} for ${pending.project} (stored encrypted). ${deletion}`);
    this.store.appendTurn({ role: "user", content: `[The person gave the secret ${pending.name} for ${pending.project}; its value is stored with the project and not shown here.]` });
  }

  // ---- tasks started from this chat ----

  private async started(tool: Tool, task: { id: string; type: string; projectId: string | null }, toolArgs: unknown, by: Principal): Promise<string> {
    const taskId = task.id;
    const args = (toolArgs ?? {}) as { project?: string; deploy?: boolean };
    const thenDeploy = tool.name === "start_engineering" && args.deploy === true;
    // A web or CLI session's follow-up acts with its key's reach; Telegram's with the person's own.
    const keyId = thenDeploy && this.store.get<ChatAddress>("address")?.channel === "web" ? by.keyId : undefined;
    const work: Work = { taskId, type: task.type, project: args.project ?? task.projectId ?? "the project", ...(thenDeploy ? { thenDeploy: true } : {}), ...(keyId ? { keyId } : {}) };
    this.store.follow(work);
    const link = await this.taskLink(taskId);
    const text = startedText(work, taskId, link);
    await this.say(text, { taskId, ...(link ? { taskLink: link } : {}) });
    // The task's stream tells this agent what it asks and how it ends; what happened before now comes back at once.
    const seen = z.array(TaskEvent).parse(await getTaskStream(this.env, taskId).watch(taskId, this.name));
    for (const event of seen) await this.onTaskEvent(event);
    this.log.info("task started from chat", { chat: this.name, taskId, tool: tool.name, ...this.traceFields() });
    return text;
  }

  private async ask(db: Db, work: Work, event: TaskEvent): Promise<void> {
    const pending = PendingInput.safeParse(event.data);
    if (!pending.success) return;
    const input = pending.data;
    const user = this.store.get<ChatUser>("user");
    if (input.kind === "secrets") {
      const field = input.fields?.[0];
      if (!field) return;
      for (const { id, action } of this.store.actions()) if (action.kind === "secret" && action.taskId === work.taskId) this.store.takeAction(id);
      // Taken only from the person it is asked of: their next message, nobody else's.
      this.store.putAction(newId("act"), { kind: "secret", taskId: work.taskId, name: field.name, project: work.project, ...(user?.telegramId ? { askedOf: user.telegramId } : {}) });
      const more = (input.fields?.length ?? 1) > 1 ? ` (then ${input.fields?.slice(1).map((f) => f.name).join(", ")})` : "";
      await this.say(`🔑 The deploy of ${work.project} needs ${field.name}${field.reason ? `: ${field.reason}` : ""}${more}.\nSend its value as your next message. I store it encrypted, delete your message, and never show it again.`);
      return;
    }
    const id = newId("act");
    this.store.putAction(id, { kind: "decision", taskId: work.taskId, question: input.question, ...(user?.telegramId ? { askedOf: user.telegramId } : {}) });
    // Going on after the rounds ran out (or stopping) with tests failing is a person's call: merging would break things.
    await this.recordApproval(db, "the tests still fail after the last round", { taskId: work.taskId });
    await this.say(`🤔 ${input.question}`, { actionId: id, taskId: work.taskId, buttons: (input.options ?? ["continue", "stop"]).map((option) => ({ label: option === "continue" ? "▶ One more round" : option === "stop" ? "■ Stop" : option, choice: option })) });
  }

  private async tellOutcome(db: Db, work: Work, event: Pick<TaskEvent, "type" | "message" | "data" | "step">): Promise<void> {
    if (!this.store.finishWork(work.taskId)) return;
    // Questions it asked are moot once it has ended.
    for (const { id, action } of this.store.actions()) if ((action.kind === "secret" || action.kind === "decision") && action.taskId === work.taskId) this.store.takeAction(id);
    const text = outcomeText(work, event);
    await this.say(text, { taskId: work.taskId });
    this.store.appendTurn({ role: "user", content: `[Task ${work.taskId} (${work.type} of ${work.project}) ended: ${event.type}: ${event.message}]` });
    if (work.thenDeploy && event.type === "task.completed") await this.deployAfterBuild(db, work);
  }

  /** The deploy the person confirmed with the build: started once (finishWork above told this outcome once). */
  private async deployAfterBuild(db: Db, work: Work): Promise<void> {
    const tool = toolByName("deploy_project");
    const person = await this.followUpPerson(db, work);
    if (!person || !tool) {
      if (tool) await this.say(`I did not deploy ${work.project}: the key you asked with no longer works. Ask me again once you have signed in.`);
      return;
    }
    const outcome = await this.runConfirmed(db, person, { kind: "confirm", tool: tool.name, args: { project: work.project }, question: `Deploy ${work.project}?` });
    this.store.appendTurn({ role: "user", content: `[The deploy of ${work.project} that the person confirmed with its build: ${outcome}]` });
  }

  /** Who a follow-up of `work` acts as: the key that started it (while it still works), or the Telegram person. */
  private async followUpPerson(db: Db, work: Work): Promise<Person | null> {
    const address = this.store.get<ChatAddress>("address");
    if (address?.channel === "web") {
      const principal = work.keyId ? await principalOfKeyId(db, work.keyId) : null;
      const user = principal?.userId === address.userId ? await userById(db, address.userId) : null;
      return principal && user ? { user: { ...user, isAdmin: principal.isAdmin }, principal } : null;
    }
    const user = this.store.get<ChatUser>("user");
    return user ? { user, principal: telegramPrincipal(user) } : null;
  }

  /** Tasks that ended while their notice was lost (an outage): told now, from the task's row. */
  private async catchUp(db: Db): Promise<void> {
    for (const work of this.store.openWork()) {
      const [task] = await db.select({ status: tasks.status, error: tasks.error, result: tasks.result }).from(tasks).where(eq(tasks.id, work.taskId));
      if (!task || !(FINAL_TASK_STATUSES as readonly string[]).includes(task.status)) continue;
      await this.tellOutcome(db, work, { type: `task.${task.status}` as TaskEvent["type"], message: task.error ?? (task.result as { message?: string } | null)?.message ?? task.status, data: task.result ?? {} });
    }
  }

  private async taskLink(taskId: string): Promise<string | null> {
    const base = (this.env.PUBLIC_URL ?? "").replace(/\/+$/, "");
    if (!base) return null;
    const { token } = await signViewToken(this.env.SECRETS_ENCRYPTION_KEY, taskId, CHAT_VIEW_LINK_TTL_SECONDS);
    return `${base}/tasks/${encodeURIComponent(taskId)}?token=${token}`;
  }

  // ---- escalation ----

  private async recordApproval(db: Db, reason: string, detail: Record<string, unknown>): Promise<string> {
    const id = newId("inc");
    await db.insert(incidents).values({ id, kind: "needs_human_approval", severity: "warning", message: `Product Owner (${this.name}): ${reason}`, data: { chat: this.name, ...detail } });
    this.store.set("needsHumanApproval", { reason, incident: id, at: new Date().toISOString() });
    return id;
  }

  private async escalate(db: Db, reason: string, detail: Record<string, unknown>): Promise<void> {
    let incident = "";
    try {
      incident = await this.recordApproval(db, reason, detail);
    } catch (error) {
      this.log.error("could not record an escalation", { chat: this.name, error: error instanceof Error ? error.message : String(error) });
    }
    await this.say(`I need a person to decide how to go on: ${reason}. ${incident ? `I flagged it for an admin (incident ${incident}). ` : ""}Tell me what you would like me to do.`);
  }

  // ---- what goes out ----

  private setSession(state: SessionState): void {
    if (this.store.state === state) return;
    this.store.set("state", state);
    this.broadcastMessage({ type: "chat.state", state });
  }

  private addEntry(entry: ChatEntry): void {
    this.store.addEntry(entry);
    this.broadcastMessage({ type: "chat.entry", entry });
  }

  private async say(text: string, extra: Partial<ChatEntry> = {}): Promise<ChatEntry> {
    const entry: ChatEntry = { id: newId("msg"), at: new Date().toISOString(), from: "agent", text, ...extra };
    this.addEntry(entry);
    const address = this.store.get<ChatAddress>("address");
    if (address?.channel === "telegram") {
      const markup = entry.actionId && entry.buttons ? { inline_keyboard: [entry.buttons.map((button) => ({ text: button.label, callback_data: `a:${entry.actionId}:${button.choice}` }))] } : undefined;
      const send = (db: Db) => sendToChat(this.env, db, address.chatId, text, markup);
      await (this.turnDb ? send(this.turnDb) : withDb(this.env, send));
    }
    return entry;
  }

  /** A question answered: its buttons go, and what was chosen is shown under it. */
  private async closeQuestion(actionId: string, telegramMessageId: number | undefined, note: string): Promise<void> {
    const entry = this.store.entries().find((candidate) => candidate.actionId === actionId);
    if (entry) {
      const { buttons: _buttons, ...rest } = entry;
      const closed = { ...rest, text: `${entry.text}\n${note}` };
      this.store.updateEntry(closed);
      this.broadcastMessage({ type: "chat.entry", entry: closed });
    }
    const address = this.store.get<ChatAddress>("address");
    if (address?.channel === "telegram" && telegramMessageId && entry) {
      await botApi(this.env)?.editMessageText(address.chatId, telegramMessageId, `${entry.text}\n${note}`).catch((error: unknown) => this.log.warn("could not close a question", { chat: this.name, error: String(error) }));
    }
  }

  private async deleteMessage(messageId: number): Promise<boolean> {
    const address = this.store.get<ChatAddress>("address");
    if (address?.channel !== "telegram") return true;
    try {
      return (await botApi(this.env)?.deleteMessage(address.chatId, messageId)) ?? false;
    } catch (error) {
      this.log.warn("could not delete a message holding a secret", { chat: this.name, error: error instanceof Error ? error.message : String(error) });
      return false;
    }
  }

  private async typing(): Promise<void> {
    const address = this.store.get<ChatAddress>("address");
    if (address?.channel !== "telegram") return;
    await botApi(this.env)?.sendChatAction(address.chatId, "typing").catch(() => undefined);
  }

  private send(connection: Connection, message: ServerMessage): void {
    connection.send(JSON.stringify(message));
  }

  private broadcastMessage(message: ServerMessage): void {
    this.broadcast(JSON.stringify(message));
  }
}

/** The person a queued item is from, and the reach their tools act with. */
interface Person {
  user: ChatUser;
  principal: Principal;
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
function parseCallbackData(data: string): { actionId: string; choice: string } {
  const match = /^a:([A-Za-z0-9_]{1,40}):([a-z0-9_-]{1,20})$/.exec(data);
  return match ? { actionId: match[1] ?? "", choice: match[2] ?? "" } : { actionId: "", choice: "" };
}
