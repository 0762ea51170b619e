import { createRoute } from "@hono/zod-openapi";
import { eq } from "drizzle-orm";
import { getRunnerHub } from "../runner-hub/client.ts";
import { tasks } from "../db/schema.ts";
import { z } from "zod";
import { AppError, notFound } from "../lib/app-error.ts";
import { apiDoc, apiRouter, errors, jsonBody, jsonResponse, views } from "../platform/openapi.ts";
import { requireAdmin } from "../platform/auth.ts";
import { createServer, hubIdentity, listServers, loadServer, type ProvisionServerParams, renewEnrollmentToken, serverView } from "../runner-hub/servers.ts";
import { appendTaskEvent, createTask } from "../tasks/tasks.ts";
import { CreateJob, CreateServer, JobState, JobWaitQuery, NewEnrollmentToken, Page, ProvisionServer, ServerHandle } from "../shared/api.ts";

const HandleParam = z.object({ handle: ServerHandle });
const JobParam = z.object({ handle: ServerHandle, jobId: z.string().min(1).max(100) });
const JobList = z.strictObject({ state: JobState.optional(), limit: z.coerce.number().int().min(1).max(500).default(50) });

function enrollCommand(origin: string, token: string): string {
  return `npx orchestrator-runner enroll --edge ${origin} --token ${token}`;
}

const doc = apiDoc("servers");
const Enrollment = z.object({
  token: z.string().describe("The one-time enrollment token: shown in this response only"),
  expiresAt: z.string(),
  command: z.string().describe("The command that enrolls the server's runner"),
});
const ServerWithEnrollment = z.object({ server: views.Server, enrollment: Enrollment });
const JobResponse = z.object({ job: views.Job });

const create = createRoute({
  ...doc,
  method: "post",
  path: "/",
  summary: "Register a server; the answer has its runner's one-time enrollment token",
  request: { body: jsonBody(CreateServer) },
  responses: { 201: jsonResponse(ServerWithEnrollment, "The new server and its enrollment"), ...errors(400, 403, 409, 413, 415) },
});
const list = createRoute({
  ...doc,
  method: "get",
  path: "/",
  summary: "List servers",
  request: { query: Page },
  responses: { 200: jsonResponse(z.object({ servers: z.array(views.Server) }), "The servers"), ...errors(400, 403) },
});
const get = createRoute({
  ...doc,
  method: "get",
  path: "/{handle}",
  summary: "Get a server and its runner's live status",
  request: { params: HandleParam },
  responses: { 200: jsonResponse(z.object({ server: views.Server, runner: views.HubStatus }), "The server"), ...errors(400, 403, 404) },
});
const renewEnrollment = createRoute({
  ...doc,
  method: "post",
  path: "/{handle}/enrollment",
  summary: "A new one-time enrollment token (the old one stops working)",
  request: { params: HandleParam, body: jsonBody(NewEnrollmentToken) },
  responses: { 201: jsonResponse(ServerWithEnrollment, "The server and its new enrollment"), ...errors(400, 403, 404, 413, 415) },
});
const provision = createRoute({
  ...doc,
  method: "post",
  path: "/{handle}/provision",
  summary: "Provision the server on a new task (follow it like any task)",
  request: { params: HandleParam, body: jsonBody(ProvisionServer) },
  responses: { 202: jsonResponse(z.object({ task: views.Task }), "The provisioning task"), ...errors(400, 403, 404, 409, 413, 415) },
});
const createJob = createRoute({
  ...doc,
  method: "post",
  path: "/{handle}/jobs",
  summary: "Send a job to the server's runner",
  description: "With `?wait=N` the answer comes once the job has finished, or after N seconds. The same `idempotencyKey` returns the job already queued.",
  request: { params: HandleParam, query: JobWaitQuery, body: jsonBody(CreateJob) },
  responses: { 201: jsonResponse(JobResponse, "The job"), ...errors(400, 403, 404, 409, 413, 415) },
});
const listJobs = createRoute({
  ...doc,
  method: "get",
  path: "/{handle}/jobs",
  summary: "List the server's jobs",
  request: { params: HandleParam, query: JobList },
  responses: { 200: jsonResponse(z.object({ jobs: z.array(views.Job) }), "The jobs"), ...errors(400, 403, 404) },
});
const getJob = createRoute({
  ...doc,
  method: "get",
  path: "/{handle}/jobs/{jobId}",
  summary: "Get a job (with `?wait=N`: once it has finished, or after N seconds)",
  request: { params: JobParam, query: JobWaitQuery },
  responses: { 200: jsonResponse(JobResponse, "The job"), ...errors(400, 403, 404) },
});
const cancelJob = createRoute({
  ...doc,
  method: "post",
  path: "/{handle}/jobs/{jobId}/cancel",
  summary: "Cancel a job",
  request: { params: JobParam },
  responses: { 202: jsonResponse(JobResponse, "The job, being cancelled"), ...errors(400, 403, 404) },
});

