/**
 * The deploy pipeline's data: placing a project on a server (the seed's Zavhoz), reserving release
 * ports, the route list Caddy serves (the database is its source of truth), release history, and
 * starting a deploy, rollback or undeploy on a task.
 */
import { and, asc, desc, eq, inArray, isNotNull, isNull, sql } from "drizzle-orm";
import type { Db, DbTx } from "../db/client.ts";
import { isUniqueViolation } from "../db/errors.ts";
import { changes, deployments, projects, servers, serviceDeployments, tasks } from "../db/schema.ts";
import { getRunnerHub } from "../runner-hub/client.ts";
import { AppError, notFound } from "../lib/app-error.ts";
import type { Principal } from "../lib/context.ts";
import { newId } from "../lib/crypto.ts";
import type { DeploymentView } from "../shared/deploys.ts";
import type { PipelineParams } from "../pipeline/pipeline-run.ts";
import { ACTIVE_TASK_STATUSES } from "../shared/api.ts";
import { RELEASE_MEMORY_MB } from "../shared/playbooks.ts";
import { githubAppConfig } from "../projects/github.ts";
import { checkBudget } from "../models/usage.ts";
import { managedOf, projectVisibleTo } from "../projects/projects.ts";
import { hubIdentity, type ServerRow } from "../runner-hub/servers.ts";
import { appendTaskEvent, createTask, type Task } from "../tasks/tasks.ts";

/** What a DeployWorkflow run is started with (startDeployTask). */
export interface DeployParams extends PipelineParams {
  serverId: string;
  mode: "deploy" | "rollback" | "undeploy";
  ref?: string;
  /** For a rollback: the release to bring back. */
  targetDeploymentId?: string;
  /** For a rollback: the commit the kept release stands for now (an undo's revert commit, whose tree is the release's); default: the release's own. */
  commit?: string;
  /** For an undeploy: delete the project's data (its /data volume) too. */
  deleteData?: boolean;
  /**
   * A change's preview (src/deploy/previews.ts) rather than production: a deploy makes (or replaces) the
   * preview's release at `<project>--<n>.<base domain>`; an undeploy removes it with its data.
   */
  preview?: number;
  /** For a deploy of production (a change shipped): the change whose preview goes once production is live. */
  removePreview?: number;
}

export type DeploymentRow = typeof deployments.$inferSelect;
type ProjectRow = typeof projects.$inferSelect;

/** Where projects answer when their server names no base domain of its own. */
export const DEFAULT_BASE_DOMAIN = "localhost";

export function deploymentView(row: DeploymentRow, handle: string | null): DeploymentView {
  return {
    id: row.id,
    projectId: row.projectId,
    server: handle,
    taskId: row.taskId,
    kind: row.kind === "rollback" ? "rollback" : "build",
    commitSha: row.commitSha,
    image: row.image,
    domain: row.domain,
    port: row.port,
    status: row.status,
    health: row.health,
    previousDeploymentId: row.previousDeploymentId,
    sourceDeploymentId: row.sourceDeploymentId,
    preview: row.preview,
    createdAt: row.createdAt.toISOString(),
    finishedAt: row.finishedAt?.toISOString() ?? null,
    stoppedAt: row.stoppedAt?.toISOString() ?? null,
  };
}

export async function listDeployments(db: Db, projectId: string, limit = 50): Promise<DeploymentView[]> {
  const rows = await db
    .select({ deployment: deployments, handle: servers.handle })
    .from(deployments)
    .leftJoin(servers, eq(servers.id, deployments.serverId))
    // Production's releases: a change's preview releases are its own (GET …/changes/:n).
    .where(and(eq(deployments.projectId, projectId), isNull(deployments.preview)))
    .orderBy(desc(deployments.createdAt))
    .limit(limit);
  return rows.map((row) => deploymentView(row.deployment, row.handle));
}

/** Where visitors reach a domain served by `server`: https, or plain HTTP on the port of a local factory's Caddy. */
export function projectUrl(domain: string, server: Pick<ServerRow, "publicHttpPort"> | null | undefined): string {
  return server?.publicHttpPort ? `http://${domain}:${server.publicHttpPort}` : `https://${domain}`;
}

