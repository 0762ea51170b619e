/**
 * A live app's recent logs (the seed's diagnose group): the last lines production's release wrote, read
 * on its server by a release.logs job (runner/src/executors/release-logs.ts), with every secret the
 * release holds masked there, before anything leaves the server.
 */
import { and, eq } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { deployments, projects, serviceDeployments, servers } from "../db/schema.ts";
import { AppError, notFound } from "../lib/app-error.ts";
import type { Principal } from "../lib/context.ts";
import { projectVisibleTo } from "../projects/projects.ts";
import { getRunnerHub } from "../runner-hub/client.ts";
import type { AppLogs } from "../shared/deploys.ts";
import { COMPUTED_ENV_NAMES } from "./env-analyzer.ts";
import { releaseOf, releaseProject } from "./deploys.ts";

/** How long a request waits for the runner's answer. */
const WAIT_MS = 25_000;

export async function appLogs(db: Db, env: Env, principal: Principal, projectId: string, tail: number): Promise<AppLogs> {
  const [row] = await db
    .select({ project: projects, service: serviceDeployments, server: servers })
    .from(projects)
    .leftJoin(serviceDeployments, eq(serviceDeployments.projectId, projects.id))
    .leftJoin(servers, eq(servers.id, serviceDeployments.serverId))
    .where(and(eq(projects.id, projectId), projectVisibleTo(principal)));
  if (!row) notFound("Project");
  const { project, service, server } = row;
  if (!service?.activeDeploymentId || !server) throw new AppError("conflict", `Project ${project.name} is not deployed, so it has no logs to read`);
  const [release] = await db.select().from(deployments).where(eq(deployments.id, service.activeDeploymentId));
  if (!release) throw new AppError("conflict", `Project ${project.name} has no live release`);
  const hub = getRunnerHub(env, server.handle);
  if (!(await hub.status()).connected) throw new AppError("upstream_unavailable", `The runner of ${server.handle} is not connected, so ${project.name}'s logs cannot be read now`);
  const queued = await hub.submit({
    type: "release.logs",
    payload: { project: releaseProject(project.name, null), release: releaseOf(release), tail, plain: [...COMPUTED_ENV_NAMES], timeoutSeconds: 20 },
    ttlSeconds: 60,
    finishTask: false,
  });
  if (!queued.ok) throw new AppError(queued.code === "invalid_request" ? "invalid_request" : "conflict", queued.message);
  const job = await hub.wait(queued.job.id, WAIT_MS);
  if (!job?.outcome) throw new AppError("upstream_unavailable", `The runner of ${server.handle} did not answer within ${WAIT_MS / 1000} s`);
  if (!job.outcome.ok) throw new AppError("conflict", `${project.name}'s logs could not be read: ${job.outcome.message}`);
  const data = job.outcome.data ?? {};
  const lines = Array.isArray(data.lines) ? data.lines.filter((line): line is string => typeof line === "string") : [];
  return { project: project.name, release: release.id, server: server.handle, state: typeof data.state === "string" ? data.state : "unknown", lines, omitted: typeof data.omitted === "number" ? data.omitted : 0 };
}
