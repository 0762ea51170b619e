import { createRoute } from "@hono/zod-openapi";
import { and, desc, eq } from "drizzle-orm";
import { z } from "zod";
import { projects } from "../db/schema.ts";
import { notFound } from "../lib/app-error.ts";
import { apiDoc, apiRouter, errors, jsonBody, jsonResponse, named, views } from "../platform/openapi.ts";
import { requireScope } from "../platform/auth.ts";
import { startEngineering } from "../engineering/engineering.ts";
import { createProject, projectVisibleTo, updateProject } from "../projects/projects.ts";
import { CreateProject, Page, ProjectStatus, ServerHandle, UpdateProject } from "../shared/api.ts";

const StartEngineering = z
  .strictObject({
    server: ServerHandle.optional(),
    deploy: z.boolean().optional().openapi({ description: "Deploy the tested commit once the tests pass, as this key (while it still works): the deploy's task id is in the engineering task's `task.completed` data (`deploy.taskId`), or why there is none (`deploy.notDeployed`)" }),
  })
  .default({});

const IdParam = z.object({ id: z.string().min(1).max(64) });
const ListQuery = Page.extend({ status: ProjectStatus.optional(), name: z.string().max(100).optional() });

const Project = named(
  z.object({
    id: z.string(),
    name: z.string(),
    ownerId: z.string(),
    status: ProjectStatus,
    description: z.string(),
    spec: z.record(z.string(), z.unknown()).nullable(),
    repositoryUrl: z.string().nullable(),
    config: z.record(z.string(), z.unknown()).describe("The owner's settings"),
    managed: z.record(z.string(), z.unknown()).describe("What the factory manages: budget, server, domain (an admin's), the pipelines' state"),
    createdAt: z.string(),
    updatedAt: z.string(),
  }),
  "Project",
);
const ProjectResponse = z.object({ project: Project });
const doc = apiDoc("projects");

const list = createRoute({
  ...doc,
  method: "get",
  path: "/",
  summary: "List the projects the key may see, newest first",
  request: { query: ListQuery },
  responses: { 200: jsonResponse(z.object({ projects: z.array(Project) }), "The projects"), ...errors(400, 403) },
});
const create = createRoute({
  ...doc,
  method: "post",
  path: "/",
  summary: "Create a project (admins may create one for another user with ownerId)",
  request: { body: jsonBody(CreateProject) },
  responses: { 201: jsonResponse(ProjectResponse, "The new project"), ...errors(400, 403, 409, 413, 415) },
});
const get = createRoute({
  ...doc,
  method: "get",
  path: "/{id}",
  summary: "Get a project",
  request: { params: IdParam },
  responses: { 200: jsonResponse(ProjectResponse, "The project"), ...errors(400, 403, 404) },
});
const engineering = createRoute({
  ...doc,
  method: "post",
  path: "/{id}/engineering",
  summary: "Start the engineering pipeline on a new task (follow it like any task)",
  request: { params: IdParam, body: jsonBody(StartEngineering, "Optionally the server to build on, and whether to deploy once the tests pass; the body may be left out") },
  responses: { 202: jsonResponse(z.object({ task: views.Task }), "The engineering task, queued"), ...errors(400, 402, 403, 404, 409, 413, 415) },
});
const update = createRoute({
  ...doc,
  method: "patch",
  path: "/{id}",
  summary: "Change a project: settings are merged into config (engineering ones into config.engineering); status, repositoryUrl and the managed settings are an admin's",
  request: { params: IdParam, body: jsonBody(UpdateProject) },
  responses: { 200: jsonResponse(ProjectResponse, "The changed project"), ...errors(400, 403, 404, 413, 415) },
});

/** `/api/projects`: owner-scoped project CRUD. */
export const projectsRoute = apiRouter();
projectsRoute.use(requireScope("user"));
projectsRoute
  .openapi(list, async (c) => {
    const { limit, offset, status, name } = c.req.valid("query");
    const rows = await c.var.db
      .select()
      .from(projects)
      .where(and(projectVisibleTo(c.var.principal), status ? eq(projects.status, status) : undefined, name ? eq(projects.name, name) : undefined))
      .orderBy(desc(projects.createdAt), desc(projects.id))
      .limit(limit)
      .offset(offset);
    return c.json({ projects: rows }, 200);
  })
  .openapi(create, async (c) => {
    const project = await createProject(c.var.db, c.var.principal, c.req.valid("json"));
    return c.json({ project }, 201);
  })
  .openapi(get, async (c) => {
    const { id } = c.req.valid("param");
    const [project] = await c.var.db
      .select()
      .from(projects)
      .where(and(eq(projects.id, id), projectVisibleTo(c.var.principal)));
    if (!project) notFound("Project");
    return c.json({ project }, 200);
  })
  // The engineering pipeline for this project, on a new task (follow it like any task).
  .openapi(engineering, async (c) => {
    const body = c.req.valid("json");
    const { traceparent } = c.var;
    const task = await startEngineering(c.var.db, c.env, c.var.principal, c.req.valid("param").id, { ...body, ...(traceparent ? { traceparent } : {}) });
    return c.json({ task }, 202);
  })
  .openapi(update, async (c) => {
    const project = await updateProject(c.var.db, c.var.principal, c.req.valid("param").id, c.req.valid("json"));
    return c.json({ project }, 200);
  });
