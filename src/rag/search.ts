/**
 * Hybrid search: Postgres full-text search (websearch_to_tsquery over the generated tsvector,
 * ranked by ts_rank_cd) and vector search (cosine over the chunks' embeddings) each bring their
 * best candidates, reciprocal rank fusion merges them, and the results are read back from Postgres
 * under the caller's visibility (so the vector index's filter is never the only guard) and cut to
 * `top_k` results and `max_tokens` tokens. Full text finds the exact identifier the vectors blur;
 * the vectors find the paraphrase full text cannot match word for word.
 */
import { and, desc, eq, inArray, type SQL, sql } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { projects, ragChunks, ragDocuments } from "../db/schema.ts";
import { AppError } from "../lib/app-error.ts";
import type { Principal } from "../lib/context.ts";
import type { RagScope, SearchHit, SearchQuery, SearchResponse } from "./contract.ts";
import type { Embedder } from "./embeddings.ts";
import { reciprocalRankFusion } from "./fusion.ts";
import { Timings } from "./timings.ts";
import { MAX_TOP_K, type VectorIndex } from "./vector-index.ts";
import { rowsVisible, type Visibility, visibilityFor, visibilityKeys } from "./visibility.ts";

export interface SearchServices {
  db: Db;
  index: VectorIndex;
  embedder: Embedder;
}

/** Candidates each retriever brings to the fusion: enough that the budget can skip a few, and Vectorize's most. */
export function candidateDepth(topK: number): number {
  return Math.min(MAX_TOP_K, Math.max(30, topK * 6));
}

interface Candidate {
  id: string;
  score: number;
}

async function fullTextCandidates(db: Db, text: string, where: SQL | undefined, depth: number): Promise<Candidate[]> {
  const query = sql`websearch_to_tsquery('english', ${text})`;
  const rank = sql<number>`ts_rank_cd(${ragChunks.tsv}, ${query})`;
  const rows = await db
    .select({ id: ragChunks.id, score: rank })
    .from(ragChunks)
    .where(and(sql`${ragChunks.tsv} @@ ${query}`, where))
    .orderBy(desc(rank), ragChunks.id)
    .limit(depth);
  return rows.map((row) => ({ id: row.id, score: Number(row.score) }));
}

async function vectorCandidates(services: SearchServices, principal: Principal, text: string, visibility: Visibility, scopes: RagScope[] | undefined, depth: number, minSimilarity: number, timings: Timings): Promise<Candidate[]> {
  const keys = visibilityKeys(visibility);
  if (keys && keys.length === 0) return [];
  const [vector] = await timings.time("embed", () => services.embedder.embed([text], { userId: principal.userId, projectId: visibility.all || visibility.projectIds.length !== 1 ? null : (visibility.projectIds[0] ?? null) }));
  if (!vector) return [];
  const matches = await timings.time("vector", () => services.index.query(vector, { topK: depth, filter: { ...(keys ? { visibility: keys } : {}), ...(scopes ? { scope: scopes } : {}) } }));
  return matches.filter((match) => match.score >= minSimilarity);
}

/** Searches what `principal` may see; `query.project` names one project (404 unless they see it). */
export async function searchKnowledge(services: SearchServices, principal: Principal, query: SearchQuery, timings = new Timings()): Promise<SearchResponse> {
  const { db } = services;
  const visibility = await timings.time("access", () => visibilityFor(db, principal, query.project));
  const scopes = query.scope;
  const where = and(rowsVisible(visibility), scopes ? inArray(ragChunks.scope, scopes) : undefined);
  const depth = candidateDepth(query.top_k);
  const warnings: string[] = [];
  // The model's name before anything runs side by side: one query on the connection the search
  // already has, rather than a second connection opened for it mid-search.
  if (query.mode !== "fts") await timings.time("model", () => services.embedder.model());
  const [fts, vector] = await Promise.all([
    query.mode === "vector" ? Promise.resolve([]) : timings.time("fts", () => fullTextCandidates(db, query.q, where, depth)),
    query.mode === "fts"
      ? Promise.resolve([])
      : vectorCandidates(services, principal, query.q, visibility, scopes, depth, query.min_similarity, timings).catch((error: unknown) => {
          // Without the model (no key, an outage) a hybrid search still answers, from full text, and says so.
          if (query.mode === "vector" || !(error instanceof AppError)) throw error;
          warnings.push(`vector search unavailable (${error.message}): these results are from full-text search only`);
          return [];
        }),
  ]);
  const fused = reciprocalRankFusion(
    fts.map((candidate) => candidate.id),
    vector.map((candidate) => candidate.id),
  );
  const ftsScore = new Map(fts.map((candidate) => [candidate.id, candidate.score]));
  const similarity = new Map(vector.map((candidate) => [candidate.id, candidate.score]));

  // Read back under the same visibility: a stray vector (a chunk deleted meanwhile, another owner's) is dropped here.
  const rows = fused.length
    ? await timings.time("read", () => db
        .select({ chunk: ragChunks, document: { source: ragDocuments.source, title: ragDocuments.title }, project: { id: projects.id, name: projects.name } })
        .from(ragChunks)
        .innerJoin(ragDocuments, eq(ragDocuments.id, ragChunks.documentId))
        .leftJoin(projects, eq(projects.id, ragChunks.projectId))
        .where(and(inArray(ragChunks.id, fused.map((entry) => entry.id)), where)))
    : [];
  await services.embedder.flush();
  const byId = new Map(rows.map((row) => [row.chunk.id, row]));

  const results: SearchHit[] = [];
  let tokens = 0;
  let overBudget = 0;
  for (const entry of fused) {
    if (results.length === query.top_k) break;
    const row = byId.get(entry.id);
    if (!row) continue;
    // A result that does not fit is skipped, and a shorter one after it may still fit: the budget is a hard limit.
    if (tokens + row.chunk.tokenCount > query.max_tokens) {
      overBudget++;
      continue;
    }
    tokens += row.chunk.tokenCount;
    results.push({
      chunkId: row.chunk.id,
      documentId: row.chunk.documentId,
      project: row.project?.id ? { id: row.project.id, name: row.project.name } : null,
      scope: row.chunk.scope,
      source: row.document.source,
      title: row.document.title,
      heading: row.chunk.heading,
      text: row.chunk.text,
      tokens: row.chunk.tokenCount,
      score: Number(entry.score.toFixed(6)),
      matchedBy: entry.matchedBy,
      similarity: similarity.has(entry.id) ? Number((similarity.get(entry.id) ?? 0).toFixed(4)) : null,
      ftsRank: ftsScore.has(entry.id) ? Number((ftsScore.get(entry.id) ?? 0).toFixed(4)) : null,
    });
  }
  return {
    query: query.q,
    mode: query.mode,
    results,
    tokens,
    budget: { topK: query.top_k, maxTokens: query.max_tokens, minSimilarity: query.min_similarity },
    candidates: { fts: fts.length, vector: vector.length },
    overBudget,
    warnings,
  };
}
