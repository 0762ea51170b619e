/**
 * The ansible.playbook and provision executors: run a playbook shipped in config.ansible.playbookDir
 * against the machine the runner is on (`-i localhost, -c local`).
 *
 * - Variables go through a 0600 file in a private temp directory (never the command line or the
 *   environment), and every string in it is tagged `!unsafe`: payload values are data, so a job
 *   cannot run Jinja (`{{ lookup('pipe', …) }}`) through them, only what the playbooks themselves do.
 * - Output: the ansible.posix.jsonl stdout callback prints one JSON event per line as it happens, so
 *   each task is reported the moment it finishes, and the final stats give the outcome.
 * - Every secret value is masked before anything leaves this module.
 */
import { spawn } from "node:child_process";
import { access, constants, mkdir, mkdtemp, open, readdir, realpath, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir, userInfo } from "node:os";
import { basename, delimiter, isAbsolute, join, sep } from "node:path";
import type { JobPayload } from "../../../src/shared/job-payloads.ts";
import Docker from "dockerode";
import { DeployProjectVars, PlaybookName } from "../../../src/shared/playbooks.ts";
import type { RunnerConfig } from "../config.ts";
import type { EgressSession } from "../egress.ts";
import { ensureCacheVolumes, INSTALL_RECIPES, type RegistryAccess, registryAccess } from "../registries.ts";
import type { BotGateway } from "../bot-gateway.ts";
import type { Executor, ExecutorContext, ExecutorOutcome } from "./types.ts";
import { secretMasker } from "../mask.ts";

export { secretMasker };

/** Ships with Debian's `ansible` package (ansible.posix collection); ansible-core alone lacks it. */
export const STDOUT_CALLBACK = "ansible.posix.jsonl";
/** The name a job may give: a file directly in the playbook directory (same rule as the schema). */
const PLAYBOOK_NAME = /^[a-z0-9][a-z0-9_-]*\.ya?ml$/;
/** After SIGTERM, how long the playbook's processes get before SIGKILL. */
const KILL_GRACE_MS = 3000;
/** Caps on what goes into the outcome, which travels back in a signed message. */
const MAX_TASKS = 500;
const MAX_DETAIL = 1000;
const STDERR_TAIL = 40;

export type TaskStatus = "ok" | "changed" | "failed" | "skipped" | "unreachable";

export interface TaskResult {
  play: string;
  name: string;
  host: string;
  status: TaskStatus;
  /** Why it failed (or was unreachable), already masked. */
  detail?: string;
}

export interface HostStats {
  ok: number;
  changed: number;
  failed: number;
  unreachable: number;
  skipped: number;
  rescued: number;
  ignored: number;
}

export interface PlaybookRun {
  /** A file name in config.ansible.playbookDir. */
  playbook: string;
  extraVars: Record<string, unknown>;
  /** The job's secrets: the playbook reads them as `job_secrets.<name>`, so no name can shadow another variable. */
  secretVars: Record<string, string>;
  /** Set by the runner from its configuration, last: nothing a job sends can override them. */
  runnerVars?: Record<string, unknown>;
  check: boolean;
}

/**
 * Variables the runner sets from its own configuration, after the payload's: where a playbook may
 * write and as whom. The payload schemas have no such fields, so a job cannot move them.
 */
export function runnerVars(playbook: string, config: RunnerConfig): Record<string, unknown> {
  const owner = userInfo().username;
  switch (playbook) {
    case "write-env.yml":
      return { deployments_root: config.deploymentsRoot, deployments_owner: owner };
    case "deploy_project.yml":
      return { deployments_root: config.deploymentsRoot, deployments_owner: owner, release_port_from: config.releasePorts.from, release_port_to: config.releasePorts.to };
    case "provision.yml":
      return {
        runner_deployments_root: config.deploymentsRoot,
        runner_caddy_config: config.caddy.configPath,
        runner_caddy_admin_socket: config.caddy.adminSocket,
        runner_egress_proxy_port: config.docker.egress.proxyPort,
      };
    default:
      return {};
  }
}

