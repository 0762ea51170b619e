/**
 * The tasks a Product Owner conversation started and follows: the person is told each one started
 * (with its live view's link), asked what it asks, and told how it ended; the deploy a build started
 * (`deploy: true`, confirmed with the build) is followed in turn; tasks whose end was missed (an
 * outage) are caught up on.
 */
import { eq } from "drizzle-orm";
import { z } from "zod";
import type { Db } from "../db/client.ts";
import { tasks } from "../db/schema.ts";
import { newId } from "../lib/crypto.ts";
import { signViewToken } from "../lib/view-token.ts";
import { FINAL_TASK_STATUSES } from "../shared/api.ts";
import { DeployAfterBuild, DeployNotification } from "../shared/deploys.ts";
import { TaskEvent } from "../shared/events.ts";
import { PendingInput } from "../shared/task-input.ts";
import { getTaskStream } from "../tasks/stream-client.ts";
import type { ChatOut } from "./chat-out.ts";
import type { ChatContext } from "./context.ts";
import type { ChatUser, Work } from "./conversation-store.ts";
import { outcomeText, startedText } from "./notices.ts";
import type { Tool } from "./tools.ts";

/** The live view links a chat gives out last a day: a build can take longer than the default hour. */
const CHAT_VIEW_LINK_TTL_SECONDS = 24 * 3600;

export interface FollowedTasksDeps {
  out: ChatOut;
  recordApproval(db: Db, reason: string, detail: Record<string, unknown>): Promise<string>;
  /** Queues a task's event, as the task's stream does. */
  onTaskEvent(event: TaskEvent): Promise<void>;
}

export class FollowedTasks {
  private readonly chat: ChatContext;
  private readonly deps: FollowedTasksDeps;

  constructor(chat: ChatContext, deps: FollowedTasksDeps) {
    this.chat = chat;
    this.deps = deps;
  }

  /** A tool started a task: followed from now on. */
  async started(tool: Tool, task: { id: string; type: string; projectId: string | null }, toolArgs: unknown): Promise<string> {
    const args = (toolArgs ?? {}) as { project?: string };
    const text = await this.follow({ taskId: task.id, type: task.type, project: args.project ?? task.projectId ?? "the project" });
    this.chat.log.info("task started from chat", { chat: this.chat.name, taskId: task.id, tool: tool.name, ...this.chat.traceFields() });
    return text;
  }

  private async follow(work: Work): Promise<string> {
    const { taskId } = work;
    this.chat.store.follow(work);
    const link = await this.taskLink(taskId);
    const text = startedText(work, taskId, link);
    await this.deps.out.say(text, { taskId, ...(link ? { taskLink: link } : {}) });
    // The task's stream tells this agent what it asks and how it ends; what happened before now comes back at once.
    const seen = z.array(TaskEvent).parse(await getTaskStream(this.chat.env, taskId).watch(taskId, this.chat.name));
    for (const event of seen) await this.deps.onTaskEvent(event);
    return text;
  }

  /** An event of a followed task (queued): a question is asked, an end told. */
  async heard(db: Db, event: TaskEvent): Promise<void> {
    const work = this.chat.store.work(event.taskId);
    if (!work || work.done) return;
    if (event.type === "task.needs_input") await this.ask(db, work, event);
    else if (event.type === "task.completed" || event.type === "task.failed" || event.type === "task.cancelled") await this.tellOutcome(db, work, event);
  }

