/**
 * Where the chunks' vectors live, behind one interface: Cloudflare Vectorize in production, or the
 * local VectorStore Durable Object (exact cosine) where Vectorize cannot run (wrangler dev, tests)
 * or is not wanted. VECTOR_INDEX chooses (configuredVectorIndex, services.ts); both keep the same
 * metadata, so the search does not care.
 */

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

/** The largest topK a query may ask for (as Vectorize's). */
export const MAX_TOP_K = 100;

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