export const ansiblePlaybook: Executor<JobPayload<"ansible.playbook">> = async (payload, context) => {
  // The payload passed its schema; this holds even if that check were bypassed.
  if (!PlaybookName.safeParse(payload.playbook).success) {
    return { ok: false, message: `playbook ${String(payload.playbook)}: not a playbook an ansible.playbook job may run (${PlaybookName.options.join(", ")})` };
  }
  // A release runs code a model wrote: it starts only once the firewall keeps it off the server and private networks.
  if (payload.playbook === "deploy_project.yml" && ["build", "start"].includes(String(payload.extraVars.operation))) {
    try {
      await context.egress.ensureFirewall();
    } catch (error) {
      return { ok: false, message: error instanceof Error ? error.message.replace("no egress container runs", "no release starts") : String(error) };
    }
  }
  const deploy = payload.playbook === "deploy_project.yml" ? DeployProjectVars.safeParse(payload.extraVars).data : undefined;
  const extraVars = deploy?.operation === "build" ? throughBotGateway(payload.extraVars, deploy.release, deploy.env_vars, context.botGateway) : payload.extraVars;
  if (deploy?.operation !== "build" || !deploy.install) {
    return runPlaybook(
      { playbook: payload.playbook, extraVars, secretVars: payload.secretVars, runnerVars: runnerVars(payload.playbook, context.config), check: payload.check },
      context,
    );
  }
  // The release's dependencies install on a network of the job's own, through the egress proxy to the
  // registry named, and nowhere else; the network and its proxy last as long as the play.
  const { image, registry, cache_scope: cacheScope } = deploy.install;
  const access = registryAccess([registry], context.config.registries, cacheScope);
  let session: EgressSession;
  try {
    const docker = new Docker({ socketPath: context.config.docker.socketPath });
    [session] = await Promise.all([
      context.egress.open(context.jobId, access.egress, (target) => context.log(`egress refused: ${target} is not the install's registry`, "system")),
      ensureCacheVolumes(docker, access.volumes),
    ]);
  } catch (error) {
    return { ok: false, message: `could not set up the dependencies' install: ${error instanceof Error ? error.message : String(error)}` };
  }
  try {
    return await runPlaybook(
      {
        playbook: payload.playbook,
        extraVars,
        secretVars: payload.secretVars,
        runnerVars: {
          ...runnerVars(payload.playbook, context.config),
          install_docker_args: installDockerArgs(image, INSTALL_RECIPES[registry].command, access, session),
          install_files: INSTALL_RECIPES[registry].files,
          install_output: INSTALL_RECIPES[registry].output,
          install_optional: INSTALL_RECIPES[registry].optional ?? false,
        },
        check: payload.check,
      },
      context,
    );
  } finally {
    await session.close();
  }
};

/**
 * A bot release's variables with its Bot API (TELEGRAM_API_URL) reached through the runner's gateway,
 * which passes its calls on to that API and lets the deploy's checks talk to the bot. The release keeps
 * that address for its life, rollbacks included (the env file is written once, at the build).
 */
function throughBotGateway(extraVars: Record<string, unknown>, release: string, envVars: Record<string, string>, gateway: BotGateway | null): Record<string, unknown> {
  const api = envVars.TELEGRAM_API_URL;
  if (!gateway || !api) return extraVars;
  return { ...extraVars, env_vars: { ...envVars, TELEGRAM_API_URL: gateway.apiRoot(release, api) } };
}

/**
 * The `docker run` arguments of a release's dependency install that come from the runner: the job's
 * network and DNS, the registries' settings and the proxy's, the package caches, the image and the
 * command. The play adds the rest (the user, no capabilities, limits, the files it installs for).
 */
function installDockerArgs(image: string, command: readonly string[], access: RegistryAccess, session: EgressSession): string[] {
  const env = { ...access.env, ...session.env };
  return [
    "--network",
    session.network,
    ...session.dns.flatMap((server) => ["--dns", server]),
    ...Object.entries(env).flatMap(([name, value]) => ["--env", `${name}=${value}`]),
    ...access.binds.flatMap((bind) => ["--volume", bind]),
    image,
    ...command,
  ];
}

