/**
 * The model, through the `openai` SDK: any OpenAI-compatible endpoint (OPENAI_BASE_URL) with
 * OPENAI_API_KEY. Which model each agent uses comes from `agent_configs`, with the defaults below
 * for agents that have no row; every call's tokens are recorded in `llm_usage`.
 */
import { eq } from "drizzle-orm";
import OpenAI from "openai";
import type { Db } from "../db/client.ts";
import { agentConfigs, llmUsage } from "../db/schema.ts";
import { AppError } from "../lib/app-error.ts";
import { costOf, modelPrices } from "../shared/usage.ts";
import { newId } from "../lib/crypto.ts";

export const AGENT_NAMES = ["architect", "developer", "env_analyzer", "product_owner", "intent_parser", "summariser", "embeddings"] as const;
export type AgentName = (typeof AGENT_NAMES)[number];

export interface AgentConfig {
  model: string;
  temperature: number | null;
  settings: Record<string, unknown>;
}

/** Used until an admin sets a row in `agent_configs`. */
export const DEFAULT_AGENT_CONFIGS: Record<AgentName, AgentConfig> = {
  architect: { model: "gpt-4.1-mini", temperature: 0.2, settings: {} },
  developer: { model: "gpt-4.1", temperature: null, settings: { codingAgent: "opencode" } },
  env_analyzer: { model: "gpt-4.1-mini", temperature: 0, settings: {} },
  product_owner: { model: "gpt-4.1", temperature: 0.3, settings: {} },
  // The cheap ones: a classification and a summary per call.
  intent_parser: { model: "gpt-4.1-nano", temperature: 0, settings: {} },
  summariser: { model: "gpt-4.1-mini", temperature: 0, settings: {} },
  // The knowledge index's vectors (src/rag/embeddings.ts): always 512 dimensions, the index's size.
  embeddings: { model: "text-embedding-3-small", temperature: null, settings: {} },
};

export async function agentConfig(db: Db, agent: AgentName): Promise<AgentConfig> {
  const [row] = await db.select().from(agentConfigs).where(eq(agentConfigs.agent, agent));
  if (!row) return DEFAULT_AGENT_CONFIGS[agent];
  return { model: row.model, temperature: row.temperature === null ? null : Number(row.temperature), settings: { ...DEFAULT_AGENT_CONFIGS[agent].settings, ...row.settings } };
}

export interface ModelEndpoint {
  baseUrl: string;
  apiKey: string;
}

/** The configured endpoint, or a clear error naming what is missing. */
export function modelEndpoint(env: { OPENAI_BASE_URL?: string; OPENAI_API_KEY?: string }): ModelEndpoint {
  const apiKey = env.OPENAI_API_KEY ?? "";
  if (!apiKey) throw new AppError("conflict", 'No model is configured: set the OPENAI_API_KEY secret (and OPENAI_BASE_URL for an endpoint other than OpenAI); see docs/engineering.md, "Connecting a model"');
  return { baseUrl: (env.OPENAI_BASE_URL || "https://api.openai.com/v1").replace(/\/+$/, ""), apiKey };
}

/**
 * Where job containers reach the model relay (routes/relay.ts): MODEL_RELAY_URL, else PUBLIC_URL's
 * /relay/v1. They never get OPENAI_BASE_URL's key, so without a relay they reach no model at all.
 */
export function modelRelayUrl(env: { MODEL_RELAY_URL?: string; PUBLIC_URL?: string }): string {
  const explicit = (env.MODEL_RELAY_URL ?? "").trim();
  if (explicit) return explicit.replace(/\/+$/, "");
  const base = (env.PUBLIC_URL ?? "").trim().replace(/\/+$/, "");
  if (!base) throw new AppError("conflict", "Job containers reach the model through this Orchestrator's relay: set PUBLIC_URL (or MODEL_RELAY_URL) to where they can reach it");
  return `${base}/relay/v1`;
}

export function openaiClient(endpoint: ModelEndpoint): OpenAI {
  // Retries are the workflow step's; a call that hangs must not hold a step for ten minutes.
  return new OpenAI({ apiKey: endpoint.apiKey, baseURL: endpoint.baseUrl, maxRetries: 1, timeout: 120_000 });
}

export interface UsageRecord {
  agent: AgentName;
  model: string;
  promptTokens: number;
  completionTokens: number;
  projectId?: string | null;
  taskId?: string | null;
  userId?: string | null;
}

/** Records a call's tokens and what they cost, priced with this deployment's table (MODEL_PRICES); returns the cost in USD. */
export async function recordUsage(db: Db, env: { MODEL_PRICES?: string }, usage: UsageRecord): Promise<number> {
  const costUsd = costOf(modelPrices(env.MODEL_PRICES), usage.model, usage.promptTokens, usage.completionTokens);
  await db.insert(llmUsage).values({ id: newId("llm"), ...usage, costUsd: costUsd.toFixed(6) });
  return costUsd;
}

/** An error from the model call as a sentence that never includes the key (the SDK's messages do not carry it). */
export function modelErrorMessage(error: unknown): string {
  // A connection error is an APIError too: ask it first.
  if (error instanceof OpenAI.APIConnectionError) return `the model endpoint could not be reached: ${error.message}`;
  if (error instanceof OpenAI.APIError) return `the model endpoint answered ${String(error.status ?? "with an error")}: ${error.message}`;
  return error instanceof Error ? error.message : String(error);
}
