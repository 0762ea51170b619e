#!/usr/bin/env node
/**
 * `orchestrator`: the command-line interface. Configured by ORCHESTRATOR_URL and ORCHESTRATOR_API_KEY
 * (or a config file, see cli/config.ts). Exit codes: 0 success, 1 the task failed or was cancelled,
 * 2 usage error, 3 the request could not be done (unreachable server, bad key, unknown task).
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { HubStatus, ProjectStatus, ServerView, type TaskStatus, TaskStreamPosition, TaskView } from "../src/shared/api.ts";
import { CatchUpStart, ChangeView } from "../src/shared/changes.ts";
import { CheckpointView, UNDO_DATA_NOTE, UndoView } from "../src/shared/checkpoints.ts";
import { CHAT_TEXT_LIMIT } from "../src/shared/chat.ts";
import { AppLogs, DeployAfterBuild, DeploymentView, HealthEvidence, SecretView } from "../src/shared/deploys.ts";
import { TaskEvent } from "../src/shared/events.ts";
import { apiGet, apiPost, apiPut } from "./api.ts";
import { chatRepl, newProduct } from "./chat.ts";
import { CliError, loadConfig } from "./config.ts";
import { followTask } from "./follow.ts";
import { formatEvent } from "./format.ts";
import { type Cli, keysCreate, keysList, keysRevoke, login, logout } from "./keys.ts";
import { searchCommand } from "./search.ts";

const USAGE = `Usage:
  orchestrator new "<what you want>" [--yes] [--follow]
                                                      tell the Product Owner what to build and answer its questions
  orchestrator chat                                   talk with the Product Owner (/quit or Ctrl-D to leave)
  orchestrator status [--json]                        your projects and their active tasks
  orchestrator tasks list [--type T] [--status S] [--project ID] [--limit N] [--json]
  orchestrator tasks link <task-id> [--ttl SECONDS]    print a signed link to the live task view
  orchestrator engineering start <project> [--deploy] [--server HANDLE] [--follow] [--json]
                                                      run the engineering pipeline (project id or name);
                                                      --deploy: deploy the tested commit once the tests pass
  orchestrator engineering status <task-id> [--follow] [--json]
  orchestrator change <project> "<what should change>" [--follow] [--json]
                                                      ask for a change to a built project: worked on a branch of
                                                      its own and offered as a pull request once its tests pass
  orchestrator changes list <project> [--json]        the project's changes: number, status, branch, pull request,
                                                      preview link
  orchestrator changes more <project> <n> "<what else>" [--follow] [--json]
                                                      another round of open change n on its branch: its pull
                                                      request updated, its preview made again
  orchestrator changes ship <project> <n>             merge change n's pull request and deploy the merge; the
                                                      other open changes take it in and are tested again
  orchestrator changes discard <project> <n>          close change n's pull request, delete its branch, remove its preview
  orchestrator logs <project> [--tail N] [--json]     the live release's last lines (200 by default), secrets masked
  orchestrator checkpoints <project> [--json]         the commits its default branch reached with tests passing
                                                      (builds, changes shipped, undos), with their releases
  orchestrator undo <project> [--to N | --as-of TIME] [--yes] [--follow] [--json]
                                                      back to checkpoint N (default: the one before the latest):
                                                      a revert commit, and its release live again with no rebuild;
                                                      asks first unless --yes; the app's data is not rolled back
  orchestrator tasks answer <task-id> continue [--rounds N] | stop [--reason TEXT]
                                                      answer a task that waits for a decision
  orchestrator tasks cancel <task-id>                 stop a task, its workflow and its running jobs
  orchestrator deploy start <project> [--ref REF] [--server HANDLE] [--follow] [--json]
                                                      deploy the project (at REF, default its default branch)
  orchestrator deploy status <task-id> [--follow] [--json]
  orchestrator deploy rollback <project> [--to DEPLOYMENT] [--follow] [--json]
                                                      back to the previous healthy release (or the one named), no rebuild
  orchestrator deploy history <project> [--json]      releases: commit, status, health, when
  orchestrator deploy undeploy <project> [--delete-data] [--follow]
                                                      stop serving it: route, releases, port and bot go; its data
                                                      (/data) stays for its next deploy unless --delete-data
  orchestrator secrets set <project> NAME=value ...   set the project's secrets (a waiting deploy goes on)
  orchestrator secrets list <project> [--json]        their names and kinds (never a value)
  orchestrator provision status <task-id> [--follow] [--json]
  orchestrator servers list [--json]                  servers, their runners' status and last heartbeat
  orchestrator servers show <handle> [--json]         one server, its runner's connection and job counts
  orchestrator keys create <name> [--scope user|admin|runner ...] [--project ID-OR-NAME] [--user USER-ID]
                           [--expires DATE|30d] [--json]
                                                      issue an API key; it is shown this once only
  orchestrator keys list [--all] [--user USER-ID] [--json]
                                                      your keys, never the keys themselves; --all adds revoked ones
  orchestrator keys revoke <key-id>                   revoke a key; it stops working at once
  orchestrator login [--url URL] [--key KEY]          check a key and save it with the URL to the config file
                                                      (without --key, it is read from stdin or asked for)
  orchestrator logout                                 remove the saved key from the config file
  orchestrator search "<query>" [--project P] [--scope docs|code|history|logs] [--top-k N] [--max-tokens N]
                      [--min-similarity X] [--mode hybrid|fts|vector] [--json]
                                                      search the knowledge index: specs, docs, code, conversations, task logs

  --follow   print each event as it happens, until the task ends (exit 0 completed, 1 failed/cancelled)
  --json     machine-readable output (NDJSON events with --follow)
  --yes      answer "yes" to the Product Owner's confirmations (new), or to the undo's question

Configuration: ORCHESTRATOR_URL and ORCHESTRATOR_API_KEY, or {"url","apiKey"} in
~/.config/orchestrator/config.json (or the file named by ORCHESTRATOR_CONFIG), which \`orchestrator login\` writes.`;

const TaskList = z.object({ tasks: z.array(TaskView) });
const TaskShown = z.object({ task: TaskView, stream: TaskStreamPosition });
const EventPage = z.object({ events: z.array(TaskEvent) });
const ViewLink = z.object({ url: z.string(), expiresAt: z.string() });
const ServerList = z.object({ servers: z.array(ServerView) });
const ServerShown = z.object({ server: ServerView, runner: HubStatus });
const TaskStarted = z.object({ task: TaskView });
const ProjectList = z.object({ projects: z.array(z.object({ id: z.string(), name: z.string() })) });
const ProjectOverview = z.object({ projects: z.array(z.object({ id: z.string(), name: z.string(), status: ProjectStatus, description: z.string(), updatedAt: z.string() })) });
const Cancelled = z.object({ task: TaskView, stoppedJobs: z.array(z.string()) });
const History = z.object({ deployments: z.array(DeploymentView) });
const Secrets = z.object({ secrets: z.array(SecretView), resumedTask: z.string().optional() });
const ChangeStarted = z.object({ change: ChangeView, task: TaskView });
const ChangeShown = z.object({ change: ChangeView });
const ChangeList = z.object({ changes: z.array(ChangeView) });
const CheckpointList = z.object({ checkpoints: z.array(CheckpointView) });

const out = (line: string) => process.stdout.write(`${line}\n`);

function usage(message?: string): never {
  throw new CliError(message ? `${message}\n\n${USAGE}` : USAGE, 2);
}

async function tasksList(args: string[]) {
  const { values } = parseArgs({
    args,
    options: { type: { type: "string" }, status: { type: "string" }, project: { type: "string" }, limit: { type: "string" }, json: { type: "boolean" } },
  });
  const query = new URLSearchParams();
  if (values.type) query.set("type", values.type);
  if (values.status) query.set("status", values.status);
  if (values.project) query.set("projectId", values.project);
  if (values.limit) query.set("limit", values.limit);
  const { tasks } = await apiGet(loadConfig(), `/api/tasks?${query.toString()}`, "tasks", TaskList);
  if (values.json) return out(JSON.stringify(tasks));
  if (tasks.length === 0) return out("No tasks.");
  for (const task of tasks) {
    out(`${task.id.padEnd(22)} ${task.type.padEnd(12)} ${task.status.padEnd(12)} ${task.createdAt}${task.projectId ? `  ${task.projectId}` : ""}`);
  }
}

async function tasksLink(args: string[]) {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { ttl: { type: "string" } } });
  const [taskId] = positionals;
  if (!taskId) usage("tasks link needs a task id");
  const query = values.ttl ? `?ttl=${encodeURIComponent(values.ttl)}` : "";
  const link = await apiGet(loadConfig(), `/api/tasks/${encodeURIComponent(taskId)}/view-link${query}`, `task ${taskId}`, ViewLink);
  out(link.url);
  process.stderr.write(`(valid until ${link.expiresAt})\n`);
}

/** Prints a task's events as they happen until it ends; the exit code says how it ended. */
async function follow(config: ReturnType<typeof loadConfig>, taskId: string, json: boolean | undefined): Promise<number> {
  const terminal = await followTask(config, taskId, {
    onEvent: (event) => {
      out(json ? JSON.stringify(event) : formatEvent(event));
      if (event.type === "task.needs_input" && !json) process.stderr.write(`   answer with: orchestrator tasks answer ${taskId} continue [--rounds N]   or   … stop [--reason TEXT]\n`);
    },
    onReconnect: (lastSeq, reason) => process.stderr.write(`… connection lost (${reason}); resuming after event #${lastSeq}\n`),
  });
  if (terminal.type !== "task.completed") return 1;
  // A build asked to deploy (`--deploy`) ends naming its deploy's task, a change its preview's: followed in turn.
  const deploy = DeployAfterBuild.safeParse(terminal.data?.deploy);
  if (!deploy.success) return 0;
  const change = terminal.data?.change !== undefined;
  if (!("taskId" in deploy.data)) {
    // A change without a preview (its project is not deployed) is still a change that passed.
    process.stderr.write(`${change ? "no preview" : "not deployed"}: ${deploy.data.notDeployed}\n`);
    return change ? 0 : 1;
  }
  process.stderr.write(`following the ${change ? "preview's deploy" : "deploy"} ${deploy.data.taskId}\n`);
  return follow(config, deploy.data.taskId, json);
}