/** A project's domain: the one an admin gave it (`managed.domain`), else `<name>.<server's base domain>`. */
export function projectDomain(project: Pick<ProjectRow, "name" | "managed">, server: Pick<ServerRow, "baseDomain">): string {
  const own = managedOf(project).domain;
  if (own) return own.toLowerCase();
  return `${project.name}.${server.baseDomain ?? DEFAULT_BASE_DOMAIN}`.toLowerCase();
}

/**
 * The server a project deploys to: the one it is already on, else the one asked for, else the
 * enrolled, online server with the most free capacity whose labels include the project's
 * `managed.serverLabels`.
 */
export async function placeProject(db: Db, project: Pick<ProjectRow, "id" | "name" | "managed">, asked: string | undefined): Promise<ServerRow> {
  const [current] = await db.select({ server: servers }).from(serviceDeployments).innerJoin(servers, eq(servers.id, serviceDeployments.serverId)).where(eq(serviceDeployments.projectId, project.id));
  if (current) {
    if (asked && asked !== current.server.handle) throw new AppError("conflict", `Project ${project.name} is deployed on ${current.server.handle}; undeploy it there before moving it to ${asked}`);
    return current.server;
  }
  const managed = managedOf(project);
  const wanted = managed.server ?? asked;
  const labels = managed.serverLabels ?? {};
  const candidates = await db
    .select({ server: servers, used: sql<number>`(select count(*)::int from ${serviceDeployments} where ${serviceDeployments.serverId} = ${servers.id})` })
    .from(servers)
    .where(and(isNotNull(servers.runnerId), wanted ? eq(servers.handle, wanted) : undefined));
  if (wanted && candidates.length === 0) throw new AppError("conflict", `Server ${wanted} has no enrolled runner`);
  const fitting = candidates
    .filter(({ server }) => server.status === "online")
    .filter(({ server }) => Object.entries(labels).every(([key, value]) => server.labels[key] === value))
    .filter(({ server, used }) => used < server.capacity)
    .sort((a, b) => b.server.capacity - b.used - (a.server.capacity - a.used));
  const chosen = fitting[0];
  if (!chosen) {
    const why = candidates.length === 0 ? "no server has an enrolled runner" : `none of ${candidates.map(({ server }) => `${server.handle} (${server.status}, ${server.capacity - 0} slots)`).join(", ")} is online with free capacity${Object.keys(labels).length ? ` and labels ${JSON.stringify(labels)}` : ""}`;
    throw new AppError("conflict", `No server can take ${project.name}: ${why}`);
  }
  return chosen.server;
}

/**
 * Reserves a free port of `range` on the server for a new release: the lowest one no running
 * release holds. The unique index on (server, port) settles a race; the loser tries the next port.
 */
export async function reservePort(db: Db, serverId: string, range: { from: number; to: number }, deploymentId: string): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const [free] = await db.execute<{ port: number }>(sql`
      select p as port from generate_series(${range.from}::int, ${range.to}::int) p
      where p not in (select ${deployments.port} from ${deployments} where ${deployments.serverId} = ${serverId} and ${deployments.port} is not null)
      order by p limit 1`).then((result) => result.rows);
    if (!free) throw new AppError("conflict", `The server has no free release port left in ${range.from}-${range.to}`);
    try {
      await db.update(deployments).set({ port: free.port }).where(eq(deployments.id, deploymentId));
      return free.port;
    } catch (error) {
      if (!isUniqueViolation(error)) throw error;
    }
  }
  throw new AppError("conflict", "Could not reserve a release port: too many deploys at once on this server");
}

/**
 * The server's whole route list as the database has it, with the next generation number: the row
 * lock on the server orders concurrent readers, so a higher generation never holds an older list.
 */
