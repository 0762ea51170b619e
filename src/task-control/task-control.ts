/**
 * A person acting on a running task: answering what it asks (`task.needs_input`), or cancelling it.
 * Both reach the task's workflow, whose instance id is the task's id.
 */
import { putSecrets } from "../projects/project-secrets.ts";
import { and, eq, sql } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { tasks } from "../db/schema.ts";
import { getRunnerHub } from "../runner-hub/client.ts";
import { AppError } from "../lib/app-error.ts";
import { FINAL_TASK_STATUSES } from "../shared/api.ts";
import { inputEventType, PendingInput, readAnswer } from "../shared/task-input.ts";
import { TASK_WORKFLOWS, workflowBinding } from "../tasks/workflows.ts";
import { settleStoppedDeploy } from "../deploy/deploys.ts";
import { revokeJobCredentials } from "../models/job-credentials.ts";
import { appendTaskEvent, type Task } from "../tasks/tasks.ts";

/** How long a cancel waits for the task's running jobs to stop (their containers removed) before it reports. */
const CANCEL_WAIT_MS = 20_000;

function workflowOf(env: Env, task: Task) {
  const name = TASK_WORKFLOWS[task.type];
  return name ? workflowBinding(env, name) : null;
}

/**
 * Gives a waiting task its answer. The answer is checked against what was asked, and the question is
 * claimed in the same UPDATE that clears it, so a second answer to one question is refused.
 */
export async function answerTask(db: Db, env: Env, task: Task, body: unknown): Promise<{ answer: unknown }> {
  const pending = PendingInput.safeParse(task.pendingInput);
  if (task.status !== "needs_input" || !pending.success) throw new AppError("conflict", `Task ${task.id} is not waiting for input (it is ${task.status})`);
  const read = readAnswer(pending.data.kind, body);
  if (!read.ok) throw new AppError("invalid_request", `Not an answer to "${pending.data.question}": ${read.message}`);
  const workflow = workflowOf(env, task);
  if (!workflow) throw new AppError("conflict", `Task ${task.id} has no workflow to take the answer`);
  const claimed = await db
    .update(tasks)
    .set({ pendingInput: null, updatedAt: new Date() })
    .where(and(eq(tasks.id, task.id), eq(tasks.status, "needs_input"), sql`${tasks.pendingInput}->>'inputId' = ${pending.data.inputId}`))
    .returning({ id: tasks.id });
  if (!claimed.length) throw new AppError("conflict", `Task ${task.id} has been answered already`);
  let payload: unknown = read.answer;
  let shown: unknown = read.answer;
  if (pending.data.kind === "secrets" && "secrets" in read.answer) {
    // Stored with the project first; the workflow (whose events persist) hears only the names.
    const asked = new Set((pending.data.fields ?? []).map((field) => field.name));
    const names = Object.keys(read.answer.secrets);
    const unknown = names.filter((name) => !asked.has(name));
    if (unknown.length || !task.projectId) {
      await db.update(tasks).set({ pendingInput: pending.data }).where(eq(tasks.id, task.id));
      throw new AppError("invalid_request", `Not asked for: ${unknown.join(", ") || "(a task without a project)"}; this deploy asks for ${[...asked].join(", ")}`);
    }
    await putSecrets(env, db, task.projectId, read.answer.secrets, "user");
    payload = { provided: names };
    shown = payload;
  }
  try {
    const instance = await workflow.get(task.id);
    await instance.sendEvent({ type: inputEventType(pending.data.inputId), payload });
  } catch (error) {
    // Not delivered: the question stays open for another answer.
    await db.update(tasks).set({ pendingInput: pending.data }).where(eq(tasks.id, task.id));
    throw error;
  }
  return { answer: shown };
}

/**
 * Stops a task: its workflow, then its running jobs (waiting for their containers to go); a deploy's
 * release that never went live is stopped and the route put back (settleStoppedDeploy); then it ends
 * `task.cancelled`.
 */
export async function cancelTask(env: Env, db: Db, task: Task, by: string): Promise<{ stoppedJobs: string[]; stoppedReleases: string[] }> {
  if ((FINAL_TASK_STATUSES as readonly string[]).includes(task.status)) throw new AppError("conflict", `Task ${task.id} has already ended (${task.status})`);
  const workflow = workflowOf(env, task);
  if (workflow) {
    try {
      await (await workflow.get(task.id)).terminate();
    } catch {
      // Not started, or already ended: nothing of it runs.
    }
  }
  const server = typeof task.input.server === "string" ? task.input.server : null;
  const stopped: string[] = [];
  if (server) {
    const hub = getRunnerHub(env, server);
    const jobs = await hub.cancelTask(task.id);
    const deadline = Date.now() + CANCEL_WAIT_MS;
    for (const job of jobs) {
      await hub.wait(job.id, Math.max(0, deadline - Date.now()));
      stopped.push(job.id);
    }
  }
  // The jobs are over: what their containers were given ends with them.
  await revokeJobCredentials(env, db, task.id);
  const settled = task.type === "deploy" ? await settleStoppedDeploy(env, db, task, `cancelled by ${by}`) : { stopped: [], routedBack: false };
  const what = [
    stopped.length ? `stopped ${stopped.length} running job${stopped.length === 1 ? "" : "s"}` : "",
    settled.stopped.length ? `stopped release ${settled.stopped.join(", ")}` : "",
    settled.routedBack ? "the route went back to the release that served before" : "",
  ].filter(Boolean);
  await appendTaskEvent(env, task.id, { type: "task.cancelled", message: `cancelled by ${by}${what.length ? `; ${what.join("; ")}` : ""}`, data: { stoppedJobs: stopped, stoppedReleases: settled.stopped, routedBack: settled.routedBack } });
  return { stoppedJobs: stopped, stoppedReleases: settled.stopped };
}
