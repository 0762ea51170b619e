/**
 * The Product Owner's capability registry: typed tools over the project's services, grouped as the
 * seed groups them. Only the groups the intent parser picked (and those the model asks for with
 * `request_capabilities`) are offered to the model. Every tool's arguments are checked with zod; a
 * tool with side effects names the question the person confirms before it runs.
 */
import { desc, eq, sql } from "drizzle-orm";
import { z } from "zod";
import type { Db } from "../db/client.ts";
import { projects } from "../db/schema.ts";
import { getTaskStream } from "../tasks/stream-client.ts";
import { AppError } from "../lib/app-error.ts";
import type { Principal } from "../lib/context.ts";
import { CreateProject, ProjectName } from "../shared/api.ts";
import { CAPABILITY_GROUPS, type CapabilityGroup } from "../shared/chat.ts";
import { listDeployments, startDeployTask } from "../deploy/deploys.ts";
import { startEngineering } from "../engineering/engineering.ts";
import { discardChange, listChanges } from "../changes/changes.ts";
import { shipChange } from "../changes/ship.ts";
import { appLogs } from "../deploy/release-logs.ts";
import { ChangeRequestText } from "../shared/changes.ts";
import { listCheckpoints, undoToCheckpoint } from "../checkpoints/checkpoints.ts";
import { UNDO_DATA_NOTE, UndoBody } from "../shared/checkpoints.ts";
import { createProject, findProject, projectVisibleTo } from "../projects/projects.ts";
import { listServers, serverView } from "../runner-hub/servers.ts";
import { cancelTask } from "../task-control/task-control.ts";
import { listTasks, loadTask, type Task } from "../tasks/tasks.ts";
import { usageReport } from "../models/usage.ts";
import { KNOWLEDGE_TOOL_DESCRIPTION, KnowledgeToolInput, searchKnowledgeForChat } from "../rag/knowledge-tool.ts";

export interface ToolContext {
  db: Db;
  env: Env;
  /** The person in the chat: every tool acts as them. */
  principal: Principal;
  /** The trace of the message being handled: tasks a tool starts carry it on. */
  traceparent?: string;
}

export interface ToolResult {
  /** What the model is told (JSON). */
  result: unknown;
  /** A task the tool started: the agent follows it and tells the person how it ends. */
  task?: Task;
  /** Other tasks it started, followed alike (a ship's other open changes catching up). */
  also?: Task[];
  /** What the person is told once a confirmed tool has run (before the task it started is followed), instead of its bare result. */
  say?: string;
}

export interface Tool {
  name: string;
  group: CapabilityGroup;
  description: string;
  input: z.ZodType;
  /** Side effects: the question the person confirms before the tool runs. */
  confirm?: (args: never) => string;
  /** A decision about money: recorded as needing human approval, and confirmed. */
  financial?: boolean;
  run(ctx: ToolContext, args: never): Promise<ToolResult>;
}

function tool<S extends z.ZodType>(def: {
  name: string;
  group: CapabilityGroup;
  description: string;
  input: S;
  confirm?: (args: z.infer<S>) => string;
  financial?: boolean;
  run(ctx: ToolContext, args: z.infer<S>): Promise<ToolResult>;
}): Tool {
  return def;
}

const ProjectRef = z.strictObject({ project: z.string().min(1).max(64).describe("the project's name (or id)") });
const TaskRef = z.strictObject({ taskId: z.string().min(1).max(64) });

const projectSummary = (row: typeof projects.$inferSelect) => ({ id: row.id, name: row.name, status: row.status, description: row.description.slice(0, 300), repository: row.repositoryUrl });
const taskSummary = (task: Task) => ({ id: task.id, type: task.type, status: task.status, projectId: task.projectId, error: task.error, createdAt: task.createdAt.toISOString() });

