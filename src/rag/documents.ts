/**
 * Documents into (and out of) both indexes. A document is versioned by the hash of what its chunks
 * are made from (content, title, kind, chunker version, embedding model): the same hash again is
 * not chunked or embedded again; a new one replaces exactly that document's chunks. Ids are derived
 * from the document's key and version, so a retried ingestion writes the same vectors again rather
 * than leaving strays behind.
 *
 * The order of the writes is what makes a failure at any point safe to retry: new vectors first,
 * then the old ones go, and only then does Postgres take the new chunks and the new hash together
 * in one transaction. Until that commit the document still reads as changed, so a retry redoes it.
 */
import { and, eq, sql } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { projects, ragChunks, ragDocuments } from "../db/schema.ts";
import { sha256Hex } from "../lib/crypto.ts";
import { CHUNKER_VERSION, chunkDocument, embeddingInput } from "./chunking.ts";
import type { DocumentKind, RagScope } from "./contract.ts";
import { EMBEDDING_DIMENSIONS, type Embedder } from "./embeddings.ts";
import type { VectorIndex } from "./vector-index.ts";
import { visibilityKey } from "./visibility.ts";

export interface DocumentKey {
  projectId: string | null;
  /** For a document of no project: the user it belongs to. */
  ownerId: string | null;
  scope: RagScope;
  source: string;
}

export interface DocumentInput extends DocumentKey {
  title: string;
  content: string;
  kind: DocumentKind;
}

export interface IngestServices {
  db: Db;
  index: VectorIndex;
  embedder: Embedder;
}

export type UpsertOutcome =
  | { status: "indexed"; documentId: string; chunks: number; replaced: number }
  | { status: "unchanged"; documentId: string; chunks: number }
  /** Its project was deleted meanwhile: there is nothing to index it for. */
  | { status: "project_gone" };

/** Rows per INSERT: a document of 96 KiB is some 60 chunks; this keeps one statement's parameters modest. */
const INSERT_BATCH = 100;

/** The document's id: the same key always gives the same id, so retries and re-ingestions agree on it. */
export async function documentId(key: DocumentKey): Promise<string> {
  return `rdoc_${(await sha256Hex(JSON.stringify([key.projectId, key.ownerId, key.scope, key.source]))).slice(0, 24)}`;
}

async function chunkId(documentId: string, contentHash: string, ordinal: number): Promise<string> {
  return `rch_${(await sha256Hex(`${documentId}:${contentHash}:${ordinal}`)).slice(0, 32)}`;
}

/** The version of a document as the indexes would hold it. */
export async function contentHash(doc: Pick<DocumentInput, "title" | "content" | "kind">, model: string): Promise<string> {
  return sha256Hex(JSON.stringify({ chunker: CHUNKER_VERSION, model, dimensions: EMBEDDING_DIMENSIONS, kind: doc.kind, title: doc.title, content: doc.content }));
}

const sameKey = (key: DocumentKey) =>
  and(
    sql`${ragDocuments.projectId} IS NOT DISTINCT FROM ${key.projectId}`,
    sql`${ragDocuments.ownerId} IS NOT DISTINCT FROM ${key.ownerId}`,
    eq(ragDocuments.scope, key.scope),
    eq(ragDocuments.source, key.source),
  );

export async function findDocument(db: Db, key: DocumentKey) {
  const [row] = await db.select().from(ragDocuments).where(sameKey(key)).limit(1);
  return row;
}

/** Chunks, embeds and stores a document, unless the indexes hold this very version already. */
export async function upsertDocument(services: IngestServices, doc: DocumentInput): Promise<UpsertOutcome> {
  const { db, index, embedder } = services;
  let payer: string | null = doc.ownerId;
  if (doc.projectId) {
    const [project] = await db.select({ ownerId: projects.ownerId }).from(projects).where(eq(projects.id, doc.projectId));
    if (!project) return { status: "project_gone" };
    payer = project.ownerId;
  }
  const id = await documentId(doc);
  const hash = await contentHash(doc, await embedder.model());
  const existing = await findDocument(db, doc);
  if (existing?.contentHash === hash) return { status: "unchanged", documentId: existing.id, chunks: existing.chunkCount };

  const chunks = chunkDocument({ content: doc.content, kind: doc.kind, source: doc.source, title: doc.title });
  const vectors = chunks.length > 0 ? await embedder.embed(chunks.map(embeddingInput), { projectId: doc.projectId, userId: payer }) : [];
  // Spent now, whatever happens next: a retry that embeds again spends again.
  await embedder.flush();
  const ids = await Promise.all(chunks.map((_, ordinal) => chunkId(id, hash, ordinal)));
  const metadata = { visibility: visibilityKey(doc), scope: doc.scope };
  await index.upsert(ids.map((chunk, i) => ({ id: chunk, values: vectors[i] ?? [], metadata })));
  const previous = (await db.select({ id: ragChunks.id }).from(ragChunks).where(eq(ragChunks.documentId, id))).map((row) => row.id);
  const fresh = new Set(ids);
  const stale = previous.filter((chunk) => !fresh.has(chunk));
  await index.delete(stale);

  await db.transaction(async (tx) => {
    await tx
      .insert(ragDocuments)
      .values({ id, projectId: doc.projectId, ownerId: doc.ownerId, scope: doc.scope, source: doc.source, title: doc.title, contentHash: hash, chunkCount: chunks.length })
      .onConflictDoUpdate({ target: ragDocuments.id, set: { title: doc.title, contentHash: hash, chunkCount: chunks.length, updatedAt: new Date() } });
    await tx.delete(ragChunks).where(eq(ragChunks.documentId, id));
    const rows = chunks.map((chunk, ordinal) => ({
      id: ids[ordinal] ?? "",
      documentId: id,
      projectId: doc.projectId,
      ownerId: doc.ownerId,
      scope: doc.scope,
      ordinal,
      heading: chunk.heading,
      text: chunk.text,
      tokenCount: chunk.tokens,
    }));
    for (let i = 0; i < rows.length; i += INSERT_BATCH) await tx.insert(ragChunks).values(rows.slice(i, i + INSERT_BATCH));
  });
  return { status: "indexed", documentId: id, chunks: chunks.length, replaced: previous.length };
}

/** Removes a document from both indexes (vectors first: a retry after a failure finds the rows still there). */
export async function deleteDocument(services: Pick<IngestServices, "db" | "index">, key: DocumentKey): Promise<{ deleted: boolean; chunks: number }> {
  const existing = await findDocument(services.db, key);
  if (!existing) return { deleted: false, chunks: 0 };
  const chunks = (await services.db.select({ id: ragChunks.id }).from(ragChunks).where(eq(ragChunks.documentId, existing.id))).map((row) => row.id);
  await services.index.delete(chunks);
  await services.db.delete(ragDocuments).where(eq(ragDocuments.id, existing.id));
  return { deleted: true, chunks: chunks.length };
}

/** The sources of a project's documents that start with `prefix`: what a repository sync compares its files with. */
export async function projectSources(db: Db, projectId: string, prefix: string): Promise<DocumentKey[]> {
  const rows = await db
    .select({ scope: ragDocuments.scope, source: ragDocuments.source })
    .from(ragDocuments)
    .where(and(eq(ragDocuments.projectId, projectId), sql`starts_with(${ragDocuments.source}, ${prefix})`));
  return rows.map((row) => ({ projectId, ownerId: null, scope: row.scope, source: row.source }));
}