/** A project's id from its id or name. */
async function projectIdOf(config: ReturnType<typeof loadConfig>, project: string): Promise<string> {
  if (project.startsWith("prj_")) return project;
  const { projects } = await apiGet(config, `/api/projects?name=${encodeURIComponent(project)}`, `project ${project}`, ProjectList);
  const found = projects.find((candidate) => candidate.name === project);
  if (!found) throw new CliError(`project ${project} not found`);
  return found.id;
}

/** Starts a pipeline on a project (POST /api/projects/:id/<action>), then follows it or says how to. */
async function startOnProject(kind: "engineering" | "deploy", action: string, args: string[], options: Record<string, { type: "string" | "boolean" }>, body: (values: Record<string, string | boolean | undefined>) => Record<string, unknown>): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { ...options, follow: { type: "boolean" }, json: { type: "boolean" } } });
  const [project] = positionals;
  if (!project) usage(`${kind} ${action === "engineering" ? "start" : action} needs a project (its id or name)`);
  const config = loadConfig();
  const projectId = await projectIdOf(config, project);
  const { task } = await apiPost(config, `/api/projects/${encodeURIComponent(projectId)}/${action}`, body(values), `project ${project}`, TaskStarted);
  if (!values.follow) {
    out(values.json ? JSON.stringify(task) : `started ${task.id}; follow it with: orchestrator ${kind} status ${task.id} --follow`);
    return 0;
  }
  process.stderr.write(`started ${task.id}\n`);
  return follow(config, task.id, Boolean(values.json));
}