export const TOOLS: readonly Tool[] = [
  // ---- project management ----
  tool({
    name: "list_projects",
    group: "project_management",
    description: "List the person's projects (an admin sees all) with their status.",
    input: z.strictObject({}),
    async run({ db, principal }) {
      const rows = await db.select().from(projects).where(projectVisibleTo(principal)).orderBy(desc(projects.createdAt)).limit(50);
      return { result: { projects: rows.map(projectSummary) } };
    },
  }),
  tool({
    name: "create_project",
    group: "project_management",
    description: "Create a project (a record only: no repository, no cost). The name becomes its subdomain.",
    input: z.strictObject({ name: ProjectName.describe("3-40 characters of a-z, 0-9 and '-'"), description: z.string().min(1).max(10_000).describe("what the product does, in the person's words and the details agreed") }),
    async run({ db, principal }, args) {
      const project = await createProject(db, principal, CreateProject.parse(args));
      return { result: { project: projectSummary(project) } };
    },
  }),
  tool({
    name: "show_project",
    group: "project_management",
    description: "A project's details, its spec summary and its latest tasks.",
    input: ProjectRef,
    async run({ db, principal }, { project }) {
      const row = await findProject(db, principal, project);
      const recent = await listTasks(db, principal, { projectId: row.id, limit: 5, offset: 0 });
      return { result: { project: { ...projectSummary(row), spec: (row.spec as { summary?: unknown } | null)?.summary ?? null }, tasks: recent.map(taskSummary) } };
    },
  }),
  // ---- engineering ----
  tool({
    name: "start_engineering",
    group: "engineering",
    description: "Build the project: the Architect writes its spec and creates its GitHub repository, coding agents write the code, its tests are run. Starts a task; the person is told when it ends.",
    input: ProjectRef.extend({ deploy: z.boolean().optional().describe("deploy it as soon as its tests pass (when the person asked for it live); one confirmation covers both") }),
    confirm: ({ project, deploy }) => `Start building ${project}${deploy ? " and deploy it once its tests pass" : ""}? This creates its GitHub repository and spends model budget.`,
    async run({ db, env, principal, traceparent }, { project, deploy }) {
      const row = await findProject(db, principal, project);
      const task = await startEngineering(db, env, principal, row.id, { ...(deploy ? { deploy } : {}), ...(traceparent ? { traceparent } : {}) });
      return { result: { started: taskSummary(task) }, task };
    },
  }),
  tool({
    name: "request_change",
    group: "engineering",
    description:
      "Change a project that was built, in the person's words (add a route, change a reply): worked on a branch of its own by the same coding agents and tests, and offered as a pull request when its tests pass; production is untouched until the person ships it. Starts a task; the person is told when it ends.",
    input: ProjectRef.extend({ request: ChangeRequestText.describe("what should change, in the person's words") }),
    confirm: ({ project, request }) => `Start this change to ${project}: “${request.slice(0, 300)}”? It is built and tested on a branch of its own and spends model budget; production stays as it is until you ship it.`,
    async run({ db, env, principal, traceparent }, { project, request }) {
      const row = await findProject(db, principal, project);
      const task = await startEngineering(db, env, principal, row.id, { change: { request }, ...(traceparent ? { traceparent } : {}) });
      return { result: { started: taskSummary(task) }, task };
    },
  }),
  tool({
    name: "change_more",
    group: "engineering",
    description:
      "Change an open change more, in the person's words (after trying its preview): another round on its branch by the same coding agents and tests; its pull request is updated and its preview made again. Starts a task; the person is told when it ends.",
    input: ProjectRef.extend({ number: z.number().int().positive().describe("the change's number"), request: ChangeRequestText.describe("what else should change, in the person's words") }),
    confirm: ({ project, number, request }) => `Change #${number} of ${project} more: “${request.slice(0, 300)}”? It is built and tested on the change's branch and spends model budget; its preview is made again.`,
    async run({ db, env, principal, traceparent }, { project, number, request }) {
      const row = await findProject(db, principal, project);
      const task = await startEngineering(db, env, principal, row.id, { change: { request, more: number }, ...(traceparent ? { traceparent } : {}) });
      return { result: { started: taskSummary(task) }, task };
    },
  }),
  tool({
    name: "list_changes",
    group: "engineering",
    description: "A project's change requests: number, status (building, open, shipped, discarded, failed), branch and pull request.",
    input: ProjectRef,
    async run({ db, principal }, { project }) {
      const row = await findProject(db, principal, project);
      const changes = await listChanges(db, principal, row.id);
      return { result: { changes: changes.slice(0, 20).map(({ number, status, request, branch, pullRequest }) => ({ number, status, request: request.slice(0, 200), branch, pullRequest })) } };
    },
  }),
  tool({
    name: "ship_change",
    group: "engineering",
    description: "Ship an open change: its pull request is merged and production deploys the merge (health gate, acceptance checks, automatic rollback); the project's other open changes catch up with it (merged in and tested again). Starts the deploy's task; the person is told when it is live.",
    input: ProjectRef.extend({ number: z.number().int().positive().describe("the change's number") }),
    confirm: ({ project, number }) => `Ship change #${number} of ${project}? Its pull request is merged and production deploys it; other open changes take it in and are tested again.`,
    async run({ db, env, principal, traceparent }, { project, number }) {
      const row = await findProject(db, principal, project);
      const { change, catchingUp } = await shipChange(db, env, principal, row.id, number, traceparent);
      const shipped = { number: change.number, mergeSha: change.mergeSha };
      const also = await Promise.all(catchingUp.flatMap((other) => ("taskId" in other ? [loadTask(db, principal, other.taskId)] : [])));
      const late = catchingUp.flatMap((other) => ("notStarted" in other ? [`Change #${other.number} did not catch up with it: ${other.notStarted}`] : []));
      const say = [`Change #${number} of ${row.name} is merged (${(change.mergeSha ?? "").slice(0, 12)}).`, ...catchingUp.flatMap((other) => ("taskId" in other ? [`Change #${other.number} takes it in and is tested again.`] : [])), ...late].join("\n");
      // A project that is not deployed: merged only; it goes live when it is deployed.
      if (!change.deployTaskId) return { result: { shipped, notDeployed: `${row.name} is not deployed: the change is merged; say “deploy ${row.name}” to put it live`, catchingUp }, also, say: `${say}\n${row.name} is not deployed: say “deploy ${row.name}” to put it live.` };
      // Shipped is deployed: shipChange answers only once the merge's deploy has started.
      const task = await loadTask(db, principal, change.deployTaskId);
      return { result: { shipped, started: taskSummary(task), catchingUp }, task, also, ...(catchingUp.length ? { say } : {}) };
    },
  }),
  tool({
    name: "discard_change",
    group: "engineering",
    description: "Discard a change that is not shipped: its pull request is closed, its branch deleted and its preview removed; production is untouched.",
    input: ProjectRef.extend({ number: z.number().int().positive().describe("the change's number") }),
    confirm: ({ project, number }) => `Discard change #${number} of ${project}? Its pull request is closed, its branch deleted, and its preview removed with its data.`,
    async run({ db, env, principal }, { project, number }) {
      const row = await findProject(db, principal, project);
      const change = await discardChange(db, env, principal, row.id, number);
      // Its preview (if it had one) is removed by a deploy task: followed like any.
      const task = change.deployTaskId ? await loadTask(db, principal, change.deployTaskId) : undefined;
      return { result: { discarded: { number: change.number, branch: change.branch } }, ...(task ? { task } : {}) };
    },
  }),
  tool({
    name: "list_checkpoints",
    group: "engineering",
    description: "A project's checkpoints, newest first: each commit its default branch reached with its tests passing (a build, a change shipped, an undo), with when, its tests and whether its release is live. What undo goes back to.",
    input: ProjectRef,
    async run({ db, principal }, { project }) {
      const checkpoints = await listCheckpoints(db, principal, project);
      return { result: { checkpoints: checkpoints.slice(0, 20).map(({ number, kind, summary, commitSha, createdAt, release, latest }) => ({ number, kind, summary: summary.slice(0, 200), commit: commitSha.slice(0, 12), createdAt, live: release?.live ?? false, latest })) } };
    },
  }),
  tool({
    name: "undo",
    group: "engineering",
    description:
      "Undo: a project's code and production back to a checkpoint (default: the one before the latest, 'undo the last change'; or a checkpoint's number; or asOf, a time such as yesterday evening, for the newest checkpoint then). A revert commit on its default branch, and that checkpoint's release live again without a rebuild. The app's data is not rolled back.",
    input: ProjectRef.extend({
      checkpoint: z.number().int().positive().optional().describe("the checkpoint's number (list_checkpoints)"),
      asOf: z.iso.datetime({ offset: true }).optional().describe("a time: the newest checkpoint made at or before it"),
    }),
    confirm: ({ project, checkpoint, asOf }) =>
      `Undo ${project}: back to ${checkpoint ? `checkpoint #${checkpoint}` : asOf ? `how it was at ${asOf}` : "the checkpoint before the latest one (its last change undone)"}? Its code goes back with a revert commit, and production with it. ${UNDO_DATA_NOTE}`,
    async run({ db, env, principal, traceparent }, { project, checkpoint, asOf }) {
      const done = await undoToCheckpoint(db, env, principal, project, UndoBody.parse({ ...(checkpoint ? { checkpoint } : {}), ...(asOf ? { asOf } : {}) }), traceparent);
      const task = done.deployTaskId ? await loadTask(db, principal, done.deployTaskId) : undefined;
      return { result: { undone: { restored: done.restored, checkpoint: done.checkpoint.number, production: done.production } }, say: `↩️ ${done.message}`, ...(task ? { task } : {}) };
    },
  }),
  tool({
    name: "task_status",
    group: "engineering",
    description: "A task's status and its last events.",
    input: TaskRef,
    async run({ db, env, principal }, { taskId }) {
      const task = await loadTask(db, principal, taskId);
      const { events } = await getTaskStream(env, task.id).read({ after: 0, limit: 1000 });
      return { result: { task: taskSummary(task), lastEvents: events.slice(-8).map((e) => ({ type: e.type, step: e.step, message: e.message.slice(0, 300) })) } };
    },
  }),
  tool({
    name: "cancel_task",
    group: "engineering",
    description: "Stop a running task (engineering or deploy), its workflow and its jobs.",
    input: TaskRef,
    confirm: ({ taskId }) => `Stop task ${taskId}? Work in progress is lost.`,
    async run({ db, env, principal }, { taskId }) {
      const task = await loadTask(db, principal, taskId);
      const { stoppedJobs } = await cancelTask(env, db, task, principal.userId ?? "product-owner");
      return { result: { cancelled: task.id, stoppedJobs } };
    },
  }),
  // ---- deploy ----
  tool({
    name: "deploy_project",
    group: "deploy",
    description: "Deploy the project's default branch to its server at https://<project>.<base-domain>. Starts a task; the person is told the URL when it is live.",
    input: ProjectRef.extend({ ref: z.string().min(1).max(200).optional().describe("a branch, tag or commit; default: the default branch") }),
    confirm: ({ project, ref }) => `Deploy ${project}${ref ? ` at ${ref}` : ""}? It goes live on its server.`,
    async run({ db, env, principal, traceparent }, { project, ref }) {
      const row = await findProject(db, principal, project);
      const task = await startDeployTask(db, env, principal, row.id, { mode: "deploy", ...(ref ? { ref } : {}) }, traceparent);
      return { result: { started: taskSummary(task) }, task };
    },
  }),
  tool({
    name: "rollback_project",
    group: "deploy",
    description: "Put the previous healthy release of the project back (no rebuild).",
    input: ProjectRef,
    confirm: ({ project }) => `Roll ${project} back to its previous release?`,
    async run({ db, env, principal, traceparent }, { project }) {
      const row = await findProject(db, principal, project);
      const task = await startDeployTask(db, env, principal, row.id, { mode: "rollback" }, traceparent);
      return { result: { started: taskSummary(task) }, task };
    },
  }),
  tool({
    name: "undeploy_project",
    group: "deploy",
    description: "Stop serving the project: its route, releases, port and bot are removed. Its data (/data) stays for its next deploy unless deleteData.",
    input: ProjectRef.extend({ deleteData: z.boolean().optional().describe("Delete the project's stored data too (only when the person asks for it)") }),
    confirm: ({ project, deleteData }) => (deleteData ? `Take ${project} offline, delete its releases and delete its data for good?` : `Take ${project} offline and delete its releases? (Its data is kept.)`),
    async run({ db, env, principal, traceparent }, { project, deleteData }) {
      const row = await findProject(db, principal, project);
      const task = await startDeployTask(db, env, principal, row.id, { mode: "undeploy", ...(deleteData ? { deleteData } : {}) }, traceparent);
      return { result: { started: taskSummary(task) }, task };
    },
  }),
  tool({
    name: "list_deployments",
    group: "deploy",
    description: "The project's releases: commit, status, health, when.",
    input: ProjectRef,
    async run({ db, principal }, { project }) {
      const row = await findProject(db, principal, project);
      return { result: { deployments: (await listDeployments(db, row.id, 10)).map((d) => ({ id: d.id, status: d.status, commit: d.commitSha.slice(0, 12), domain: d.domain, createdAt: d.createdAt })) } };
    },
  }),
  // ---- infrastructure ----
  tool({
    name: "list_servers",
    group: "infrastructure",
    description: "The servers (admin only): their runners' status and last heartbeat.",
    input: z.strictObject({}),
    async run({ db, env, principal }) {
      if (!principal.isAdmin) throw new AppError("forbidden", "Only an admin can see the servers");
      const rows = await listServers(db, { limit: 50, offset: 0 });
      return { result: { servers: rows.map((row) => serverView(row, env)).map((s) => ({ handle: s.handle, status: s.status, lastSeenAt: s.lastSeenAt, labels: s.labels })) } };
    },
  }),
  // ---- diagnose ----
  tool({
    name: "recent_failures",
    group: "diagnose",
    description: "The person's recently failed tasks with their errors, newest first.",
    input: z.strictObject({ project: z.string().min(1).max(64).optional() }),
    async run({ db, principal }, { project }) {
      const projectId = project ? (await findProject(db, principal, project)).id : undefined;
      const failed = await listTasks(db, principal, { status: "failed", ...(projectId ? { projectId } : {}), limit: 5, offset: 0 });
      return { result: { failed: failed.map(taskSummary) } };
    },
  }),
  tool({
    name: "app_logs",
    group: "diagnose",
    description: "A deployed project's last log lines (its live release's stdout and stderr, oldest first, secrets masked on the server): quote them as evidence when the person asks why it misbehaves or is down.",
    input: ProjectRef.extend({ tail: z.number().int().min(1).max(200).default(50).describe("how many of the last lines") }),
    async run({ db, env, principal }, { project, tail }) {
      const row = await findProject(db, principal, project);
      const logs = await appLogs(db, env, principal, row.id, tail);
      return { result: { project: logs.project, release: logs.release, state: logs.state, lines: logs.lines.map((line) => line.slice(0, 500)) } };
    },
  }),
  tool({
    name: "search_knowledge",
    group: "diagnose",
    description: KNOWLEDGE_TOOL_DESCRIPTION,
    input: KnowledgeToolInput,
    async run({ db, env, principal }, args) {
      return { result: await searchKnowledgeForChat(db, env, principal, args) };
    },
  }),
  // ---- admin ----
  tool({
    name: "usage_report",
    group: "admin",
    description: "Model spend in USD, grouped by user, project, agent or model (a non-admin sees their own).",
    input: z.strictObject({ by: z.enum(["user", "project", "agent", "model"]).default("project") }),
    async run({ db, principal }, { by }) {
      return { result: { usage: await usageReport(db, principal, { by }) } };
    },
  }),
  tool({
    name: "set_project_budget",
    group: "admin",
    description: "Set a project's model budget in USD (admin only). A financial decision: a person approves it.",
    input: ProjectRef.extend({ usd: z.number().min(0).max(100_000) }),
    financial: true,
    confirm: ({ project, usd }) => `Set the model budget of ${project} to $${usd.toFixed(2)}?`,
    async run({ db, principal }, { project, usd }) {
      if (!principal.isAdmin) throw new AppError("forbidden", "Only an admin sets budgets");
      const row = await findProject(db, principal, project);
      await db.update(projects).set({ managed: sql`${projects.managed} || ${JSON.stringify({ budgetUsd: usd })}::jsonb`, updatedAt: new Date() }).where(eq(projects.id, row.id));
      return { result: { project: row.name, budgetUsd: usd } };
    },
  }),
];

