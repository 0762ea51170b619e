/**
 * Starting the engineering pipeline for a project: which server runs its jobs, one run at a time per
 * project, and the outside services it needs checked before anything is created.
 */
import { and, eq, inArray, isNotNull, isNull, sql } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { isUniqueViolation } from "../db/errors.ts";
import { projects, servers, tasks } from "../db/schema.ts";
import { getRunnerHub } from "../runner-hub/client.ts";
import { AppError, notFound } from "../lib/app-error.ts";
import type { Principal } from "../lib/context.ts";
import { type Caller, callerOf } from "../platform/auth.ts";
import type { PipelineParams } from "../pipeline/pipeline-run.ts";
import { placeProject } from "../deploy/deploys.ts";
import { githubAppConfig } from "../projects/github.ts";
import { modelEndpoint } from "../models/llm.ts";
import { checkBudget } from "../models/usage.ts";
import { managedOf, projectVisibleTo } from "../projects/projects.ts";
import { hubIdentity, loadServer } from "../runner-hub/servers.ts";
import { appendTaskEvent, createTask, type Task } from "../tasks/tasks.ts";
import { checkChangeable, openChange, recordChange, reopenChange } from "../changes/changes.ts";
import { ACTIVE_TASK_STATUSES } from "../shared/api.ts";
import { ChangeBrief } from "../shared/changes.ts";

/** What an EngineeringWorkflow run is started with (startEngineering). */
export interface EngineeringParams extends PipelineParams {
  /** Deploy the tested commit once the tests pass, acting as this caller (looked up again then). */
  deployAs?: Caller;
  /**
   * A change request (src/changes/changes.ts): the project as it is, changed on this branch, offered as
   * a pull request, and previewed (src/deploy/previews.ts) as `caller` when the project is deployed.
   */
  change?: {
    number: number;
    /** The owner's words for this run (for a "change more", only the new ones). */
    request: string;
    branch: string;
    caller: Caller;
    /** Another round of an open change ("change more"): its brief so far; the rounds go on from its branch. */
    more?: { brief: ChangeBrief };
    /** With `more`: nothing new asked, the default branch moved (why, e.g. "change #1 was shipped"): merged in, tested again. */
    catchUp?: string;
  };
}


/**
 * The server a project's jobs run on: the one asked for, the project's own (`managed.server`), the
 * only enrolled one (its jobs wait for it if it is offline), else where the project deploys
 * (placeProject: the server it is deployed on, or the online one with the most free capacity and the
 * project's labels), so that it is built where it will run.
 */
export async function buildServer(db: Db, project: Pick<typeof projects.$inferSelect, "id" | "name" | "managed">, asked: string | undefined): Promise<string> {
  const handle = asked ?? managedOf(project).server;
  if (handle) return handle;
  const enrolled = await db.select({ handle: servers.handle }).from(servers).where(isNotNull(servers.runnerId)).limit(2);
  if (enrolled.length === 0) throw new AppError("conflict", "No server has an enrolled runner to run the engineering jobs; enroll one first (see runner/README.md)");
  if (enrolled.length === 1 && enrolled[0]) return enrolled[0].handle;
  return (await placeProject(db, project, undefined)).handle;
}

export async function startEngineering(
  db: Db,
  env: Env,
  principal: Principal,
  projectId: string,
  options: { server?: string; deploy?: boolean; traceparent?: string; change?: { request: string; more?: number; catchUp?: string } },
): Promise<Task> {
  const [project] = await db.select().from(projects).where(and(eq(projects.id, projectId), projectVisibleTo(principal)));
  if (!project) notFound("Project");
  if (options.server && !principal.isAdmin) throw new AppError("forbidden", "Only an admin chooses the server per run (or gives the project one: config.server)");
  // Checked now, so that a used-up budget or a missing setting is a clear 402/409 rather than a task that fails a moment later.
  await checkBudget(db, env, { projectId: project.id, userId: project.ownerId });
  modelEndpoint(env);
  githubAppConfig(env);
  // A build runs alone; changes run beside each other (each on its own branch), never beside a build.
  const [running] = await db
    .select({ id: tasks.id, status: tasks.status })
    .from(tasks)
    .where(and(eq(tasks.projectId, project.id), eq(tasks.type, "engineering"), inArray(tasks.status, [...ACTIVE_TASK_STATUSES]), options.change ? isNull(sql`${tasks.input} ->> 'change'`) : undefined))
    .limit(1);
  if (running) throw new AppError("conflict", `Project ${project.name} already has ${options.change ? "a build" : "an engineering run"} in progress (task ${running.id}, ${running.status}); cancel it or wait for it`);
  if (options.change) {
    if (options.deploy) throw new AppError("invalid_request", "A change is not deployed when its tests pass: it is offered as a pull request, and shipping it deploys it");
    await checkChangeable(env, project);
    if (options.change.more) await openChange(db, project.id, options.change.more);
  }
  const server = await loadServer(db, await buildServer(db, project, options.server));
  if (!server.runnerId) throw new AppError("conflict", `Server ${server.handle} has no enrolled runner yet`);

  let task: Task;
  try {
    // `change` in the input marks a change's run (tasks_one_active_build and the check above read it).
    task = await createTask(db, { type: "engineering", projectId: project.id, callerId: principal.userId ?? "", input: { server: server.handle, ...(options.deploy ? { deploy: true } : {}), ...(options.change ? { change: options.change.request || (options.change.catchUp ?? "catch up") } : {}) } });
  } catch (error) {
    // Two starts at once: the index tasks_one_active_build lets one build through.
    if (isUniqueViolation(error)) throw new AppError("conflict", `Project ${project.name} already has an engineering run in progress`);
    throw error;
  }
  try {
    const more = options.change?.more;
    const change = options.change ? await (more ? reopenChange(db, project.id, more, options.change.request, task.id) : recordChange(db, project.id, options.change.request, task.id)) : null;
    const brief = more ? ChangeBrief.safeParse(change?.brief).data : undefined;
    await getRunnerHub(env, server.handle).setIdentity(hubIdentity(server));
    const params: EngineeringParams = {
      taskId: task.id,
      projectId: project.id,
      handle: server.handle,
      ...(change && options.change ? { change: { number: change.number, request: options.change.request || change.request, branch: change.branch, caller: callerOf(principal), ...(brief ? { more: { brief } } : {}), ...(options.change.catchUp ? { catchUp: options.change.catchUp } : {}) } } : {}),
      ...(options.deploy ? { deployAs: callerOf(principal) } : {}),
      ...(options.traceparent ? { traceparent: options.traceparent } : {}),
    };
    await env.ENGINEERING.create({ id: task.id, params });
  } catch (error) {
    // A task must not stay queued forever when its workflow never started.
    await appendTaskEvent(env, task.id, { type: "task.failed", message: "the engineering workflow could not be started" }).catch(() => undefined);
    throw error;
  }
  return task;
}
