import { z } from "zod";

/** A project name becomes a DNS label (`<name>.<base-domain>`): lower-case, 3–40 characters. */
export const ProjectName = z
  .string()
  .regex(/^[a-z][a-z0-9-]{1,38}[a-z0-9]$/, "must be 3-40 characters of a-z, 0-9 and '-', starting with a letter")
  .refine((name) => !name.includes("--"), "must not contain '--'");

export const ProjectStatus = z.enum(["draft", "engineering", "ready", "deploying", "deployed", "failed", "archived"]);

const JsonObject = z.record(z.string(), z.unknown());

export const CreateProject = z.strictObject({
  name: ProjectName,
  description: z.string().max(10_000).optional(),
  spec: JsonObject.optional(),
  config: JsonObject.optional(),
  /** Admins may create a project on behalf of a user. */
  ownerId: z.string().min(1).optional(),
});
export type CreateProject = z.infer<typeof CreateProject>;

export const UpdateProject = z
  .strictObject({
    description: z.string().max(10_000).optional(),
    status: ProjectStatus.optional(),
    spec: JsonObject.nullable().optional(),
    repositoryUrl: z.url({ protocol: /^https?$/ }).nullable().optional(),
    config: JsonObject.optional(),
  })
  .refine((patch) => Object.keys(patch).length > 0, "give at least one field to change");
export type UpdateProject = z.infer<typeof UpdateProject>;

export const CreateUser = z.strictObject({
  name: z.string().trim().min(1).max(200),
  telegramId: z.number().int().positive().optional(),
  isAdmin: z.boolean().optional(),
});
export type CreateUser = z.infer<typeof CreateUser>;

export const Scope = z.enum(["admin", "user", "runner"]);

export const CreateApiKey = z.strictObject({
  userId: z.string().min(1),
  name: z.string().trim().min(1).max(200),
  scopes: z.array(Scope).min(1).default(["user"]),
  expiresAt: z.iso.datetime({ offset: true }).optional(),
});
export type CreateApiKey = z.infer<typeof CreateApiKey>;

/** `?limit=&offset=` for list endpoints. */
export const Page = z.strictObject({
  limit: z.coerce.number().int().min(1).max(200).default(50),
  offset: z.coerce.number().int().min(0).default(0),
});

/** A server's handle names it in the API and CLI: lower-case, like a project name. */
export const ServerHandle = ProjectName;

export const CreateServer = z.strictObject({
  handle: ServerHandle,
  /** The server's public address (name or IP), as operators and Ansible know it. */
  host: z.string().trim().min(1).max(253),
  labels: z.record(z.string().min(1).max(63), z.string().max(255)).default({}),
  capacity: z.number().int().min(1).max(1000).default(10),
  /** How long the enrollment token stays valid; the default is ENROLLMENT_TOKEN_TTL_SECONDS. */
  enrollmentTtlSeconds: z.number().int().min(1).max(7 * 24 * 3600).optional(),
});
export type CreateServer = z.infer<typeof CreateServer>;

export const NewEnrollmentToken = z.strictObject({
  enrollmentTtlSeconds: z.number().int().min(1).max(7 * 24 * 3600).optional(),
});

/** What `orchestrator-runner enroll` sends: the one-time token and the runner's new public key. */
export const EnrollRunner = z.strictObject({
  token: z.string().min(10).max(200),
  publicKey: z.string().regex(/^[A-Za-z0-9_-]{43}$/, "must be a raw Ed25519 public key in base64url (43 characters)"),
  version: z.string().max(50).optional(),
});
export type EnrollRunner = z.infer<typeof EnrollRunner>;

export interface EnrollRunnerResponse {
  runnerId: string;
  server: string;
  controlPlanePublicKey: string;
}

export const ServerStatus = z.enum(["pending", "online", "offline", "missing", "disabled"]);
export type ServerStatus = z.infer<typeof ServerStatus>;

export const JobState = z.enum(["queued", "delivered", "running", "succeeded", "failed", "cancelled"]);
export type JobState = z.infer<typeof JobState>;

export const CreateJob = z.strictObject({
  type: z.enum(["noop", "docker.run", "ansible.playbook", "caddy.sync", "health.check", "provision"]),
  payload: JsonObject.default({}),
  /** The task whose stream shows the job's progress and log lines. */
  taskId: z.string().min(1).max(100).optional(),
  /** How long the job may wait for its runner before it fails (also the signed envelope's lifetime). */
  ttlSeconds: z.number().int().min(5).max(24 * 3600).default(3600),
  /** End the task with the job's outcome (task.completed / task.failed); otherwise a workflow decides. */
  finishTask: z.boolean().default(false),
  /** Submitting again with the same key returns the job already queued instead of a second one. */
  idempotencyKey: z.string().min(1).max(200).optional(),
});

export const ProvisionServer = z.strictObject({
  /** Report what would change, and change nothing. */
  check: z.boolean().default(false),
});
export type CreateJob = z.infer<typeof CreateJob>;

export const JobWaitQuery = z.strictObject({
  /** Seconds to wait for the job to finish before answering with its current state. */
  wait: z.coerce.number().min(0).max(60).default(0),
});

export interface JobOutcomeView {
  ok: boolean;
  message: string;
  reason?: string;
  exitCode?: number;
  data?: Record<string, unknown>;
}

export interface JobView {
  id: string;
  server: string;
  type: string;
  taskId: string | null;
  state: JobState;
  attempts: number;
  createdAt: string;
  updatedAt: string;
  expiresAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  /** Secret values (docker secretEnv, ansible secretVars) are shown as "[redacted]". */
  payload: Record<string, unknown>;
  outcome: JobOutcomeView | null;
}