export async function routeList(db: Db, serverId: string): Promise<{ generation: number; routes: { domain: string; upstreamPort: number }[] }> {
  return db.transaction(async (tx) => {
    const [server] = await tx.update(servers).set({ routeGeneration: sql`${servers.routeGeneration} + 1` }).where(eq(servers.id, serverId)).returning({ generation: servers.routeGeneration });
    if (!server) throw new Error(`server ${serverId} no longer exists`);
    const rows = await tx
      .select({ domain: serviceDeployments.domain, upstreamPort: serviceDeployments.internalPort })
      .from(serviceDeployments)
      .where(and(eq(serviceDeployments.serverId, serverId), isNotNull(serviceDeployments.activeDeploymentId)))
      .orderBy(asc(serviceDeployments.domain));
    // Each open change's preview: its route points at the release its change row names.
    const previews = await tx
      .select({ domain: deployments.domain, upstreamPort: deployments.port })
      .from(changes)
      .innerJoin(deployments, eq(deployments.id, changes.previewDeploymentId))
      // Only a change still open (or building more) is previewed: an ended one's route goes at the next sync, whatever became of its removal.
      .where(and(eq(deployments.serverId, serverId), isNotNull(deployments.port), isNotNull(deployments.domain), inArray(changes.status, ["open", "building"])));
    const routes = [...rows, ...previews.flatMap((route) => (route.domain && route.upstreamPort ? [{ domain: route.domain, upstreamPort: route.upstreamPort }] : []))];
    return { generation: server.generation, routes: routes.sort((a, b) => a.domain.localeCompare(b.domain)) };
  });
}

/**
 * A project's deploys run one at a time per slot: production's (deploys, rollbacks, undeploys) and each
 * change's preview. Slots share nothing but the server, whose route list every deploy syncs whole.
 * `slot`: null for production, a change's number for its preview, "any" for every slot.
 */
export type DeploySlot = number | null | "any";

/** The deploy of a project in that slot that has not ended, if any. */
export async function runningDeploy(db: Db, projectId: string, slot: DeploySlot): Promise<Pick<Task, "id" | "status"> & { preview: number | null } | undefined> {
  const preview = sql<string | null>`${tasks.input} ->> 'preview'`;
  const [running] = await db
    .select({ id: tasks.id, status: tasks.status, preview })
    .from(tasks)
    .where(and(eq(tasks.projectId, projectId), eq(tasks.type, "deploy"), inArray(tasks.status, [...ACTIVE_TASK_STATUSES]), slot === "any" ? undefined : slot === null ? isNull(preview) : eq(preview, String(slot))))
    .limit(1);
  return running ? { id: running.id, status: running.status, preview: running.preview === null ? null : Number(running.preview) } : undefined;
}

/** The slots a deploy request works in: its own, a preview it removes on the way, or (undeploying production, which removes every preview) all. */
function slotsOf(request: { mode: string; preview?: number | undefined; removePreview?: number | undefined }): DeploySlot[] {
  if (request.preview) return [request.preview];
  if (request.mode === "undeploy") return ["any"];
  return request.removePreview ? [null, request.removePreview] : [null];
}

/** A 409 naming a running deploy in one of the slots, if there is one. */
export async function noDeployIn(db: Db, project: { id: string; name: string }, slots: DeploySlot[], what?: string): Promise<void> {
  for (const slot of slots) {
    const running = await runningDeploy(db, project.id, slot);
    if (!running) continue;
    const which = running.preview === null ? "a deploy" : `a deploy of change #${running.preview}'s preview`;
    throw new AppError("conflict", `Project ${project.name} already has ${which} in progress (task ${running.id}, ${running.status}); ${what ? `${what} once it has ended` : "wait for it or cancel it"}`);
  }
}

/** Starts a deploy, rollback or undeploy of a project on a new `deploy` task. */
/** Whether the project is deployed (placed on a server), so that what reaches its default branch goes live. */
export async function isDeployed(db: Db, projectId: string): Promise<boolean> {
  const [placed] = await db.select({ id: serviceDeployments.projectId }).from(serviceDeployments).where(eq(serviceDeployments.projectId, projectId)).limit(1);
  return Boolean(placed);
}

