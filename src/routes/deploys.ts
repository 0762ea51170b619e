/**
 * The deploy pipeline's routes:
 *   /api/projects/:id/deploy | rollback | undeploy   start one on a task (follow it like any task)
 *   /api/projects/:id/deployments                     release history
 *   /api/projects/:id/logs                            the live release's last lines, secrets masked
 *   /api/projects/:id/secrets                         set secrets; list their names (never a value)
 *   /api/servers/:handle/services                     the seed's service API: what runs on a server
 */
import { createRoute } from "@hono/zod-openapi";
import { and, eq, inArray } from "drizzle-orm";
import { z } from "zod";
import { deployments, projects, serviceDeployments, tasks } from "../db/schema.ts";
import { AppError, notFound } from "../lib/app-error.ts";
import type { AppEnv } from "../lib/context.ts";
import { apiDoc, apiRouter, errors, jsonBody, jsonResponse, named, views } from "../platform/openapi.ts";
import { requireScope } from "../platform/auth.ts";
import { deploymentView, listDeployments, projectUrl, startDeployTask } from "../deploy/deploys.ts";
import { deleteSecret, putSecrets, secretViews } from "../projects/project-secrets.ts";
import { appLogs } from "../deploy/release-logs.ts";
import { projectVisibleTo } from "../projects/projects.ts";
import { loadServer } from "../runner-hub/servers.ts";
import { AppLogs, AppLogsQuery, DEPLOYMENT_STATUSES, PutSecrets, StartDeploy, StartRollback, StartUndeploy } from "../shared/deploys.ts";
import { EnvName } from "../shared/playbooks.ts";
import { PendingInput, inputEventType } from "../shared/task-input.ts";

const IdParam = z.object({ id: z.string().min(1).max(64) });
const SecretParam = IdParam.extend({ name: EnvName });
const ServiceParam = z.object({ handle: z.string().min(1).max(100), id: z.string().min(1).max(64) });
const CreateService = z.strictObject({ projectId: z.string().min(1).max(64), ref: z.string().min(1).max(200).optional() });

const doc = apiDoc("deploys");
const TaskResponse = z.object({ task: views.Task });
const SecretsResponse = z.object({ secrets: z.array(views.Secret) });

const deploy = createRoute({
  ...doc,
  method: "post",
  path: "/{id}/deploy",
  summary: "Deploy the project on a new task (follow it like any task)",
  request: { params: IdParam, body: jsonBody(StartDeploy.default({}), "What to deploy and where; the body may be left out") },
  responses: { 202: jsonResponse(TaskResponse, "The deploy task"), ...errors(400, 402, 403, 404, 409, 413, 415) },
});
const rollback = createRoute({
  ...doc,
  method: "post",
  path: "/{id}/rollback",
  summary: "Roll back to an earlier release (default: the one before the active release) on a new task",
  request: { params: IdParam, body: jsonBody(StartRollback.default({}), "The release to go back to; the body may be left out") },
  responses: { 202: jsonResponse(TaskResponse, "The rollback task"), ...errors(400, 403, 404, 409, 413, 415) },
});
const undeploy = createRoute({
  ...doc,
  method: "post",
  path: "/{id}/undeploy",
  summary: "Take the project off its server on a new task; its data (/data) is kept unless deleteData",
  request: { params: IdParam, body: jsonBody(StartUndeploy.default({ deleteData: false }), "Whether to delete the project's data too; the body may be left out") },
  responses: { 202: jsonResponse(TaskResponse, "The undeploy task"), ...errors(400, 403, 404, 409, 413, 415) },
});
const listReleases = createRoute({
  ...doc,
  method: "get",
  path: "/{id}/deployments",
  summary: "The project's release history",
  request: { params: IdParam },
  responses: { 200: jsonResponse(z.object({ deployments: z.array(views.Deployment) }), "The releases"), ...errors(400, 403, 404) },
});
const logs = createRoute({
  ...doc,
  method: "get",
  path: "/{id}/logs",
  summary: "The last lines production's release wrote (stdout and stderr, oldest first), read on its server, with every secret the release holds masked there",
  request: { params: IdParam, query: AppLogsQuery },
  responses: { 200: jsonResponse(named(AppLogs, "AppLogs"), "The lines"), ...errors(400, 403, 404, 409, 502) },
});
const listSecrets = createRoute({
  ...doc,
  method: "get",
  path: "/{id}/secrets",
  summary: "The names of the project's secrets (never a value)",
  request: { params: IdParam },
  responses: { 200: jsonResponse(SecretsResponse, "The secrets"), ...errors(400, 403, 404) },
});
const putSecretsRoute = createRoute({
  ...doc,
  method: "put",
  path: "/{id}/secrets",
  summary: "Set secrets by name; a deploy waiting for them resumes",
  request: { params: IdParam, body: jsonBody(PutSecrets) },
  responses: {
    200: jsonResponse(SecretsResponse.extend({ resumedTask: z.string().optional().describe("The deploy task that was waiting for these secrets") }), "The secrets"),
    ...errors(400, 403, 404, 413, 415),
  },
});
const deleteSecretRoute = createRoute({
  ...doc,
  method: "delete",
  path: "/{id}/secrets/{name}",
  summary: "Delete a secret",
  request: { params: SecretParam },
  responses: { 204: { description: "Deleted" }, ...errors(400, 403, 404) },
});

