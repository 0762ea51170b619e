/**
 * Checkpoints (src/shared/checkpoints.ts) on the control plane's side: recorded where the default
 * branch reaches a tested commit (the engineering workflow's passing round, a change shipped, an undo),
 * listed with the release that served each, and the undo: a revert commit on the default branch whose
 * tree is the checkpoint's (history is never rewritten), the checkpoint's acceptance checks back in the
 * spec, and its kept release started again through a rollback (no rebuild; a rebuild of the revert
 * commit only when that release is gone).
 */
import { and, desc, eq, inArray, isNull, lte, max, sql } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { isUniqueViolation } from "../db/errors.ts";
import { checkpoints, deployments, projects, serviceDeployments, tasks } from "../db/schema.ts";
import { startDeployTask } from "../deploy/deploys.ts";
import { checkBudget } from "../models/usage.ts";
import { AppError, notFound } from "../lib/app-error.ts";
import type { Principal } from "../lib/context.ts";
import { newId } from "../lib/crypto.ts";
import { commitTree, createCommit, fastForward, githubAppConfig, repositoryToken, resolveCommit } from "../projects/github.ts";
import { findProject, ownRepository } from "../projects/projects.ts";
import { ACTIVE_TASK_STATUSES } from "../shared/api.ts";
import { type CheckpointKind, type CheckpointView, UNDO_DATA_NOTE, type UndoBody, type UndoView } from "../shared/checkpoints.ts";
import { AcceptanceChecks, ProjectSpec } from "../shared/spec.ts";

type CheckpointRow = typeof checkpoints.$inferSelect;
type DeploymentRow = typeof deployments.$inferSelect;

/** Releases that served (and whose image is kept): what a checkpoint's code ran as. */
const SERVED: DeploymentRow["status"][] = ["active", "superseded", "rolled_back"];

export interface NewCheckpoint {
  projectId: string;
  kind: CheckpointKind;
  summary: string;
  commitSha: string;
  taskId: string | null;
  changeNumber?: number;
  restores?: number;
  tests: string | null;
  acceptance: unknown[];
}

/**
 * Records a checkpoint with the project's next number; the one already recorded for that commit when
 * there is one (a retried step records nothing twice).
 */
export async function recordCheckpoint(db: Db, input: NewCheckpoint): Promise<CheckpointRow> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const [existing] = await db.select().from(checkpoints).where(and(eq(checkpoints.projectId, input.projectId), eq(checkpoints.commitSha, input.commitSha)));
    if (existing) return existing;
    const [last] = await db.select({ number: max(checkpoints.number) }).from(checkpoints).where(eq(checkpoints.projectId, input.projectId));
    try {
      const [row] = await db
        .insert(checkpoints)
        .values({ id: newId("ckp"), number: (last?.number ?? 0) + 1, changeNumber: input.changeNumber ?? null, restores: input.restores ?? null, ...input, summary: input.summary.slice(0, 300) })
        .returning();
      if (row) return row;
    } catch (error) {
      // Two at once took the same number (or recorded the same commit): look again.
      if (!isUniqueViolation(error)) throw error;
    }
  }
  throw new Error("the checkpoint could not be recorded: too many at once");
}

/** A project's checkpoints, newest first, each with the release that served its commit. */
export async function listCheckpoints(db: Db, principal: Principal, project: string): Promise<CheckpointView[]> {
  const row = await findProject(db, principal, project);
  const rows = await db.select().from(checkpoints).where(eq(checkpoints.projectId, row.id)).orderBy(desc(checkpoints.number));
  const releases = rows.length
    ? await db
        .select()
        .from(deployments)
        .where(and(eq(deployments.projectId, row.id), isNull(deployments.preview), inArray(deployments.status, SERVED), inArray(deployments.commitSha, rows.map((checkpoint) => checkpoint.commitSha))))
        .orderBy(desc(deployments.createdAt))
    : [];
  return rows.map((checkpoint, index) => checkpointView(checkpoint, releases.find((release) => release.commitSha === checkpoint.commitSha) ?? null, index === 0));
}

function checkpointView(row: CheckpointRow, release: DeploymentRow | null, latest: boolean): CheckpointView {
  return {
    projectId: row.projectId,
    number: row.number,
    kind: row.kind,
    summary: row.summary,
    commitSha: row.commitSha,
    taskId: row.taskId,
    change: row.changeNumber,
    restores: row.restores,
    tests: row.tests,
    release: release ? { deploymentId: release.id, status: release.status, live: release.status === "active" } : null,
    latest,
    createdAt: row.createdAt.toISOString(),
  };
}

