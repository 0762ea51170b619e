import { and, desc, eq } from "drizzle-orm";
import { Hono } from "hono";
import { z } from "zod";
import { isForeignKeyViolation, isUniqueViolation } from "../db/errors.ts";
import { projects } from "../db/schema.ts";
import { AppError, notFound } from "../lib/app-error.ts";
import type { AppEnv } from "../lib/context.ts";
import { newId } from "../lib/crypto.ts";
import { validate } from "../lib/validate.ts";
import { requireScope } from "../middleware/auth.ts";
import { projectVisibleTo } from "../services/projects.ts";
import { CreateProject, Page, ProjectStatus, UpdateProject } from "../shared/api.ts";


const IdParam = z.object({ id: z.string().min(1).max(64) });
const ListQuery = Page.extend({ status: ProjectStatus.optional() });

/** `/api/projects`: owner-scoped project CRUD. */
export const projectsRoute = new Hono<AppEnv>()
  .use(requireScope("user"))
  .get("/", validate("query", ListQuery), async (c) => {
    const { limit, offset, status } = c.req.valid("query");
    const rows = await c.var.db
      .select()
      .from(projects)
      .where(and(projectVisibleTo(c.var.principal), status ? eq(projects.status, status) : undefined))
      .orderBy(desc(projects.createdAt), desc(projects.id))
      .limit(limit)
      .offset(offset);
    return c.json({ projects: rows });
  })
  .post("/", validate("json", CreateProject), async (c) => {
    const body = c.req.valid("json");
    const { principal } = c.var;
    if (body.ownerId && !principal.isAdmin && body.ownerId !== principal.userId) {
      throw new AppError("forbidden", "Only an admin can create a project for another user");
    }
    const ownerId = body.ownerId ?? principal.userId;
    if (!ownerId) throw new AppError("invalid_request", "ownerId is required for this key");
    try {
      const [project] = await c.var.db
        .insert(projects)
        .values({
          id: newId("prj"),
          name: body.name,
          ownerId,
          description: body.description ?? "",
          spec: body.spec,
          config: body.config ?? {},
        })
        .returning();
      return c.json({ project }, 201);
    } catch (error) {
      if (isUniqueViolation(error)) throw new AppError("conflict", `A project named "${body.name}" already exists`);
      if (isForeignKeyViolation(error)) throw new AppError("invalid_request", `No user with id ${ownerId}`);
      throw error;
    }
  })
  .get("/:id", validate("param", IdParam), async (c) => {
    const { id } = c.req.valid("param");
    const [project] = await c.var.db
      .select()
      .from(projects)
      .where(and(eq(projects.id, id), projectVisibleTo(c.var.principal)));
    if (!project) notFound("Project");
    return c.json({ project });
  })
  .patch("/:id", validate("param", IdParam), validate("json", UpdateProject), async (c) => {
    const { id } = c.req.valid("param");
    const patch = c.req.valid("json");
    // A project's status is the pipelines' to set; an admin may repair it by hand.
    if (patch.status !== undefined && !c.var.principal.isAdmin) {
      throw new AppError("forbidden", "A project's status is set by its pipelines (engineering, deploy); only an admin can change it by hand");
    }
    const [project] = await c.var.db
      .update(projects)
      .set({ ...patch, updatedAt: new Date() })
      .where(and(eq(projects.id, id), projectVisibleTo(c.var.principal)))
      .returning();
    if (!project) notFound("Project");
    return c.json({ project });
  });
