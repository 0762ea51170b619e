/**
 * Where the chunks' vectors live, behind one interface: Cloudflare Vectorize in production, or the
 * local VectorStore Durable Object (exact cosine) where Vectorize cannot run (wrangler dev, tests)
 * or is not wanted. VECTOR_INDEX chooses; both keep the same metadata, so the search does not care.
 */
import { AppError } from "../lib/app-error.ts";
import { localVectorIndex } from "./local-vector-index.ts";
import { vectorizeIndex } from "./vectorize-index.ts";

export interface VectorMetadata {
  /** Who may see the chunk (visibility.ts): `project:<id>`, `owner:<user id>` or `admin`. */
  visibility: string;
  scope: string;
}

export interface VectorRecord {
  id: string;
  values: number[];
  metadata: VectorMetadata;
}

export interface VectorFilter {
  /** Only chunks with one of these keys; absent: any (an admin's search). */
  visibility?: string[];
  scope?: string[];
}

export interface VectorMatch {
  id: string;
  /** Cosine similarity to the query, -1…1. */
  score: number;
}

export interface VectorIndex {
  readonly name: "local" | "vectorize";
  upsert(records: readonly VectorRecord[]): Promise<void>;
  delete(ids: readonly string[]): Promise<void>;
  /** The `topK` most similar chunks that pass the filter, most similar first. */
  query(vector: readonly number[], options: { topK: number; filter: VectorFilter }): Promise<VectorMatch[]>;
  /** How many vectors it holds (Vectorize counts with a delay), for operators and consistency checks. */
  count(): Promise<number>;
}

/** The index VECTOR_INDEX names: `local` (the default) or `vectorize`. */
export function configuredVectorIndex(env: Pick<Env, "VECTOR_INDEX" | "VECTOR_STORE" | "VECTORIZE">): VectorIndex {
  const choice = env.VECTOR_INDEX || "local";
  if (choice === "local") return localVectorIndex(env.VECTOR_STORE);
  if (choice === "vectorize") return vectorizeIndex(env.VECTORIZE);
  throw new AppError("conflict", `VECTOR_INDEX is "${choice}": it is "local" or "vectorize"`);
}
