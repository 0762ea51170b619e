/**
 * The deploy pipeline's contracts: what starts a deploy or a rollback, how a project's env variables
 * are classified, the secrets a person supplies, and a release as the API shows it.
 */
import { z } from "zod";
import { MAX_LOG_LINES } from "./job-payloads.ts";
import { EnvName } from "./playbooks.ts";

export const StartDeploy = z.strictObject({
  /** A branch, tag or commit SHA of the project's repository; default its default branch. */
  ref: z.string().min(1).max(200).optional(),
  /** Admin only: the server to place the project on (otherwise chosen, or the one it is on). */
  server: z.string().min(1).max(100).optional(),
});
export type StartDeploy = z.infer<typeof StartDeploy>;

export const StartRollback = z.strictObject({
  /** The release to go back to; default the one before the active release. */
  deploymentId: z.string().min(1).max(100).optional(),
});

export const StartUndeploy = z.strictObject({
  /**
   * Delete the project's data too (its /data volume on the server). Default: kept, for the next deploy
   * of the project to find. Allowed on a project that was undeployed before, to delete what it kept.
   */
  deleteData: z.boolean().default(false),
});

/**
 * Where an env variable's value comes from:
 *   infra     generated here (passwords, signing keys), kept across redeploys
 *   computed  derived from the deployment (PORT, DOMAIN, PUBLIC_URL…)
 *   user      a third-party credential only the person has (asked for)
 *   bot       TELEGRAM_BOT_TOKEN, from the Telegram bot pool
 */
export const ENV_KINDS = ["infra", "computed", "user", "bot"] as const;
export const EnvKind = z.enum(ENV_KINDS);
export type EnvKind = z.infer<typeof EnvKind>;

/** The EnvAnalyzer model's answer. */
export const EnvClassification = z.strictObject({
  variables: z
    .array(
      z.strictObject({
        name: EnvName,
        kind: z.enum(["infra", "computed", "user"]),
        /** Why, in a few words: shown to the person when they are asked for a value. */
        reason: z.string().max(300).default(""),
      }),
    )
    .max(500),
});

/** `PUT /api/projects/:id/secrets`: values by name. A value is never returned by any route. */
export const PutSecrets = z.strictObject({
  secrets: z.record(EnvName, z.string().min(1).max(16_384).refine((value) => !/[\r\n]/.test(value), "must be one line (an env file holds one variable per line)")).refine((record) => Object.keys(record).length > 0 && Object.keys(record).length <= 200, "give 1-200 secrets"),
});

export const SecretView = z.object({ name: z.string(), kind: EnvKind, set: z.literal(true), updatedAt: z.string() });
export type SecretView = z.infer<typeof SecretView>;

export const DEPLOYMENT_STATUSES = ["pending", "deploying", "healthy", "unhealthy", "failed", "rolled_back", "superseded", "active", "removed"] as const;

export const DeploymentView = z.object({
  id: z.string(),
  projectId: z.string(),
  server: z.string().nullable(),
  taskId: z.string().nullable(),
  kind: z.enum(["build", "rollback"]),
  commitSha: z.string(),
  image: z.string().nullable(),
  domain: z.string().nullable(),
  port: z.number().nullable(),
  status: z.enum(DEPLOYMENT_STATUSES),
  health: z.record(z.string(), z.unknown()).nullable(),
  previousDeploymentId: z.string().nullable(),
  sourceDeploymentId: z.string().nullable(),
  /** The change this release previews; null for production's releases. */
  preview: z.number().int().positive().nullable(),
  createdAt: z.string(),
  finishedAt: z.string().nullable(),
  stoppedAt: z.string().nullable(),
});
export type DeploymentView = z.infer<typeof DeploymentView>;

/** What a deploy tells the project's owner when it ends (delivered by the Product Owner). */
export const DeployNotification = z.object({
  ok: z.boolean(),
  message: z.string(),
  url: z.string().optional(),
  /** A change's preview went live: the change's number, which the owner may ship or discard now. */
  preview: z.number().int().positive().optional(),
});
export type DeployNotification = z.infer<typeof DeployNotification>;

/**
 * What became of the deploy asked for with a build (`deploy: true` on the engineering request), in the
 * engineering task's `task.completed` data as `deploy`: the deploy's task, or why there is none.
 */
export const DeployAfterBuild = z.union([z.object({ taskId: z.string() }), z.object({ notDeployed: z.string() })]);
export type DeployAfterBuild = z.infer<typeof DeployAfterBuild>;

/**
 * A check's evidence in a release's `health` (its `direct` and `visitor` checks, or what turned a
 * release away), as far as a reader shows it: its message.
 */
export const HealthEvidence = z.object({ message: z.string() });

/** Where a release is asked whether it is healthy, unless the project's config.healthPath says otherwise. */
export const DEFAULT_HEALTH_PATH = "/healthz";

/** `GET /api/projects/:id/logs?tail=N`: the last lines production's release wrote, secrets masked on the server. */
export const AppLogsQuery = z.object({ tail: z.coerce.number().int().min(1).max(MAX_LOG_LINES).default(200) });
export const AppLogs = z.object({
  project: z.string(),
  /** The live release they are of, and its server. */
  release: z.string(),
  server: z.string(),
  /** Its container's state ("running", or "exited" for one that crashed). */
  state: z.string(),
  /** Oldest first, each with Docker's timestamp; every value of the release's env file but the computed ones is "[masked]". */
  lines: z.array(z.string()),
  /** Older lines asked for that did not fit one answer. */
  omitted: z.number().int(),
});
export type AppLogs = z.infer<typeof AppLogs>;
