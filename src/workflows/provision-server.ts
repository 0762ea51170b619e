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

    /**
     * Queues one job on the server and sleeps until the hub reports its result. The wait covers the
     * job's time in the queue (`ttlSeconds`) plus its run (`timeoutSeconds`) plus a margin; past it the
     * job is cancelled, so it cannot change the server after the task has given up on it.
     */
    const runJob = async (name: string, job: Pick<CreateJob, "type" | "payload">, ttlSeconds: number, timeoutSeconds: number): Promise<JobView> => {
      const jobId = await step.do(`queue ${name}`, async () => {
        const queued = await getRunnerHub(this.env, handle).enqueue(null, {
          type: job.type,
          payload: { ...job.payload, timeoutSeconds },
          taskId,
          ttlSeconds,
          finishTask: false,
          // A retried step finds the job it already queued instead of queueing a second one.
          idempotencyKey: `${event.instanceId}:${name}`,
          notify: { workflow: PROVISION_WORKFLOW, instanceId: event.instanceId },
        });
        if (!queued.ok) throw new NonRetryableError(`could not queue the ${name} job: ${queued.message}`);
        return queued.job.id;
      });
      const waitMinutes = Math.ceil((ttlSeconds + timeoutSeconds + 300) / 60);
      try {
        const done = await step.waitForEvent<string>(`${name} result`, { type: jobId, timeout: `${waitMinutes} minutes` });
        return JSON.parse(done.payload) as JobView;
      } catch (error) {
        await step.do(`cancel ${name}`, async () => {
          await getRunnerHub(this.env, handle).cancel(jobId);
        });
        throw error;
      }
    };

    await say("announce", { type: "task.started", message: `Provisioning ${handle}${check ? " in check mode (nothing is changed)" : ""}` });
    let provision: JobView;
    try {
      provision = await runJob("provision", { type: "provision", payload: { check } }, 3600, 3600);
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
      facts = await runJob("facts", { type: "ansible.playbook", payload: { playbook: "facts.yml" } }, 600, 300);
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
