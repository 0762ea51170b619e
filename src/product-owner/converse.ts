/**
 * A message from the person: stored, the conversation summarised when it is long, the capability
 * groups its intent needs chosen, and one turn of the loop (src/product-owner/loop.ts) run.
 */
import type { Db } from "../db/client.ts";
import { newId } from "../lib/crypto.ts";
import { ingestConversationSummary } from "../rag/sources.ts";
import { CAPABILITY_GROUPS } from "../shared/chat.ts";
import type { ChatOut } from "./chat-out.ts";
import type { ChatContext, Person } from "./context.ts";
import type { ChatUser } from "./conversation-store.ts";
import { parseIntent } from "./intent.ts";
import { runTurn } from "./loop.ts";
import { modelCaller } from "./model.ts";
import { systemPrompt } from "./prompt.ts";
import { summariseIfLong } from "./summary.ts";
import type { Tool } from "./tools.ts";

export interface ConverseDeps {
  out: ChatOut;
  askToConfirm(db: Db, user: ChatUser, tool: Tool, args: unknown): Promise<void>;
  started(tool: Tool, task: { id: string; type: string; projectId: string | null }, toolArgs: unknown): Promise<string>;
  escalate(db: Db, reason: string, detail: Record<string, unknown>): Promise<void>;
}

export async function converse(chat: ChatContext, deps: ConverseDeps, db: Db, person: Person, text: string): Promise<void> {
  const { user } = person;
  deps.out.addEntry({ id: newId("msg"), at: new Date().toISOString(), from: "user", text });
  chat.store.appendTurn({ role: "user", content: text });
  const call = modelCaller(db, chat.env, user.userId);
  const summary = await summarise(chat, user, call);
  // PO_CAPABILITIES=all offers every tool (no intent parser): for models that do better that way, and for comparison.
  const groups = chat.env.PO_CAPABILITIES === "all" ? [...CAPABILITY_GROUPS] : (await parseIntent(call, text, summary.slice(0, 500))).intent.groups;
  const result = await runTurn(
    {
      call,
      tools: chat.toolContext(db, person.principal),
      system: systemPrompt(user, summary),
      history: chat.store.turns().map((turn) => turn.message),
      append: (message) => chat.store.appendTurn(message),
      say: async (reply) => void (await deps.out.say(reply)),
      confirm: (tool, args) => deps.askToConfirm(db, user, tool, args),
      started: async (tool, toolArgs, task) => void (await deps.started(tool, task, toolArgs)),
      escalate: (reason, detail) => deps.escalate(db, reason, detail),
      budgetWarning: async (warning) => void (await deps.out.say(`⚠️ Heads up: ${warning}.`)),
    },
    groups,
  );
  chat.store.set("groups", result.groups);
}

/** Folds old turns into the running summary when the chat is long, and indexes each new summary for search_knowledge (scope history). */
async function summarise(chat: ChatContext, user: ChatUser, call: ReturnType<typeof modelCaller>): Promise<string> {
  const summarised = await summariseIfLong(chat.store, call);
  const summary = chat.store.get<string>("summary") ?? "";
  if (summarised && summary) {
    // Indexing only queues a message; a failure to queue must not cost the person their answer.
    await ingestConversationSummary(chat.env, { userId: user.userId, chat: chat.name, summary }).catch((error: unknown) =>
      chat.log.warn("conversation summary not indexed", { chat: chat.name, ...chat.traceFields(), error: error instanceof Error ? error.message : String(error) }),
    );
  }
  return summary;
}