const engineeringStart = (args: string[]) =>
  startOnProject("engineering", "engineering", args, { server: { type: "string" }, deploy: { type: "boolean" } }, (v) => ({ ...(v.server ? { server: v.server } : {}), ...(v.deploy ? { deploy: true } : {}) }));
const deployStart = (args: string[]) =>
  startOnProject("deploy", "deploy", args, { ref: { type: "string" }, server: { type: "string" } }, (v) => ({ ...(v.ref ? { ref: v.ref } : {}), ...(v.server ? { server: v.server } : {}) }));
const deployRollback = (args: string[]) => startOnProject("deploy", "rollback", args, { to: { type: "string" } }, (v) => (v.to ? { deploymentId: v.to } : {}));
const deployUndeploy = (args: string[]) => startOnProject("deploy", "undeploy", args, { "delete-data": { type: "boolean" } }, (v) => (v["delete-data"] ? { deleteData: true } : {}));

/** `orchestrator change <project> "<what>"`: a change request, followed or not. */
async function changeStart(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { follow: { type: "boolean" }, json: { type: "boolean" } } });
  const [project, ...words] = positionals;
  const request = words.join(" ").trim();
  if (!project || !request) usage('change needs a project (its id or name) and what should change, in quotes');
  const config = loadConfig();
  const { change, task } = await apiPost(config, `/api/projects/${encodeURIComponent(await projectIdOf(config, project))}/changes`, { request }, `project ${project}`, ChangeStarted);
  if (!values.follow) {
    out(values.json ? JSON.stringify({ change, task }) : `change #${change.number} started on ${change.branch} (task ${task.id}); follow it with: orchestrator engineering status ${task.id} --follow`);
    return 0;
  }
  process.stderr.write(`change #${change.number} started on ${change.branch} (task ${task.id})\n`);
  return follow(config, task.id, Boolean(values.json));
}