export async function startDeployTask(
  db: Db,
  env: Env,
  principal: Principal,
  projectId: string,
  request:
    | { mode: "deploy"; ref?: string; server?: string; after?: string; preview?: number; removePreview?: number }
    | { mode: "rollback"; deploymentId?: string; commit?: string }
    | { mode: "undeploy"; deleteData?: boolean; preview?: number },
  traceparent?: string,
): Promise<Task> {
  const [project] = await db.select().from(projects).where(and(eq(projects.id, projectId), projectVisibleTo(principal)));
  if (!project) notFound("Project");
  if (request.mode === "deploy" && request.server && !principal.isAdmin) throw new AppError("forbidden", "Only an admin chooses the server (or gives the project one: config.server, config.serverLabels)");
  if (request.mode === "deploy") {
    // The EnvAnalyzer is a model call.
    await checkBudget(db, env, { projectId: project.id, userId: project.ownerId });
    githubAppConfig(env);
    if (!project.repositoryUrl) throw new AppError("conflict", `Project ${project.name} has no repository yet: run its engineering pipeline first`);
  }
  const preview = request.mode !== "rollback" ? request.preview : undefined;
  await noDeployIn(db, project, slotsOf({ mode: request.mode, preview, removePreview: request.mode === "deploy" ? request.removePreview : undefined }));

  let server: ServerRow;
  let target: DeploymentRow | undefined;
  if (preview) {
    // A preview runs where production does: a project that is not deployed has no preview.
    const [placed] = await db.select({ server: servers }).from(serviceDeployments).innerJoin(servers, eq(servers.id, serviceDeployments.serverId)).where(eq(serviceDeployments.projectId, project.id));
    const on = placed?.server ?? (request.mode === "undeploy" ? await previewServer(db, project.id, preview) : undefined);
    if (!on) throw new AppError("conflict", `Project ${project.name} is not deployed, so change #${preview} gets no preview`);
    server = on;
    if (request.mode === "deploy") await roomForPreview(db, env, server, preview);
  } else if (request.mode === "deploy") server = await placeProject(db, project, request.server);
  else {
    const [placed] = await db.select({ server: servers, service: serviceDeployments }).from(serviceDeployments).innerJoin(servers, eq(servers.id, serviceDeployments.serverId)).where(eq(serviceDeployments.projectId, project.id));
    // An undeploy that deletes the data may come after the undeploy that kept it: the data is on the server the project was last on.
    const on = placed?.server ?? (request.mode === "undeploy" && request.deleteData ? await lastServer(db, project.id) : undefined);
    if (!on) throw new AppError("conflict", `Project ${project.name} is not deployed${request.mode === "undeploy" && request.deleteData ? " and never was, so it has no data to delete" : ""}`);
    server = on;
    if (request.mode === "rollback" && placed) target = await rollbackTarget(db, project.id, placed.service.activeDeploymentId, request.deploymentId);
  }
  if (!server.runnerId) throw new AppError("conflict", `Server ${server.handle} has no enrolled runner`);

  let task: Task;
  try {
    task = await createTask(db, { type: "deploy", projectId: project.id, callerId: principal.userId ?? "", input: { mode: request.mode, server: server.handle, ...(request.mode === "deploy" && request.ref ? { ref: request.ref } : {}), ...(request.mode === "deploy" && request.after ? { after: request.after } : {}), ...(target ? { deploymentId: target.id } : {}), ...(request.mode === "rollback" && request.commit ? { commit: request.commit } : {}), ...(request.mode === "undeploy" && request.deleteData ? { deleteData: true } : {}), ...(preview ? { preview } : {}), ...(request.mode === "deploy" && request.removePreview ? { removePreview: request.removePreview } : {}) } });
  } catch (error) {
    // Two starts at once in one slot: the index tasks_one_active_deploy lets one through.
    if (isUniqueViolation(error)) throw new AppError("conflict", `Project ${project.name} already has ${preview ? `a deploy of change #${preview}'s preview` : "a deploy"} in progress`);
    throw error;
  }
  try {
    await getRunnerHub(env, server.handle).setIdentity(hubIdentity(server));
    const params: DeployParams = {
      taskId: task.id,
      projectId: project.id,
      handle: server.handle,
      serverId: server.id,
      mode: request.mode,
      ...(request.mode === "deploy" && request.ref ? { ref: request.ref } : {}),
      ...(target ? { targetDeploymentId: target.id } : {}),
      ...(request.mode === "rollback" && request.commit ? { commit: request.commit } : {}),
      ...(request.mode === "undeploy" && request.deleteData ? { deleteData: true } : {}),
      ...(preview ? { preview } : {}),
      ...(request.mode === "deploy" && request.removePreview ? { removePreview: request.removePreview } : {}),
      ...(traceparent ? { traceparent } : {}),
    };
    await env.DEPLOY.create({ id: task.id, params });
  } catch (error) {
    await appendTaskEvent(env, task.id, { type: "task.failed", message: "the deploy workflow could not be started" }).catch(() => undefined);
    throw error;
  }
  return task;
}

/**
 * Whether the server has room for one more release as a change's preview: a release port, and its
 * memory (every running release may take RELEASE_MEMORY_MB; previews leave a fifth of the server's
 * memory to the system and production's next deploy). A 409 saying which is short.
 */
export async function roomForPreview(db: Db, env: Env, server: ServerRow, preview: number): Promise<void> {
  const status = await getRunnerHub(env, server.handle).status();
  const [row] = await db.select({ running: sql<number>`count(*)::int` }).from(deployments).where(and(eq(deployments.serverId, server.id), isNotNull(deployments.port)));
  const running = row?.running ?? 0;
  const ports = status.releasePorts ? status.releasePorts.to - status.releasePorts.from + 1 : null;
  if (ports !== null && running >= ports) throw new AppError("conflict", `Server ${server.handle} has no release port free for the preview of change #${preview} (${running} releases run on its ${ports}): ship or discard another change first`);
  const memory = status.memoryMb;
  if (memory && (running + 1) * RELEASE_MEMORY_MB > memory * 0.8) {
    throw new AppError("conflict", `Server ${server.handle} has no memory left for the preview of change #${preview}: ${running} releases run, ${RELEASE_MEMORY_MB} MiB each, on ${memory} MiB; ship or discard another change first`);
  }
}

/** The server a change's preview releases ran on (the project may have been undeployed since). */
async function previewServer(db: Db, projectId: string, preview: number): Promise<ServerRow | undefined> {
  const [row] = await db.select({ server: servers }).from(deployments).innerJoin(servers, eq(servers.id, deployments.serverId)).where(and(eq(deployments.projectId, projectId), eq(deployments.preview, preview))).orderBy(desc(deployments.createdAt)).limit(1);
  return row?.server;
}

/** The server a project undeployed before was last on: where its data stays. */
async function lastServer(db: Db, projectId: string): Promise<ServerRow | undefined> {
  const [row] = await db.select({ server: servers }).from(deployments).innerJoin(servers, eq(servers.id, deployments.serverId)).where(eq(deployments.projectId, projectId)).orderBy(desc(deployments.createdAt)).limit(1);
  return row?.server;
}

/** The deploy an engineering task started once its tests passed (`after`), if it did: a retried step finds it. */
export async function deployStartedAfter(db: Db, projectId: string, engineeringTaskId: string): Promise<Task | undefined> {
  const [task] = await db.select().from(tasks).where(and(eq(tasks.projectId, projectId), eq(tasks.type, "deploy"), sql`${tasks.input}->>'after' = ${engineeringTaskId}`)).limit(1);
  return task;
}

/** The release a rollback goes to: the one named, else the newest healthy release before the active one. */
async function rollbackTarget(db: Db, projectId: string, activeId: string | null, asked: string | undefined): Promise<DeploymentRow> {
  if (asked) {
    const [row] = await db.select().from(deployments).where(and(eq(deployments.id, asked), eq(deployments.projectId, projectId), isNull(deployments.preview)));
    if (!row) notFound("Deployment");
    if (row.id === activeId) throw new AppError("conflict", `Release ${asked} is the active one already`);
    if (!["superseded", "rolled_back", "active"].includes(row.status)) throw new AppError("conflict", `Release ${asked} never served (${row.status}); only a release that passed its health check can come back`);
    return row;
  }
  const candidates = await db
    .select()
    .from(deployments)
    .where(and(eq(deployments.projectId, projectId), inArray(deployments.status, ["superseded", "rolled_back"]), isNull(deployments.port), isNull(deployments.preview)))
    .orderBy(desc(deployments.createdAt))
    .limit(10);
  const found = candidates.find((row) => row.id !== activeId);
  if (!found) throw new AppError("conflict", "There is no earlier healthy release to roll back to");
  return found;
}

/**
 * The name a release's files, image, network and data go under on the server: the project's, or for a
 * change's preview `<project>--<n>` (no project's name holds "--"), so a preview shares nothing with
 * production or another preview.
 */
export function releaseProject(name: string, preview: number | null | undefined): string {
  return preview ? `${name}--${preview}` : name;
}

/** The release directory and image a deployment runs: its own, or for a rollback the kept release's. */
export function releaseOf(row: Pick<DeploymentRow, "id" | "sourceDeploymentId">): string {
  return row.sourceDeploymentId ?? row.id;
}

export function newDeploymentId(): string {
  return newId("dep");
}

/**
 * Runs `work` on a release only while it is still `deploying`, in one transaction holding that
 * release's row lock; false (and nothing done) once it is not. A cancel claims the release under the
 * same lock (settleStoppedDeploy), and a terminated workflow still finishes the step it is in: so the
 * step that routes to a release or marks it live either lands before the cancel, which then undoes it,
 * or finds the release stopped and does nothing. Never a route to, or a live row for, a stopped release.
 */
export async function whileDeploying(db: Db, deploymentId: string, work: (tx: DbTx) => Promise<void>): Promise<boolean> {
  return db.transaction(async (tx) => {
    const [row] = await tx.select({ status: deployments.status }).from(deployments).where(eq(deployments.id, deploymentId)).for("update");
    if (row?.status !== "deploying") return false;
    await work(tx);
    return true;
  });
}

/** Points a project's route (or a change's preview's) at a release (or, with null, removes it) in the database; Caddy follows on its next sync. */
export async function pointRoute(db: Db | DbTx, route: { projectId: string; serverId: string; domain: string; preview?: number | null }, to: { id: string; port: number } | null): Promise<void> {
  if (route.preview) {
    await db.update(changes).set({ previewDeploymentId: to?.id ?? null, updatedAt: new Date() }).where(and(eq(changes.projectId, route.projectId), eq(changes.number, route.preview)));
    return;
  }
  if (!to) {
    await db.delete(serviceDeployments).where(eq(serviceDeployments.projectId, route.projectId));
    return;
  }
  await db
    .insert(serviceDeployments)
    .values({ id: `svc_${route.projectId}`, projectId: route.projectId, serverId: route.serverId, domain: route.domain, internalPort: to.port, status: "active", activeDeploymentId: to.id })
    .onConflictDoUpdate({ target: serviceDeployments.projectId, set: { internalPort: to.port, activeDeploymentId: to.id, status: "active", updatedAt: new Date() } });
}

/** Records a release as the live one (with its health checks' evidence) and the one it replaced as ended. */
export async function recordLive(db: Db | DbTx, releaseId: string, health: Record<string, unknown>, previous: { id: string; status: "superseded" | "rolled_back" } | null): Promise<void> {
  await db.update(deployments).set({ status: "active", health, finishedAt: new Date() }).where(eq(deployments.id, releaseId));
  if (previous) await db.update(deployments).set({ status: previous.status }).where(eq(deployments.id, previous.id));
}

/** How long settling a stopped deploy waits for each of its jobs (the route list, a release stopped). */
const SETTLE_JOB_WAIT_MS = 60_000;

const UNSETTLED: DeploymentRow["status"][] = ["pending", "deploying", "active"];

/**
 * Claims a stopped deploy's release in one transaction under its row lock (the lock whileDeploying
 * takes): marks it failed and, if the route was moved to it, points the route back at the release that
 * served before (made active again) or removes it. Null when there is nothing to settle: the release
 * has ended already, or it is live and the one before it has stopped (past its drain), so it serves.
 * The route in Caddy and the release's container are the caller's to put right after.
 */
export async function claimStoppedRelease(db: Db, deploymentId: string, projectId: string, why: string): Promise<{ deployment: DeploymentRow; routed: boolean } | null> {
  return db.transaction(async (tx) => {
    const [deployment] = await tx.select().from(deployments).where(eq(deployments.id, deploymentId)).for("update");
    if (!deployment || !UNSETTLED.includes(deployment.status)) return null;
    const [service] = deployment.preview
      ? await tx.select({ activeDeploymentId: changes.previewDeploymentId }).from(changes).where(and(eq(changes.projectId, projectId), eq(changes.number, deployment.preview)))
      : await tx.select({ activeDeploymentId: serviceDeployments.activeDeploymentId }).from(serviceDeployments).where(eq(serviceDeployments.projectId, projectId));
    const routed = service?.activeDeploymentId === deployment.id;
    if (routed) {
      const [previous] = deployment.previousDeploymentId ? await tx.select().from(deployments).where(eq(deployments.id, deployment.previousDeploymentId)) : [];
      if (!previous?.port && deployment.status === "active") return null;
      await pointRoute(tx, { projectId, serverId: deployment.serverId ?? "", domain: deployment.domain ?? "", preview: deployment.preview }, previous?.port ? { id: previous.id, port: previous.port } : null);
      if (previous?.port) await tx.update(deployments).set({ status: "active", stoppedAt: null }).where(eq(deployments.id, previous.id));
    }
    // Failed from here on, so no workflow step routes to it or marks it live; its port is freed once it has stopped.
    await tx.update(deployments).set({ status: "failed", finishedAt: new Date(), health: { ...deployment.health, settled: why } }).where(eq(deployments.id, deployment.id));
    return { deployment, routed };
  });
}

/**
 * Puts right what a deploy (or rollback) stopped part-way left behind: a cancel, a workflow that ended
 * without finishing, a release left `deploying`. If the route was moved to its release, it goes back
 * to the release that served before (when that one still runs), or away; then its release is stopped,
 * its port freed and its row marked failed. Exactly one release serves afterwards (the previous one),
 * or none for a first deploy. Runs outside any workflow, so its jobs go straight to the server's hub.
 * Each release is claimed first (claimStoppedRelease), under the row lock the workflow's own route and
 * go-live steps take too (whileDeploying).
 */
export async function settleStoppedDeploy(env: Env, db: Db, task: Pick<Task, "id" | "projectId">, why: string): Promise<{ stopped: string[]; routedBack: boolean }> {
  const outcome = { stopped: [] as string[], routedBack: false };
  const projectId = task.projectId;
  if (!projectId) return outcome;
  const releases = await db
    .select({ deployment: deployments, server: servers })
    .from(deployments)
    .innerJoin(servers, eq(servers.id, deployments.serverId))
    .where(and(eq(deployments.taskId, task.id), inArray(deployments.status, UNSETTLED)));
  for (const { server, deployment: listed } of releases) {
    const claimed = await claimStoppedRelease(db, listed.id, projectId, why);
    if (!claimed) continue;
    const { deployment, routed } = claimed;
    const hub = getRunnerHub(env, server.handle);
    const runJob = async (input: Parameters<typeof hub.submit>[0]) => {
      const queued = await hub.submit(input);
      return queued.ok ? await hub.wait(queued.job.id, SETTLE_JOB_WAIT_MS) : null;
    };
    if (routed) {
      const routes = await routeList(db, server.id);
      await runJob({ type: "caddy.sync", payload: { ...routes, timeoutSeconds: 60 }, taskId: task.id, ttlSeconds: 300, finishTask: false, idempotencyKey: `settle:${task.id}:routes` });
      outcome.routedBack = true;
    }
    if (deployment.port !== null) {
      const [project] = await db.select({ name: projects.name }).from(projects).where(eq(projects.id, projectId));
      if (project) {
        await runJob({
          type: "ansible.playbook",
          payload: { playbook: "deploy_project.yml", extraVars: { project: releaseProject(project.name, deployment.preview), release: releaseOf(deployment), operation: "stop" }, timeoutSeconds: 180 },
          taskId: task.id,
          ttlSeconds: 600,
          finishTask: false,
          idempotencyKey: `settle:${task.id}:stop:${deployment.id}`,
        });
      }
    }
    await db.update(deployments).set({ port: null, stoppedAt: new Date() }).where(eq(deployments.id, deployment.id));
    outcome.stopped.push(deployment.id);
  }
  return outcome;
}
