/**
 * What model calls cost: a price table (USD per million tokens, prompt and completion) with defaults
 * for the models the agents use, overridable per deployment with the MODEL_PRICES var (JSON, merged
 * over these), and the usage report's shape.
 */
import { z } from "zod";

export const ModelPrice = z.strictObject({ promptPerMillion: z.number().min(0), completionPerMillion: z.number().min(0) });
export type ModelPrice = z.infer<typeof ModelPrice>;
export const ModelPrices = z.record(z.string().min(1), ModelPrice);
export type ModelPrices = z.infer<typeof ModelPrices>;

/** OpenAI's list prices (USD per 1M tokens) when this table was written; MODEL_PRICES corrects them. */
export const DEFAULT_MODEL_PRICES: ModelPrices = {
  "gpt-4.1": { promptPerMillion: 2, completionPerMillion: 8 },
  "gpt-4.1-mini": { promptPerMillion: 0.4, completionPerMillion: 1.6 },
  "gpt-4.1-nano": { promptPerMillion: 0.1, completionPerMillion: 0.4 },
  "gpt-4o": { promptPerMillion: 2.5, completionPerMillion: 10 },
  "gpt-4o-mini": { promptPerMillion: 0.15, completionPerMillion: 0.6 },
  "text-embedding-3-small": { promptPerMillion: 0.02, completionPerMillion: 0 },
};

/** The price table of this deployment; a malformed MODEL_PRICES is an error naming the problem. */
export function modelPrices(raw: string | undefined): ModelPrices {
  if (!raw) return DEFAULT_MODEL_PRICES;
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    throw new Error("MODEL_PRICES is not JSON: give {\"<model>\": {\"promptPerMillion\": n, \"completionPerMillion\": n}}");
  }
  const parsed = ModelPrices.safeParse(json);
  if (!parsed.success) throw new Error(`MODEL_PRICES: ${parsed.error.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`).join("; ")}`);
  return { ...DEFAULT_MODEL_PRICES, ...parsed.data };
}

/** The cost of one call in USD; a model missing from the table costs 0 (and the report says which models were unpriced). */
export function costOf(prices: ModelPrices, model: string, promptTokens: number, completionTokens: number): number {
  const price = prices[model];
  if (!price) return 0;
  return (promptTokens * price.promptPerMillion + completionTokens * price.completionPerMillion) / 1_000_000;
}

export const USAGE_GROUPS = ["user", "project", "agent", "model"] as const;
export const UsageQuery = z.strictObject({
  by: z.enum(USAGE_GROUPS).default("project"),
  from: z.iso.datetime({ offset: true }).optional(),
  to: z.iso.datetime({ offset: true }).optional(),
});

export const UsageRow = z.object({
  /** The user, project, agent or model id; null for calls with none (e.g. a project since deleted). */
  key: z.string().nullable(),
  calls: z.number().int(),
  promptTokens: z.number().int(),
  completionTokens: z.number().int(),
  costUsd: z.number(),
});
export type UsageRow = z.infer<typeof UsageRow>;
