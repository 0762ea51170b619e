/**
 * The knowledge index (src/rag/):
 * - `GET /api/rag/search?q=&project=&scope=&top_k=&max_tokens=&min_similarity=&mode=`: hybrid search
 *   over what the caller may see (their projects' documents and their own; an admin: all)
 * - `POST /api/rag/documents` `{documents: [{project?, scope, source, title?, content, kind?}]}`:
 *   documents queued for ingestion (202); `DELETE /api/rag/documents?project=&scope=&source=`: one
 *   queued for removal; `GET /api/rag/documents?project=&scope=`: what is indexed, `GET
 *   /api/rag/documents/:id`: one document and its chunks
 * - `POST /api/rag/sync` `{project}`: the project's spec and repository queued; `POST
 *   /api/rag/tasks/:id/log`: a task's log queued
 * - `GET /api/rag/failures`, `POST /api/rag/failures/:id/retry`: messages ingestion gave up on, and
 *   `GET /api/rag/stats`: documents, chunks and vectors held (admins)
 */
import { createRoute } from "@hono/zod-openapi";
import { and, desc, eq, sql } from "drizzle-orm";
import { z } from "zod";
import type { Db } from "../db/client.ts";
import { ragChunks, ragDocuments, ragIngestFailures } from "../db/schema.ts";
import { AppError, notFound } from "../lib/app-error.ts";
import type { Principal } from "../lib/context.ts";
import { apiDoc, apiRouter, errors, jsonBody, jsonResponse } from "../platform/openapi.ts";
import { requireAdmin, requireScope } from "../platform/auth.ts";
import { findProject } from "../projects/projects.ts";
import { loadTask } from "../tasks/tasks.ts";
import { kindOfSource } from "../rag/chunking.ts";
import { DeleteDocument, DocumentsQuery, type DocumentView, IngestBody, SearchQuery } from "../rag/contract.ts";
import type { DocumentInput } from "../rag/documents.ts";
import { enqueueIngest, IngestMessage } from "../rag/messages.ts";
import { REPOSITORY_PREFIX } from "../rag/repository.ts";
import { searchKnowledge } from "../rag/search.ts";
import { configuredVectorIndex, ragServices } from "../rag/services.ts";
import { Timings } from "../rag/timings.ts";
import { ingestDocuments, ingestRepositoryDocs, ingestTaskLog, removeDocuments } from "../rag/sources.ts";
import { rowsVisible, visibilityFor } from "../rag/visibility.ts";

const IdParam = z.object({ id: z.string().min(1).max(64) });
const SyncBody = z.strictObject({ project: z.string().min(1).max(64), ref: z.string().min(1).max(200).optional() });
const FailuresQuery = z.strictObject({ limit: z.coerce.number().int().min(1).max(500).default(100) });

/** Who owns a document the caller sends: one of their projects, or (no project) the caller. */
async function ownerOf(db: Db, principal: Principal, project: string | undefined): Promise<{ projectId: string | null; ownerId: string | null }> {
  if (project) return { projectId: (await findProject(db, principal, project)).id, ownerId: null };
  if (principal.projectId) throw new AppError("forbidden", "This key is limited to one project: name it (project)");
  if (!principal.userId) throw new AppError("forbidden", "This key has no user to own the document: name a project");
  return { projectId: null, ownerId: principal.userId };
}

function reserved(source: string): void {
  if (source.startsWith(REPOSITORY_PREFIX)) throw new AppError("invalid_request", `Sources starting with "${REPOSITORY_PREFIX}" are the repository's own (POST /api/rag/sync indexes them)`);
}

const documentView = (row: typeof ragDocuments.$inferSelect): DocumentView => ({
  id: row.id,
  projectId: row.projectId,
  ownerId: row.ownerId,
  scope: row.scope,
  source: row.source,
  title: row.title,
  contentHash: row.contentHash,
  chunkCount: row.chunkCount,
  updatedAt: row.updatedAt.toISOString(),
});

