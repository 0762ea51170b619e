/**
 * Change requests (src/shared/changes.ts) on the control plane's side: the record of each, its
 * checks before anything starts, and the owner's two answers to an open one: ship (the pull request
 * merged, the project's acceptance checks updated from the brief, production deployed from the merge
 * commit) or discard (the pull request closed, its branch deleted). The work itself is an engineering
 * task in change mode (src/workflows/engineering.ts), started by startEngineering.
 */
import { and, desc, eq, max, ne, sql } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { changes, deployments, projects, tasks } from "../db/schema.ts";
import { recordCheckpoint, testsOfTask } from "../checkpoints/checkpoints.ts";
import { isDeployed, noDeployIn, startDeployTask } from "../deploy/deploys.ts";
import { AppError, notFound } from "../lib/app-error.ts";
import { newId } from "../lib/crypto.ts";
import { isUniqueViolation } from "../db/errors.ts";
import type { Principal } from "../lib/context.ts";
import { deleteBranch, githubAppConfig, installationOrg, repositoryToken, resetBranch } from "../projects/github.ts";
import { ownRepository, projectRepository, projectVisibleTo } from "../projects/projects.ts";
import { closePullRequest, getPullRequest, mergePullRequest } from "../projects/pull-requests.ts";
import { FINAL_TASK_STATUSES } from "../shared/api.ts";
import { ChangeBrief, changeBranch, type ChangeView, type PullRequestRef, withChangeChecks } from "../shared/changes.ts";
import { ProjectSpec } from "../shared/spec.ts";

type ChangeRow = typeof changes.$inferSelect;
type ProjectRow = typeof projects.$inferSelect;

export function changeView(row: ChangeRow): ChangeView {
  return {
    projectId: row.projectId,
    number: row.number,
    request: row.request,
    branch: row.branch,
    status: row.status,
    taskId: row.taskId,
    pullRequest: row.pullRequest ?? null,
    testedSha: row.testedSha,
    mergeSha: row.mergeSha,
    deployTaskId: row.deployTaskId,
    preview: row.previewTaskId ? { taskId: row.previewTaskId, url: row.previewUrl, live: row.previewDeploymentId !== null && row.previewUrl !== null } : null,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
  };
}

/**
 * Whether a change can start on this project: it was built (a spec and its repository), and the
 * repository is still there. Throws a 409 saying which is missing; nothing is created before.
 */
export async function checkChangeable(env: Env, project: ProjectRow): Promise<void> {
  if (!ProjectSpec.safeParse(project.spec).success || !project.repositoryUrl) {
    throw new AppError("conflict", `Project ${project.name} was never built, so there is nothing to change yet: build it first (POST /api/projects/${project.id}/engineering)`);
  }
  const own = await ownRepository(githubAppConfig(env), project);
  if (own === "not own") throw new AppError("conflict", `Project ${project.name}'s repository (${project.repositoryUrl}) is not the project's own, so no change is made there`);
  if (own === "gone") throw new AppError("conflict", `Project ${project.name}'s repository (${project.repositoryUrl}) is gone, so there is nothing to change: build the project again`);
}

/** Numbers the next change of a project and records it, with the task that works on it. */
export async function recordChange(db: Db, projectId: string, request: string, taskId: string): Promise<ChangeRow> {
  // Two changes asked at once take the same next number: the second takes the one after.
  for (let attempt = 1; ; attempt++) {
    const [last] = await db.select({ number: max(changes.number) }).from(changes).where(eq(changes.projectId, projectId));
    const number = (last?.number ?? 0) + 1;
    try {
      const [row] = await db.insert(changes).values({ id: newId("chg"), projectId, number, request, branch: changeBranch(number, request), taskId }).returning();
      if (!row) throw new Error("the change was not recorded");
      return row;
    } catch (error) {
      if (!isUniqueViolation(error) || attempt >= 5) throw error;
    }
  }
}

export async function listChanges(db: Db, principal: Principal, projectId: string): Promise<ChangeView[]> {
  const project = await visibleProject(db, principal, projectId);
  const rows = await db.select().from(changes).where(eq(changes.projectId, project.id)).orderBy(desc(changes.number));
  return rows.map(changeView);
}

export async function getChange(db: Db, principal: Principal, projectId: string, number: number): Promise<{ project: ProjectRow; change: ChangeRow }> {
  const project = await visibleProject(db, principal, projectId);
  const [change] = await db.select().from(changes).where(and(eq(changes.projectId, project.id), eq(changes.number, number)));
  if (!change) notFound("Change");
  return { project, change };
}

/** The change a task works on (the one startEngineering just recorded). */
export async function changeOfTask(db: Db, taskId: string): Promise<ChangeView> {
  const [row] = await db.select().from(changes).where(eq(changes.taskId, taskId));
  if (!row) notFound("Change");
  return changeView(row);
}

