/**
 * The whole data model (docs/design.md, "Data"). Ids are prefixed text (`usr_…`, `prj_…`) made by `newId`,
 * so they read well in logs and URLs; timestamps are `timestamptz`.
 */
import { sql } from "drizzle-orm";
import {
  bigint,
  boolean,
  customType,
  index,
  integer,
  jsonb,
  numeric,
  pgEnum,
  pgTable,
  text,
  timestamp,
  unique,
  uniqueIndex,
} from "drizzle-orm/pg-core";
import { API_KEY_SCOPES, PROJECT_STATUSES, SERVER_STATUSES, TASK_STATUSES, TASK_TYPES } from "../shared/api.ts";
import { CHANGE_STATUSES } from "../shared/changes.ts";
import { CHECKPOINT_KINDS } from "../shared/checkpoints.ts";
import { DEPLOYMENT_STATUSES } from "../shared/deploys.ts";

const createdAt = () => timestamp("created_at", { withTimezone: true }).notNull().defaultNow();
const updatedAt = () => timestamp("updated_at", { withTimezone: true }).notNull().defaultNow();
const tstz = (name: string) => timestamp(name, { withTimezone: true });

/** Postgres full-text vector; drizzle has no built-in type for it. */
const tsvector = customType<{ data: string }>({ dataType: () => "tsvector" });

export const apiKeyScope = pgEnum("api_key_scope", API_KEY_SCOPES);
export const projectStatus = pgEnum("project_status", PROJECT_STATUSES);
export const taskStatus = pgEnum("task_status", TASK_STATUSES);
export const taskType = pgEnum("task_type", TASK_TYPES);
export const serverStatus = pgEnum("server_status", SERVER_STATUSES);
// The release lifecycle; "active" and "removed" came with the deploy pipeline (migration 0003).
export const deploymentStatus = pgEnum("deployment_status", DEPLOYMENT_STATUSES);
export const changeStatus = pgEnum("change_status", CHANGE_STATUSES);
export const checkpointKind = pgEnum("checkpoint_kind", CHECKPOINT_KINDS);
export const ragScope = pgEnum("rag_scope", ["docs", "code", "history", "logs"]);

export const users = pgTable("users", {
  id: text("id").primaryKey(),
  name: text("name").notNull(),
  telegramId: bigint("telegram_id", { mode: "number" }).unique(),
  isAdmin: boolean("is_admin").notNull().default(false),
  createdAt: createdAt(),
});

