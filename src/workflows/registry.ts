/**
 * Every Workflow a runner job may wake, by name: the RunnerHub resolves a job's `notify.workflow`
 * here, so adding a pipeline is one line in this file and its binding in wrangler.toml.
 */
import { z } from "zod";

export const WORKFLOW_NAMES = ["provision-server"] as const;
export const WorkflowName = z.enum(WORKFLOW_NAMES);
export type WorkflowName = z.infer<typeof WorkflowName>;

export function workflowBinding(env: Env, name: WorkflowName): Workflow {
  const bindings: Record<WorkflowName, Workflow> = { "provision-server": env.PROVISION_SERVER };
  return bindings[name];
}