/** The checkpoint an undo goes back to: the one named, the newest at or before a time, else the one before the latest. */
async function undoTarget(db: Db, projectId: string, projectName: string, body: UndoBody): Promise<{ latest: CheckpointRow; target: CheckpointRow }> {
  const [latest, previous] = await db.select().from(checkpoints).where(eq(checkpoints.projectId, projectId)).orderBy(desc(checkpoints.number)).limit(2);
  if (!latest) throw new AppError("conflict", `Project ${projectName} has no checkpoints yet: a checkpoint is recorded when a build's tests pass on its default branch`);
  let target: CheckpointRow | undefined;
  if (body.checkpoint) {
    [target] = await db.select().from(checkpoints).where(and(eq(checkpoints.projectId, projectId), eq(checkpoints.number, body.checkpoint)));
    if (!target) notFound("Checkpoint");
  } else if (body.asOf) {
    [target] = await db.select().from(checkpoints).where(and(eq(checkpoints.projectId, projectId), lte(checkpoints.createdAt, new Date(body.asOf)))).orderBy(desc(checkpoints.number)).limit(1);
    if (!target) throw new AppError("conflict", `Project ${projectName} had no checkpoint yet at ${body.asOf}`);
  } else {
    target = previous;
    if (!target) throw new AppError("conflict", `Project ${projectName} has one checkpoint only (#${latest.number}): there is nothing before it to go back to`);
  }
  // The latest itself is a fair target too: the default branch may have moved past it (a person's push); the code is compared before anything is made.
  return { latest, target };
}

/**
 * Undo: the project's code and production back to a checkpoint, in one action. Refused (with nothing
 * done) while a build or a deploy of the project runs, or when the code is as that checkpoint already.
 */
export async function undoToCheckpoint(db: Db, env: Env, principal: Principal, project: string, body: UndoBody, traceparent?: string): Promise<UndoView> {
  const row = await findProject(db, principal, project);
  const { target } = await undoTarget(db, row.id, row.name, body);
  const [busy] = await db
    .select({ id: tasks.id, type: tasks.type })
    .from(tasks)
    // A change being built works on a branch of its own, and a preview's deploy on a release of its own, so neither stops an undo; a build on the default branch or a deploy of production does.
    .where(and(eq(tasks.projectId, row.id), inArray(tasks.status, [...ACTIVE_TASK_STATUSES]), sql`((${tasks.type} = 'deploy' and not (${tasks.input} ? 'preview')) or (${tasks.type} = 'engineering' and not (${tasks.input} ? 'change')))`))
    .limit(1);
  if (busy) throw new AppError("conflict", `Project ${row.name} has ${busy.type === "deploy" ? "a deploy" : "a build"} in progress (task ${busy.id}): wait for it or cancel it, then undo`);

  // How production follows, worked out (and a rebuild's budget checked) before anything is changed.
  const plan = await productionPlan(db, row.id, target);
  if (plan.how === "rebuilt") await checkBudget(db, env, { projectId: row.id, userId: row.ownerId });
  const config = githubAppConfig(env);
  const repository = await ownRepository(config, row);
  if (typeof repository === "string") throw new AppError("conflict", `Project ${row.name}'s repository is ${repository === "gone" ? "gone" : "not the project's own"}, so its code cannot go back`);
  const { token } = await repositoryToken(config, repository.name, { contents: "write", metadata: "read" });
  const head = await resolveCommit(config, token, repository, repository.defaultBranch);
  const [headCommit, targetCommit] = await Promise.all([head ? commitTree(config, token, repository, head) : null, commitTree(config, token, repository, target.commitSha)]);
  if (!head || !headCommit) throw new AppError("conflict", `${repository.fullName} has no ${repository.defaultBranch} branch`);
  if (!targetCommit) throw new AppError("conflict", `Checkpoint #${target.number}'s commit ${target.commitSha.slice(0, 12)} is no longer in ${repository.fullName}`);
  if (headCommit.tree === targetCommit.tree) throw new AppError("conflict", `${repository.defaultBranch} of ${row.name} is as checkpoint #${target.number} already`);

  // A commit of the checkpoint's tree on top of the branch: what came after it is undone, and stays in the history.
  const revert = await createCommit(config, token, repository, {
    message: `Undo: back to checkpoint #${target.number} (${target.summary})\n\nThe code as it was at ${target.commitSha}; the changes after it up to ${head} are undone.`,
    tree: targetCommit.tree,
    parents: [head],
  });
  if (!(await fastForward(config, { token }, repository, repository.defaultBranch, revert))) {
    throw new AppError("conflict", `${repository.defaultBranch} of ${row.name} moved while undoing: nothing was changed, try again`);
  }
  // The checkpoint's acceptance checks come back with its code: later checks would fail on it.
  const spec = ProjectSpec.safeParse(row.spec).data;
  const acceptance = AcceptanceChecks.default([]).safeParse(target.acceptance).data ?? [];
  if (spec) await db.update(projects).set({ spec: { ...spec, acceptance }, updatedAt: new Date() }).where(eq(projects.id, row.id));
  const checkpoint = await recordCheckpoint(db, { projectId: row.id, kind: "undo", summary: `Back to checkpoint #${target.number}: ${target.summary}`, commitSha: revert, taskId: target.taskId, restores: target.number, tests: target.tests, acceptance: target.acceptance });

  const production = await followInProduction(db, env, principal, row.id, plan, revert, traceparent);
  const view = checkpointView(checkpoint, null, true);
  const live = {
    "release restarted": `its release ${production.release ?? ""} is starting again (no rebuild; task ${production.taskId ?? ""})`,
    rebuilt: `its release is no longer kept, so the revert commit is being built and deployed (task ${production.taskId ?? ""})`,
    "not deployed": "the project is not deployed, so only the code went back",
    "already live": "its release is the live one already",
    "not started": `production could not follow: ${production.why ?? ""}; deploy ${repository.defaultBranch} once that is settled`,
  }[production.how];
  return {
    checkpoint: view,
    restored: target.number,
    production: production.how,
    deployTaskId: production.taskId,
    data: UNDO_DATA_NOTE,
    message: `${row.name} is going back to checkpoint #${target.number} (${target.summary}): ${repository.defaultBranch} has the revert commit ${revert.slice(0, 12)}, and ${live}. ${UNDO_DATA_NOTE}`,
  };
}