const doc = apiDoc("rag");
/** The shapes these routes answer with are described in src/rag/contract.ts; here, as JSON objects. */
const Answer = z.record(z.string(), z.unknown());
const search = createRoute({ ...doc, method: "get", path: "/search", summary: "Hybrid search (full text and vectors, fused by reciprocal rank) over what the caller may see", request: { query: SearchQuery }, responses: { 200: jsonResponse(Answer, "Results with their source, score and why they matched, within the token budget"), ...errors(400, 403, 404) } });
const listDocuments = createRoute({ ...doc, method: "get", path: "/documents", summary: "The documents indexed, newest first", request: { query: DocumentsQuery }, responses: { 200: jsonResponse(z.object({ documents: z.array(Answer) }), "The documents"), ...errors(400, 403, 404) } });
const showDocument = createRoute({ ...doc, method: "get", path: "/documents/{id}", summary: "One document and its chunks", request: { params: IdParam }, responses: { 200: jsonResponse(Answer, "The document and its chunks"), ...errors(400, 404) } });
const ingest = createRoute({ ...doc, method: "post", path: "/documents", summary: "Queue documents for ingestion (unchanged ones are not embedded again)", request: { body: jsonBody(IngestBody) }, responses: { 202: jsonResponse(Answer, "What was queued"), ...errors(400, 403, 404, 413, 415) } });
const remove = createRoute({ ...doc, method: "delete", path: "/documents", summary: "Queue a document's removal from both indexes", request: { query: DeleteDocument }, responses: { 202: jsonResponse(Answer, "What was queued"), ...errors(400, 403, 404) } });
const sync = createRoute({ ...doc, method: "post", path: "/sync", summary: "Queue a project's spec and repository docs for ingestion", request: { body: jsonBody(SyncBody) }, responses: { 202: jsonResponse(Answer, "What was queued"), ...errors(400, 404, 413, 415) } });
const taskLog = createRoute({ ...doc, method: "post", path: "/tasks/{id}/log", summary: "Queue a task's log for ingestion", request: { params: IdParam }, responses: { 202: jsonResponse(Answer, "What was queued"), ...errors(400, 404) } });
const stats = createRoute({ ...doc, method: "get", path: "/stats", summary: "Documents, chunks, vectors and failures held (admin)", middleware: [requireAdmin] as const, responses: { 200: jsonResponse(Answer, "The counts"), ...errors(403) } });
const failures = createRoute({ ...doc, method: "get", path: "/failures", summary: "Messages ingestion gave up on (admin)", middleware: [requireAdmin] as const, request: { query: FailuresQuery }, responses: { 200: jsonResponse(z.object({ failures: z.array(Answer) }), "The failures"), ...errors(400, 403) } });
const retry = createRoute({ ...doc, method: "post", path: "/failures/{id}/retry", summary: "Send a failed message again (admin)", middleware: [requireAdmin] as const, request: { params: IdParam }, responses: { 202: jsonResponse(Answer, "What was queued again"), ...errors(400, 403, 404, 409) } });

