/**
 * The one way a workflow runs a job on a server: queue it (idempotently, so a retried step finds the
 * job it already queued), sleep until the hub wakes the workflow, and always read the job back from
 * the hub before deciding. A wake-up that never came costs one wait slice, not the job's outcome.
 */
import type { WorkflowStep } from "cloudflare:workers";
import { NonRetryableError } from "cloudflare:workflows";
import { getRunnerHub } from "../runner-hub/client.ts";
import { settings } from "../lib/settings.ts";
import { type CreateJob, isFinalJobState, JobView } from "../shared/api.ts";
import type { WorkflowName } from "../tasks/workflows.ts";
import { jsonStep } from "./json-step.ts";

export interface JobRunContext {
  env: Env;
  step: WorkflowStep;
  /** This workflow's name and instance, for the hub's wake-up. */
  workflow: WorkflowName;
  instanceId: string;
  /** The server that runs the job, and the task its events stream to. */
  handle: string;
  taskId: string;
  traceparent?: string;
}

export interface JobSpec {
  type: CreateJob["type"];
  /**
   * The payload, or a function making it inside the step that queues the job: for payloads holding
   * short-lived secrets (a git token), which must never be kept in the workflow's step results.
   */
  payload: Record<string, unknown> | (() => Promise<Record<string, unknown>>);
  /** How long the job may wait for the runner before it fails as undelivered. */
  ttlSeconds: number;
  /** How long it may run (the payload's timeoutSeconds). */
  timeoutSeconds: number;
  /**
   * For jobs that are safe to run again (the release playbook: a fresh checkout, and the release's
   * own container): how many times to queue it again when the runner was interrupted under it
   * (killed, restarted). The runner itself never runs a job twice.
   */
  againIfInterrupted?: number;
  /** Told before each new attempt. */
  onAgain?: (job: JobView, attempt: number) => Promise<void>;
}

/** Each wait after the first (JOB_WAIT_SLICE_SECONDS) doubles, up to this, so a long job costs few steps. */
const MAX_SLICE_SECONDS = 600;
/** Beyond queue time plus run time: the runner's report and the hub's wake-up. */
const MARGIN_SECONDS = 300;

export class JobDidNotFinish extends Error {
  readonly job: JobView;
  constructor(message: string, job: JobView) {
    super(message);
    this.job = job;
  }
}

/**
 * Runs one job to its end and returns it as the hub has it (its `outcome` says how it went). If it
 * has not ended when its time is up (queue time + run time + a margin) it is cancelled, and
 * JobDidNotFinish is thrown carrying the job as it was.
 */
export async function runJob(context: JobRunContext, name: string, spec: JobSpec): Promise<JobView> {
  let job = await runJobOnce(context, name, spec);
  for (let attempt = 1; attempt <= (spec.againIfInterrupted ?? 0) && job.outcome?.reason === "interrupted"; attempt++) {
    await spec.onAgain?.(job, attempt);
    // Its own step names and idempotency key: a replayed workflow finds each attempt where it was.
    job = await runJobOnce(context, `${name} again ${attempt}`, spec);
  }
  return job;
}

async function runJobOnce(context: JobRunContext, name: string, spec: JobSpec): Promise<JobView> {
  const { env, step, handle } = context;
  const jobId = await step.do(`queue ${name}`, async () => {
    const payload = typeof spec.payload === "function" ? await spec.payload() : spec.payload;
    const queued = await getRunnerHub(env, handle).submit({
      type: spec.type,
      payload: { ...payload, timeoutSeconds: spec.timeoutSeconds },
      taskId: context.taskId,
      ttlSeconds: spec.ttlSeconds,
      finishTask: false,
      idempotencyKey: `${context.instanceId}:${name}`,
      notify: { workflow: context.workflow, instanceId: context.instanceId },
      ...(context.traceparent ? { traceparent: context.traceparent } : {}),
    });
    if (!queued.ok) throw new NonRetryableError(`could not queue the ${name} job: ${queued.message}`);
    return queued.job.id;
  });

  // Steps return the job as JSON text (jsonStep): its payload and data are free-form, which Workflows' typing cannot express.
  const readBack = async (round: number) =>
    jsonStep(step, `${name} read ${round}`, undefined, JobView, async () => {
      const job = await getRunnerHub(env, handle).wait(jobId, 0);
      if (!job) throw new NonRetryableError(`job ${jobId} is no longer known to ${handle}`);
      return job;
    });

  let waited = 0;
  const budget = spec.ttlSeconds + spec.timeoutSeconds + MARGIN_SECONDS;
  const firstSlice = settings(env).JOB_WAIT_SLICE_SECONDS;
  for (let round = 0; ; round++) {
    const slice = Math.min(MAX_SLICE_SECONDS, firstSlice * 2 ** round, Math.max(1, budget - waited));
    try {
      await step.waitForEvent(`${name} result ${round}`, { type: jobId, timeout: `${slice} seconds` });
    } catch {
      // Timed out: the wake-up may have been lost; the job itself says how it stands.
    }
    waited += slice;
    const job = await readBack(round);
    if (isFinalJobState(job.state)) return job;
    if (waited >= budget) {
      const cancelled = await jsonStep(step, `cancel ${name}`, undefined, JobView, async () => (await getRunnerHub(env, handle).cancel(jobId)) ?? job);
      throw new JobDidNotFinish(`the ${name} job did not finish within ${Math.round(budget / 60)} minutes and was cancelled (it was ${cancelled.state})`, cancelled);
    }
  }
}
