/**
 * Bounded memory: once a conversation has more than TURNS_MAX turns, the older ones are summarised
 * by a cheap model into one running summary (at most SUMMARY_LIMIT characters) and deleted. This is
 * the answer to the seed's MemorySaver leak: a chat's storage stops growing with its length.
 */
import type { ConversationStore } from "./conversation-store.ts";
import { AppError } from "../lib/app-error.ts";
import type { ModelCaller, ModelMessage } from "./model.ts";

export const TURNS_MAX = 40;
export const TURNS_KEPT = 16;
export const SUMMARY_LIMIT = 2000;

export const SUMMARY_PROMPT = `You are the Summariser of Orchestrator's Product Owner. Merge the summary so far and the new turns into one summary of at most 1500 characters: the person's goals, projects (names, what they do), decisions made, tasks started and how they ended, open questions. Plain text, no preamble.`;

function textOf(message: ModelMessage): string {
  const content = typeof message.content === "string" ? message.content : "";
  const calls = "tool_calls" in message && message.tool_calls ? message.tool_calls.map((call) => (call.type === "function" ? `${call.function.name}(${call.function.arguments})` : "")).join(" ") : "";
  return `${message.role}: ${[content, calls].filter(Boolean).join(" ")}`.slice(0, 600);
}

export async function summariseIfLong(store: ConversationStore, call: ModelCaller): Promise<boolean> {
  const turns = store.turns();
  if (turns.length <= TURNS_MAX) return false;
  // Cut just before a person's turn, so no tool call is separated from its answer.
  let cut = turns.length - TURNS_KEPT;
  while (cut > 0 && turns[cut]?.message.role !== "user") cut--;
  if (cut <= 0) return false;
  const old = turns.slice(0, cut);
  const previous = store.get<string>("summary") ?? "";
  const transcript = old.map((turn) => textOf(turn.message)).join("\n").slice(-8000);
  let summary: string;
  try {
    const answer = await call("summariser", {
      messages: [
        { role: "system", content: SUMMARY_PROMPT },
        { role: "user", content: `Summary so far:\n${previous || "(none)"}\n\nNew turns:\n${transcript}` },
      ],
    });
    summary = answer.content.trim() || previous;
  } catch (error) {
    if (error instanceof AppError && error.code === "budget_exceeded") throw error;
    // Without the model the memory still stays bounded: the person's own words, newest last.
    summary = [previous, ...old.filter((turn) => turn.message.role === "user").map((turn) => textOf(turn.message))].join("\n");
  }
  store.summariseUpTo(old.at(-1)?.seq ?? 0, summary.slice(-SUMMARY_LIMIT));
  return true;
}