export const provision: Executor<JobPayload<"provision">> = (payload, context) =>
  runPlaybook({ playbook: "provision.yml", extraVars: payload.extraVars, secretVars: {}, runnerVars: runnerVars("provision.yml", context.config), check: payload.check }, context);

/** The ansible-playbook arguments: the variables file is the only way variables get in. */
export function ansibleArgs(options: { playbookPath: string; varsFile: string; check: boolean }): string[] {
  return ["-i", "localhost,", "-c", "local", "--extra-vars", `@${options.varsFile}`, ...(options.check ? ["--check"] : []), options.playbookPath];
}

/**
 * The whole environment ansible-playbook gets: nothing of the runner's own environment but PATH and
 * proxy settings, a private HOME and temp directories (removed afterwards), machine-readable output.
 */
export function ansibleEnv(workDir: string, parent: NodeJS.ProcessEnv = process.env, python?: string): Record<string, string> {
  const env: Record<string, string> = {
    PATH: parent.PATH ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    // Ansible refuses to run under a locale that is not UTF-8.
    LANG: "C.UTF-8",
    LC_ALL: "C.UTF-8",
    HOME: join(workDir, "home"),
    TMPDIR: join(workDir, "tmp"),
    ANSIBLE_LOCAL_TEMP: join(workDir, "tmp"),
    ANSIBLE_REMOTE_TEMP: join(workDir, "remote-tmp"),
    ANSIBLE_STDOUT_CALLBACK: STDOUT_CALLBACK,
    // set_stats data comes back in the final stats event (facts.yml reports through it).
    ANSIBLE_SHOW_CUSTOM_STATS: "1",
    ANSIBLE_NOCOLOR: "1",
    ANSIBLE_FORCE_COLOR: "0",
    ANSIBLE_RETRY_FILES_ENABLED: "0",
    // Modules run on this machine (a local connection): with the Python that runs ansible-playbook
    // itself, found once by the runner, there is nothing to discover (discovery costs every playbook
    // run ~0.3 CPU-s). Without it, discovery, silent (`localhost` named in the inventory warns otherwise).
    ANSIBLE_PYTHON_INTERPRETER: python ?? "auto_silent",
    PYTHONUNBUFFERED: "1",
  };
  for (const name of ["http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"]) {
    const value = parent[name];
    if (value) env[name] = value;
  }
  return env;
}

const pythons = new Map<string, Promise<string | undefined>>();

/**
 * The Python interpreter ansible-playbook runs under: the absolute path in its `#!` line, if that is a
 * python3 that exists (Debian's package: /usr/bin/python3). Undefined for `#!/usr/bin/env python3`
 * or anything else it cannot be sure of: Ansible then discovers the interpreter itself.
 */
export function playbookPython(binary: string, path = process.env.PATH ?? ""): Promise<string | undefined> {
  const key = `${binary}\0${path}`;
  let found = pythons.get(key);
  if (!found) {
    found = shebangPython(binary, path).catch(() => undefined);
    pythons.set(key, found);
  }
  return found;
}

async function shebangPython(binary: string, path: string): Promise<string | undefined> {
  const candidates = isAbsolute(binary) ? [binary] : binary.includes("/") ? [] : path.split(delimiter).filter(isAbsolute).map((dir) => join(dir, binary));
  for (const candidate of candidates) {
    let head: string;
    try {
      const file = await open(candidate, "r");
      try {
        const { buffer, bytesRead } = await file.read(Buffer.alloc(256), 0, 256, 0);
        head = buffer.subarray(0, bytesRead).toString("utf8");
      } finally {
        await file.close();
      }
    } catch {
      continue;
    }
    const interpreter = /^#!\s*(\S+)\s*(?:\n|$)/.exec(head)?.[1];
    if (!interpreter || !isAbsolute(interpreter) || !/^python3(\.\d+)?$/.test(basename(interpreter))) return undefined;
    await access(interpreter, constants.X_OK);
    return interpreter;
  }
  return undefined;
}

/**
 * The variables file: YAML in JSON's flow style, with every string (keys included) tagged `!unsafe`
 * so Ansible never templates it. JSON string escapes are valid in YAML double-quoted scalars.
 */
