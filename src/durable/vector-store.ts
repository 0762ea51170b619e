/**
 * VectorStore: the local vector index, one Durable Object holding every chunk's embedding (in its
 * SQLite storage, and in memory once read) and answering queries by exact cosine similarity. It is
 * what dev and tests use, because Vectorize has no local simulator; it suits a deployment of up to
 * some tens of thousands of chunks (5,000 chunks of 512 floats are 10 MB of memory, a query a few
 * milliseconds). Postgres was the other candidate, but without pgvector a cosine over `real[]`
 * (unnest per row) took about 400 ms at 5,000 chunks, and reading the vectors out about 2 s.
 */
import { DurableObject } from "cloudflare:workers";
import { migrate, type SqlMigration } from "../lib/sql-migrations.ts";
import { MAX_TOP_K, type VectorFilter, type VectorMatch, type VectorRecord } from "../rag/vector-index.ts";

const MIGRATIONS: readonly SqlMigration[] = [
  {
    version: 1,
    name: "vectors",
    up: (sql) => sql.exec(`CREATE TABLE vectors (id TEXT PRIMARY KEY, visibility TEXT NOT NULL, scope TEXT NOT NULL, embedding BLOB NOT NULL)`),
  },
];

/** Vectors in one growable Float32Array, unit length, so that cosine similarity is a dot product. */
class Matrix {
  dimensions = 0;
  count = 0;
  private data = new Float32Array(0);
  readonly ids: string[] = [];
  readonly visibility: string[] = [];
  readonly scope: string[] = [];
  private readonly slots = new Map<string, number>();

  set(id: string, vector: Float32Array, visibility: string, scope: string): void {
    if (this.dimensions === 0) this.dimensions = vector.length;
    if (vector.length !== this.dimensions) throw new Error(`a vector of ${vector.length} dimensions; this index holds ${this.dimensions}`);
    let slot = this.slots.get(id);
    if (slot === undefined) {
      slot = this.count++;
      if (this.count * this.dimensions > this.data.length) {
        const grown = new Float32Array(Math.max(1024, this.count * 2) * this.dimensions);
        grown.set(this.data);
        this.data = grown;
      }
      this.slots.set(id, slot);
    }
    this.data.set(vector, slot * this.dimensions);
    this.ids[slot] = id;
    this.visibility[slot] = visibility;
    this.scope[slot] = scope;
  }

  /** Removes by moving the last vector into the freed slot. */
  remove(id: string): boolean {
    const slot = this.slots.get(id);
    if (slot === undefined) return false;
    const last = --this.count;
    if (slot !== last) {
      this.data.copyWithin(slot * this.dimensions, last * this.dimensions, (last + 1) * this.dimensions);
      const moved = this.ids[last] ?? "";
      this.ids[slot] = moved;
      this.visibility[slot] = this.visibility[last] ?? "";
      this.scope[slot] = this.scope[last] ?? "";
      this.slots.set(moved, slot);
    }
    this.ids.length = this.visibility.length = this.scope.length = last;
    this.slots.delete(id);
    return true;
  }

  dot(slot: number, query: Float32Array): number {
    const offset = slot * this.dimensions;
    let sum = 0;
    for (let i = 0; i < this.dimensions; i++) sum += (this.data[offset + i] ?? 0) * (query[i] ?? 0);
    return sum;
  }
}

function unit(values: readonly number[] | Float32Array): Float32Array {
  const vector = Float32Array.from(values);
  let norm = 0;
  for (const value of vector) norm += value * value;
  norm = Math.sqrt(norm);
  if (norm > 0) for (let i = 0; i < vector.length; i++) vector[i] = (vector[i] ?? 0) / norm;
  return vector;
}

export class VectorStore extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  private matrix: Matrix | null = null;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    migrate(ctx.storage, MIGRATIONS);
    this.sql = ctx.storage.sql;
  }

  /** The vectors in memory, read from storage on first use (synchronous SQLite: nothing interleaves). */
  private loaded(): Matrix {
    if (this.matrix) return this.matrix;
    const matrix = new Matrix();
    for (const row of this.sql.exec<{ id: string; visibility: string; scope: string; embedding: ArrayBuffer }>(`SELECT id, visibility, scope, embedding FROM vectors`)) {
      matrix.set(row.id, new Float32Array(row.embedding), row.visibility, row.scope);
    }
    this.matrix = matrix;
    return matrix;
  }

  // Storage first, memory after the commit: a write that fails leaves the two alike.
  upsert(records: VectorRecord[]): number {
    const matrix = this.loaded();
    const vectors = records.map((record) => unit(record.values));
    const dimensions = matrix.dimensions || (vectors[0]?.length ?? 0);
    const wrong = vectors.find((vector) => vector.length !== dimensions);
    if (wrong) throw new Error(`a vector of ${wrong.length} dimensions; this index holds ${dimensions}`);
    this.ctx.storage.transactionSync(() => {
      records.forEach((record, i) => {
        this.sql.exec(`INSERT OR REPLACE INTO vectors (id, visibility, scope, embedding) VALUES (?, ?, ?, ?)`, record.id, record.metadata.visibility, record.metadata.scope, vectors[i]?.buffer ?? new ArrayBuffer(0));
      });
    });
    records.forEach((record, i) => matrix.set(record.id, vectors[i] ?? new Float32Array(0), record.metadata.visibility, record.metadata.scope));
    return records.length;
  }

  delete(ids: string[]): number {
    const matrix = this.loaded();
    this.ctx.storage.transactionSync(() => {
      for (const id of ids) this.sql.exec(`DELETE FROM vectors WHERE id = ?`, id);
    });
    return ids.filter((id) => matrix.remove(id)).length;
  }

  /** The `topK` vectors most similar to `vector` among those the filter lets through, by exact cosine. */
  query(vector: number[], options: { topK: number; filter: VectorFilter }): VectorMatch[] {
    const matrix = this.loaded();
    if (matrix.count === 0) return [];
    if (vector.length !== matrix.dimensions) throw new Error(`the query has ${vector.length} dimensions; this index holds ${matrix.dimensions}`);
    const topK = Math.max(1, Math.min(MAX_TOP_K, Math.floor(options.topK)));
    const query = unit(vector);
    const visibility = options.filter.visibility ? new Set(options.filter.visibility) : null;
    const scope = options.filter.scope ? new Set(options.filter.scope) : null;
    // The best topK so far, ascending by score: a new candidate only has to beat the first.
    const best: VectorMatch[] = [];
    for (let slot = 0; slot < matrix.count; slot++) {
      if (visibility && !visibility.has(matrix.visibility[slot] ?? "")) continue;
      if (scope && !scope.has(matrix.scope[slot] ?? "")) continue;
      const score = matrix.dot(slot, query);
      if (best.length === topK && score <= (best[0]?.score ?? -Infinity)) continue;
      const match = { id: matrix.ids[slot] ?? "", score };
      let at = best.findIndex((entry) => entry.score > score);
      if (at < 0) at = best.length;
      best.splice(at, 0, match);
      if (best.length > topK) best.shift();
    }
    return best.reverse();
  }

  /** How many vectors it holds, of how many dimensions: for operators and tests. */
  stats(): { count: number; dimensions: number } {
    const matrix = this.loaded();
    return { count: matrix.count, dimensions: matrix.dimensions };
  }
}
