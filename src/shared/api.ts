/**
 * The HTTP API's contracts: request bodies, the views it answers with, and the enums behind them.
 * Each enum here is the one source of its values (the database enums are built from them), and
 * each view is a schema that the CLI and the runner parse rather than cast.
 */
import { z } from "zod";
import { JobType } from "./jobs.ts";
import { AcceptanceChecks, EngineeringOverrides, EnvKind } from "./spec.ts";
import { Traceparent } from "./trace.ts";

export const TASK_TYPES = ["engineering", "deploy", "provision", "maintenance"] as const;
export const TaskType = z.enum(TASK_TYPES);
export type TaskType = z.infer<typeof TaskType>;

export const TASK_STATUSES = ["queued", "running", "needs_input", "completed", "failed", "cancelled"] as const;
export const TaskStatus = z.enum(TASK_STATUSES);
export type TaskStatus = z.infer<typeof TaskStatus>;
/** Statuses a task never leaves. */
export const FINAL_TASK_STATUSES = ["completed", "failed", "cancelled"] as const satisfies TaskStatus[];
/** A task that has not ended yet. */
export const ACTIVE_TASK_STATUSES = ["queued", "running", "needs_input"] as const satisfies TaskStatus[];

export const PROJECT_STATUSES = ["draft", "engineering", "ready", "deploying", "deployed", "failed", "archived"] as const;
export const ProjectStatus = z.enum(PROJECT_STATUSES);
export type ProjectStatus = z.infer<typeof ProjectStatus>;

export const SERVER_STATUSES = ["pending", "online", "offline", "missing", "disabled"] as const;
export const ServerStatus = z.enum(SERVER_STATUSES);
export type ServerStatus = z.infer<typeof ServerStatus>;

export const JOB_STATES = ["queued", "delivered", "running", "succeeded", "failed", "cancelled"] as const;
export const JobState = z.enum(JOB_STATES);
export type JobState = z.infer<typeof JobState>;
/** States a job never leaves. */
export const FINAL_JOB_STATES = ["succeeded", "failed", "cancelled"] as const satisfies JobState[];
export const isFinalJobState = (state: JobState) => (FINAL_JOB_STATES as readonly string[]).includes(state);

export const API_KEY_SCOPES = ["admin", "user", "runner"] as const;

/** A project name becomes a DNS label (`<name>.<base-domain>`): lower-case, 3–40 characters. */
export const ProjectName = z
  .string()
  .regex(/^[a-z][a-z0-9-]{1,38}[a-z0-9]$/, "must be 3-40 characters of a-z, 0-9 and '-', starting with a letter")
  .refine((name) => !name.includes("--"), "must not contain '--'");

const JsonObject = z.record(z.string(), z.unknown());

/** A server's handle names it in the API and CLI: lower-case, like a project name. */
export const ServerHandle = ProjectName;