/** The workflow's records as a change goes: its brief, then its pull request (open), or its end (failed). */
export async function recordChangeBrief(db: Db, taskId: string, brief: ChangeBrief): Promise<void> {
  await db.update(changes).set({ brief, updatedAt: new Date() }).where(eq(changes.taskId, taskId));
}
export async function recordChangeOpen(db: Db, taskId: string, pullRequest: PullRequestRef, testedSha: string): Promise<void> {
  await db.update(changes).set({ status: "open", pullRequest, testedSha, updatedAt: new Date() }).where(eq(changes.taskId, taskId));
}
/** A change asked to catch up that had nothing to take in: open again, as it was. */
export async function recordChangeCurrent(db: Db, taskId: string): Promise<void> {
  await db.update(changes).set({ status: "open", updatedAt: new Date() }).where(and(eq(changes.taskId, taskId), eq(changes.status, "building")));
}
export async function recordChangeFailed(db: Db, taskId: string, more: boolean): Promise<void> {
  // A "change more" that failed leaves the change as it was: open, its pull request and preview as before.
  await db.update(changes).set({ status: more ? "open" : "failed", updatedAt: new Date() }).where(and(eq(changes.taskId, taskId), eq(changes.status, "building")));
}

/**
 * Takes an open change into another round ("change more"): refused unless it is open; its task becomes
 * `taskId`, its words grow by the new ones, and the preview is made again once the round passes.
 */
export async function reopenChange(db: Db, projectId: string, number: number, request: string, taskId: string): Promise<ChangeRow> {
  const [row] = await db
    .update(changes)
    // No words: a catch-up (the default branch merged in), the request as it was.
    .set({ status: "building", taskId, ...(request ? { request: sql`left(${changes.request} || ${`\nThen: ${request}`}, 8000)` } : {}), previewTaskId: null, updatedAt: new Date() })
    .where(and(eq(changes.projectId, projectId), eq(changes.number, number), eq(changes.status, "open")))
    .returning();
  if (!row) throw new AppError("conflict", `Change #${number} is not open: only an open change (its tests passed, its pull request open) can change more`);
  return row;
}

/** Whether change #n of the project is open (checked before a "change more" task is made). */
export async function openChange(db: Db, projectId: string, number: number): Promise<ChangeRow> {
  const [row] = await db.select().from(changes).where(and(eq(changes.projectId, projectId), eq(changes.number, number)));
  if (!row) notFound("Change");
  if (row.status !== "open") throw new AppError("conflict", `Change #${number} is ${row.status}: only an open change (its tests passed, its pull request open) can change more`);
  return row;
}

/**
 * Merge an open change: its pull request merged (as its branch's head was when the tests passed: a
 * branch pushed to since is refused), the brief's acceptance checks put into the project's spec, and
 * the merge commit deployed as the caller (if the project is deployed). A pull request that no longer
 * merges is a 409 saying why. Shipping is this and the other open changes catching up (src/changes/ship.ts).
 */
export async function mergeChange(db: Db, env: Env, principal: Principal, projectId: string, number: number, traceparent?: string): Promise<ChangeView> {
  const { project, change } = await getChange(db, principal, projectId, number);
  // A change whose "change more" was cancelled still has its tested head: it ships as it was.
  const shippable = change.status === "open" || (change.status === "building" && change.testedSha !== null && (await taskIsOver(db, change.taskId)));
  if (!shippable || !change.pullRequest) throw new AppError("conflict", `Change #${number} is ${change.status}: only an open change (its tests passed, its pull request open) can ship`);
  // Refused before the merge: shipping is the merge and its deploy, or neither.
  await noDeployIn(db, project, [null, number], `ship change #${number}`);
  const previewed = await hasPreviewReleases(db, project.id, number);
  const config = githubAppConfig(env);
  const where = projectRepository(project, await installationOrg(config));
  if (!where) throw new AppError("conflict", `Project ${project.name}'s repository is not the project's own`);
  const { token } = await repositoryToken(config, where.name, { contents: "write", metadata: "read", pull_requests: "write" });
  const pull = await getPullRequest(config, token, where, change.pullRequest.number);
  if (!pull || pull.state !== "open") throw new AppError("conflict", `Change #${number}'s pull request #${change.pullRequest.number} is not open any more`);
  const brief = ChangeBrief.safeParse(change.brief).data;
  // What merges is the head whose tests passed: a later push (a round of "change more" that failed or was cancelled) is taken back first.
  const tested = change.testedSha ?? pull.head.sha;
  if (pull.head.sha !== tested) await resetBranch(config, token, where, change.branch, tested);
  const merged = await mergePullRequest(config, token, where, change.pullRequest.number, { sha: tested, method: "merge", title: `${project.name}: change #${number}: ${brief?.summary ?? change.request}`.slice(0, 256) });
  if (!merged.merged) throw new AppError("conflict", `Change #${number} did not merge (${merged.reason}): ${merged.message}`);
  // The change's checks join the project's, so this deploy and every later one checks them.
  const spec = ProjectSpec.safeParse(project.spec).data;
  const acceptance = spec && brief?.acceptance.length ? withChangeChecks(spec.acceptance, brief.acceptance) : (spec?.acceptance ?? []);
  if (spec && brief?.acceptance.length) await db.update(projects).set({ spec: { ...spec, acceptance }, updatedAt: new Date() }).where(eq(projects.id, project.id));
  await db.update(changes).set({ status: "shipped", mergeSha: merged.sha, updatedAt: new Date() }).where(eq(changes.id, change.id));
  await recordCheckpoint(db, {
    projectId: project.id,
    kind: "change",
    summary: `Change #${number}: ${brief?.summary ?? change.request}`,
    commitSha: merged.sha,
    taskId: change.taskId,
    changeNumber: number,
    tests: await testsOfTask(db, change.taskId),
    acceptance,
  });
  await deleteBranch(config, token, where, change.branch).catch(() => undefined);
  // Never deployed: shipped is merged; the project goes live when the person deploys it.
  if (!(await isDeployed(db, project.id))) {
    const [row] = await db.select().from(changes).where(eq(changes.id, change.id));
    return changeView(row ?? change);
  }
  let deployTaskId: string;
  try {
    // Its preview goes once production serves the change.
    deployTaskId = (await startDeployTask(db, env, principal, project.id, { mode: "deploy", ref: merged.sha, ...(previewed ? { removePreview: number } : {}) }, traceparent)).id;
  } catch (error) {
    // Merged whatever happens to the deploy: the refusal (a deploy already running, a budget) is the caller's to see.
    if (!(error instanceof AppError)) throw error;
    throw new AppError(error.code, `Change #${number} is merged (${merged.sha.slice(0, 12)}), but its deploy did not start: ${error.message}`);
  }
  const [row] = await db.update(changes).set({ deployTaskId, updatedAt: new Date() }).where(eq(changes.id, change.id)).returning();
  return changeView(row ?? change);
}

