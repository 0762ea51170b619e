/**
 * Every Workflow a runner job may wake, by name: the RunnerHub resolves a job's `notify.workflow`
 * here, so adding a pipeline is one line in this file and its binding in wrangler.toml.
 */
import { z } from "zod";
import type { TaskType } from "../shared/api.ts";

export const WORKFLOW_NAMES = ["provision-server", "engineering", "deploy"] as const;
export const WorkflowName = z.enum(WORKFLOW_NAMES);
export type WorkflowName = z.infer<typeof WorkflowName>;

export function workflowBinding(env: Env, name: WorkflowName): Workflow {
  const bindings: Record<WorkflowName, Workflow> = { "provision-server": env.PROVISION_SERVER, engineering: env.ENGINEERING, deploy: env.DEPLOY };
  return bindings[name];
}

/** The workflow a task of each type runs in (its instance id is the task's id), for cancelling it. */
export const TASK_WORKFLOWS: Partial<Record<TaskType, WorkflowName>> = { provision: "provision-server", engineering: "engineering", deploy: "deploy" };