const HandleParam = z.object({ handle: z.string().min(1).max(100) });
const Service = z.object({
  id: z.string(),
  project: z.object({ id: z.string(), name: z.string() }),
  domain: z.string(),
  url: z.string(),
  internalPort: z.number().int(),
  status: z.enum(DEPLOYMENT_STATUSES),
  activeDeployment: views.Deployment.nullable(),
  updatedAt: z.string(),
});
const listServices = createRoute({
  ...doc,
  method: "get",
  path: "/{handle}/services",
  summary: "The projects a server runs (admin)",
  request: { params: HandleParam },
  responses: { 200: jsonResponse(z.object({ services: z.array(Service) }), "The services"), ...errors(400, 403, 404) },
});
const createService = createRoute({
  ...doc,
  method: "post",
  path: "/{handle}/services",
  summary: "Deploy a project on this server, on a new task (admin)",
  request: { params: HandleParam, body: jsonBody(CreateService) },
  responses: { 202: jsonResponse(TaskResponse, "The deploy task"), ...errors(400, 402, 403, 404, 409, 413, 415) },
});
const deleteService = createRoute({
  ...doc,
  method: "delete",
  path: "/{handle}/services/{id}",
  summary: "Undeploy a service from this server, on a new task (admin)",
  request: { params: ServiceParam },
  responses: { 202: jsonResponse(TaskResponse, "The undeploy task"), ...errors(400, 403, 404, 409) },
});

async function visibleProject(c: { var: AppEnv["Variables"] }, id: string) {
  const [project] = await c.var.db.select().from(projects).where(and(eq(projects.id, id), projectVisibleTo(c.var.principal)));
  if (!project) notFound("Project");
  return project;
}

/**
 * A deploy waiting for secrets hears of new ones set through PUT, as it would of an answer: only the
 * names reach it. Its question is claimed once, so an answer and a PUT cannot both wake it.
 */
async function wakeWaitingDeploy(c: { var: AppEnv["Variables"]; env: Env }, projectId: string, names: string[]): Promise<string | null> {
  const [waiting] = await c.var.db.select().from(tasks).where(and(eq(tasks.projectId, projectId), eq(tasks.type, "deploy"), eq(tasks.status, "needs_input")));
  const pending = PendingInput.safeParse(waiting?.pendingInput);
  if (!waiting || !pending.success || pending.data.kind !== "secrets") return null;
  const claimed = await c.var.db.update(tasks).set({ pendingInput: null, updatedAt: new Date() }).where(and(eq(tasks.id, waiting.id), eq(tasks.status, "needs_input"))).returning({ id: tasks.id });
  if (!claimed.length) return null;
  try {
    await (await c.env.DEPLOY.get(waiting.id)).sendEvent({ type: inputEventType(pending.data.inputId), payload: { provided: names } });
  } catch (error) {
    await c.var.db.update(tasks).set({ pendingInput: pending.data }).where(eq(tasks.id, waiting.id));
    throw error;
  }
  return waiting.id;
}

