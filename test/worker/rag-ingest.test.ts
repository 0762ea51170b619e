/**
 * Ingestion (src/rag/documents.ts) against real Postgres and a VectorStore of the test's own, with an
 * embedder that counts its calls: a document is versioned by its content hash, an unchanged one is
 * not embedded again, an edited one has exactly its chunks replaced, a deleted one leaves neither
 * rows nor vectors behind.
 */
import { env } from "cloudflare:workers";
import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { type Db, withDb } from "../../src/db/client.ts";
import { ragChunks } from "../../src/db/schema.ts";
import { deleteDocument, type DocumentInput, findDocument, upsertDocument } from "../../src/rag/documents.ts";
import type { Embedder } from "../../src/rag/embeddings.ts";
import { localVectorIndex } from "../../src/rag/local-vector-index.ts";
import { adminKey, call, createUserWithKey, uniqueName } from "./helpers.ts";

/** Vectors from the text's words, and a record of every text it was asked to embed. */
function countingEmbedder(): Embedder & { texts: string[] } {
  const texts: string[] = [];
  return {
    model: () => Promise.resolve("test-embedder"),
    flush: () => Promise.resolve(),
    texts,
    embed(input) {
      texts.push(...input);
      return Promise.resolve(input.map((text) => Array.from({ length: 16 }, (_, d) => [...text].filter((_, i) => i % 16 === d).length + 1)));
    },
  };
}

async function project(key: string) {
  const res = await call("/api/projects", { method: "POST", key, json: { name: uniqueName("rag"), description: "x" } });
  expect(res.status).toBe(201);
  return (await res.json<{ project: { id: string } }>()).project.id;
}

const chunkIds = (db: Db, documentId: string) => db.select({ id: ragChunks.id }).from(ragChunks).where(eq(ragChunks.documentId, documentId)).orderBy(ragChunks.ordinal).then((rows) => rows.map((row) => row.id));

describe("ingesting documents", () => {
  it("embeds a document once per version and replaces exactly an edited document's chunks", async () => {
    const { key } = await createUserWithKey("ingest");
    const projectId = await project(key);
    const index = localVectorIndex(env.VECTOR_STORE, `t-${crypto.randomUUID()}`);
    const embedder = countingEmbedder();
    const doc = (source: string, body: string): DocumentInput => ({ projectId, ownerId: null, scope: "docs", source, title: source, kind: "markdown", content: body });
    const threeParts = "# A\n\n## One\n\nfirst part\n\n## Two\n\nsecond part\n\n## Three\n\nthird part";
    await withDb(env, async (db) => {
      const services = { db, index, embedder };
      const a = await upsertDocument(services, doc("a.md", threeParts));
      const b = await upsertDocument(services, doc("b.md", "# B\n\nthe other document"));
      expect(a).toMatchObject({ status: "indexed", chunks: 3, replaced: 0 });
      expect(b).toMatchObject({ status: "indexed", chunks: 1 });
      if (a.status !== "indexed" || b.status !== "indexed") throw new Error("not indexed");
      expect(embedder.texts).toHaveLength(4);
      expect(await index.count()).toBe(4);

      // The same version again: nothing is chunked, embedded or written.
      expect(await upsertDocument(services, doc("a.md", threeParts))).toEqual({ status: "unchanged", documentId: a.documentId, chunks: 3 });
      expect(embedder.texts).toHaveLength(4);

      const before = await chunkIds(db, a.documentId);
      const otherBefore = await chunkIds(db, b.documentId);
      const edited = await upsertDocument(services, doc("a.md", threeParts.replace("third part", "a new third part")));
      expect(edited).toMatchObject({ status: "indexed", chunks: 3, replaced: 3 });
      const after = await chunkIds(db, a.documentId);
      expect(after.filter((id) => before.includes(id))).toEqual([]);
      expect(await chunkIds(db, b.documentId)).toEqual(otherBefore);
      // Four vectors still: the three new ones and the other document's; none of the old ones.
      expect(await index.count()).toBe(4);
      const hits = (await index.query(await embedder.embed(["x"], {}).then((v) => v[0] ?? []), { topK: 10, filter: {} })).map((match) => match.id);
      expect(hits.sort()).toEqual([...after, ...otherBefore].sort());

      expect(await deleteDocument(services, { projectId, ownerId: null, scope: "docs", source: "a.md" })).toEqual({ deleted: true, chunks: 3 });
      expect(await findDocument(db, { projectId, ownerId: null, scope: "docs", source: "a.md" })).toBeUndefined();
      expect(await chunkIds(db, a.documentId)).toEqual([]);
      expect(await index.count()).toBe(1);
      expect(await deleteDocument(services, { projectId, ownerId: null, scope: "docs", source: "a.md" })).toEqual({ deleted: false, chunks: 0 });
    });
  });

  it("keeps documents of the same source apart by project and by owner", async () => {
    const alice = await createUserWithKey("alice");
    const bob = await createUserWithKey("bob");
    const index = localVectorIndex(env.VECTOR_STORE, `t-${crypto.randomUUID()}`);
    await withDb(env, async (db) => {
      const services = { db, index, embedder: countingEmbedder() };
      const mine = await upsertDocument(services, { projectId: null, ownerId: alice.userId, scope: "history", source: "chat:web", title: "t", kind: "text", content: "alice's summary" });
      const theirs = await upsertDocument(services, { projectId: null, ownerId: bob.userId, scope: "history", source: "chat:web", title: "t", kind: "text", content: "bob's summary" });
      expect(mine.status).toBe("indexed");
      expect(theirs.status).toBe("indexed");
      if (mine.status !== "indexed" || theirs.status !== "indexed") return;
      expect(mine.documentId).not.toBe(theirs.documentId);
    });
  });

  it("skips a document whose project is gone", async () => {
    const index = localVectorIndex(env.VECTOR_STORE, `t-${crypto.randomUUID()}`);
    const embedder = countingEmbedder();
    await withDb(env, async (db) => {
      expect(await upsertDocument({ db, index, embedder }, { projectId: "prj_nosuchproject", ownerId: null, scope: "docs", source: "x.md", title: "x", kind: "markdown", content: "x" })).toEqual({ status: "project_gone" });
    });
    expect(embedder.texts).toEqual([]);
    expect(adminKey()).toBeTruthy();
  });
});