/** A DNS name such as apps.example.com (lower-cased). */
export const DomainName = z
  .string()
  .trim()
  .toLowerCase()
  .max(200)
  .regex(/^(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*$/, "must be a DNS name such as apps.example.com");

/** Where a release is asked whether it is healthy: a path on its own port. */
export const HealthPath = z.string().regex(/^\/[A-Za-z0-9._~!$&'()*+,;=:@%/-]{0,199}$/, "must be a path such as /healthz");

/**
 * What a project's owner sets (`config`): merged into what is there on every PATCH, never replaced.
 * A value of null takes a setting back to its default.
 */
/**
 * What a change's preview gets (src/deploy/previews.ts): the owner's user secrets only when allowed
 * (they are production's credentials, and a preview runs code nobody has shipped yet); its data
 * directory empty, or a copy of production's.
 */
export const PreviewSettings = z.strictObject({
  userSecrets: z.boolean().default(false),
  data: z.enum(["empty", "copy"]).default("empty"),
});
export type PreviewSettings = z.infer<typeof PreviewSettings>;

export const ProjectConfig = z.strictObject({
  engineering: EngineeringOverrides.optional(),
  healthPath: HealthPath.nullable().optional(),
  previews: PreviewSettings.nullable().optional(),
});
export type ProjectConfig = z.infer<typeof ProjectConfig>;

/** What only an admin sets, given in `config` like the rest (null removes it); anyone else gets 403. */
export const AdminSettings = z.strictObject({
  /** The project's model budget in USD. */
  budgetUsd: z.number().min(0).max(100_000).nullable().optional(),
  /** The server it builds and deploys on. */
  server: ServerHandle.nullable().optional(),
  /** Labels the server it is placed on must carry. */
  serverLabels: z.record(z.string().min(1).max(63), z.string().max(255)).nullable().optional(),
  /** A domain of its own instead of `<name>.<server's base domain>`; never one under a base domain. */
  domain: DomainName.nullable().optional(),
});
export type AdminSettings = z.infer<typeof AdminSettings>;
export const ADMIN_SETTINGS = Object.keys(AdminSettings.shape) as (keyof AdminSettings)[];

/** What the pipelines keep for themselves: set by nobody's request. */
export const FACTORY_SETTINGS = ["env", "github", "linkedRepository"] as const;

/** `managed`, as stored and shown: the admin's settings and the pipelines' own state. */
export const ProjectManaged = z.object({
  budgetUsd: z.number().optional(),
  server: z.string().optional(),
  serverLabels: z.record(z.string(), z.string()).optional(),
  domain: z.string().optional(),
  /** The deploy's EnvAnalyzer: each variable's kind, remembered so the model is asked once. */
  env: z.record(z.string(), z.object({ kind: EnvKind, reason: z.string() })).optional(),
  /** The repository sync's view of the default branch. */
  github: z.object({ defaultBranch: z.string(), headSha: z.string().nullable(), syncedAt: z.string() }).optional(),
  /** `<owner>/<name>` of a repository an admin linked (repositoryUrl), when it is not `<org>/<project name>`. */
  linkedRepository: z.string().optional(),
});
export type ProjectManaged = z.infer<typeof ProjectManaged>;

/** A project's `config` as a request gives it: the owner's settings, and the admin's (checked per key). */
const ConfigInput = z.record(z.string(), z.unknown()).describe(
  `The owner's settings (${Object.keys(ProjectConfig.shape).join(", ")}), merged into what is there; an admin's too (${ADMIN_SETTINGS.join(", ")}: 403 for anyone else). ${FACTORY_SETTINGS.join(", ")} are the pipelines' own: 403.`,
);

/** A spec given by hand: free-form, but its acceptance checks (what every deploy runs) must be checks. */
const SpecInput = JsonObject.superRefine((spec, ctx) => {
  if (spec.acceptance === undefined) return;
  const checks = AcceptanceChecks.safeParse(spec.acceptance);
  for (const issue of checks.error?.issues ?? []) ctx.addIssue({ code: "custom", message: issue.message, path: ["acceptance", ...issue.path] });
});

export const CreateProject = z.strictObject({
  name: ProjectName,
  description: z.string().max(10_000).optional(),
  spec: SpecInput.optional(),
  config: ConfigInput.optional(),
  /** Admins may create a project on behalf of a user. */
  ownerId: z.string().min(1).optional(),
});
export type CreateProject = z.infer<typeof CreateProject>;

export const UpdateProject = z
  .strictObject({
    description: z.string().max(10_000).optional(),
    status: ProjectStatus.optional(),
    spec: SpecInput.nullable().optional(),
    /** The spec's acceptance checks, replaced (the rest of the spec stays): what every deploy checks the live app answers. */
    acceptance: AcceptanceChecks.optional(),
    /** Set by the Architect; an admin may link another repository of the App's organisation (403 for anyone else). */
    repositoryUrl: z.url({ protocol: /^https?$/ }).nullable().optional(),
    config: ConfigInput.optional(),
    // The engineering pipeline's settings for this project (kept in config.engineering; they win over the spec's).
    ...EngineeringOverrides.shape,
  })
  .refine((patch) => Object.keys(patch).length > 0, "give at least one field to change");
export type UpdateProject = z.infer<typeof UpdateProject>;

export const CreateUser = z.strictObject({
  name: z.string().trim().min(1).max(200),
  telegramId: z.number().int().positive().optional(),
  isAdmin: z.boolean().optional(),
});
export type CreateUser = z.infer<typeof CreateUser>;

export const Scope = z.enum(API_KEY_SCOPES);

export const CreateApiKey = z.strictObject({
  /** Whose key it is: an admin names anyone; a user's own key needs no userId. */
  userId: z.string().min(1).optional(),
  name: z.string().trim().min(1).max(200),
  scopes: z.array(Scope).min(1).default(["user"]),
  expiresAt: z.iso.datetime({ offset: true }).optional(),
  /** Limit the key to this project (its owner's): it sees and acts on nothing else. */
  projectId: z.string().min(1).max(64).optional(),
});

/** A key as listed: never the key itself, nor its hash. */
export const ApiKeyView = z.object({
  id: z.string(),
  userId: z.string(),
  name: z.string(),
  prefix: z.string(),
  scopes: z.array(Scope),
  projectId: z.string().nullable(),
  createdAt: z.string(),
  lastUsedAt: z.string().nullable(),
  expiresAt: z.string().nullable(),
  revokedAt: z.string().nullable(),
});
export type ApiKeyView = z.infer<typeof ApiKeyView>;
export type CreateApiKey = z.infer<typeof CreateApiKey>;

/** `?limit=&offset=` for list endpoints. */
export const Page = z.strictObject({
  limit: z.coerce.number().int().min(1).max(200).default(50),
  offset: z.coerce.number().int().min(0).default(0),
});

export const CreateServer = z.strictObject({
  handle: ServerHandle,
  /** The server's public address (name or IP), as operators and Ansible know it. */
  host: z.string().trim().min(1).max(253),
  labels: z.record(z.string().min(1).max(63), z.string().max(255)).default({}),
  capacity: z.number().int().min(1).max(1000).default(10),
  /** Projects deployed here answer at `<project>.<baseDomain>` (its DNS has a wildcard record for it); default `localhost`. */
  baseDomain: DomainName.optional(),
  /** For a server whose Caddy serves plain HTTP on this port (a local factory, no TLS): its projects answer at http://<domain>:<port>. */
  publicHttpPort: z.number().int().min(1).max(65_535).optional(),
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

export const EnrollRunnerResponse = z.object({
  runnerId: z.string().min(1),
  server: z.string().min(1),
  controlPlanePublicKey: z.string().length(43),
});
export type EnrollRunnerResponse = z.infer<typeof EnrollRunnerResponse>;

export const CreateJob = z.strictObject({
  type: JobType,
  payload: JsonObject.default({}),
  /** The task whose stream shows the job's progress and log lines. */
  taskId: z.string().min(1).max(100).optional(),
  /** How long the job may wait for its runner before it fails (also the signed envelope's lifetime). */
  ttlSeconds: z.number().int().min(5).max(24 * 3600).default(3600),
  /** End the task with the job's outcome (task.completed / task.failed); otherwise a workflow decides. */
  finishTask: z.boolean().default(false),
  /** Submitting again with the same key returns the job already queued instead of a second one. */
  idempotencyKey: z.string().min(1).max(200).optional(),
  /** The trace this job belongs to; the API also takes it from the request's `traceparent` header. */
  traceparent: Traceparent.optional(),
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

export const JobOutcomeView = z.object({
  ok: z.boolean(),
  message: z.string(),
  reason: z.string().optional(),
  exitCode: z.number().int().optional(),
  data: z.record(z.string(), z.unknown()).optional(),
});
export type JobOutcomeView = z.infer<typeof JobOutcomeView>;

export const JobView = z.object({
  id: z.string(),
  server: z.string(),
  type: z.string(),
  taskId: z.string().nullable(),
  state: JobState,
  attempts: z.number().int(),
  createdAt: z.string(),
  updatedAt: z.string(),
  expiresAt: z.string(),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
  /** Secret values (docker secretEnv, ansible secretVars) are shown as "[redacted]". */
  payload: z.record(z.string(), z.unknown()),
  outcome: JobOutcomeView.nullable(),
  /**
   * What the runner reported after the job had already ended here (it was given up as undelivered,
   * then ran after all). A finished job's state never changes, so this is where that report goes.
   */
  lateOutcome: JobOutcomeView.optional(),
  traceparent: Traceparent.optional(),
});
export type JobView = z.infer<typeof JobView>;

export const ServerView = z.object({
  id: z.string(),
  handle: z.string(),
  host: z.string(),
  labels: z.record(z.string(), z.string()),
  capacity: z.number().int(),
  baseDomain: z.string().nullable(),
  publicHttpPort: z.number().int().nullable(),
  status: ServerStatus,
  runnerId: z.string().nullable(),
  enrolledAt: z.string().nullable(),
  lastSeenAt: z.string().nullable(),
  createdAt: z.string(),
});
export type ServerView = z.infer<typeof ServerView>;

/** A port range on a server, inclusive at both ends. */
export const PortRange = z.strictObject({ from: z.number().int().min(1).max(65_535), to: z.number().int().min(1).max(65_535) }).refine((r) => r.from <= r.to, "from must not be above to");
export type PortRange = z.infer<typeof PortRange>;

/** The live side of a server, from its RunnerHub. */
export const HubStatus = z.object({
  connected: z.boolean(),
  connectedAt: z.string().nullable(),
  lastHeartbeatAt: z.string().nullable(),
  /** What the runner said of itself when it connected: its version and the release port range it allots. */
  runnerVersion: z.string().nullable(),
  releasePorts: PortRange.nullable(),
  /** The server's memory in MiB, as its runner said (older runners: null). */
  memoryMb: z.number().int().nullable(),
  jobs: z.record(JobState, z.number().int()),
  /** Deliveries waiting in the hub (task events, workflow wake-ups), and those parked after failing. */
  outbox: z.object({
    pending: z.number().int(),
    parked: z.array(z.object({ lane: z.string(), items: z.number().int(), since: z.string(), error: z.string() })),
  }),
});
export type HubStatus = z.infer<typeof HubStatus>;

/**
 * Who a RunnerHub serves: the worker passes it from Postgres (as an RPC argument, and in the
 * `x-hub-identity` header of the runner's WebSocket upgrade), so it follows re-enrollment.
 */
export const HubIdentity = z.object({
  serverId: z.string(),
  handle: z.string(),
  runnerId: z.string().nullable(),
  runnerPublicKey: z.string().nullable(),
});
export type HubIdentity = z.infer<typeof HubIdentity>;

export const TaskView = z.object({
  id: z.string(),
  type: TaskType,
  status: TaskStatus,
  projectId: z.string().nullable(),
  ownerId: z.string(),
  input: z.record(z.string(), z.unknown()),
  result: z.record(z.string(), z.unknown()).nullable(),
  error: z.string().nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
  finishedAt: z.string().nullable(),
});
export type TaskView = z.infer<typeof TaskView>;

export const TaskStreamPosition = z.object({ lastSeq: z.number().int(), closed: z.boolean() });
