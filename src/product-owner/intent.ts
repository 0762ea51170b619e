/**
 * The intent parser: a cheap model reads the person's new message (with a little context) and
 * picks the capability groups the Product Owner needs for it, as the seed's Intent Parser does. Its
 * answer is JSON checked with zod; anything else (no answer, malformed JSON, unknown groups, a model
 * error) falls back to the safe default group, so a parse never stops the conversation.
 */
import { z } from "zod";
import { AppError } from "../lib/app-error.ts";
import { CAPABILITY_GROUPS, CapabilityGroup } from "../shared/chat.ts";
import type { ModelCaller } from "./model.ts";

/** Project management only: reading and creating records, nothing that spends or deploys. */
export const DEFAULT_GROUPS: readonly CapabilityGroup[] = ["project_management"];

export const Intent = z.object({
  groups: z.array(CapabilityGroup).min(1).max(CAPABILITY_GROUPS.length),
  intent: z.string().max(200).optional(),
});
export type Intent = z.infer<typeof Intent>;

export const INTENT_PROMPT = `You are the Intent Parser of Orchestrator, an AI software factory. Classify the person's latest message and pick the capability groups needed to handle it.
Groups:
- project_management: create, list, show projects (new product ideas start here)
- engineering: build a project (spec, repository, code, tests), change a built project (ship or discard a change), undo a change (checkpoints), task status, cancel
- deploy: deploy, roll back, take offline, release history
- infrastructure: servers
- diagnose: failures, errors, what went wrong, and searching the knowledge index (docs, code, past conversations, task logs)
- admin: model spend, budgets
Answer with JSON only: {"groups": ["..."], "intent": "<a few words>"}.`;

export async function parseIntent(call: ModelCaller, message: string, context: string): Promise<{ intent: Intent; fallback: boolean }> {
  try {
    const answer = await call("intent_parser", {
      json: true,
      messages: [
        { role: "system", content: INTENT_PROMPT },
        { role: "user", content: `${context ? `Context: ${context}\n\n` : ""}Message: ${message}` },
      ],
    });
    const parsed = Intent.safeParse(JSON.parse(answer.content));
    if (parsed.success) return { intent: { ...parsed.data, groups: [...new Set(parsed.data.groups)] }, fallback: false };
  } catch (error) {
    // A used-up budget is the person's to hear about, not a reason to guess.
    if (error instanceof AppError && error.code === "budget_exceeded") throw error;
  }
  return { intent: { groups: [...DEFAULT_GROUPS] }, fallback: true };
}