/** `orchestrator changes more <project> <n> "<what else>"`: another round of an open change. */
async function changeMore(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { follow: { type: "boolean" }, json: { type: "boolean" } } });
  const [project, number, ...words] = positionals;
  const request = words.join(" ").trim();
  if (!project || !number || !/^\d+$/.test(number) || !request) usage("changes more needs a project (its id or name), the change's number and what else should change, in quotes");
  const config = loadConfig();
  const { change, task } = await apiPost(config, `/api/projects/${encodeURIComponent(await projectIdOf(config, project))}/changes/${number}/more`, { request }, `change #${number} of ${project}`, ChangeStarted);
  const line = `change #${change.number} goes on on ${change.branch} (task ${task.id})`;
  if (!values.follow) {
    out(values.json ? JSON.stringify({ change, task }) : `${line}; follow it with: orchestrator engineering status ${task.id} --follow`);
    return 0;
  }
  process.stderr.write(`${line}\n`);
  return follow(config, task.id, Boolean(values.json));
}

async function changesList(args: string[]) {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { json: { type: "boolean" } } });
  const [project] = positionals;
  if (!project) usage("changes list needs a project (its id or name)");
  const config = loadConfig();
  const { changes } = await apiGet(config, `/api/projects/${encodeURIComponent(await projectIdOf(config, project))}/changes`, `project ${project}`, ChangeList);
  if (values.json) return out(JSON.stringify(changes));
  if (!changes.length) return out(`${project} has no changes`);
  for (const change of changes) out(`#${String(change.number).padEnd(4)} ${change.status.padEnd(10)} ${change.branch}  ${change.pullRequest ? `PR #${change.pullRequest.number} ${change.pullRequest.url}` : "-"}  ${change.preview?.live && change.preview.url ? `preview ${change.preview.url}  ` : ""}${change.request.slice(0, 60)}`);
}

/** `orchestrator changes ship|discard <project> <n>`. */
async function changeAnswer(action: "ship" | "discard", args: string[]) {
  const [project, number] = parseArgs({ args, allowPositionals: true, options: {} }).positionals;
  if (!project || !number || !/^\d+$/.test(number)) usage(`changes ${action} needs a project (its id or name) and the change's number`);
  const config = loadConfig();
  const { change, catchingUp } = await apiPost(config, `/api/projects/${encodeURIComponent(await projectIdOf(config, project))}/changes/${number}/${action}`, {}, `change #${number} of ${project}`, ChangeShown.extend({ catchingUp: z.array(CatchUpStart).default([]) }));
  if (action === "discard") return out(`change #${change.number} discarded: its pull request closed and ${change.branch} deleted`);
  out(`change #${change.number} merged (${(change.mergeSha ?? "").slice(0, 12)}); ${change.deployTaskId ? `deploying it: orchestrator deploy status ${change.deployTaskId} --follow` : `${project} is not deployed: orchestrator deploy ${project} puts it live`}`);
  for (const other of catchingUp) out("taskId" in other ? `change #${other.number} catches up with it (task ${other.taskId}): orchestrator engineering status ${other.taskId} --follow` : `change #${other.number} did not catch up: ${other.notStarted}`);
}

const checkpointLine = (checkpoint: CheckpointView) =>
  `#${String(checkpoint.number).padEnd(4)} ${checkpoint.kind.padEnd(7)} ${checkpoint.commitSha.slice(0, 12)}  ${checkpoint.createdAt}  ${checkpoint.release ? `${checkpoint.release.deploymentId}${checkpoint.release.live ? " (live)" : ""}` : "not deployed"}  ${checkpoint.tests ?? ""}${checkpoint.latest ? "  ← latest" : ""}\n      ${checkpoint.summary.slice(0, 100)}`;