export const ragRoute = apiRouter();
ragRoute.use(requireScope("user"));
ragRoute
  .openapi(search, async (c) => {
    const timings = new Timings();
    const found = await timings.time("search", () => searchKnowledge(ragServices(c.var.db, c.env), c.var.principal, c.req.valid("query"), timings));
    c.header("server-timing", timings.header());
    return c.json(found as unknown as Record<string, unknown>, 200);
  })
  .openapi(listDocuments, async (c) => {
    const { project, scope, limit, offset } = c.req.valid("query");
    const visibility = await visibilityFor(c.var.db, c.var.principal, project);
    const rows = await c.var.db
      .select()
      .from(ragDocuments)
      .where(and(rowsVisible(visibility, ragDocuments), scope ? eq(ragDocuments.scope, scope) : undefined))
      .orderBy(desc(ragDocuments.updatedAt), ragDocuments.id)
      .limit(limit)
      .offset(offset);
    return c.json({ documents: rows.map(documentView) }, 200);
  })
  .openapi(showDocument, async (c) => {
    const visibility = await visibilityFor(c.var.db, c.var.principal);
    const [row] = await c.var.db.select().from(ragDocuments).where(and(eq(ragDocuments.id, c.req.valid("param").id), rowsVisible(visibility, ragDocuments)));
    if (!row) notFound("Document");
    const chunks = await c.var.db
      .select({ id: ragChunks.id, ordinal: ragChunks.ordinal, heading: ragChunks.heading, text: ragChunks.text, tokens: ragChunks.tokenCount })
      .from(ragChunks)
      .where(eq(ragChunks.documentId, row.id))
      .orderBy(ragChunks.ordinal);
    return c.json({ document: documentView(row), chunks }, 200);
  })
  .openapi(ingest, async (c) => {
    const owners = new Map<string, { projectId: string | null; ownerId: string | null }>();
    const documents: DocumentInput[] = [];
    for (const document of c.req.valid("json").documents) {
      reserved(document.source);
      const name = document.project ?? "";
      const owner = owners.get(name) ?? (await ownerOf(c.var.db, c.var.principal, document.project));
      owners.set(name, owner);
      documents.push({ ...owner, scope: document.scope, source: document.source, title: document.title ?? document.source, content: document.content, kind: document.kind ?? kindOfSource(document.source) });
    }
    await ingestDocuments(c.env, documents);
    return c.json({ queued: documents.map((document) => ({ projectId: document.projectId, ownerId: document.ownerId, scope: document.scope, source: document.source })) }, 202);
  })
  .openapi(remove, async (c) => {
    const { project, scope, source } = c.req.valid("query");
    reserved(source);
    const owner = await ownerOf(c.var.db, c.var.principal, project);
    await removeDocuments(c.env, [{ ...owner, scope, source }]);
    return c.json({ queued: { ...owner, scope, source } }, 202);
  })
  .openapi(sync, async (c) => {
    const { project, ref } = c.req.valid("json");
    const row = await findProject(c.var.db, c.var.principal, project);
    await ingestRepositoryDocs(c.env, { projectId: row.id, ...(ref ? { ref } : {}) });
    return c.json({ queued: { projectId: row.id, repository: row.repositoryUrl, ref: ref ?? null } }, 202);
  })
  .openapi(taskLog, async (c) => {
    const task = await loadTask(c.var.db, c.var.principal, c.req.valid("param").id);
    await ingestTaskLog(c.env, task.id);
    return c.json({ queued: { taskId: task.id } }, 202);
  })
  .openapi(stats, async (c) => {
    const index = configuredVectorIndex(c.env);
    const [counts] = await c.var.db.select({ chunks: sql<number>`count(*)::int` }).from(ragChunks);
    const [documents] = await c.var.db.select({ count: sql<number>`count(*)::int` }).from(ragDocuments);
    const [failed] = await c.var.db.select({ count: sql<number>`count(*)::int` }).from(ragIngestFailures);
    return c.json({ index: index.name, vectors: await index.count(), chunks: counts?.chunks ?? 0, documents: documents?.count ?? 0, failures: failed?.count ?? 0 }, 200);
  })
  .openapi(failures, async (c) => {
    const rows = await c.var.db.select().from(ragIngestFailures).orderBy(desc(ragIngestFailures.createdAt)).limit(c.req.valid("query").limit);
    return c.json({ failures: rows.map((row) => ({ ...row, createdAt: row.createdAt.toISOString() })) }, 200);
  })
  .openapi(retry, async (c) => {
    const [row] = await c.var.db.select().from(ragIngestFailures).where(eq(ragIngestFailures.id, c.req.valid("param").id));
    if (!row) notFound("Failure");
    const message = IngestMessage.safeParse(row.message);
    if (!message.success) throw new AppError("conflict", "This message is not a rag-ingest message: it cannot be sent again");
    await enqueueIngest(c.env, [message.data]);
    await c.var.db.delete(ragIngestFailures).where(eq(ragIngestFailures.id, row.id));
    return c.json({ requeued: { id: row.id, subject: row.subject } }, 202);
  });
