/**
 * ProvisionServerWorkflow: prepares a server through its runner and reports on the server's task.
 * Steps: the `provision` job (provision.yml; `check` reports what would change and changes nothing),
 * then `facts.yml` to record what the server now runs. Each job's progress and log lines stream to
 * the task through the RunnerHub; the hub wakes this workflow with `sendEvent` when a job finishes
 * (event type = the job id, payload = the finished job as JSON), so no step polls.
 */
import { WorkflowEntrypoint, type WorkflowEvent, type WorkflowStep } from "cloudflare:workers";
import { NonRetryableError } from "cloudflare:workflows";
import { getRunnerHub } from "../durable/runner-hub.ts";
import { appendTaskEvent } from "../services/tasks.ts";
import type { CreateJob, JobView } from "../shared/api.ts";

export interface ProvisionServerParams {
  taskId: string;
  handle: string;
  check: boolean;
}

export const PROVISION_WORKFLOW = "provision-server";

export class ProvisionServerWorkflow extends WorkflowEntrypoint<Env, ProvisionServerParams> {
  override async run(event: WorkflowEvent<ProvisionServerParams>, step: WorkflowStep): Promise<void> {
    const { taskId, handle, check } = event.payload;
    const say = (name: string, input: Parameters<typeof appendTaskEvent>[2]) =>
      step.do(name, async () => {
        await appendTaskEvent(this.env, taskId, input);
      });

    /** Queues one job on the server and sleeps until the hub reports its result. */
    const runJob = async (name: string, job: Pick<CreateJob, "type" | "payload">, timeout: `${number} ${"minutes" | "hours"}`): Promise<JobView> => {
      const jobId = await step.do(`queue ${name}`, async () => {
        const queued = await getRunnerHub(this.env, handle).enqueue(null, {
          ...job,
          taskId,
          ttlSeconds: 3600,
          finishTask: false,
          notify: { workflow: PROVISION_WORKFLOW, instanceId: event.instanceId },
        });
        if (!queued.ok) throw new NonRetryableError(`could not queue the ${name} job: ${queued.message}`);
        return queued.job.id;
      });
      const done = await step.waitForEvent<string>(`${name} result`, { type: jobId, timeout });
      return JSON.parse(done.payload) as JobView;
    };

    await say("announce", { type: "task.started", message: `Provisioning ${handle}${check ? " in check mode (nothing is changed)" : ""}` });
    let provision: JobView;
    try {
      provision = await runJob("provision", { type: "provision", payload: { check } }, "2 hours");
    } catch (error) {
      await say("give up", { type: "task.failed", message: `provisioning ${handle} did not finish: ${error instanceof Error ? error.message : String(error)}` });
      return;
    }
    if (!provision.outcome?.ok) {
      await say("report failure", { type: "task.failed", message: `provisioning ${handle} failed: ${provision.outcome?.message ?? provision.state}` });
      return;
    }
    let facts: JobView | null = null;
    try {
      facts = await runJob("facts", { type: "ansible.playbook", payload: { playbook: "facts.yml" } }, "10 minutes");
    } catch {
      // The server is provisioned either way; the facts are a report.
    }
    const customStats = facts?.outcome?.ok ? (facts.outcome.data?.customStats as Record<string, unknown> | undefined) : undefined;
    await say("report", {
      type: "task.completed",
      message: `${handle} ${check ? "checked" : "provisioned"}: ${provision.outcome.message}`,
      data: { provisionJob: provision.id, ...(facts ? { factsJob: facts.id } : {}), ...(customStats ? { facts: customStats } : {}) },
    });
  }
}