async function checkpointsList(args: string[]) {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { json: { type: "boolean" } } });
  const [project] = positionals;
  if (!project) usage("checkpoints needs a project (its id or name)");
  const config = loadConfig();
  const { checkpoints } = await apiGet(config, `/api/projects/${encodeURIComponent(await projectIdOf(config, project))}/checkpoints`, `project ${project}`, CheckpointList);
  if (values.json) return out(JSON.stringify(checkpoints));
  if (!checkpoints.length) return out(`${project} has no checkpoints yet: one is recorded when a build's tests pass on its default branch`);
  for (const checkpoint of checkpoints) out(checkpointLine(checkpoint));
}

/** `orchestrator logs <project> [--tail N]`: the live release's last lines, secrets masked on its server. */
async function logs(args: string[]) {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { tail: { type: "string" }, json: { type: "boolean" } } });
  const [project] = positionals;
  if (!project) usage("logs needs a project (its id or name)");
  if (values.tail !== undefined && !/^\d+$/.test(values.tail)) usage("--tail takes a number of lines (1 to 2000)");
  const config = loadConfig();
  const id = encodeURIComponent(await projectIdOf(config, project));
  const shown = await apiGet(config, `/api/projects/${id}/logs${values.tail ? `?tail=${values.tail}` : ""}`, `project ${project}`, AppLogs);
  if (values.json) return out(JSON.stringify(shown));
  out(`# ${shown.project}, release ${shown.release} on ${shown.server} (${shown.state}): ${shown.lines.length} line${shown.lines.length === 1 ? "" : "s"}${shown.omitted ? `, ${shown.omitted} older ones not shown` : ""}`);
  for (const line of shown.lines) out(line);
}

/** `orchestrator undo <project>`: says where it goes back to and what happens to the data, asks, then undoes. */
async function undo(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { to: { type: "string" }, "as-of": { type: "string" }, yes: { type: "boolean" }, follow: { type: "boolean" }, json: { type: "boolean" } } });
  const [project] = positionals;
  if (!project) usage("undo needs a project (its id or name)");
  if (values.to && !/^\d+$/.test(values.to)) usage("--to takes a checkpoint's number (orchestrator checkpoints <project> lists them)");
  if (values.to && values["as-of"]) usage("give --to or --as-of, not both");
  const asOf = values["as-of"] ? new Date(values["as-of"]) : null;
  if (asOf && Number.isNaN(asOf.getTime())) usage(`--as-of takes a time (2026-12-06T18:00:00Z, or 2026-12-06): ${values["as-of"]}`);
  const config = loadConfig();
  const projectId = encodeURIComponent(await projectIdOf(config, project));
  if (!values.yes) {
    const { checkpoints } = await apiGet(config, `/api/projects/${projectId}/checkpoints`, `project ${project}`, CheckpointList);
    const target = values.to ? checkpoints.find((c) => c.number === Number(values.to)) : asOf ? checkpoints.find((c) => new Date(c.createdAt) <= asOf) : checkpoints[1];
    const where = target ? `checkpoint #${target.number} (${target.summary.slice(0, 100)}, ${target.commitSha.slice(0, 12)})` : "an earlier checkpoint";
    process.stderr.write(`Undo ${project} back to ${where}? Its code goes back with a revert commit, and production with it.\n${UNDO_DATA_NOTE}\n[y/N] `);
    const answer = await firstLine();
    if (!/^y(es)?$/i.test(answer.trim())) {
      process.stderr.write("nothing was done\n");
      return 1;
    }
  }
  const body = { ...(values.to ? { checkpoint: Number(values.to) } : {}), ...(asOf ? { asOf: asOf.toISOString() } : {}) };
  const done = await apiPost(config, `/api/projects/${projectId}/undo`, body, `project ${project}`, UndoView);
  if (!values.follow || !done.deployTaskId) {
    out(values.json ? JSON.stringify(done) : done.message);
    return 0;
  }
  process.stderr.write(`${done.message}\n`);
  return follow(config, done.deployTaskId, Boolean(values.json));
}

/** The first line of stdin ("" when it ends first). */
function firstLine(): Promise<string> {
  return new Promise((resolve) => {
    let text = "";
    const done = () => {
      process.stdin.off("data", onData).off("end", done).pause();
      resolve(text.split("\n")[0] ?? "");
    };
    const onData = (chunk: Buffer) => {
      text += chunk.toString();
      if (text.includes("\n")) done();
    };
    process.stdin.on("data", onData).on("end", done).resume();
  });
}