export function varsFileContent(vars: Record<string, unknown>): string {
  const emit = (value: unknown): string => {
    if (typeof value === "string") return `!unsafe ${JSON.stringify(value)}`;
    if (typeof value === "number") return Number.isFinite(value) ? String(value) : "null";
    if (typeof value === "boolean") return value ? "true" : "false";
    if (value === null || value === undefined) return "null";
    if (Array.isArray(value)) return `[${value.map(emit).join(", ")}]`;
    if (typeof value === "object") {
      return `{${Object.entries(value).map(([key, item]) => `${emit(key)}: ${emit(item)}`).join(", ")}}`;
    }
    throw new TypeError(`cannot pass a ${typeof value} to Ansible`);
  };
  return `${emit(vars)}\n`;
}

export class PlaybookNotFound extends Error {
  readonly available: string[];
  constructor(message: string, available: string[]) {
    super(message);
    this.available = available;
  }
}

/** The playbooks a job may name, sorted. */
export async function listPlaybooks(playbookDir: string): Promise<string[]> {
  const entries = await readdir(playbookDir, { withFileTypes: true }).catch(() => []);
  return entries.filter((entry) => entry.isFile() && PLAYBOOK_NAME.test(entry.name)).map((entry) => entry.name).sort();
}

/**
 * The real path of a playbook, which must be a file directly inside the playbook directory (a
 * symlink pointing elsewhere is refused too). Throws PlaybookNotFound with the available ones.
 */
export async function resolvePlaybook(playbookDir: string, name: string): Promise<string> {
  const available = await listPlaybooks(playbookDir);
  const refuse = (why: string) =>
    new PlaybookNotFound(`${why}; available playbooks in ${playbookDir}: ${available.join(", ") || "(none)"}`, available);
  if (!PLAYBOOK_NAME.test(name)) throw refuse(`"${name}" is not a playbook file name`);
  let root: string;
  try {
    root = await realpath(playbookDir);
  } catch {
    throw refuse(`the playbook directory does not exist`);
  }
  let path: string;
  try {
    path = await realpath(join(root, name));
  } catch {
    throw refuse(`no playbook "${name}"`);
  }
  if (!path.startsWith(root + sep) || path.slice(root.length + 1).includes(sep)) {
    throw refuse(`"${name}" leads outside the playbook directory`);
  }
  if (!(await stat(path)).isFile()) throw refuse(`"${name}" is not a file`);
  return path;
}

