/**
 * The VectorIndex over Cloudflare Vectorize (VECTOR_INDEX = "vectorize"): an index of 512
 * dimensions with the cosine metric, and metadata indexes on `visibility` and `scope` so that
 * queries filter before ranking (docs/rag.md). Writes are asynchronous in Vectorize: a
 * chunk is searchable by vector a few seconds after its upsert returns.
 */
import { MAX_TOP_K, type VectorFilter, type VectorIndex, type VectorMatch } from "./vector-index.ts";

/** Vectors (or ids) per call, under Vectorize's per-request limits. */
const BATCH = 500;
/** Vectorize takes a filter of at most 2 KiB of JSON: a long visibility list is queried in parts. */
const MAX_FILTER_BYTES = 2048;

/** The filter in Vectorize's syntax, split so that each part fits. */
export function vectorizeFilters(filter: VectorFilter): VectorizeVectorMetadataFilter[] {
  const scope: VectorizeVectorMetadataFilter = filter.scope ? { scope: { $in: filter.scope } } : {};
  if (!filter.visibility) return [scope];
  const parts: VectorizeVectorMetadataFilter[] = [];
  let keys: string[] = [];
  const size = (candidate: string[]) => JSON.stringify({ ...scope, visibility: { $in: candidate } }).length;
  for (const key of filter.visibility) {
    if (keys.length > 0 && size([...keys, key]) > MAX_FILTER_BYTES) {
      parts.push({ ...scope, visibility: { $in: keys } });
      keys = [];
    }
    keys.push(key);
  }
  // Nothing visible: a filter no chunk passes (an empty $in would mean "no filter" to a reader).
  parts.push({ ...scope, visibility: { $in: keys.length > 0 ? keys : ["none"] } });
  return parts;
}

export function vectorizeIndex(binding: VectorizeIndex): VectorIndex {
  return {
    name: "vectorize",
    async upsert(records) {
      for (let i = 0; i < records.length; i += BATCH) {
        await binding.upsert(records.slice(i, i + BATCH).map((record) => ({ id: record.id, values: record.values, metadata: { ...record.metadata } })));
      }
    },
    async delete(ids) {
      for (let i = 0; i < ids.length; i += BATCH) await binding.deleteByIds(ids.slice(i, i + BATCH));
    },
    async query(vector, options) {
      const topK = Math.max(1, Math.min(MAX_TOP_K, options.topK));
      const answers = await Promise.all(vectorizeFilters(options.filter).map((filter) => binding.query([...vector], { topK, filter, returnValues: false, returnMetadata: "none" })));
      const matches: VectorMatch[] = answers.flatMap((answer) => answer.matches.map((match) => ({ id: match.id, score: match.score })));
      return matches.sort((a, b) => b.score - a.score).slice(0, topK);
    },
    async count() {
      return (await binding.describe()).vectorsCount;
    },
  };
}