async function deployHistory(args: string[]) {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { json: { type: "boolean" } } });
  const [project] = positionals;
  if (!project) usage("deploy history needs a project (its id or name)");
  const config = loadConfig();
  const { deployments } = await apiGet(config, `/api/projects/${encodeURIComponent(await projectIdOf(config, project))}/deployments`, `project ${project}`, History);
  if (values.json) return out(JSON.stringify(deployments));
  if (!deployments.length) return out(`${project} has not been deployed`);
  for (const release of deployments) {
    // A release that served has its checks (direct, then through Caddy); one turned away, the failed one's evidence.
    const evidence = HealthEvidence.safeParse(release.health?.visitor ?? release.health).data;
    const health = evidence ? `  ${evidence.message}` : "";
    out(`${release.createdAt}  ${release.id}  ${release.status.padEnd(11)} ${release.kind === "rollback" ? "rollback " : ""}${release.commitSha.slice(0, 12)}  ${release.domain ?? ""}${release.port ? `  :${release.port}` : ""}${health}`);
  }
}

async function secretsSet(args: string[]) {
  const [project, ...pairs] = parseArgs({ args, allowPositionals: true, options: {} }).positionals;
  if (!project || pairs.length === 0) usage("secrets set needs a project and NAME=value pairs");
  const secrets = Object.fromEntries(
    pairs.map((pair) => {
      const at = pair.indexOf("=");
      if (at < 1) usage(`not NAME=value: ${pair.split("=")[0] ?? ""}`);
      return [pair.slice(0, at), pair.slice(at + 1)];
    }),
  );
  const config = loadConfig();
  const result = await apiPut(config, `/api/projects/${encodeURIComponent(await projectIdOf(config, project))}/secrets`, { secrets }, `project ${project}`, Secrets);
  out(`set ${Object.keys(secrets).join(", ")}${result.resumedTask ? `; deploy ${result.resumedTask} goes on` : ""}`);
}

async function secretsList(args: string[]) {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { json: { type: "boolean" } } });
  const [project] = positionals;
  if (!project) usage("secrets list needs a project (its id or name)");
  const config = loadConfig();
  const { secrets } = await apiGet(config, `/api/projects/${encodeURIComponent(await projectIdOf(config, project))}/secrets`, `project ${project}`, Secrets);
  if (values.json) return out(JSON.stringify(secrets));
  for (const secret of secrets) out(`${secret.name.padEnd(30)} ${secret.kind.padEnd(9)} set ${secret.updatedAt}`);
}

async function tasksAnswer(args: string[]) {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { rounds: { type: "string" }, reason: { type: "string" } } });
  const [taskId, decision] = positionals;
  if (!taskId || (decision !== "continue" && decision !== "stop")) usage("tasks answer needs a task id and `continue` or `stop`");
  const rounds = values.rounds === undefined ? undefined : Number(values.rounds);
  if (rounds !== undefined && (!Number.isInteger(rounds) || rounds < 1)) usage("--rounds must be a whole number of rounds, 1 or more");
  const body = decision === "continue" ? { decision, ...(rounds ? { rounds } : {}) } : { decision, ...(values.reason ? { reason: values.reason } : {}) };
  const { task } = await apiPost(loadConfig(), `/api/tasks/${encodeURIComponent(taskId)}/input`, body, `task ${taskId}`, TaskStarted);
  out(`${task.id}: answered "${decision}"`);
}

async function tasksCancel(args: string[]) {
  const [taskId] = parseArgs({ args, allowPositionals: true, options: {} }).positionals;
  if (!taskId) usage("tasks cancel needs a task id");
  const { task, stoppedJobs } = await apiPost(loadConfig(), `/api/tasks/${encodeURIComponent(taskId)}/cancel`, {}, `task ${taskId}`, Cancelled);
  out(`${task.id}: ${task.status}${stoppedJobs.length ? ` (stopped ${stoppedJobs.join(", ")})` : ""}`);
}

