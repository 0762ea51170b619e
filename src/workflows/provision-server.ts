/**
 * ProvisionServerWorkflow: prepares a server through its runner and reports on the server's task.
 * Steps: the `provision` job (provision.yml; `check` reports what would change and changes nothing),
 * then `facts.yml` to record what the server now runs. Each job's progress and log lines stream to
 * the task through the RunnerHub, which wakes this workflow when a job finishes (runJob).
 */
import { WorkflowEntrypoint, type WorkflowEvent, type WorkflowStep } from "cloudflare:workers";
import { appendTaskEvent } from "../tasks/tasks.ts";
import type { JobView } from "../shared/api.ts";
import { CustomStats } from "../shared/job-results.ts";
import type { TaskEventInput } from "../shared/events.ts";
import type { ProvisionServerParams } from "../runner-hub/servers.ts";
import { runJob, type JobRunContext } from "../pipeline/run-job.ts";

export class ProvisionServerWorkflow extends WorkflowEntrypoint<Env, ProvisionServerParams> {
  override async run(event: WorkflowEvent<ProvisionServerParams>, step: WorkflowStep): Promise<void> {
    const { taskId, handle, check, traceparent } = event.payload;
    // Each event has an id made of the instance and the step, so a retried step stores it once.
    const say = (name: string, input: Omit<TaskEventInput, "eventId">) =>
      step.do(name, async () => {
        await appendTaskEvent(this.env, taskId, { ...input, eventId: `${event.instanceId}:${name}`, ...(traceparent ? { traceparent } : {}) });
      });
    const jobs: JobRunContext = { env: this.env, step, workflow: "provision-server", instanceId: event.instanceId, handle, taskId, ...(traceparent ? { traceparent } : {}) };

    await say("announce", { type: "task.started", message: `Provisioning ${handle}${check ? " in check mode (nothing is changed)" : ""}` });
    let provision: JobView;
    try {
      provision = await runJob(jobs, "provision", { type: "provision", payload: { check }, ttlSeconds: 3600, timeoutSeconds: 3600 });
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
      facts = await runJob(jobs, "facts", { type: "ansible.playbook", payload: { playbook: "facts.yml" }, ttlSeconds: 600, timeoutSeconds: 300 });
    } catch {
      // The server is provisioned either way; the facts are a report.
    }
    const customStats = facts?.outcome?.ok ? CustomStats.safeParse(facts.outcome.data?.customStats).data : undefined;
    await say("report", {
      type: "task.completed",
      message: `${handle} ${check ? "checked" : "provisioned"}: ${provision.outcome.message}`,
      data: { provisionJob: provision.id, ...(facts ? { factsJob: facts.id } : {}), ...(customStats ? { facts: customStats } : {}) },
    });
  }
}
