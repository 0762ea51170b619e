/**
 * Who sees which documents: a user sees their projects' documents and their own documents of no
 * project (their conversation summaries); a key limited to one project sees that project's only;
 * an admin sees everything. The same rule is a SQL condition (full-text search, and every result
 * read back) and a set of metadata keys (the vector index's filter).
 */
import { and, eq, inArray, isNull, or, type SQL, sql } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { projects, ragChunks, type ragDocuments } from "../db/schema.ts";
import type { Principal } from "../lib/context.ts";
import { findProject, projectVisibleTo } from "../projects/projects.ts";

export type Visibility = { all: true } | { all: false; projectIds: string[]; ownerId: string | null };

export interface DocumentOwner {
  projectId: string | null;
  ownerId: string | null;
}

/** A document's key in the vector index's metadata: the one thing its filter needs to know. */
export function visibilityKey(owner: DocumentOwner): string {
  if (owner.projectId) return `project:${owner.projectId}`;
  return owner.ownerId ? `owner:${owner.ownerId}` : "admin";
}

/** The keys a search may match; null means no filter (an admin's search). */
export function visibilityKeys(visibility: Visibility): string[] | null {
  if (visibility.all) return null;
  return [...visibility.projectIds.map((id) => visibilityKey({ projectId: id, ownerId: null })), ...(visibility.ownerId ? [visibilityKey({ projectId: null, ownerId: visibility.ownerId })] : [])];
}

/**
 * What `principal` may search: one project (by id or name: 404 unless they see it), or everything
 * they see.
 */
export async function visibilityFor(db: Db, principal: Principal, project?: string): Promise<Visibility> {
  if (project) return { all: false, projectIds: [(await findProject(db, principal, project)).id], ownerId: null };
  if (principal.projectId) return { all: false, projectIds: [(await findProject(db, principal, principal.projectId)).id], ownerId: null };
  if (principal.isAdmin) return { all: true };
  if (!principal.userId) return { all: false, projectIds: [], ownerId: null };
  const rows = await db.select({ id: projects.id }).from(projects).where(projectVisibleTo(principal));
  return { all: false, projectIds: rows.map((row) => row.id), ownerId: principal.userId };
}

/** The same rule over rag_chunks (or rag_documents) rows. Fails closed: nothing visible is `false`, never "no condition". */
export function rowsVisible(visibility: Visibility, table: { projectId: typeof ragChunks.projectId | typeof ragDocuments.projectId; ownerId: typeof ragChunks.ownerId | typeof ragDocuments.ownerId } = ragChunks): SQL | undefined {
  if (visibility.all) return undefined;
  const conditions = [
    visibility.projectIds.length > 0 ? inArray(table.projectId, visibility.projectIds) : undefined,
    visibility.ownerId ? and(isNull(table.projectId), eq(table.ownerId, visibility.ownerId)) : undefined,
  ].filter((condition): condition is SQL => condition !== undefined);
  return conditions.length > 0 ? or(...conditions) : sql`false`;
}