  private async ask(db: Db, work: Work, event: TaskEvent): Promise<void> {
    const pending = PendingInput.safeParse(event.data);
    if (!pending.success) return;
    const input = pending.data;
    const user = this.chat.store.get<ChatUser>("user");
    if (input.kind === "secrets") {
      const field = input.fields?.[0];
      if (!field) return;
      for (const { id, action } of this.chat.store.actions()) if (action.kind === "secret" && action.taskId === work.taskId) this.chat.store.takeAction(id);
      // Taken only from the person it is asked of: their next message, nobody else's.
      this.chat.store.putAction(newId("act"), { kind: "secret", taskId: work.taskId, name: field.name, project: work.project, ...(user?.telegramId ? { askedOf: user.telegramId } : {}) });
      const more = (input.fields?.length ?? 1) > 1 ? ` (then ${input.fields?.slice(1).map((f) => f.name).join(", ")})` : "";
      await this.deps.out.say(`🔑 The deploy of ${work.project} needs ${field.name}${field.reason ? `: ${field.reason}` : ""}${more}.\nSend its value as your next message. I store it encrypted, delete your message, and never show it again.`);
      return;
    }
    const id = newId("act");
    this.chat.store.putAction(id, { kind: "decision", taskId: work.taskId, question: input.question, ...(user?.telegramId ? { askedOf: user.telegramId } : {}) });
    // Going on after the rounds ran out (or stopping) with tests failing is a person's call: merging would break things.
    await this.deps.recordApproval(db, "the tests still fail after the last round", { taskId: work.taskId });
    await this.deps.out.say(`🤔 ${input.question}`, { actionId: id, taskId: work.taskId, buttons: (input.options ?? ["continue", "stop"]).map((option) => ({ label: option === "continue" ? "▶ One more round" : option === "stop" ? "■ Stop" : option, choice: option })) });
  }

  private async tellOutcome(db: Db, work: Work, event: Pick<TaskEvent, "type" | "message" | "data" | "step">): Promise<void> {
    if (!this.chat.store.finishWork(work.taskId)) return;
    // Questions it asked are moot once it has ended.
    for (const { id, action } of this.chat.store.actions()) if ((action.kind === "secret" || action.kind === "decision") && action.taskId === work.taskId) this.chat.store.takeAction(id);
    const text = outcomeText(work, event);
    // A change's preview is live: Ship it and Discard under its link (the press is the confirmation).
    const preview = work.type === "deploy" && event.type === "task.completed" ? DeployNotification.safeParse(event.data?.notification).data?.preview : undefined;
    if (preview) {
      const id = newId("act");
      const user = this.chat.store.get<ChatUser>("user");
      const args = { project: work.project, number: preview };
      const options = {
        ship: { tool: "ship_change", args, label: "🚀 Ship it" },
        more: { say: `What else should change? Say “more on change ${preview} of ${work.project}: …” in your words.`, label: "✏️ Change more" },
        discard: { tool: "discard_change", args, label: "🗑 Discard" },
      };
      this.chat.store.putAction(id, { kind: "offer", question: text, options, ...(user?.telegramId ? { askedOf: user.telegramId } : {}) });
      await this.deps.out.say(text, { taskId: work.taskId, actionId: id, buttons: Object.entries(options).map(([choice, option]) => ({ label: option.label, choice })) });
    } else await this.deps.out.say(text, { taskId: work.taskId });
    this.chat.store.appendTurn({ role: "user", content: `[Task ${work.taskId} (${work.type} of ${work.project}) ended: ${event.type}: ${event.message}]` });
    // The deploy the build started (the person confirmed both at once): followed like any task.
    const deploy = work.type === "engineering" && event.type === "task.completed" ? DeployAfterBuild.safeParse(event.data?.deploy) : undefined;
    if (deploy?.success && "taskId" in deploy.data) await this.follow({ taskId: deploy.data.taskId, type: "deploy", project: work.project });
  }

  /** Tasks that ended while their notice was lost (an outage): told now, from the task's row. */
  async catchUp(db: Db): Promise<void> {
    for (const work of this.chat.store.openWork()) {
      const [task] = await db.select({ status: tasks.status, error: tasks.error, result: tasks.result }).from(tasks).where(eq(tasks.id, work.taskId));
      if (!task || !(FINAL_TASK_STATUSES as readonly string[]).includes(task.status)) continue;
      await this.tellOutcome(db, work, { type: `task.${task.status}` as TaskEvent["type"], message: task.error ?? (task.result as { message?: string } | null)?.message ?? task.status, data: task.result ?? {} });
    }
  }

  private async taskLink(taskId: string): Promise<string | null> {
    const base = (this.chat.env.PUBLIC_URL ?? "").replace(/\/+$/, "");
    if (!base) return null;
    const { token } = await signViewToken(this.chat.env.SECRETS_ENCRYPTION_KEY, taskId, CHAT_VIEW_LINK_TTL_SECONDS);
    return `${base}/tasks/${encodeURIComponent(taskId)}?token=${token}`;
  }
}