export async function runPlaybook(run: PlaybookRun, context: ExecutorContext): Promise<ExecutorOutcome> {
  const mask = secretMasker(Object.values(run.secretVars));
  const label = `playbook ${run.playbook}`;
  let playbookPath: string;
  try {
    playbookPath = await resolvePlaybook(context.config.ansible.playbookDir, run.playbook);
  } catch (error) {
    if (!(error instanceof PlaybookNotFound)) throw error;
    return { ok: false, message: `${label}: ${mask(error.message)}`, data: { available: error.available } };
  }
  if (context.signal.aborted) return { ok: false, message: `${label}: not started (${String(context.signal.reason)})` };

  // mkdtemp makes the directory 0700: the vars file, HOME and Ansible's temp files stay private.
  const workDir = await mkdtemp(join(tmpdir(), "orchestrator-ansible-"));
  try {
    for (const dir of ["home", "tmp", "remote-tmp"]) await mkdir(join(workDir, dir), { mode: 0o700 });
    const varsFile = join(workDir, "vars.yml");
    // The runner's variables last, so they win over anything of the job's; secrets in their own mapping.
    await writeFile(varsFile, varsFileContent({ ...run.extraVars, job_secrets: run.secretVars, ...run.runnerVars }), { mode: 0o600 });
    const report = new Report(run, context, mask);
    const result = await spawnPlaybook(
      context.config.ansible.binary,
      ansibleArgs({ playbookPath, varsFile, check: run.check }),
      { cwd: workDir, env: ansibleEnv(workDir, process.env, await playbookPython(context.config.ansible.binary)) },
      context.signal,
      report,
    );
    return report.outcome(label, result);
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

interface ProcessResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** Could not start at all (binary missing, …). */
  spawnError?: Error;
  aborted: boolean;
}

/** Runs ansible-playbook in its own process group, feeding its output lines to the report. */
function spawnPlaybook(
  binary: string,
  args: string[],
  options: { cwd: string; env: Record<string, string> },
  signal: AbortSignal,
  report: Report,
): Promise<ProcessResult> {
  return new Promise((resolve) => {
    // detached: its own process group (and session, so no terminal for `pause` to prompt on), which
    // lets an abort reach the module processes Ansible forks too.
    const child = spawn(binary, args, { ...options, detached: true, stdio: ["ignore", "pipe", "pipe"] });
    let settled = false;
    let aborted = false;
    let killTimer: NodeJS.Timeout | undefined;
    let deadline: NodeJS.Timeout | undefined;

    const finish = (result: Omit<ProcessResult, "aborted">) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener("abort", onAbort);
      clearTimeout(killTimer);
      clearTimeout(deadline);
      // ansible-playbook is gone, but a module process that ignored SIGTERM may not be.
      if (aborted) killGroup("SIGKILL");
      resolve({ ...result, aborted });
    };
    const killGroup = (name: NodeJS.Signals) => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, name);
      } catch {
        // The group is gone already.
      }
    };
    const onAbort = () => {
      aborted = true;
      killGroup("SIGTERM");
      killTimer = setTimeout(() => killGroup("SIGKILL"), KILL_GRACE_MS);
      // Return promptly even if some process that escaped the group still holds the pipes open.
      deadline = setTimeout(() => finish({ exitCode: child.exitCode, signal: child.signalCode }), KILL_GRACE_MS + 1000);
    };

    // Nothing is reported once the outcome is settled (after an abort's deadline).
    splitLines(child.stdout, (line) => settled || report.stdoutLine(line));
    splitLines(child.stderr, (line) => settled || report.stderrLine(line));
    child.on("error", (error) => finish({ exitCode: null, signal: null, spawnError: error }));
    child.on("close", (exitCode, exitSignal) => finish({ exitCode, signal: exitSignal }));
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
  });
}

function splitLines(stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
  let pending = "";
  stream.setEncoding("utf8");
  stream.on("data", (chunk: string) => {
    const lines = (pending + chunk).split("\n");
    pending = lines.pop() ?? "";
    for (const line of lines) onLine(line.replace(/\r$/, ""));
  });
  stream.on("end", () => {
    if (pending) onLine(pending);
    pending = "";
  });
}

/** One jsonl event as ansible.posix.jsonl writes it (only the fields used here). */
interface JsonlEvent {
  _event: string;
  play?: { name?: string };
  task?: { name?: string };
  hosts?: Record<string, Record<string, unknown>>;
  stats?: Record<string, Record<string, number>>;
  custom_stats?: Record<string, unknown>;
  global_custom_stats?: Record<string, unknown>;
}

/** Turns ansible-playbook's output into live reports and the outcome, masking every secret. */
class Report {
  private readonly run: PlaybookRun;
  private readonly context: ExecutorContext;
  private readonly mask: (text: string) => string;
  private play = "";
  private readonly tasks: TaskResult[] = [];
  private tasksDropped = 0;
  private readonly failures: TaskResult[] = [];
  private stats: Record<string, HostStats> | undefined;
  private customStats: Record<string, unknown> = {};
  private readonly stderrTail: string[] = [];

  constructor(run: PlaybookRun, context: ExecutorContext, mask: (text: string) => string) {
    this.run = run;
    this.context = context;
    this.mask = mask;
  }

  stdoutLine(line: string): void {
    const event = line.startsWith("{") ? parseEvent(line) : undefined;
    if (event) this.onEvent(event);
    else if (line.trim()) this.context.log(this.mask(line), "stdout");
  }

  stderrLine(line: string): void {
    const masked = this.mask(line);
    this.stderrTail.push(masked);
    if (this.stderrTail.length > STDERR_TAIL) this.stderrTail.shift();
    this.context.log(masked, "stderr");
  }

