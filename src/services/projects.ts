/** Projects: who may see which, and creating one (the API and the Product Owner alike). */
import { and, eq, or, type SQL, sql } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { isForeignKeyViolation, isUniqueViolation } from "../db/errors.ts";
import { projects } from "../db/schema.ts";
import { AppError, notFound } from "../lib/app-error.ts";
import type { Principal } from "../lib/context.ts";
import { newId } from "../lib/crypto.ts";
import type { CreateProject } from "../shared/api.ts";

export type ProjectRow = typeof projects.$inferSelect;

/** Admins see every project; anyone else only their own. A caller with no user sees none: it fails closed. */
export function projectVisibleTo(principal: Principal): SQL | undefined {
  if (principal.projectId) return principal.userId ? and(eq(projects.id, principal.projectId), eq(projects.ownerId, principal.userId)) : sql`false`;
  if (principal.isAdmin) return undefined;
  return principal.userId ? eq(projects.ownerId, principal.userId) : sql`false`;
}

export async function createProject(db: Db, principal: Principal, body: CreateProject): Promise<ProjectRow> {
  if (principal.projectId) throw new AppError("forbidden", "This key is limited to one project; it cannot create others");
  if (body.ownerId && !principal.isAdmin && body.ownerId !== principal.userId) {
    throw new AppError("forbidden", "Only an admin can create a project for another user");
  }
  const ownerId = body.ownerId ?? principal.userId;
  if (!ownerId) throw new AppError("invalid_request", "ownerId is required for this key");
  try {
    const [project] = await db
      .insert(projects)
      .values({ id: newId("prj"), name: body.name, ownerId, description: body.description ?? "", spec: body.spec, config: body.config ?? {} })
      .returning();
    if (!project) throw new Error("insert returned no row");
    return project;
  } catch (error) {
    if (isUniqueViolation(error)) throw new AppError("conflict", `A project named "${body.name}" already exists`);
    if (isForeignKeyViolation(error)) throw new AppError("invalid_request", `No user with id ${ownerId}`);
    throw error;
  }
}

/** A project the caller may see, by id or by name; 404 otherwise. */
export async function findProject(db: Db, principal: Principal, idOrName: string): Promise<ProjectRow> {
  const [project] = await db
    .select()
    .from(projects)
    .where(and(or(eq(projects.id, idOrName), eq(projects.name, idOrName)), projectVisibleTo(principal)))
    .limit(1);
  if (!project) notFound("Project");
  return project;
}