export const projectDeploysRoute = apiRouter();
projectDeploysRoute.use(requireScope("user"));
projectDeploysRoute
  .openapi(deploy, async (c) => {
    const body = c.req.valid("json");
    const { traceparent } = c.var;
    const task = await startDeployTask(c.var.db, c.env, c.var.principal, c.req.valid("param").id, { mode: "deploy", ...body }, traceparent ?? undefined);
    return c.json({ task }, 202);
  })
  .openapi(rollback, async (c) => {
    const body = c.req.valid("json");
    const task = await startDeployTask(c.var.db, c.env, c.var.principal, c.req.valid("param").id, { mode: "rollback", ...body });
    return c.json({ task }, 202);
  })
  .openapi(undeploy, async (c) => {
    const task = await startDeployTask(c.var.db, c.env, c.var.principal, c.req.valid("param").id, { mode: "undeploy", ...c.req.valid("json") });
    return c.json({ task }, 202);
  })
  .openapi(listReleases, async (c) => {
    const project = await visibleProject(c, c.req.valid("param").id);
    return c.json({ deployments: await listDeployments(c.var.db, project.id) }, 200);
  })
  .openapi(logs, async (c) => c.json(await appLogs(c.var.db, c.env, c.var.principal, c.req.valid("param").id, c.req.valid("query").tail), 200))
  .openapi(listSecrets, async (c) => {
    const project = await visibleProject(c, c.req.valid("param").id);
    return c.json({ secrets: await secretViews(c.var.db, project.id) }, 200);
  })
  .openapi(putSecretsRoute, async (c) => {
    const project = await visibleProject(c, c.req.valid("param").id);
    const { secrets } = c.req.valid("json");
    await putSecrets(c.env, c.var.db, project.id, secrets, "user");
    const woke = await wakeWaitingDeploy(c, project.id, Object.keys(secrets));
    return c.json({ secrets: await secretViews(c.var.db, project.id), ...(woke ? { resumedTask: woke } : {}) }, 200);
  })
  .openapi(deleteSecretRoute, async (c) => {
    const { id, name } = c.req.valid("param");
    const project = await visibleProject(c, id);
    if (!(await deleteSecret(c.var.db, project.id, name))) notFound("Secret");
    return c.body(null, 204);
  });

/** `/api/servers/:handle/services`: the projects a server runs (admin). POST deploys one there; DELETE undeploys it. */
export const serverServicesRoute = apiRouter();
serverServicesRoute.use(requireScope("admin"));
serverServicesRoute
  .openapi(listServices, async (c) => {
    const server = await loadServer(c.var.db, c.req.valid("param").handle);
    const rows = await c.var.db
      .select({ service: serviceDeployments, project: { id: projects.id, name: projects.name } })
      .from(serviceDeployments)
      .innerJoin(projects, eq(projects.id, serviceDeployments.projectId))
      .where(eq(serviceDeployments.serverId, server.id));
    const active = rows.map((row) => row.service.activeDeploymentId).filter((id): id is string => Boolean(id));
    const releases = active.length ? await c.var.db.select().from(deployments).where(inArray(deployments.id, active)) : [];
    return c.json({
      services: rows.map(({ service, project }) => ({
        id: service.id,
        project,
        domain: service.domain,
        url: projectUrl(service.domain, server),
        internalPort: service.internalPort,
        status: service.status,
        activeDeployment: (() => {
          const release = releases.find((row) => row.id === service.activeDeploymentId);
          return release ? deploymentView(release, server.handle) : null;
        })(),
        updatedAt: service.updatedAt.toISOString(),
      })),
    }, 200);
  })
  .openapi(createService, async (c) => {
    const { handle } = c.req.valid("param");
    const body = c.req.valid("json");
    await loadServer(c.var.db, handle);
    const task = await startDeployTask(c.var.db, c.env, c.var.principal, body.projectId, { mode: "deploy", server: handle, ...(body.ref ? { ref: body.ref } : {}) });
    return c.json({ task }, 202);
  })
  .openapi(deleteService, async (c) => {
    const { handle, id } = c.req.valid("param");
    const server = await loadServer(c.var.db, handle);
    const [service] = await c.var.db.select().from(serviceDeployments).where(and(eq(serviceDeployments.id, id), eq(serviceDeployments.serverId, server.id)));
    if (!service) throw new AppError("not_found", `No service ${id} on ${handle}`);
    const task = await startDeployTask(c.var.db, c.env, c.var.principal, service.projectId, { mode: "undeploy" });
    return c.json({ task }, 202);
  });
