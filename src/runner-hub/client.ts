/**
 * How the rest of the system reaches a server's RunnerHub Durable Object (src/durable/runner-hub.ts):
 * who it serves, what it queues and answers, and the typed client over its stub.
 */
import { withDb } from "../db/client.ts";
import type { CreateJob, HubIdentity, HubStatus, JobState, JobView } from "../shared/api.ts";
import { hubIdentity, loadServer } from "./servers.ts";
import type { WorkflowName } from "../tasks/workflows.ts";

/** The runner's WebSocket upgrade, forwarded to the hub: who the hub serves (HubIdentity, as JSON). */
export const HUB_IDENTITY_HEADER = "x-hub-identity";

/** What the hub queues: the API's job, or one from a workflow that wants waking when it finishes. */
export type HubJobInput = CreateJob & {
  /** The workflow instance to wake: `sendEvent({type: <job id>, payload: <the finished job as JSON>})`. */
  notify?: { workflow: WorkflowName; instanceId: string };
};

export type EnqueueResult =
  | { ok: true; job: JobView }
  /** `unknown_server`: the hub has not been told who it serves yet; call again with the identity. */
  | { ok: false; code: "invalid_request" | "conflict" | "unknown_server"; message: string };

/** A typed client for the hub; every caller goes through it (RPC typings lose `unknown`-heavy types). */
export interface RunnerHubClient {
  /**
   * The one way a job is submitted: validated, signed and queued for the server's runner. A hub that
   * does not know its server yet (new, or its storage lost) is told it from the database first.
   */
  submit(input: HubJobInput): Promise<EnqueueResult>;
  setIdentity(identity: HubIdentity): Promise<void>;
  listJobs(options: { state?: JobState; limit: number }): Promise<JobView[]>;
  wait(id: string, timeoutMs: number): Promise<JobView | null>;
  cancel(id: string): Promise<JobView | null>;
  cancelTask(taskId: string): Promise<JobView[]>;
  status(): Promise<HubStatus>;
  fetch(request: Request): Promise<Response>;
}

/** The hub of a server, by handle (unique and never renamed), so job calls need no database lookup. */
export function getRunnerHub(env: Env, handle: string): RunnerHubClient {
  const stub = getRunnerHubStub(env, handle);
  return {
    submit: async (input) => {
      const queued = await stub.enqueue(null, input);
      if (queued.ok || queued.code !== "unknown_server") return queued;
      const server = await withDb(env, (db) => loadServer(db, handle));
      return stub.enqueue(hubIdentity(server), input);
    },
    setIdentity: (identity) => stub.setIdentity(identity),
    listJobs: (options) => stub.listJobs(options),
    wait: (id, timeoutMs) => stub.wait(id, timeoutMs),
    cancel: (id) => stub.cancel(id),
    cancelTask: (taskId) => stub.cancelTask(taskId),
    status: () => stub.status(),
    fetch: (request) => stub.fetch(request),
  };
}

export function getRunnerHubStub(env: Env, handle: string) {
  return env.RUNNER_HUB.get(env.RUNNER_HUB.idFromName(handle));
}