/** The base tools, always offered: the loop itself handles them. */
export const BASE_TOOLS = {
  respond: { description: "Send a message to the person.", input: z.strictObject({ text: z.string().min(1).max(4000) }) },
  request_capabilities: { description: `Load more tools for this conversation. Groups: ${CAPABILITY_GROUPS.join(", ")}.`, input: z.strictObject({ groups: z.array(z.enum(CAPABILITY_GROUPS)).min(1) }) },
  finish: { description: "End your turn: you have answered the person, or wait for them.", input: z.strictObject({}) },
} as const;
export type BaseToolName = keyof typeof BASE_TOOLS;

export function toolByName(name: string): Tool | undefined {
  return TOOLS.find((candidate) => candidate.name === name);
}

/** The tools of these groups, in the order of the registry. */
export function toolsOf(groups: readonly CapabilityGroup[]): Tool[] {
  return TOOLS.filter((candidate) => groups.includes(candidate.group));
}

export interface ModelTool {
  type: "function";
  function: { name: string; description: string; parameters: Record<string, unknown> };
}

function asModelTool(name: string, description: string, input: z.ZodType): ModelTool {
  const { $schema: _schema, ...parameters } = z.toJSONSchema(input, { io: "input" }) as Record<string, unknown>;
  return { type: "function", function: { name, description, parameters } };
}

/** What the model is offered: the base tools and the groups' tools. */
export function modelTools(groups: readonly CapabilityGroup[]): ModelTool[] {
  return [
    ...Object.entries(BASE_TOOLS).map(([name, def]) => asModelTool(name, def.description, def.input)),
    ...toolsOf(groups).map((t) => asModelTool(t.name, t.description, t.input)),
  ];
}

/** Checks a tool call's arguments: the parsed value, or the error the model is told. */
export function parseArguments(input: z.ZodType, raw: string): { ok: true; args: unknown } | { ok: false; error: string } {
  let json: unknown;
  try {
    json = raw.trim() === "" ? {} : JSON.parse(raw);
  } catch {
    return { ok: false, error: "the arguments are not valid JSON" };
  }
  const parsed = input.safeParse(json);
  if (parsed.success) return { ok: true, args: parsed.data };
  return { ok: false, error: parsed.error.issues.map((issue) => `${issue.path.join(".") || "arguments"}: ${issue.message}`).join("; ") };
}