  private onEvent(event: JsonlEvent): void {
    switch (event._event) {
      case "v2_playbook_on_play_start":
        this.play = this.mask(event.play?.name ?? "");
        this.context.log(`PLAY [${this.play}]`, "system");
        return;
      case "v2_playbook_on_task_start":
      case "v2_playbook_on_handler_task_start":
      case "v2_runner_on_start":
        this.context.log(`TASK [${this.play} / ${this.mask(event.task?.name ?? "")}]`, "system");
        return;
      case "v2_runner_on_ok":
      case "v2_runner_on_failed":
      case "v2_runner_on_skipped":
      case "v2_runner_on_unreachable":
        this.onTaskResult(event);
        return;
      case "v2_playbook_on_stats":
        this.stats = Object.fromEntries(Object.entries(event.stats ?? {}).map(([host, s]) => [this.mask(host), hostStats(s)]));
        this.customStats = maskDeep({ ...event.custom_stats, ...event.global_custom_stats }, this.mask);
        return;
    }
  }

  private onTaskResult(event: JsonlEvent): void {
    const name = this.mask(event.task?.name ?? "");
    for (const [host, result] of Object.entries(event.hosts ?? {})) {
      const status: TaskStatus =
        event._event === "v2_runner_on_unreachable"
          ? "unreachable"
          : event._event === "v2_runner_on_failed"
            ? "failed"
            : event._event === "v2_runner_on_skipped"
              ? "skipped"
              : result.changed === true
                ? "changed"
                : "ok";
      const task: TaskResult = { play: this.play, name, host: this.mask(host), status };
      if (status === "failed" || status === "unreachable") {
        task.detail = truncate(this.mask(failureDetail(result)), MAX_DETAIL);
        this.failures.push(task);
        for (const stream of ["stdout", "stderr"] as const) {
          for (const line of outputLines(result, stream)) this.context.log(this.mask(line), stream);
        }
      } else if (status === "ok" && isDebug(result)) {
        // What a playbook says to its reader (provision.yml's notes, say), as Ansible would print it.
        for (const line of debugLines(result)) this.context.log(this.mask(line), "stdout");
      }
      if (this.tasks.length < MAX_TASKS) this.tasks.push(task);
      else this.tasksDropped++;
      const where = task.host === "localhost" ? "" : ` (${task.host})`;
      this.context.progress("task", `${this.play} / ${name}${where}: ${status}${task.detail ? `: ${task.detail}` : ""}`, {
        play: this.play,
        task: name,
        host: task.host,
        status,
        check: this.run.check,
      });
    }
  }

  outcome(label: string, result: ProcessResult): ExecutorOutcome {
    const exitCode = result.exitCode ?? undefined;
    const data: Record<string, unknown> = {
      playbook: this.run.playbook,
      check: this.run.check,
      stats: this.stats ?? {},
      tasks: this.tasks,
      ...(this.tasksDropped ? { tasksDropped: this.tasksDropped } : {}),
      ...(Object.keys(this.customStats).length ? { customStats: this.customStats } : {}),
    };
    if (result.spawnError) {
      const missing = (result.spawnError as NodeJS.ErrnoException).code === "ENOENT";
      return {
        ok: false,
        message: missing
          ? `${label}: ${this.context.config.ansible.binary} not found; install Debian's ansible package (or set ansible.binary in the runner config)`
          : `${label}: could not start ${this.context.config.ansible.binary}: ${this.mask(result.spawnError.message)}`,
        data,
      };
    }
    if (result.aborted) {
      return { ok: false, message: `${label}: stopped (${String(this.context.signal.reason)}) after ${this.tasks.length} tasks`, exitCode, data };
    }
    if (!this.stats) {
      return { ok: false, message: `${label}: ${this.ansibleError(result)}`, exitCode, data };
    }
    const total = sumStats(Object.values(this.stats));
    const counts =
      `ok=${total.ok} changed=${total.changed} failed=${total.failed}` +
      (total.unreachable ? ` unreachable=${total.unreachable}` : "") +
      (total.skipped ? ` skipped=${total.skipped}` : "");
    const ok = result.exitCode === 0 && total.failed === 0 && total.unreachable === 0;
    // A failure rescued or ignored by the playbook is not the reason it failed.
    const failure = ok ? undefined : this.failures.at(-1);
    const why = failure ? `; ${failure.status}: ${failure.name}${failure.detail ? `: ${failure.detail}` : ""}` : "";
    const exit = !ok && !failure && result.exitCode !== 0 ? `; ${this.ansibleError(result)}` : "";
    return { ok, message: `${label}${this.run.check ? " (check mode)" : ""}: ${counts}${why}${exit}`, exitCode, data };
  }

