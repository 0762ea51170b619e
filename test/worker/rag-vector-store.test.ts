/**
 * The local vector index (src/durable/vector-store.ts): exact cosine over unit vectors, filtered by
 * visibility and scope before ranking, kept in the Durable Object's SQLite so that it survives the
 * object being evicted from memory.
 */
import { env } from "cloudflare:workers";
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { getVectorStore, localVectorIndex } from "../../src/rag/local-vector-index.ts";

const axis = (i: number, dimensions = 8, scale = 1) => Array.from({ length: dimensions }, (_, d) => (d === i ? scale : 0));
const meta = (visibility: string, scope = "docs") => ({ visibility, scope });

describe("the local vector index", () => {
  it("ranks by cosine similarity (whatever the vectors' length) and returns at most topK", async () => {
    const index = localVectorIndex(env.VECTOR_STORE, `t-${crypto.randomUUID()}`);
    await index.upsert([
      { id: "x", values: axis(0, 8, 5), metadata: meta("project:a") },
      { id: "xy", values: [1, 1, 0, 0, 0, 0, 0, 0], metadata: meta("project:a") },
      { id: "y", values: axis(1), metadata: meta("project:a") },
      { id: "minus-x", values: axis(0, 8, -2), metadata: meta("project:a") },
    ]);
    const matches = await index.query(axis(0, 8, 3), { topK: 3, filter: {} });
    expect(matches.map((match) => match.id)).toEqual(["x", "xy", "y"]);
    expect(matches[0]?.score).toBeCloseTo(1, 6);
    expect(matches[1]?.score).toBeCloseTo(Math.SQRT1_2, 6);
    expect(matches[2]?.score).toBeCloseTo(0, 6);
    expect(await index.count()).toBe(4);
  });

  it("filters by visibility and scope before ranking, so topK is filled from what passes", async () => {
    const index = localVectorIndex(env.VECTOR_STORE, `t-${crypto.randomUUID()}`);
    await index.upsert([
      { id: "mine-1", values: [1, 0.1, 0, 0], metadata: meta("project:mine") },
      { id: "theirs", values: [1, 0, 0, 0], metadata: meta("project:theirs") },
      { id: "mine-code", values: [1, 0.2, 0, 0], metadata: meta("project:mine", "code") },
      { id: "my-chat", values: [1, 0.3, 0, 0], metadata: meta("owner:usr_me", "history") },
    ]);
    const visible = await index.query([1, 0, 0, 0], { topK: 10, filter: { visibility: ["project:mine", "owner:usr_me"] } });
    expect(visible.map((match) => match.id)).toEqual(["mine-1", "mine-code", "my-chat"]);
    const docs = await index.query([1, 0, 0, 0], { topK: 1, filter: { visibility: ["project:mine"], scope: ["docs"] } });
    expect(docs.map((match) => match.id)).toEqual(["mine-1"]);
    expect(await index.query([1, 0, 0, 0], { topK: 5, filter: { visibility: [] } })).toEqual([]);
  });

  it("replaces a vector upserted again, deletes by id, and keeps its vectors through an eviction", async () => {
    const name = `t-${crypto.randomUUID()}`;
    const index = localVectorIndex(env.VECTOR_STORE, name);
    await index.upsert([
      { id: "a", values: axis(0), metadata: meta("admin") },
      { id: "b", values: axis(1), metadata: meta("admin") },
      { id: "c", values: axis(2), metadata: meta("admin") },
    ]);
    await index.upsert([{ id: "a", values: axis(3), metadata: meta("admin") }]);
    await index.delete(["b", "nope"]);
    expect(await index.count()).toBe(2);
    expect((await index.query(axis(3), { topK: 1, filter: {} }))[0]).toMatchObject({ id: "a" });
    const stub = getVectorStore(env, name);
    await evictDurableObject(stub);
    expect(await index.count()).toBe(2);
    expect((await index.query(axis(2), { topK: 1, filter: {} }))[0]).toMatchObject({ id: "c" });
    const rows = await runInDurableObject(stub, (_instance, state) => state.storage.sql.exec<{ n: number }>("SELECT count(*) AS n FROM vectors").one().n);
    expect(rows).toBe(2);
  });

  it("refuses a vector of another size than the index holds", async () => {
    const index = localVectorIndex(env.VECTOR_STORE, `t-${crypto.randomUUID()}`);
    await index.upsert([{ id: "a", values: axis(0, 4), metadata: meta("admin") }]);
    await expect(index.upsert([{ id: "b", values: axis(0, 5), metadata: meta("admin") }])).rejects.toThrow(/5 dimensions/);
    await expect(index.query(axis(0, 5), { topK: 1, filter: {} })).rejects.toThrow(/5 dimensions/);
  });
});