export const apiKeys = pgTable(
  "api_keys",
  {
    id: text("id").primaryKey(),
    userId: text("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    name: text("name").notNull(),
    /** SHA-256 of the whole key; the key itself is shown once and never stored. */
    keyHash: text("key_hash").notNull().unique(),
    /** The key's first characters, to recognise it in a list. */
    prefix: text("prefix").notNull(),
    scopes: apiKeyScope("scopes").array().notNull(),
    /** A key limited to one project sees and acts on that project (and its tasks) only. */
    projectId: text("project_id").references(() => projects.id, { onDelete: "cascade" }),
    createdAt: createdAt(),
    lastUsedAt: tstz("last_used_at"),
    expiresAt: tstz("expires_at"),
    revokedAt: tstz("revoked_at"),
  },
  (t) => [index("api_keys_user_idx").on(t.userId)],
);

export const projects = pgTable(
  "projects",
  {
    id: text("id").primaryKey(),
    /** DNS label: the project is served at `https://<name>.<base-domain>`. */
    name: text("name").notNull().unique(),
    ownerId: text("owner_id")
      .notNull()
      .references(() => users.id),
    status: projectStatus("status").notNull().default("draft"),
    description: text("description").notNull().default(""),
    spec: jsonb("spec").$type<Record<string, unknown>>(),
    /** Set by the factory (the Architect creating `<org>/<name>`) or an admin linking one; never by the owner. */
    repositoryUrl: text("repository_url"),
    /** What the owner sets (ProjectConfig): engineering settings, the health path. Merged on PATCH. */
    config: jsonb("config").$type<Record<string, unknown>>().notNull().default({}),
    /** What the factory manages (ProjectManaged): budget, server, domain (an admin's), the pipelines' own state. */
    managed: jsonb("managed").$type<Record<string, unknown>>().notNull().default({}),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [index("projects_owner_idx").on(t.ownerId)],
);

export const projectSecrets = pgTable(
  "project_secrets",
  {
    id: text("id").primaryKey(),
    projectId: text("project_id")
      .notNull()
      .references(() => projects.id, { onDelete: "cascade" }),
    name: text("name").notNull(),
    /** AES-256-GCM ciphertext (base64) and its 12-byte IV; the key is the SECRETS_ENCRYPTION_KEY secret. */
    ciphertext: text("ciphertext").notNull(),
    iv: text("iv").notNull(),
    /** infra (generated), computed (derived), user (asked of the person), bot (from the Telegram pool). */
    kind: text("kind").notNull().default("user"),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [uniqueIndex("project_secrets_name_idx").on(t.projectId, t.name)],
);

export const servers = pgTable("servers", {
  id: text("id").primaryKey(),
  handle: text("handle").notNull().unique(),
  host: text("host").notNull(),
  labels: jsonb("labels").$type<Record<string, string>>().notNull().default({}),
  /** How many concurrent services / jobs the server takes. */
  capacity: integer("capacity").notNull().default(10),
  status: serverStatus("status").notNull().default("pending"),
  /** The runner's Ed25519 public key (base64url raw), registered at enrollment. */
  runnerPublicKey: text("runner_public_key"),
  runnerId: text("runner_id").unique(),
  enrollmentTokenHash: text("enrollment_token_hash").unique(),
  enrollmentExpiresAt: tstz("enrollment_expires_at"),
  enrolledAt: tstz("enrolled_at"),
  lastSeenAt: tstz("last_seen_at"),
  /** Projects deployed here answer at `<project>.<baseDomain>` (unless they have a domain of their own). */
  baseDomain: text("base_domain"),
  /** Set for a server whose Caddy serves plain HTTP on this port (a local factory): its projects' URLs are http://<domain>:<port>. Null: https on 443. */
  publicHttpPort: integer("public_http_port"),
  /** Counts this server's route list versions: each caddy.sync carries the one it was read at. */
  routeGeneration: integer("route_generation").notNull().default(0),
  createdAt: createdAt(),
});

export const serviceDeployments = pgTable(
  "service_deployments",
  {
    id: text("id").primaryKey(),
    projectId: text("project_id")
      .notNull()
      .references(() => projects.id, { onDelete: "cascade" }),
    serverId: text("server_id")
      .notNull()
      .references(() => servers.id),
    domain: text("domain").notNull().unique(),
    /** The active release's port (its deployments row holds it too). */
    internalPort: integer("internal_port").notNull(),
    status: deploymentStatus("status").notNull().default("pending"),
    /** The release Caddy routes the domain to. */
    activeDeploymentId: text("active_deployment_id"),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    index("service_deployments_server_idx").on(t.serverId),
    uniqueIndex("service_deployments_project_idx").on(t.projectId),
    uniqueIndex("service_deployments_port_idx").on(t.serverId, t.internalPort),
  ],
);

export const tasks = pgTable(
  "tasks",
  {
    id: text("id").primaryKey(),
    type: taskType("type").notNull(),
    status: taskStatus("status").notNull().default("queued"),
    projectId: text("project_id").references(() => projects.id, { onDelete: "set null" }),
    ownerId: text("owner_id")
      .notNull()
      .references(() => users.id),
    input: jsonb("input").$type<Record<string, unknown>>().notNull().default({}),
    result: jsonb("result").$type<Record<string, unknown>>(),
    error: text("error"),
    /** While the task is `needs_input`: what it asks (the data of its `task.needs_input` event). */
    pendingInput: jsonb("pending_input").$type<Record<string, unknown>>(),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
    finishedAt: tstz("finished_at"),
  },
  (t) => [
    index("tasks_owner_idx").on(t.ownerId, t.createdAt),
    index("tasks_project_idx").on(t.projectId),
    // One build at a time per project (a change's run, marked by `change` in its input, runs beside other changes: src/engineering/engineering.ts).
    uniqueIndex("tasks_one_active_build")
      .on(t.projectId)
      .where(sql`${t.type} = 'engineering' AND ${t.status} IN ('queued', 'running', 'needs_input') AND (${t.input} ->> 'change') IS NULL`),
    // One deploy (or rollback) at a time per project and slot (production, or a change's preview: src/deploy/deploys.ts): two would race for its route.
    uniqueIndex("tasks_one_active_deploy")
      .on(t.projectId, sql`coalesce(${t.input} ->> 'preview', '')`)
      .where(sql`${t.type} = 'deploy' AND ${t.status} IN ('queued', 'running', 'needs_input')`),
  ],
);

/** Change requests (src/shared/changes.ts): numbered per project, each on a branch and a task of its own. */
export const changes = pgTable(
  "changes",
  {
    id: text("id").primaryKey(),
    projectId: text("project_id")
      .notNull()
      .references(() => projects.id, { onDelete: "cascade" }),
    number: integer("number").notNull(),
    request: text("request").notNull(),
    /** The Architect's change brief (ChangeBrief), once written. */
    brief: jsonb("brief").$type<Record<string, unknown>>(),
    branch: text("branch").notNull(),
    status: changeStatus("status").notNull().default("building"),
    taskId: text("task_id").notNull(),
    pullRequest: jsonb("pull_request").$type<{ number: number; url: string }>(),
    mergeSha: text("merge_sha"),
    deployTaskId: text("deploy_task_id"),
    /** Its preview (src/deploy/previews.ts): the deploy task that made the latest, its URL, and the release the preview's route points at (null while none serves). */
    previewTaskId: text("preview_task_id"),
    previewUrl: text("preview_url"),
    previewDeploymentId: text("preview_deployment_id"),
    /** The branch head whose tests passed last: what shipping merges (never a later, untested push). */
    testedSha: text("tested_sha"),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [uniqueIndex("changes_project_number").on(t.projectId, t.number)],
);

/** A commit the default branch reached with its tests passing (src/shared/checkpoints.ts): what an undo goes back to. */
export const checkpoints = pgTable(
  "checkpoints",
  {
    id: text("id").primaryKey(),
    projectId: text("project_id")
      .notNull()
      .references(() => projects.id, { onDelete: "cascade" }),
    number: integer("number").notNull(),
    kind: checkpointKind("kind").notNull(),
    summary: text("summary").notNull(),
    commitSha: text("commit_sha").notNull(),
    taskId: text("task_id"),
    changeNumber: integer("change_number"),
    restores: integer("restores"),
    tests: text("tests"),
    /** The project's acceptance checks at this point: an undo puts them back with the code. */
    acceptance: jsonb("acceptance").$type<unknown[]>().notNull(),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex("checkpoints_project_number").on(t.projectId, t.number), uniqueIndex("checkpoints_project_commit").on(t.projectId, t.commitSha)],
);

export const deployments = pgTable(
  "deployments",
  {
    id: text("id").primaryKey(),
    projectId: text("project_id")
      .notNull()
      .references(() => projects.id, { onDelete: "cascade" }),
    serverId: text("server_id").references(() => servers.id),
    taskId: text("task_id").references(() => tasks.id, { onDelete: "set null" }),
    commitSha: text("commit_sha").notNull(),
    image: text("image"),
    status: deploymentStatus("status").notNull().default("pending"),
    health: jsonb("health").$type<Record<string, unknown>>(),
    /** The release this one replaced: what a rollback goes back to. */
    previousDeploymentId: text("previous_deployment_id"),
    domain: text("domain"),
    /** Its internal port while it runs (in the server's release range); null once it is stopped. */
    port: integer("port"),
    /** How it came about: a build of a commit, or a rollback starting a kept release's image. */
    kind: text("kind").notNull().default("build"),
    /** For a rollback: the release whose image it runs. */
    sourceDeploymentId: text("source_deployment_id"),
    /** The change this release previews (at `<project>--<n>.<base domain>`); null for production's releases. */
    preview: integer("preview"),
    stoppedAt: tstz("stopped_at"),
    createdAt: createdAt(),
    finishedAt: tstz("finished_at"),
  },
  (t) => [
    index("deployments_project_idx").on(t.projectId, t.createdAt),
    // Two running releases on one server never share a port.
    uniqueIndex("deployments_port_idx").on(t.serverId, t.port).where(sql`${t.port} IS NOT NULL`),
  ],
);

export const telegramBots = pgTable("telegram_bots", {
  id: text("id").primaryKey(),
  username: text("username").notNull().unique(),
  tokenCiphertext: text("token_ciphertext").notNull(),
  tokenIv: text("token_iv").notNull(),
  projectId: text("project_id")
    .unique()
    .references(() => projects.id, { onDelete: "set null" }),
  allocatedAt: tstz("allocated_at"),
  /**
   * Set whenever the bot leaves a project (a trigger does it, however it is freed): a project's code
   * had its token, so no other project gets the bot until an admin gives it a new token.
   */
  needsRotation: boolean("needs_rotation").notNull().default(false),
  createdAt: createdAt(),
});

/**
 * Messages to Telegram through the `telegram-outbox` queue: one row per message (however many parts
 * it is split into), so a retried delivery goes on after the parts already sent, and a message that
 * could not be sent stays visible to an admin.
 */
export const telegramOutbox = pgTable(
  "telegram_outbox",
  {
    id: text("id").primaryKey(),
    chatId: text("chat_id").notNull(),
    text: text("text").notNull(),
    parts: integer("parts").notNull(),
    partsSent: integer("parts_sent").notNull().default(0),
    /** queued → sent | failed */
    status: text("status").notNull().default("queued"),
    attempts: integer("attempts").notNull().default(0),
    error: text("error"),
    /** An inline keyboard (Bot API InlineKeyboardMarkup), sent with the last part: a confirmation's buttons. */
    replyMarkup: jsonb("reply_markup").$type<Record<string, unknown>>(),
    /** When the row was handed to the queue; null while it has not been (a send that failed): the sweep sends it. */
    enqueuedAt: tstz("enqueued_at"),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [index("telegram_outbox_status_idx").on(t.status, t.createdAt)],
);

export const incidents = pgTable(
  "incidents",
  {
    id: text("id").primaryKey(),
    projectId: text("project_id").references(() => projects.id, { onDelete: "cascade" }),
    serverId: text("server_id").references(() => servers.id, { onDelete: "cascade" }),
    kind: text("kind").notNull(),
    severity: text("severity").notNull().default("warning"),
    message: text("message").notNull(),
    data: jsonb("data").$type<Record<string, unknown>>(),
    openedAt: tstz("opened_at").notNull().defaultNow(),
    resolvedAt: tstz("resolved_at"),
  },
  (t) => [index("incidents_open_idx").on(t.resolvedAt)],
);

export const llmUsage = pgTable(
  "llm_usage",
  {
    id: text("id").primaryKey(),
    projectId: text("project_id").references(() => projects.id, { onDelete: "set null" }),
    taskId: text("task_id").references(() => tasks.id, { onDelete: "set null" }),
    userId: text("user_id").references(() => users.id, { onDelete: "set null" }),
    agent: text("agent").notNull(),
    model: text("model").notNull(),
    promptTokens: integer("prompt_tokens").notNull(),
    completionTokens: integer("completion_tokens").notNull(),
    costUsd: numeric("cost_usd", { precision: 12, scale: 6 }).notNull().default("0"),
    createdAt: createdAt(),
  },
  (t) => [index("llm_usage_project_idx").on(t.projectId, t.createdAt)],
);

/**
 * Credentials a runner job's container is given instead of the factory's own keys, each ending with
 * its job: a model credential the relay (/relay/v1) swaps for the real key, within a spend cap that
 * also counts against the project's budget; and a repository token (kept sealed only so that it can
 * be revoked at GitHub when the job ends).
 */
export const jobCredentials = pgTable(
  "job_credentials",
  {
    id: text("id").primaryKey(),
    taskId: text("task_id")
      .notNull()
      .references(() => tasks.id, { onDelete: "cascade" }),
    projectId: text("project_id").references(() => projects.id, { onDelete: "cascade" }),
    userId: text("user_id").references(() => users.id, { onDelete: "set null" }),
    /** Which job it is for, within the task (`develop 2`): what is revoked when that job ends. */
    purpose: text("purpose").notNull(),
    /** SHA-256 of the model credential; null when the job reaches no model. */
    modelKeyHash: text("model_key_hash").unique(),
    /** The agent and model its calls are recorded and priced as. */
    agent: text("agent").notNull(),
    model: text("model").notNull(),
    spendCapUsd: numeric("spend_cap_usd", { precision: 12, scale: 6 }).notNull(),
    spentUsd: numeric("spent_usd", { precision: 12, scale: 6 }).notNull().default("0"),
    /** The job's repository token, sealed (`v1.<iv>.<ciphertext>`), until it is revoked. */
    gitToken: text("git_token"),
    expiresAt: tstz("expires_at").notNull(),
    revokedAt: tstz("revoked_at"),
    createdAt: createdAt(),
  },
  (t) => [index("job_credentials_task_idx").on(t.taskId, t.purpose), index("job_credentials_open_idx").on(t.expiresAt).where(sql`${t.revokedAt} IS NULL`)],
);

export const agentConfigs = pgTable("agent_configs", {
  agent: text("agent").primaryKey(),
  model: text("model").notNull(),
  temperature: numeric("temperature", { precision: 3, scale: 2 }),
  settings: jsonb("settings").$type<Record<string, unknown>>().notNull().default({}),
  updatedAt: updatedAt(),
});

/**
 * The knowledge index (src/rag/): one row per ingested document, versioned by the hash of what was
 * embedded. A document belongs to a project, or (a chat's conversation summary) to one user only, or
 * to neither: then only admins see it.
 */
export const ragDocuments = pgTable(
  "rag_documents",
  {
    id: text("id").primaryKey(),
    projectId: text("project_id").references(() => projects.id, { onDelete: "cascade" }),
    /** Set for a document of no project: the one user who sees it. */
    ownerId: text("owner_id").references(() => users.id, { onDelete: "cascade" }),
    scope: ragScope("scope").notNull(),
    source: text("source").notNull(),
    title: text("title").notNull().default(""),
    contentHash: text("content_hash").notNull(),
    chunkCount: integer("chunk_count").notNull().default(0),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  // NULLS NOT DISTINCT: a document of no project is still one per owner, scope and source.
  (t) => [unique("rag_documents_source_key").on(t.projectId, t.ownerId, t.scope, t.source).nullsNotDistinct(), index("rag_documents_owner_idx").on(t.ownerId)],
);

export const ragChunks = pgTable(
  "rag_chunks",
  {
    id: text("id").primaryKey(),
    documentId: text("document_id")
      .notNull()
      .references(() => ragDocuments.id, { onDelete: "cascade" }),
    projectId: text("project_id").references(() => projects.id, { onDelete: "cascade" }),
    ownerId: text("owner_id").references(() => users.id, { onDelete: "cascade" }),
    scope: ragScope("scope").notNull(),
    ordinal: integer("ordinal").notNull(),
    /** Where the chunk sits: the headings above it, or the file and declaration it starts in. */
    heading: text("heading").notNull().default(""),
    text: text("text").notNull(),
    /** cl100k_base tokens of heading and text together: what the chunk costs a search's token budget. */
    tokenCount: integer("token_count").notNull(),
    // English stemming, so "deploying" finds "deployment"; a heading match ranks above a body match.
    tsv: tsvector("tsv")
      .notNull()
      .generatedAlwaysAs(sql`setweight(to_tsvector('english', "heading"), 'A') || setweight(to_tsvector('english', "text"), 'B')`),
    createdAt: createdAt(),
  },
  (t) => [
    // fastupdate off: a chunk goes straight into the index, so a search never wades through GIN's
    // pending list of fresh entries (a seq scan in all but name until the next vacuum).
    index("rag_chunks_tsv_idx").using("gin", t.tsv).with({ fastupdate: false }),
    index("rag_chunks_scope_idx").on(t.projectId, t.scope),
    index("rag_chunks_document_idx").on(t.documentId),
    index("rag_chunks_owner_idx").on(t.ownerId),
  ],
);

/**
 * rag-ingest queue messages that could not be processed (after their retries, or unreadable): kept
 * whole, so an admin sees why and can send one again (POST /api/rag/failures/:id/retry).
 */
export const ragIngestFailures = pgTable(
  "rag_ingest_failures",
  {
    id: text("id").primaryKey(),
    message: jsonb("message").$type<Record<string, unknown>>().notNull(),
    /** What it was about, for a person: `docs README.md of prj_…`, `repository of prj_…`. */
    subject: text("subject").notNull(),
    projectId: text("project_id").references(() => projects.id, { onDelete: "cascade" }),
    error: text("error").notNull(),
    attempts: integer("attempts").notNull(),
    createdAt: createdAt(),
  },
  (t) => [index("rag_ingest_failures_created_idx").on(t.createdAt)],
);