/**
 * `/api/servers` (admin): servers, their runners' enrollment and status, and the jobs sent to them.
 * The enrollment token is in the create/renew response only; the database keeps its hash.
 */
export const serversRoute = apiRouter();
serversRoute.use(requireAdmin);
serversRoute
  .openapi(create, async (c) => {
    const { server, enrollment } = await createServer(c.var.db, c.env, c.req.valid("json"));
    const origin = new URL(c.req.url).origin;
    return c.json({ server: serverView(server, c.env), enrollment: { ...enrollment, command: enrollCommand(origin, enrollment.token) } }, 201);
  })
  .openapi(list, async (c) => {
    const rows = await listServers(c.var.db, c.req.valid("query"));
    return c.json({ servers: rows.map((row) => serverView(row, c.env)) }, 200);
  })
  .openapi(get, async (c) => {
    const row = await loadServer(c.var.db, c.req.valid("param").handle);
    const hub = await getRunnerHub(c.env, row.handle).status();
    return c.json({ server: serverView(row, c.env), runner: hub }, 200);
  })
  .openapi(renewEnrollment, async (c) => {
    const { server, enrollment } = await renewEnrollmentToken(c.var.db, c.env, c.req.valid("param").handle, c.req.valid("json").enrollmentTtlSeconds);
    const origin = new URL(c.req.url).origin;
    return c.json({ server: serverView(server, c.env), enrollment: { ...enrollment, command: enrollCommand(origin, enrollment.token) } }, 201);
  })
  // Provisioning runs as a workflow on a `provision` task: follow it like any task (SSE, CLI, live view).
  .openapi(provision, async (c) => {
    const row = await loadServer(c.var.db, c.req.valid("param").handle);
    if (!row.runnerId) throw new AppError("conflict", `Server ${row.handle} has no enrolled runner yet`);
    const { check } = c.req.valid("json");
    const task = await createTask(c.var.db, { type: "provision", callerId: c.var.principal.userId ?? "", input: { server: row.handle, check } });
    const { traceparent } = c.var;
    try {
      await getRunnerHub(c.env, row.handle).setIdentity(hubIdentity(row));
      const params: ProvisionServerParams = { taskId: task.id, handle: row.handle, check, ...(traceparent ? { traceparent } : {}) };
      await c.env.PROVISION_SERVER.create({ id: task.id, params });
    } catch (error) {
      // The task must not stay queued forever when its workflow never started.
      await appendTaskEvent(c.env, task.id, { type: "task.failed", message: "the provisioning workflow could not be started" }).catch(() => undefined);
      throw error;
    }
    return c.json({ task }, 202);
  })
  // Job calls go straight to the server's hub, which knows its runner: no database round trip.
  .openapi(createJob, async (c) => {
    const { handle } = c.req.valid("param");
    const given = c.req.valid("json");
    const traceparent = given.traceparent ?? c.var.traceparent;
    const body = { ...given, ...(traceparent ? { traceparent } : {}) };
    if (body.taskId) {
      const [task] = await c.var.db.select({ id: tasks.id }).from(tasks).where(eq(tasks.id, body.taskId));
      if (!task) throw new AppError("invalid_request", `No task with id ${body.taskId}`);
    }
    const hub = getRunnerHub(c.env, handle);
    const result = await hub.submit(body);
    if (!result.ok) {
      if (result.code === "unknown_server") throw new Error(`the hub of ${handle} still does not know its server: ${result.message}`);
      throw new AppError(result.code, result.message);
    }
    // `?wait=N`: answer once the job has finished (or after N seconds), saving the caller a second request.
    const { wait } = c.req.valid("query");
    const job = wait > 0 ? ((await hub.wait(result.job.id, wait * 1000)) ?? result.job) : result.job;
    return c.json({ job }, 201);
  })
  .openapi(listJobs, async (c) => {
    const { handle } = c.req.valid("param");
    await loadServer(c.var.db, handle); // 404 for an unknown server rather than an empty list
    return c.json({ jobs: await getRunnerHub(c.env, handle).listJobs(c.req.valid("query")) }, 200);
  })
  .openapi(getJob, async (c) => {
    const { handle, jobId } = c.req.valid("param");
    const job = await getRunnerHub(c.env, handle).wait(jobId, c.req.valid("query").wait * 1000);
    if (!job) notFound("Job");
    return c.json({ job }, 200);
  })
  .openapi(cancelJob, async (c) => {
    const { handle, jobId } = c.req.valid("param");
    const job = await getRunnerHub(c.env, handle).cancel(jobId);
    if (!job) notFound("Job");
    return c.json({ job }, 202);
  });
