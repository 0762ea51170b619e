/**
 * Embeddings through the `openai` SDK: OpenAI's text-embedding-3-small at 512 dimensions (the model
 * is the `embeddings` agent's, so an admin can point it elsewhere; the size is the index's and
 * fixed), any OpenAI-compatible endpoint (OPENAI_BASE_URL). Inputs go in batches; each batch is
 * retried with backoff on rate limits, server errors and lost connections (the SDK's retries), and
 * the tokens are recorded in llm_usage under the agent "embeddings" (`flush`).
 */
import type OpenAI from "openai";
import type { Db } from "../db/client.ts";
import { AppError } from "../lib/app-error.ts";
import { agentConfig, modelEndpoint, modelErrorMessage, openaiClient, recordUsage } from "../models/llm.ts";

export const EMBEDDING_DIMENSIONS = 512;
/** Inputs per request: well under OpenAI's 2048 inputs and 300k tokens (a chunk is at most ~512 tokens). */
export const EMBEDDING_BATCH = 128;
/** Retries of one batch on 429, 5xx and connection errors, with the SDK's exponential backoff and jitter. */
const EMBEDDING_RETRIES = 4;

/** Who a call is on behalf of: what its usage row is attributed to. */
export interface Attribution {
  projectId?: string | null;
  userId?: string | null;
  taskId?: string | null;
}

export interface Embedder {
  /** Part of a document's content hash: vectors of another model are never mixed up with these. */
  model(): Promise<string>;
  /** Embeds in batches; what the calls spend is kept until `flush`. */
  embed(texts: readonly string[], on: Attribution): Promise<number[][]>;
  /**
   * Records what was spent since the last flush in llm_usage, one row per attribution. Apart from
   * `embed` so that a search writes it when its database connection is free again, rather than
   * holding up the vector query or opening a second connection for it.
   */
  flush(): Promise<void>;
}

/** The embedding endpoint failed or answered nonsense: a 502 to an API caller, a retry to the queue. */
export class EmbeddingError extends AppError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super("upstream_unavailable", message, options);
  }
}

/**
 * The embedder this deployment is configured with. Without a model key, `embed` throws the
 * `conflict` AppError that says so; an unchanged document needs no embedding, so no key either.
 * The model is looked up on first use, so a search reads it while its full-text half runs.
 */
export function configuredEmbedder(db: Db, env: Env): Embedder {
  let configured: Promise<string> | null = null;
  const modelOf = () => (configured ??= agentConfig(db, "embeddings").then((config) => config.model));
  let client: OpenAI | null = null;
  const spent = new Map<string, { on: Attribution; model: string; promptTokens: number }>();
  return {
    model: modelOf,
    async flush() {
      const rows = [...spent.values()];
      spent.clear();
      for (const row of rows) {
        await recordUsage(db, env, { agent: "embeddings", model: row.model, promptTokens: row.promptTokens, completionTokens: 0, projectId: row.on.projectId ?? null, userId: row.on.userId ?? null, taskId: row.on.taskId ?? null });
      }
    },
    async embed(texts, on) {
      client ??= openaiClient(modelEndpoint(env));
      const model = await modelOf();
      const vectors: number[][] = [];
      for (let start = 0; start < texts.length; start += EMBEDDING_BATCH) {
        const input = texts.slice(start, start + EMBEDDING_BATCH);
        let answer;
        try {
          // encoding_format "float": the SDK would otherwise ask for base64 and decode it itself.
          answer = await client.embeddings.create({ model, input, dimensions: EMBEDDING_DIMENSIONS, encoding_format: "float" }, { maxRetries: EMBEDDING_RETRIES, timeout: 60_000 });
        } catch (error) {
          throw new EmbeddingError(`embeddings: ${modelErrorMessage(error)}`, { cause: error });
        }
        const ordered = [...answer.data].sort((a, b) => a.index - b.index);
        if (ordered.length !== input.length) throw new EmbeddingError(`embeddings: ${input.length} inputs but ${ordered.length} vectors came back`);
        for (const item of ordered) {
          if (!Array.isArray(item.embedding) || item.embedding.length !== EMBEDDING_DIMENSIONS) throw new EmbeddingError(`embeddings: a vector of ${Array.isArray(item.embedding) ? item.embedding.length : "no"} dimensions came back, not ${EMBEDDING_DIMENSIONS}`);
          vectors.push(item.embedding);
        }
        const key = JSON.stringify([model, on.projectId ?? null, on.userId ?? null, on.taskId ?? null]);
        const entry = spent.get(key) ?? { on, model, promptTokens: 0 };
        entry.promptTokens += answer.usage.prompt_tokens;
        spent.set(key, entry);
      }
      return vectors;
    },
  };
}
