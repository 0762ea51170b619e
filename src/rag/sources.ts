/**
 * What goes into the knowledge index, and the calls the rest of the system makes to put it there.
 * Each call only queues a message (rag-ingest), so it is cheap, never waits for a model, and its
 * failures are the queue's to retry and record:
 *
 * - `ingestRepositoryDocs`: a project's spec and its repository's docs and code (the scheduler's
 *   github_sync when the default branch moves, and the end of every engineering run)
 * - `ingestTaskLog`: a task's event log (scope `logs`)
 * - `ingestConversationSummary`: a chat's running summary (scope `history`, its user's only)
 * - `ingestDocuments`: documents given whole (POST /api/rag/documents)
 */
import type { projects } from "../db/schema.ts";
import { type DocumentKind, MAX_DOCUMENT_BYTES, type RagScope } from "./contract.ts";
import type { DocumentInput } from "./documents.ts";
import { enqueueIngest } from "./messages.ts";
import type { TaskEvent } from "../shared/events.ts";
import { ProjectSpec } from "../shared/spec.ts";

type ProjectRow = typeof projects.$inferSelect;
type QueueEnv = Pick<Env, "RAG_INGEST">;

/** Queues a sync of the project's spec and repository (at `ref`, default its default branch). */
export async function ingestRepositoryDocs(env: QueueEnv, target: { projectId: string; ref?: string }): Promise<void> {
  await enqueueIngest(env, [{ type: "repository:sync", projectId: target.projectId, ...(target.ref ? { ref: target.ref } : {}) }]);
}

/** Queues a task's event log; call it again when the task has more to say (an unchanged log costs nothing). */
export async function ingestTaskLog(env: QueueEnv, taskId: string): Promise<void> {
  await enqueueIngest(env, [{ type: "task:log", taskId }]);
}

/** Queues a chat's conversation summary: a document of its user only, replaced by each newer summary. */
export async function ingestConversationSummary(env: QueueEnv, conversation: { userId: string; chat: string; summary: string }): Promise<void> {
  await ingestDocuments(env, [{ projectId: null, ownerId: conversation.userId, scope: "history", source: `chat:${conversation.chat}`, title: "Conversation summary", content: conversation.summary, kind: "text" }]);
}

/** Queues documents given whole; each is at most MAX_DOCUMENT_BYTES (the API checks it first, with a 400). */
export async function ingestDocuments(env: QueueEnv, documents: readonly DocumentInput[]): Promise<void> {
  for (const document of documents) {
    if (new TextEncoder().encode(document.content).byteLength > MAX_DOCUMENT_BYTES) throw new Error(`${document.source} is larger than ${MAX_DOCUMENT_BYTES} bytes`);
  }
  await enqueueIngest(env, documents.map((document) => ({ type: "document:upsert", document: { ...document } })));
}

/** Queues the removal of documents from both indexes. */
export async function removeDocuments(env: QueueEnv, keys: readonly { projectId: string | null; ownerId: string | null; scope: RagScope; source: string }[]): Promise<void> {
  await enqueueIngest(env, keys.map((key) => ({ type: "document:delete", key: { ...key } })));
}

// ---- Documents made from the system's own records ----

const bullets = (items: string[]) => items.map((item) => `- ${item}`).join("\n");

/** A project's description and spec as a Markdown document (`docs`, source `spec`), or null when it has neither. */
export function specDocument(project: Pick<ProjectRow, "id" | "name" | "description" | "spec">): DocumentInput | null {
  const parsed = ProjectSpec.safeParse(project.spec);
  const parts: string[] = [`# ${project.name}`];
  if (project.description.trim()) parts.push(`## Description\n\n${project.description.trim()}`);
  if (parsed.success) {
    const spec = parsed.data;
    parts.push(`## Summary\n\n${spec.summary}`, `## Template\n\n${spec.template}`);
    parts.push(`## Modules\n\n${bullets(spec.modules.map((module) => `${module.name}: ${module.purpose}`))}`);
    if (spec.entities.length) parts.push(`## Entities\n\n${bullets(spec.entities.map((entity) => `${entity.name} (${entity.fields.map((field) => `${field.name}: ${field.type}`).join(", ")})`))}`);
    if (spec.routes.length) parts.push(`## Routes\n\n${bullets(spec.routes.map((route) => `${route.method} ${route.path}: ${route.purpose}`))}`);
    if (spec.env.length) parts.push(`## Environment\n\n${bullets(spec.env.map((variable) => `${variable.name} (${variable.kind}): ${variable.description}`))}`);
  } else if (project.spec) {
    parts.push(`## Spec\n\n\`\`\`json\n${JSON.stringify(project.spec, null, 2)}\n\`\`\``);
  }
  if (parts.length === 1) return null;
  const content = parts.join("\n\n");
  return { projectId: project.id, ownerId: null, scope: "docs", source: "spec", title: `${project.name} spec`, content: truncateBytes(content, MAX_DOCUMENT_BYTES, "end"), kind: "markdown" satisfies DocumentKind };
}

/** A task's log as text: one line per event. A long log keeps its end, where a failure is explained. */
export function taskLogDocument(task: { id: string; type: string; status: string; error: string | null; projectId: string | null; ownerId: string }, events: readonly TaskEvent[]): DocumentInput {
  const header = `${task.type} task ${task.id}: ${task.status}${task.error ? ` (${task.error})` : ""}`;
  const lines = events.map((event) => `${event.at} ${event.type}${event.step ? ` [${event.step}]` : ""} ${event.message}`);
  const body = truncateBytes(lines.join("\n"), MAX_DOCUMENT_BYTES - header.length - 4, "start");
  return {
    projectId: task.projectId,
    // A task of no project is its owner's.
    ownerId: task.projectId ? null : task.ownerId,
    scope: "logs",
    source: `task:${task.id}`,
    title: header.slice(0, 300),
    content: `${header}\n\n${body}`,
    kind: "text",
  };
}

/** At most `limit` bytes of UTF-8, cut at a line where possible, keeping the start or the end. */
export function truncateBytes(text: string, limit: number, drop: "start" | "end"): string {
  const encoder = new TextEncoder();
  if (encoder.encode(text).byteLength <= limit) return text;
  // Characters are at most 4 bytes: a quarter of the limit in characters always fits; grow from there.
  let keep = Math.floor(limit / 4);
  const slice = (count: number) => (drop === "end" ? text.slice(0, count) : text.slice(text.length - count));
  while (keep < text.length && encoder.encode(slice(Math.min(text.length, Math.ceil(keep * 1.1)))).byteLength <= limit) keep = Math.min(text.length, Math.ceil(keep * 1.1));
  const kept = slice(keep);
  const newline = drop === "end" ? kept.lastIndexOf("\n") : kept.indexOf("\n");
  if (newline > 0 && newline < kept.length - 1) return drop === "end" ? kept.slice(0, newline) : kept.slice(newline + 1);
  return kept;
}