type ProductionPlan = { how: "not deployed" | "already live"; release: string | null } | { how: "release restarted"; release: string } | { how: "rebuilt"; release: null };

/** How production will follow an undo to `target`: its kept release (production's, on the server it runs on) started again, a rebuild, or nothing. */
async function productionPlan(db: Db, projectId: string, target: CheckpointRow): Promise<ProductionPlan> {
  const [placed] = await db.select().from(serviceDeployments).where(eq(serviceDeployments.projectId, projectId));
  if (!placed) return { how: "not deployed", release: null };
  const [release] = await db
    .select()
    .from(deployments)
    .where(and(eq(deployments.projectId, projectId), isNull(deployments.preview), eq(deployments.serverId, placed.serverId), eq(deployments.commitSha, target.commitSha), inArray(deployments.status, SERVED)))
    .orderBy(desc(deployments.createdAt))
    .limit(1);
  if (release?.id === placed.activeDeploymentId) return { how: "already live", release: release.id };
  return release ? { how: "release restarted", release: release.id } : { how: "rebuilt", release: null };
}

/**
 * Production follows the code: the checkpoint's kept release started again, standing for the revert
 * commit (or a rebuild of it). The code went back already: a deploy that cannot start now is said, not thrown.
 */
async function followInProduction(
  db: Db,
  env: Env,
  principal: Principal,
  projectId: string,
  plan: ProductionPlan,
  revert: string,
  traceparent: string | undefined,
): Promise<{ how: UndoView["production"]; taskId: string | null; release: string | null; why?: string }> {
  if (plan.how === "not deployed" || plan.how === "already live") return { how: plan.how, taskId: null, release: plan.release };
  try {
    const task =
      plan.how === "release restarted"
        ? await startDeployTask(db, env, principal, projectId, { mode: "rollback", deploymentId: plan.release, commit: revert }, traceparent)
        : await startDeployTask(db, env, principal, projectId, { mode: "deploy", ref: revert }, traceparent);
    return { how: plan.how, taskId: task.id, release: plan.release };
  } catch (error) {
    if (!(error instanceof AppError)) throw error;
    return { how: "not started", taskId: null, release: plan.release, why: error.message };
  }
}

/** The tests' summary an engineering task ended with (a change's, when it ships). */
export async function testsOfTask(db: Db, taskId: string): Promise<string | null> {
  const [row] = await db.select({ result: tasks.result }).from(tasks).where(and(eq(tasks.id, taskId), isNull(tasks.error)));
  const tests = row?.result?.tests;
  return tests && typeof tests === "object" && "summary" in tests && typeof tests.summary === "string" ? tests.summary : null;
}