async function status(kind: "engineering" | "deploy" | "provision", args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { follow: { type: "boolean" }, json: { type: "boolean" } } });
  const [taskId] = positionals;
  if (!taskId) usage(`${kind} status needs a task id`);
  const config = loadConfig();
  const { task } = await apiGet(config, `/api/tasks/${encodeURIComponent(taskId)}`, `task ${taskId}`, TaskShown);
  if (task.type !== kind) throw new CliError(`task ${taskId} is a ${task.type} task; use \`orchestrator ${task.type} status ${taskId}\``, 2);

  if (values.follow) return follow(config, taskId, values.json);

  const { stream } = await apiGet(config, `/api/tasks/${encodeURIComponent(taskId)}`, `task ${taskId}`, TaskShown);
  const after = Math.max(0, stream.lastSeq - 10);
  const { events } = await apiGet(config, `/api/tasks/${encodeURIComponent(taskId)}/events?after=${after}`, `task ${taskId}`, EventPage);
  if (values.json) {
    out(JSON.stringify({ task, events }));
  } else {
    out(`${task.id}  ${task.type}  ${task.status}${task.projectId ? `  project ${task.projectId}` : ""}`);
    out(`created ${task.createdAt}${task.finishedAt ? `, finished ${task.finishedAt}` : ""}`);
    if (task.error) out(`error: ${task.error}`);
    if (events.length) out(after > 0 ? `last ${events.length} events:` : "events:");
    for (const event of events) out(`  ${formatEvent(event)}`);
  }
  return task.status === "failed" || task.status === "cancelled" ? 1 : 0;
}


function since(iso: string | null): string {
  if (!iso) return "never";
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return seconds < 120 ? `${seconds}s ago` : seconds < 7200 ? `${Math.round(seconds / 60)}m ago` : iso;
}

async function serversList(args: string[]) {
  const { values } = parseArgs({ args, options: { json: { type: "boolean" } } });
  const { servers } = await apiGet(loadConfig(), "/api/servers?limit=200", "servers", ServerList);
  if (values.json) return out(JSON.stringify(servers));
  if (servers.length === 0) return out("No servers. An admin registers one with POST /api/servers (see runner/README.md).");
  for (const server of servers) {
    out(`${server.handle.padEnd(20)} ${server.status.padEnd(8)} ${server.host.padEnd(24)} last seen ${since(server.lastSeenAt)}`);
  }
}

async function serversShow(args: string[]) {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { json: { type: "boolean" } } });
  const [handle] = positionals;
  if (!handle) usage("servers show needs a server handle");
  const body = await apiGet(loadConfig(), `/api/servers/${encodeURIComponent(handle)}`, `server ${handle}`, ServerShown);
  if (values.json) return out(JSON.stringify(body));
  const { server, runner } = body;
  out(`${server.handle}  ${server.status}  ${server.host}`);
  out(`runner ${server.runnerId ?? "not enrolled"}${runner.connected ? ", connected" : ""}; last heartbeat ${since(runner.lastHeartbeatAt ?? server.lastSeenAt)}`);
  out(`jobs: ${Object.entries(runner.jobs).map(([state, n]) => `${n} ${state}`).join(", ")}`);
  if (runner.releasePorts) out(`release ports ${runner.releasePorts.from}-${runner.releasePorts.to}; runner ${runner.runnerVersion ?? "?"}`);
  if (runner.outbox.parked.length) out(`deliveries parked: ${runner.outbox.parked.map((lane) => `${lane.lane} (${lane.items}, since ${lane.since}: ${lane.error})`).join("; ")}`);
}

async function newCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { yes: { type: "boolean", short: "y" }, follow: { type: "boolean" } } });
  const text = positionals.join(" ").trim();
  if (!text) usage('new needs what you want built, e.g. orchestrator new "Weather bot with notifications"');
  if (text.length > CHAT_TEXT_LIMIT) usage(`the message is ${text.length} characters; the chat takes up to ${CHAT_TEXT_LIMIT}`);
  const config = loadConfig();
  return newProduct(config, text, { yes: values.yes, ...(values.follow ? { follow: (taskId: string) => follow(config, taskId, false) } : {}), signal: controller.signal });
}

async function chatCommand(args: string[]): Promise<number> {
  parseArgs({ args, options: {} });
  return chatRepl(loadConfig(), { signal: controller.signal });
}

/** What the key and login commands (cli/keys.ts) use of this file. */
const cli: Cli = { out, usage, projectIdOf, since };

const ACTIVE_STATUSES: TaskStatus[] = ["running", "needs_input", "queued"];

