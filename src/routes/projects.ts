import { and, desc, eq, sql } from "drizzle-orm";
import { Hono } from "hono";
import { z } from "zod";
import { projects } from "../db/schema.ts";
import { AppError, notFound } from "../lib/app-error.ts";
import type { AppEnv } from "../lib/context.ts";
import { validate } from "../lib/validate.ts";
import { requireScope } from "../middleware/auth.ts";
import { startEngineering } from "../services/engineering.ts";
import { createProject, projectVisibleTo } from "../services/projects.ts";
import { CreateProject, Page, ProjectStatus, ServerHandle, UpdateProject } from "../shared/api.ts";
import { parseTraceparent } from "../shared/trace.ts";

const StartEngineering = z.strictObject({ server: ServerHandle.optional() }).default({});

const IdParam = z.object({ id: z.string().min(1).max(64) });
const ListQuery = Page.extend({ status: ProjectStatus.optional(), name: z.string().max(100).optional() });

/** `/api/projects`: owner-scoped project CRUD. */
export const projectsRoute = new Hono<AppEnv>()
  .use(requireScope("user"))
  .get("/", validate("query", ListQuery), async (c) => {
    const { limit, offset, status, name } = c.req.valid("query");
    const rows = await c.var.db
      .select()
      .from(projects)
      .where(and(projectVisibleTo(c.var.principal), status ? eq(projects.status, status) : undefined, name ? eq(projects.name, name) : undefined))
      .orderBy(desc(projects.createdAt), desc(projects.id))
      .limit(limit)
      .offset(offset);
    return c.json({ projects: rows });
  })
  .post("/", validate("json", CreateProject), async (c) => {
    const project = await createProject(c.var.db, c.var.principal, c.req.valid("json"));
    return c.json({ project }, 201);
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
  // The engineering pipeline for this project, on a new task (follow it like any task).
  .post("/:id/engineering", validate("param", IdParam), validate("json", StartEngineering), async (c) => {
    const body = c.req.valid("json");
    const traceparent = parseTraceparent(c.req.header("traceparent"));
    const task = await startEngineering(c.var.db, c.env, c.var.principal, c.req.valid("param").id, { ...body, ...(traceparent ? { traceparent } : {}) });
    return c.json({ task }, 202);
  })
  .patch("/:id", validate("param", IdParam), validate("json", UpdateProject), async (c) => {
    const { id } = c.req.valid("param");
    const { testCommand, coverageThreshold, maxIterations, agentTimeoutSeconds, testTimeoutSeconds, decisionTimeoutSeconds, ...fields } = c.req.valid("json");
    // Engineering settings live in config.engineering, merged into what is there (or into a config given with them).
    const engineering = Object.fromEntries(
      Object.entries({ testCommand, coverageThreshold, maxIterations, agentTimeoutSeconds, testTimeoutSeconds, decisionTimeoutSeconds }).filter(([, value]) => value !== undefined),
    );
    const patch = {
      ...fields,
      ...(Object.keys(engineering).length
        ? {
            config: fields.config
              ? { ...fields.config, engineering: { ...(fields.config.engineering as Record<string, unknown> | undefined), ...engineering } }
              : sql`jsonb_set(${projects.config}, '{engineering}', coalesce(${projects.config}->'engineering', '{}'::jsonb) || ${JSON.stringify(engineering)}::jsonb)`,
          }
        : {}),
    };
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