  /** What ansible-playbook said when it failed without running the play (syntax, missing callback…). */
  private ansibleError(result: ProcessResult): string {
    const how = result.signal ? `killed by ${result.signal}` : `exited with code ${String(result.exitCode)}`;
    const error = this.stderrTail.find((line) => line.startsWith("ERROR!")) ?? this.stderrTail.findLast((line) => line.trim() !== "");
    const hint = this.stderrTail.some((line) => line.includes("Invalid callback for stdout"))
      ? ` (the ${STDOUT_CALLBACK} callback comes with Debian's ansible package, not ansible-core alone)`
      : "";
    return `ansible-playbook ${how}${error ? `: ${error}` : ""}${hint}`;
  }
}

function parseEvent(line: string): JsonlEvent | undefined {
  try {
    const value: unknown = JSON.parse(line);
    if (value && typeof value === "object" && typeof (value as { _event?: unknown })._event === "string") return value as JsonlEvent;
  } catch {
    // Not an event: a plain line of output.
  }
  return undefined;
}

function hostStats(raw: Record<string, number>): HostStats {
  const n = (key: string) => (typeof raw[key] === "number" ? raw[key] : 0);
  return {
    ok: n("ok"),
    changed: n("changed"),
    failed: n("failures"),
    unreachable: n("unreachable"),
    skipped: n("skipped"),
    rescued: n("rescued"),
    ignored: n("ignored"),
  };
}

function sumStats(all: HostStats[]): HostStats {
  const total: HostStats = { ok: 0, changed: 0, failed: 0, unreachable: 0, skipped: 0, rescued: 0, ignored: 0 };
  for (const stats of all) for (const key of Object.keys(total) as (keyof HostStats)[]) total[key] += stats[key];
  return total;
}

/** A failed result's message, with the first failed loop item's and a command's stderr. */
function failureDetail(result: Record<string, unknown>): string {
  const item = Array.isArray(result.results)
    ? (result.results as unknown[]).find((r): r is Record<string, unknown> => !!r && typeof r === "object" && (r as { failed?: unknown }).failed === true)
    : undefined;
  const source = item ?? result;
  const parts = [source.msg, source.stderr].filter((part): part is string => typeof part === "string" && part.trim() !== "");
  if (parts.length === 0 && typeof result.msg === "string") parts.push(result.msg);
  if (parts.length === 0 && typeof result.censored === "string") parts.push(result.censored);
  return parts.join(": ").replace(/\s+/g, " ").trim();
}

/** A failed command's own output, for the log. */
function outputLines(result: Record<string, unknown>, stream: "stdout" | "stderr"): string[] {
  const lines = result[`${stream}_lines`];
  return Array.isArray(lines) ? lines.filter((line): line is string => typeof line === "string").slice(-50) : [];
}

function isDebug(result: Record<string, unknown>): boolean {
  return result.action === "ansible.builtin.debug" || result.action === "debug";
}

function debugLines(result: Record<string, unknown>): string[] {
  const { msg } = result;
  if (msg === undefined) return [];
  const items = Array.isArray(msg) ? (msg as unknown[]) : [msg];
  return items
    .flatMap((item) => (typeof item === "string" ? item.split("\n") : [JSON.stringify(item)]))
    .slice(0, 50);
}

function maskDeep<T>(value: T, mask: (text: string) => string): T {
  if (typeof value === "string") return mask(value) as T;
  if (Array.isArray(value)) return value.map((item: unknown) => maskDeep(item, mask)) as T;
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [mask(key), maskDeep(item, mask)])) as T;
  }
  return value;
}

function truncate(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}
