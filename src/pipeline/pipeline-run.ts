/**
 * What every pipeline run (engineering, deploy) does the same way: steps whose failure names the
 * step, task events stored once however often a run replays, the project's status, and the GitHub
 * App's repository tokens.
 */
import type { WorkflowStep, WorkflowStepConfig } from "cloudflare:workers";
import { NonRetryableError } from "cloudflare:workflows";
import { eq } from "drizzle-orm";
import type { z } from "zod";
import { type Db, withDb } from "../db/client.ts";
import { projects } from "../db/schema.ts";
import { AppError } from "../lib/app-error.ts";
import { githubAppConfig, repositoryToken } from "../projects/github.ts";
import { mintJobCredentials, revokeJobCredentials } from "../models/job-credentials.ts";
import type { AgentName } from "../models/llm.ts";
import { checkBudget } from "../models/usage.ts";
import { appendTaskEvent } from "../tasks/tasks.ts";
import type { ProjectStatus } from "../shared/api.ts";
import type { TaskEventInput } from "../shared/events.ts";
import type { JobView } from "../shared/api.ts";
import { parseStepResult } from "./json-step.ts";
import { type JobRunContext, type JobSpec, runJob } from "./run-job.ts";
import type { WorkflowName } from "../tasks/workflows.ts";

/** A failure to report as the task's end, in these words. */
export class PipelineFailure extends Error {}

export const API_STEP = { retries: { limit: 3, delay: "2 seconds", backoff: "exponential" }, timeout: "1 minute" } as const;
export const MODEL_STEP = { retries: { limit: 2, delay: "5 seconds", backoff: "exponential" }, timeout: "5 minutes" } as const;

export interface PipelineParams {
  taskId: string;
  projectId: string;
  /** The server whose runner runs the jobs. */
  handle: string;
  traceparent?: string;
}

export abstract class PipelineRun<P extends PipelineParams> {
  protected readonly jobs: JobRunContext;
  protected readonly env: Env;
  protected readonly step: WorkflowStep;
  protected readonly instanceId: string;
  protected readonly params: P;
  private readonly tokens = new Map<string, { token: string; expiresAt: string }>();

  constructor(workflow: WorkflowName, env: Env, step: WorkflowStep, instanceId: string, params: P) {
    this.env = env;
    this.step = step;
    this.instanceId = instanceId;
    this.params = params;
    this.jobs = { env, step, workflow, instanceId, handle: params.handle, taskId: params.taskId, ...(params.traceparent ? { traceparent: params.traceparent } : {}) };
  }

  /** A workflow step whose final failure names the step, in words for the task's stream. */
  protected async doStep<T extends Rpc.Serializable<T>>(name: string, config: WorkflowStepConfig, work: () => Promise<T>): Promise<T> {
    try {
      return await this.step.do(name, config, work);
    } catch (error) {
      if (error instanceof PipelineFailure) throw error;
      // Errors come back from the engine as "NonRetryableError: …" or "HttpError: …": the words are what matter.
      const message = (error instanceof Error ? error.message : String(error)).replace(/^(\w*Error: )+/, "");
      throw new PipelineFailure(`${name}: ${message}`, { cause: error });
    }
  }

  /**
   * A step (as doStep) whose result is JSON, read back through its schema (json-step.ts): for results
   * Workflows' typing cannot express, and so that a replayed result that does not fit is an error.
   */
  protected async jsonStep<S extends z.ZodType>(name: string, config: WorkflowStepConfig, schema: S, work: () => Promise<z.input<S>>): Promise<z.output<S>> {
    const text = await this.doStep(name, config, async () => JSON.stringify(await work()));
    return parseStepResult(name, schema, text);
  }

  /** Stops the run, before a model call, when the project's or the owner's model budget is used up. */
  protected async withinBudget(db: Db, who: { projectId: string; userId: string }): Promise<void> {
    try {
      await checkBudget(db, this.env, who);
    } catch (error) {
      if (error instanceof AppError) throw new NonRetryableError(error.message);
      throw error;
    }
  }

  /** The App's configuration; missing settings stop the run (no retry can fix them). */
  protected github() {
    try {
      return githubAppConfig(this.env);
    } catch (error) {
      throw new NonRetryableError(error instanceof Error ? error.message : String(error));
    }
  }

  /**
   * Runs a job whose container gets credentials of its own, made in the step that queues it: a
   * repository token for the one repository, a model credential for the relay. However the job ends
   * they end with it (revoked at GitHub, refused by the relay); a run that stops before that leaves them
   * to expire, and the scheduler revokes them then.
   */
  protected async runJobWithCredentials(
    name: string,
    spec: Omit<JobSpec, "payload"> & {
      userId: string | null;
      payload: (issue: (wanted: { repository?: { name: string }; model?: { agent: AgentName; name: string; spendCapUsd: number } }) => Promise<{ gitToken: string; modelKey: string }>) => Promise<Record<string, unknown>>;
    },
  ): Promise<JobView> {
    const purpose = name;
    const { payload, userId, ...rest } = spec;
    try {
      return await runJob(this.jobs, name, {
        ...rest,
        payload: () =>
          payload(async (wanted) => {
            const gitToken = wanted.repository ? (await repositoryToken(this.github(), wanted.repository.name)).token : "";
            const { modelKey } = await withDb(this.env, (db) =>
              mintJobCredentials(this.env, db, {
                taskId: this.params.taskId,
                projectId: this.params.projectId,
                userId,
                purpose,
                // The job may wait for its runner, then run: it lives no longer than that.
                ttlSeconds: spec.ttlSeconds + spec.timeoutSeconds,
                ...(wanted.model ? { model: wanted.model } : {}),
                ...(gitToken ? { gitToken } : {}),
              }),
            );
            return { gitToken, modelKey: modelKey ?? "" };
          }),
      });
    } finally {
      await this.doStep(`${name} credentials ended`, API_STEP, () => withDb(this.env, (db) => revokeJobCredentials(this.env, db, this.params.taskId, purpose))).catch(() => undefined);
    }
  }

  /**
   * A token for this repository only, reused while it has ten minutes left (GitHub's last an hour),
   * for the worker's own calls (never a job's: those get one each, runJobWithCredentials).
   * Kept in memory, never in a step's result: a replayed run just asks for a new one.
   */
  protected async repoToken(repository: { fullName: string; name: string }): Promise<string> {
    const cached = this.tokens.get(repository.fullName);
    if (cached && Date.parse(cached.expiresAt) - Date.now() > 10 * 60_000) return cached.token;
    const fresh = await repositoryToken(this.github(), repository.name);
    this.tokens.set(repository.fullName, fresh);
    return fresh.token;
  }

  protected async setProjectStatus(name: string, status: ProjectStatus): Promise<void> {
    await this.doStep(`project ${name}`, API_STEP, async () => {
      await withDb(this.env, (db) => db.update(projects).set({ status, updatedAt: new Date() }).where(eq(projects.id, this.params.projectId)));
    });
  }

  /** An event on the task, once: its id is the instance and the step name, so a replay stores it once. */
  protected async say(name: string, input: Omit<TaskEventInput, "eventId">): Promise<void> {
    await this.doStep(`say ${name}`, API_STEP, async () => {
      await appendTaskEvent(this.env, this.params.taskId, { ...input, eventId: `${this.instanceId}:${name}`, ...(this.params.traceparent ? { traceparent: this.params.traceparent } : {}) });
    });
  }
}
