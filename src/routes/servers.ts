import { eq } from "drizzle-orm";
import { Hono } from "hono";
import { getRunnerHub } from "../durable/runner-hub.ts";
import { tasks } from "../db/schema.ts";
import { z } from "zod";
import { AppError, notFound } from "../lib/app-error.ts";
import type { AppEnv } from "../lib/context.ts";
import { validate } from "../lib/validate.ts";
import { requireAdmin } from "../middleware/auth.ts";
import { createServer, hubIdentity, listServers, loadServer, renewEnrollmentToken, serverView } from "../services/servers.ts";
import { appendTaskEvent, createTask } from "../services/tasks.ts";
import { parseTraceparent } from "../shared/trace.ts";
import type { ProvisionServerParams } from "../workflows/provision-server.ts";
import { CreateJob, CreateServer, JobState, JobWaitQuery, NewEnrollmentToken, Page, ProvisionServer, ServerHandle } from "../shared/api.ts";

const HandleParam = z.object({ handle: ServerHandle });
const JobParam = z.object({ handle: ServerHandle, jobId: z.string().min(1).max(100) });
const JobList = z.strictObject({ state: JobState.optional(), limit: z.coerce.number().int().min(1).max(500).default(50) });

function enrollCommand(origin: string, token: string): string {
  return `npx orchestrator-runner enroll --edge ${origin} --token ${token}`;
}

/**
 * `/api/servers` (admin): servers, their runners' enrollment and status, and the jobs sent to them.
 * The enrollment token is in the create/renew response only; the database keeps its hash.
 */
export const serversRoute = new Hono<AppEnv>()
  .use(requireAdmin)
  .post("/", validate("json", CreateServer), async (c) => {
    const { server, enrollment } = await createServer(c.var.db, c.env, c.req.valid("json"));
    const origin = new URL(c.req.url).origin;
    return c.json({ server: serverView(server, c.env), enrollment: { ...enrollment, command: enrollCommand(origin, enrollment.token) } }, 201);
  })
  .get("/", validate("query", Page), async (c) => {
    const rows = await listServers(c.var.db, c.req.valid("query"));
    return c.json({ servers: rows.map((row) => serverView(row, c.env)) });
  })
  .get("/:handle", validate("param", HandleParam), async (c) => {
    const row = await loadServer(c.var.db, c.req.valid("param").handle);
    const hub = await getRunnerHub(c.env, row.handle).status();
    return c.json({ server: serverView(row, c.env), runner: hub });
  })
  .post("/:handle/enrollment", validate("param", HandleParam), validate("json", NewEnrollmentToken), async (c) => {
    const { server, enrollment } = await renewEnrollmentToken(c.var.db, c.env, c.req.valid("param").handle, c.req.valid("json").enrollmentTtlSeconds);
    const origin = new URL(c.req.url).origin;
    return c.json({ server: serverView(server, c.env), enrollment: { ...enrollment, command: enrollCommand(origin, enrollment.token) } }, 201);
  })
  // Provisioning runs as a workflow on a `provision` task: follow it like any task (SSE, CLI, live view).
  .post("/:handle/provision", validate("param", HandleParam), validate("json", ProvisionServer), async (c) => {
    const row = await loadServer(c.var.db, c.req.valid("param").handle);
    if (!row.runnerId) throw new AppError("conflict", `Server ${row.handle} has no enrolled runner yet`);
    const { check } = c.req.valid("json");
    const task = await createTask(c.var.db, { type: "provision", callerId: c.var.principal.userId ?? "", input: { server: row.handle, check } });
    const traceparent = parseTraceparent(c.req.header("traceparent"));
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
  .post("/:handle/jobs", validate("param", HandleParam), validate("query", JobWaitQuery), validate("json", CreateJob), async (c) => {
    const { handle } = c.req.valid("param");
    const given = c.req.valid("json");
    const traceparent = given.traceparent ?? parseTraceparent(c.req.header("traceparent"));
    const body = { ...given, ...(traceparent ? { traceparent } : {}) };
    if (body.taskId) {
      const [task] = await c.var.db.select({ id: tasks.id }).from(tasks).where(eq(tasks.id, body.taskId));
      if (!task) throw new AppError("invalid_request", `No task with id ${body.taskId}`);
    }
    const hub = getRunnerHub(c.env, handle);
    let result = await hub.enqueue(null, body);
    if (!result.ok && result.code === "unknown_server") {
      result = await hub.enqueue(hubIdentity(await loadServer(c.var.db, handle)), body);
    }
    if (!result.ok) {
      if (result.code === "unknown_server") throw new Error(`the hub of ${handle} still does not know its server: ${result.message}`);
      throw new AppError(result.code, result.message);
    }
    // `?wait=N`: answer once the job has finished (or after N seconds), saving the caller a second request.
    const { wait } = c.req.valid("query");
    const job = wait > 0 ? ((await hub.wait(result.job.id, wait * 1000)) ?? result.job) : result.job;
    return c.json({ job }, 201);
  })
  .get("/:handle/jobs", validate("param", HandleParam), validate("query", JobList), async (c) => {
    const { handle } = c.req.valid("param");
    await loadServer(c.var.db, handle); // 404 for an unknown server rather than an empty list
    return c.json({ jobs: await getRunnerHub(c.env, handle).listJobs(c.req.valid("query")) });
  })
  .get("/:handle/jobs/:jobId", validate("param", JobParam), validate("query", JobWaitQuery), async (c) => {
    const { handle, jobId } = c.req.valid("param");
    const job = await getRunnerHub(c.env, handle).wait(jobId, c.req.valid("query").wait * 1000);
    if (!job) notFound("Job");
    return c.json({ job });
  })
  .post("/:handle/jobs/:jobId/cancel", validate("param", JobParam), async (c) => {
    const { handle, jobId } = c.req.valid("param");
    const job = await getRunnerHub(c.env, handle).cancel(jobId);
    if (!job) notFound("Job");
    return c.json({ job }, 202);
  });
