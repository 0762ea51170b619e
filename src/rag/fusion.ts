/**
 * Reciprocal rank fusion (Cormack, Clarke and Büttcher, SIGIR 2009): each list adds 1 / (k + rank)
 * for every item it ranks. It needs no score calibration between retrievers, which is the point
 * here: ts_rank_cd and cosine similarity are on unrelated scales. k = 60 is the paper's constant; a
 * larger k flattens the difference between the top ranks.
 */
import type { MatchReason } from "./contract.ts";

export const RRF_K = 60;

export interface Fused {
  id: string;
  score: number;
  /** 1-based rank in the full-text list, if it is there. */
  ftsRank: number | null;
  vectorRank: number | null;
  matchedBy: MatchReason;
}

/** Fuses the two ranked id lists (best first) into one, best first; ties keep the full-text order, then the vector order. */
export function reciprocalRankFusion(fts: readonly string[], vector: readonly string[], k = RRF_K): Fused[] {
  const fused = new Map<string, Fused>();
  const add = (ids: readonly string[], side: "ftsRank" | "vectorRank") => {
    ids.forEach((id, index) => {
      const entry = fused.get(id) ?? { id, score: 0, ftsRank: null, vectorRank: null, matchedBy: "fts" as MatchReason };
      if (entry[side] !== null) return; // a list that names an id twice counts it once, at its best rank
      entry[side] = index + 1;
      entry.score += 1 / (k + index + 1);
      fused.set(id, entry);
    });
  };
  add(fts, "ftsRank");
  add(vector, "vectorRank");
  const byRank = (a: number | null, b: number | null) => (a ?? Number.MAX_SAFE_INTEGER) - (b ?? Number.MAX_SAFE_INTEGER);
  return [...fused.values()]
    .map((entry): Fused => ({ ...entry, matchedBy: entry.ftsRank !== null && entry.vectorRank !== null ? "both" : entry.ftsRank !== null ? "fts" : "vector" }))
    .sort((a, b) => b.score - a.score || byRank(a.ftsRank, b.ftsRank) || byRank(a.vectorRank, b.vectorRank));
}