/** Discard a change that is not shipped: its pull request closed, its branch deleted; the record stays, discarded. */
export async function discardChange(db: Db, env: Env, principal: Principal, projectId: string, number: number): Promise<ChangeView> {
  const { project, change } = await getChange(db, principal, projectId, number);
  const preview = await hasPreviewReleases(db, project.id, number);
  if (change.status === "shipped" || change.status === "discarded") {
    // Over, but its preview outlived it (its removal failed or was cancelled): discarding again removes it.
    if (!preview) throw new AppError("conflict", `Change #${number} is ${change.status} already`);
    await noDeployIn(db, project, [number], `remove change #${number}'s preview`);
    const removal = await startDeployTask(db, env, principal, project.id, { mode: "undeploy", preview: number });
    return { ...changeView(change), deployTaskId: removal.id };
  }
  if (change.status === "building") {
    // A cancelled task's workflow is terminated before it can say so: its change is over when the task is.
    if (!(await taskIsOver(db, change.taskId))) throw new AppError("conflict", `Change #${number} is still being built (task ${change.taskId}): cancel that task first, then discard it`);
  }
  // Its preview goes with it (a deploy task of its own): refused before anything is closed while a deploy runs (its preview's, perhaps).
  if (preview || change.previewTaskId) await noDeployIn(db, project, [number], `discard change #${number} (its preview is removed by a deploy task)`);
  const config = githubAppConfig(env);
  const where = projectRepository(project, await installationOrg(config));
  if (where) {
    const { token } = await repositoryToken(config, where.name, { contents: "write", metadata: "read", pull_requests: "write" });
    if (change.pullRequest) await closePullRequest(config, token, where, change.pullRequest.number);
    await deleteBranch(config, token, where, change.branch);
  }
  const [row] = await db.update(changes).set({ status: "discarded", updatedAt: new Date() }).where(eq(changes.id, change.id)).returning();
  if (!preview) return changeView(row ?? change);
  const removal = await startDeployTask(db, env, principal, project.id, { mode: "undeploy", preview: number });
  const [removing] = await db.update(changes).set({ deployTaskId: removal.id, updatedAt: new Date() }).where(eq(changes.id, change.id)).returning();
  return changeView(removing ?? row ?? change);
}

/** Whether a task has ended (a cancelled one's workflow is terminated before it can say so). */
async function taskIsOver(db: Db, taskId: string): Promise<boolean> {
  const [task] = await db.select({ status: tasks.status }).from(tasks).where(eq(tasks.id, taskId));
  return Boolean(task && (FINAL_TASK_STATUSES as readonly string[]).includes(task.status));
}

/** Whether change #n has preview releases that are not removed yet. */
async function hasPreviewReleases(db: Db, projectId: string, number: number): Promise<boolean> {
  const [row] = await db.select({ id: deployments.id }).from(deployments).where(and(eq(deployments.projectId, projectId), eq(deployments.preview, number), ne(deployments.status, "removed"))).limit(1);
  return Boolean(row);
}

async function visibleProject(db: Db, principal: Principal, projectId: string): Promise<ProjectRow> {
  const [project] = await db.select().from(projects).where(and(eq(projects.id, projectId), projectVisibleTo(principal)));
  if (!project) notFound("Project");
  return project;
}