/** `orchestrator status`: the person's projects, and the tasks running or waiting on them. */
async function overview(args: string[]) {
  const { values } = parseArgs({ args, options: { json: { type: "boolean" } } });
  const config = loadConfig();
  const [{ projects }, ...pages] = await Promise.all([
    apiGet(config, "/api/projects?limit=200", "projects", ProjectOverview),
    // The API filters by one status at a time.
    ...ACTIVE_STATUSES.map((state) => apiGet(config, `/api/tasks?status=${state}&limit=200`, "tasks", TaskList)),
  ]);
  const tasks = pages.flatMap((page) => page.tasks).sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  if (values.json) return out(JSON.stringify({ projects, tasks }));
  if (projects.length === 0) out('No projects yet. Start one with: orchestrator new "<what you want>"');
  else {
    const width = Math.max(7, ...projects.map((project) => project.name.length)) + 2;
    out(`${"PROJECT".padEnd(width)}${"STATUS".padEnd(13)}UPDATED`);
    for (const project of projects) out(`${project.name.padEnd(width)}${project.status.padEnd(13)}${since(project.updatedAt)}`);
  }
  if (tasks.length === 0) return out("No active tasks.");
  const names = new Map(projects.map((project) => [project.id, project.name]));
  const projectOf = (task: TaskView) => (task.projectId ? (names.get(task.projectId) ?? task.projectId) : "-");
  const width = Math.max(7, ...tasks.map((task) => projectOf(task).length)) + 2;
  out("");
  out(`${"TASK".padEnd(22)} ${"TYPE".padEnd(12)} ${"STATUS".padEnd(12)} ${"PROJECT".padEnd(width)}CREATED`);
  for (const task of tasks) out(`${task.id.padEnd(22)} ${task.type.padEnd(12)} ${task.status.padEnd(12)} ${projectOf(task).padEnd(width)}${since(task.createdAt)}`);
}

async function main(argv: string[]): Promise<number> {
  const [group, command, ...rest] = argv;
  if (!group || group === "help" || group === "--help" || group === "-h") {
    out(USAGE);
    return group ? 0 : 2;
  }
  if (group === "new") return newCommand(argv.slice(1));
  if (group === "chat") return chatCommand(argv.slice(1));
  if (group === "status") return overview(argv.slice(1)).then(() => 0);
  if (group === "tasks" && command === "list") return tasksList(rest).then(() => 0);
  if (group === "tasks" && command === "link") return tasksLink(rest).then(() => 0);
  if (group === "tasks" && command === "answer") return tasksAnswer(rest).then(() => 0);
  if (group === "tasks" && command === "cancel") return tasksCancel(rest).then(() => 0);
  if (group === "engineering" && command === "start") return engineeringStart(rest);
  if (group === "change") return changeStart(argv.slice(1));
  if (group === "changes" && command === "list") return changesList(rest).then(() => 0);
  if (group === "changes" && command === "more") return changeMore(rest);
  if (group === "changes" && (command === "ship" || command === "discard")) return changeAnswer(command, rest).then(() => 0);
  if (group === "checkpoints") return checkpointsList(argv.slice(1)).then(() => 0);
  if (group === "logs") return logs(argv.slice(1)).then(() => 0);
  if (group === "undo") return undo(argv.slice(1));
  if (group === "deploy" && command === "start") return deployStart(rest);
  if (group === "deploy" && command === "rollback") return deployRollback(rest);
  if (group === "deploy" && command === "undeploy") return deployUndeploy(rest);
  if (group === "deploy" && command === "history") return deployHistory(rest).then(() => 0);
  if (group === "secrets" && command === "set") return secretsSet(rest).then(() => 0);
  if (group === "secrets" && command === "list") return secretsList(rest).then(() => 0);
  if ((group === "engineering" || group === "deploy" || group === "provision") && command === "status") return status(group, rest);
  if (group === "servers" && command === "list") return serversList(rest).then(() => 0);
  if (group === "servers" && command === "show") return serversShow(rest).then(() => 0);
  if (group === "keys" && command === "create") return keysCreate(rest, cli).then(() => 0);
  if (group === "keys" && command === "list") return keysList(rest, cli).then(() => 0);
  if (group === "keys" && command === "revoke") return keysRevoke(rest, cli).then(() => 0);
  if (group === "login") return login(argv.slice(1), cli).then(() => 0);
  if (group === "search") return searchCommand(argv.slice(1), cli).then(() => 0);
  if (group === "logout") {
    logout(argv.slice(1), cli);
    return 0;
  }
  usage(`unknown command: ${argv.join(" ")}`);
}

const controller = new AbortController();
process.on("SIGINT", () => controller.abort());

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof CliError) {
      process.stderr.write(`orchestrator: ${error.message}\n`);
      process.exit(error.exitCode);
    }
    if (error instanceof TypeError && "code" in error && String(error.code).startsWith("ERR_PARSE_ARGS")) {
      process.stderr.write(`orchestrator: ${error.message}\n\n${USAGE}\n`);
      process.exit(2);
    }
    process.stderr.write(`orchestrator: unexpected error: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(3);
  },
);
