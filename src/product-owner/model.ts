/**
 * The Product Owner's model calls: the budget is checked before each one (past it, no call is made),
 * and each one's tokens and cost are recorded for the person, as every agent's are.
 */
import type OpenAI from "openai";
import type { Db } from "../db/client.ts";
import { agentConfig, type AgentName, modelEndpoint, openaiClient, recordUsage } from "../models/llm.ts";
import { checkBudget } from "../models/usage.ts";

export type ModelMessage = OpenAI.Chat.Completions.ChatCompletionMessageParam;
export type ModelToolCall = OpenAI.Chat.Completions.ChatCompletionMessageToolCall;

export interface ModelAnswer {
  content: string;
  toolCalls: { id: string; name: string; arguments: string }[];
  promptTokens: number;
  /** Set from 80% of a budget on. */
  budgetWarning?: string;
}

export interface ModelCaller {
  (agent: AgentName, request: { messages: ModelMessage[]; tools?: OpenAI.Chat.Completions.ChatCompletionTool[]; json?: boolean }): Promise<ModelAnswer>;
}

/** A caller that spends on behalf of `userId`. Throws `budget_exceeded` before the call when the budget is used up. */
export function modelCaller(db: Db, env: Env, userId: string): ModelCaller {
  let client: OpenAI | undefined;
  return async (agent, request) => {
    const budget = await checkBudget(db, env, { userId });
    const config = await agentConfig(db, agent);
    client ??= openaiClient(modelEndpoint(env));
    const completion = await client.chat.completions.create({
      model: config.model,
      messages: request.messages,
      ...(request.tools?.length ? { tools: request.tools, tool_choice: "auto" as const } : {}),
      ...(request.json ? { response_format: { type: "json_object" as const } } : {}),
      ...(config.temperature === null ? {} : { temperature: config.temperature }),
    });
    const promptTokens = completion.usage?.prompt_tokens ?? 0;
    await recordUsage(db, env, { agent, model: config.model, promptTokens, completionTokens: completion.usage?.completion_tokens ?? 0, userId });
    const message = completion.choices[0]?.message;
    const toolCalls = (message?.tool_calls ?? []).flatMap((call) => (call.type === "function" ? [{ id: call.id, name: call.function.name, arguments: call.function.arguments }] : []));
    return { content: message?.content ?? "", toolCalls, promptTokens, ...(budget.warning ? { budgetWarning: budget.warning } : {}) };
  };
}
