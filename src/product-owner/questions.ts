/**
 * What a Product Owner conversation asks the person and waits for: a confirmation before a tool with
 * side effects runs (its buttons), a task's decision (go on or stop), and a secret typed in the chat.
 */
import { and, eq } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { tasks } from "../db/schema.ts";
import { AppError } from "../lib/app-error.ts";
import { newId } from "../lib/crypto.ts";
import { openText, unpackSealed } from "../lib/secrets.ts";
import type { ChatButton } from "../shared/chat.ts";
import { answerTask } from "../task-control/task-control.ts";
import type { Inbound } from "./chat-in.ts";
import type { ChatOut } from "./chat-out.ts";
import type { ChatContext, Person } from "./context.ts";
import type { ChatUser, PendingAction } from "./conversation-store.ts";
import { type Tool, toolByName } from "./tools.ts";
import { botApi } from "./telegram-api.ts";

const CONFIRM: ChatButton[] = [
  { label: "✅ Confirm", choice: "yes" },
  { label: "✖ Cancel", choice: "no" },
];

export interface QuestionsDeps {
  out: ChatOut;
  recordApproval(db: Db, reason: string, detail: Record<string, unknown>): Promise<string>;
  /** A confirmed tool started a task: follow it (answers what the person was told). */
  started(tool: Tool, task: { id: string; type: string; projectId: string | null }, toolArgs: unknown): Promise<string>;
}

export class Questions {
  private readonly chat: ChatContext;
  private readonly deps: QuestionsDeps;

  constructor(chat: ChatContext, deps: QuestionsDeps) {
    this.chat = chat;
    this.deps = deps;
  }

  async askToConfirm(db: Db, user: ChatUser, tool: Tool, args: unknown): Promise<void> {
    const id = newId("act");
    const question = (tool.confirm as (a: unknown) => string)(args);
    this.chat.store.putAction(id, { kind: "confirm", tool: tool.name, args, question, ...(user.telegramId ? { askedOf: user.telegramId } : {}), ...(tool.financial ? { financial: true } : {}) });
    if (tool.financial) await this.deps.recordApproval(db, "a financial decision", { tool: tool.name, args });
    await this.deps.out.say(question, { actionId: id, buttons: CONFIRM });
  }

  // ---- a button pressed ----

  async choose(db: Db, person: Person, inbound: Extract<Inbound, { type: "chat:choice" }>): Promise<void> {
    const { user } = person;
    const api = botApi(this.chat.env);
    const pending = this.chat.store.actions().find((candidate) => candidate.id === inbound.actionId)?.action;
    if (!pending || pending.kind === "secret") {
      if (inbound.callbackId) await api?.answerCallbackQuery(inbound.callbackId, { text: "This button is no longer valid: it was answered already, or the question is gone." }).catch(() => undefined);
      else this.deps.out.broadcastMessage({ type: "chat:error", code: "stale_action", message: "That question was answered already, or it is gone." });
      return;
    }
    if (pending.askedOf && inbound.from && inbound.from.id !== pending.askedOf) {
      await api?.answerCallbackQuery(inbound.callbackId ?? "", { text: "Only the person who asked can answer this." }).catch(() => undefined);
      return;
    }
    this.chat.store.takeAction(inbound.actionId);
    if (pending.kind === "offer") return this.takeOffer(db, person, inbound, pending);
    const yes = inbound.choice === "yes" || inbound.choice === "continue";
    if (inbound.callbackId) await api?.answerCallbackQuery(inbound.callbackId, { text: yes ? "On it" : "Noted" }).catch(() => undefined);
    await this.deps.out.closeQuestion(inbound.actionId, inbound.messageId, pending.kind === "confirm" ? (yes ? "✔ Confirmed" : "✖ Cancelled") : `→ ${inbound.choice}`);
    let outcome: string;
    if (pending.kind === "decision") outcome = await this.decide(db, user, pending.taskId, inbound.choice);
    else if (!yes) {
      outcome = "Cancelled: nothing was done.";
      await this.deps.out.say(outcome);
    } else outcome = await this.runConfirmed(db, person, pending);
    this.chat.store.appendTurn({ role: "user", content: `[${pending.question} The person answered: ${inbound.choice}. Outcome: ${outcome}]` });
  }

  /** A button of an offer pressed: its tool runs, as a confirmed one (the button said what it does). */
  private async takeOffer(db: Db, person: Person, inbound: Extract<Inbound, { type: "chat:choice" }>, pending: Extract<PendingAction, { kind: "offer" }>): Promise<void> {
    const option = pending.options[inbound.choice];
    const api = botApi(this.chat.env);
    if (inbound.callbackId) await api?.answerCallbackQuery(inbound.callbackId, { text: option ? "On it" : "Noted" }).catch(() => undefined);
    await this.deps.out.closeQuestion(inbound.actionId, inbound.messageId, `→ ${option?.label ?? inbound.choice}`);
    let outcome = "nothing was done";
    if (option && "say" in option) {
      // A button that asks for words (Change more): the person's next message gives them.
      await this.deps.out.say(option.say);
      outcome = option.say;
    } else if (option) outcome = await this.runConfirmed(db, person, { kind: "confirm", tool: option.tool, args: option.args, question: pending.question });
    this.chat.store.appendTurn({ role: "user", content: `[${pending.question} The person pressed: ${option?.label ?? inbound.choice}. Outcome: ${outcome}]` });
  }

  async runConfirmed(db: Db, person: Person, pending: Extract<PendingAction, { kind: "confirm" }>): Promise<string> {
    const tool = toolByName(pending.tool);
    if (!tool) return "the tool is gone";
    try {
      const result = await tool.run(this.chat.toolContext(db, person.principal), pending.args as never);
      if (result.say) await this.deps.out.say(result.say);
      const also = [];
      for (const task of result.also ?? []) also.push(await this.deps.started(tool, task, pending.args));
      if (result.task) return [...(result.say ? [result.say] : []), await this.deps.started(tool, result.task, pending.args), ...also].join("\n");
      if (also.length) return [...(result.say ? [result.say] : []), ...also].join("\n");
      if (result.say) return result.say;
      const text = `Done: ${JSON.stringify(result.result).slice(0, 300)}`;
      await this.deps.out.say(text);
      return text;
    } catch (error) {
      if (error instanceof AppError && error.code !== "internal_error") {
        const text = `I could not do it: ${error.message}`;
        await this.deps.out.say(text);
        return text;
      }
      throw error;
    }
  }

  private async decide(db: Db, user: ChatUser, taskId: string, choice: string): Promise<string> {
    const [task] = await db.select().from(tasks).where(and(eq(tasks.id, taskId), eq(tasks.ownerId, user.userId)));
    if (!task) return "the task is gone";
    try {
      await answerTask(db, this.chat.env, task, choice === "continue" ? { decision: "continue", rounds: 1 } : { decision: "stop", reason: "stopped from the chat" });
      const text = choice === "continue" ? "Going on for another round." : "Stopped. The work so far stays on its branch.";
      await this.deps.out.say(text);
      return text;
    } catch (error) {
      const text = `That answer was not taken: ${error instanceof Error ? error.message : String(error)}`;
      await this.deps.out.say(text);
      return text;
    }
  }

  // ---- a secret typed in the chat ----

  async takeSecret(db: Db, { user }: Person, inbound: Extract<Inbound, { type: "chat:secret" }>): Promise<void> {
    const pending = this.chat.store.actions().find((candidate) => candidate.id === inbound.actionId)?.action;
    const removed = inbound.messageId ? await this.deps.out.deleteMessage(inbound.messageId) : true;
    const deletion = removed ? "I deleted your message that held it." : "Please delete your message that holds it: I could not.";
    if (!pending || pending.kind !== "secret") return;
    const value = await openText(this.chat.env.SECRETS_ENCRYPTION_KEY, "project-secrets", unpackSealed(inbound.sealed), `chat:${this.chat.name}`);
    const [task] = await db.select().from(tasks).where(and(eq(tasks.id, pending.taskId), eq(tasks.ownerId, user.userId)));
    try {
      if (!task) throw new AppError("not_found", "the deploy that asked for it is gone");
      await answerTask(db, this.chat.env, task, { secrets: { [pending.name]: value } });
    } catch (error) {
      // The question stays open: the person may send it again.
      await this.deps.out.say(`${pending.name} was not taken: ${error instanceof Error ? error.message : String(error)}. Send it again. ${deletion}`);
      return;
    }
    this.chat.store.takeAction(inbound.actionId);
    await this.deps.out.say(`Saved ${pending.name} for ${pending.project} (stored encrypted). ${deletion}`);
    this.chat.store.appendTurn({ role: "user", content: `[The person gave the secret ${pending.name} for ${pending.project}; its value is stored with the project and not shown here.]` });
  }
}
