/**
 * The whole local factory, as `npm run dev` runs it (and the demo and the end-to-end tests, with
 * their own ports and state): embedded Postgres and the WebSocket proxy the Neon driver needs, the
 * migrations, the stand-ins for what .dev.vars does not name (standins/: the scripted model, the
 * GitHub stand-in as the git host, the Telegram Bot API), `wrangler dev`, and a runner on this
 * machine (enrolled on first start) with the local Docker, Ansible, docker compose and a Caddy that
 * serves `<project>.localhost` on a local port.
 *
 * What the machine lacks (Docker, Caddy, Ansible, compose) is named with the command that installs
 * it, and the rest still starts: without Docker there is no runner, so builds and deploys wait.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import Docker from "dockerode";
import { RUNNER_BIN } from "./local-runner.ts";
import { ROOT, stackClient, WRANGLER } from "./local-stack.ts";
import { prebuiltWorkerArgs } from "./worker-bundle.ts";
import { startCaddy, type TestCaddy } from "./caddy.ts";
import { type DevStandins, offerTelegramToReleases, startDevStandins } from "./dev-standins.ts";
import { LOCAL_BOT_GATEWAY, LOCAL_RELEASE_TARGETS } from "./standins-network.ts";
import { generateDevVars, isLocalDatabase, newJobSigningKey, readDevVars, writeDevVars } from "./dev-vars.ts";
import { DEFAULT_DOCKER_SOCKET, ensureDockerEngine } from "./docker-engine.ts";
import { buildCodingWorker, ensureDebianBase, ensureNodeBase, ensureReleaseBase, ensureTemplateBase } from "./images.ts";
import { startDatabaseServer } from "./local-db.ts";
import { runMigrations } from "./migrate.ts";
import { freePort } from "./ports.ts";
import { type Spawned, spawnCollecting, waitFor } from "./processes.ts";
import { startRelayForwarder } from "./relay-forward.ts";

const run = promisify(execFile);
/** Secrets wrangler reads from its environment; everything else the stand-ins set goes in as --var. */
const SECRET_VARS = new Set(["OPENAI_API_KEY", "GITHUB_APP_PRIVATE_KEY", "TELEGRAM_BOT_TOKEN", "TELEGRAM_WEBHOOK_SECRET"]);
const INSTALL_ALL = "bash scripts/install-system-deps.sh";

export interface FactoryOptions {
  stateDir: string;
  varsFile: string;
  port: number;
  pgPort: number;
  proxyPort: number;
  /** Caddy's plain-HTTP port: deployed projects answer there for `Host: <project>.localhost`. */
  caddyPort: number;
  /** The stand-ins' ports (0: any free one). */
  standinPorts?: { model?: number; github?: number; telegram?: number; npm?: number; pypi?: number };
  /** The local runner's server handle. */
  handle?: string;
  /** The runner's release ports (its default otherwise). */
  releasePorts?: { from: number; to: number };
  /** More worker variables (the tests' shorter drains and leases). */
  vars?: Record<string, string>;
  /** Where wrangler's and the runner's output goes: this terminal, or kept for `output()` (tests). */
  echo: boolean;
  /**
   * Run the worker bundled once for these sources (scripts/lib/worker-bundle.ts) instead of bundling
   * it at start and on every edit: for tests, which edit nothing.
   */
  prebuiltWorker?: boolean;
  say: (line: string) => void;
}

export interface ManagedProcess {
  output(): string;
  /** SIGTERM (SIGKILL after a while) and wait. */
  stop(): Promise<void>;
  /** SIGKILL: no goodbye. */
  kill(): Promise<void>;
  /** Starts it again as it was started, and waits until it is ready. */
  start(): Promise<void>;
  running(): boolean;
  /** Resolves when it exits without being told to. */
  crashed: Promise<number | null>;
}

export interface Factory {
  url: string;
  adminKey: string;
  consoleUrl: string;
  /** Caddy's listener, or null without Caddy. */
  caddyUrl: string | null;
  handle: string;
  standins: DevStandins;
  wrangler: ManagedProcess;
  /** The local runner, or null without Docker. */
  runner: ManagedProcess | null;
  /** What the machine lacks, each with how to install it. */
  missing: string[];
  /** Whether the model is the scripted stand-in. */
  scriptedModel: boolean;
  api<T = unknown>(path: string, init?: { method?: string; json?: unknown; key?: string }): Promise<{ status: number; body: T }>;
  stop(): Promise<void>;
}

/** The secrets of .dev.vars, written fresh on first run. */
function devVars(options: FactoryOptions): Record<string, string> {
  let vars = readDevVars(options.varsFile);
  if (!vars.DATABASE_URL || !vars.ADMIN_API_KEY || !vars.SECRETS_ENCRYPTION_KEY) {
    if (existsSync(options.varsFile)) throw new Error(`${options.varsFile} exists but lacks DATABASE_URL, ADMIN_API_KEY or SECRETS_ENCRYPTION_KEY; fix or delete it`);
    const fresh = generateDevVars(options.pgPort);
    writeDevVars(options.varsFile, fresh);
    options.say(`wrote ${options.varsFile} with fresh local secrets (shown this once):`);
    options.say(`  ADMIN_API_KEY=${fresh.ADMIN_API_KEY}`);
    return { ...fresh };
  }
  options.say(`using ${options.varsFile} (your admin key is its ADMIN_API_KEY)`);
  if (!vars.JOB_SIGNING_KEY) {
    // Added after the first release of .dev.vars: older files get a key instead of an error.
    vars = { ...vars, JOB_SIGNING_KEY: newJobSigningKey() };
    writeDevVars(options.varsFile, vars);
    options.say(`added a JOB_SIGNING_KEY to ${options.varsFile}`);
  }
  return vars;
}

async function works(command: string, args: string[]): Promise<boolean> {
  return run(command, args).then(
    () => true,
    () => false,
  );
}

/** A child process that can be stopped, killed and started again with the same command. */
function managed(launch: () => Spawned, ready: (spawned: Spawned) => Promise<unknown>, echo: boolean): ManagedProcess & { first: Promise<void> } {
  let current: Spawned | null = null;
  let earlier = "";
  let told = false;
  let crash: (code: number | null) => void = () => undefined;
  const crashed = new Promise<number | null>((resolve) => (crash = resolve));
  const alive = () => current !== null && current.child.exitCode === null && current.child.signalCode === null;
  const start = async () => {
    const spawned = launch();
    current = spawned;
    told = false;
    if (echo) {
      spawned.child.stdout?.pipe(process.stdout);
      spawned.child.stderr?.pipe(process.stderr);
    }
    void spawned.exited.then((code) => {
      if (current === spawned && !told) crash(code);
    });
    await ready(spawned);
  };
  const end = async (signal: NodeJS.Signals) => {
    const spawned = current;
    if (!spawned) return;
    told = true;
    if (alive()) {
      spawned.child.kill(signal);
      const stopped = await Promise.race([spawned.exited.then(() => true), new Promise<false>((resolve) => setTimeout(() => resolve(false), 15_000))]);
      if (!stopped) {
        spawned.child.kill("SIGKILL");
        await spawned.exited;
      }
    }
    earlier += spawned.output();
    current = null;
  };
  return {
    first: start(),
    start,
    stop: () => end("SIGTERM"),
    kill: () => end("SIGKILL"),
    running: alive,
    output: () => earlier + (current?.output() ?? ""),
    crashed,
  };
}

export async function startFactory(options: FactoryOptions): Promise<Factory> {
  const { say } = options;
  const stops: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
    stops.length = 0;
  };
  try {
    mkdirSync(options.stateDir, { recursive: true });
    const fileVars = devVars(options);
    // A model named in the environment wins over .dev.vars: OPENAI_API_KEY=… npm run dev.
    const vars = { ...fileVars, ...pick(process.env, ["OPENAI_API_KEY", "OPENAI_BASE_URL"]) };
    const databaseUrl = vars.DATABASE_URL ?? "";
    const adminKey = vars.ADMIN_API_KEY ?? "";

    let wsProxy = "";
    // Migrations go to Postgres itself, not through a pooler (as Neon advises for its pooled endpoint).
    let migrationUrl = databaseUrl;
    if (isLocalDatabase(databaseUrl)) {
      const url = new URL(databaseUrl);
      const started = Date.now();
      const server = await startDatabaseServer({
        stateDir: options.stateDir,
        port: Number(url.port || 5432),
        proxyPort: options.proxyPort,
        database: url.pathname.slice(1),
        password: decodeURIComponent(url.password),
        log: (chunk) => {
          for (const line of chunk.split("\n")) {
            // Its own shutdown ends the connections with a FATAL: that one is expected.
            if (/FATAL|PANIC|ERROR/.test(line) && !/already exists|terminating connection due to administrator command/.test(line)) say(`postgres: ${line}`);
          }
        },
      });
      stops.push(() => server.stop());
      wsProxy = server.wsProxy;
      migrationUrl = server.directUrl;
      say(
        `postgres on ${new URL(server.directUrl).host} (data in ${join(options.stateDir, "postgres")}), ` +
          (server.pooled
            ? `pooled by pgbouncer on ${url.host}`
            : `no pooler (pgbouncer is not installed: every request opens a connection of its own; \`sudo apt-get install -y pgbouncer\`)`) +
          `, ready in ${Date.now() - started} ms`,
      );
    } else {
      say("DATABASE_URL is not local: using it directly (Neon), no embedded Postgres");
    }
    await runMigrations(migrationUrl, wsProxy || undefined);
    say("migrations applied");

    const url = `http://127.0.0.1:${options.port}`;
    // Job containers reach the model only through the worker's relay, offered to them on 127.0.0.2.
    const relay = await startRelayForwarder(options.port);
    stops.push(() => relay.close());
    const standins = await startDevStandins({ vars, stateDir: options.stateDir, workerUrl: url, say, ports: options.standinPorts });
    stops.push(() => standins.stop());
    const scriptedModel = Boolean(standins.model);
    if (scriptedModel) say("model: none configured, so the SCRIPTED stand-in answers (canned replies, labelled [scripted model]; not AI). For a real one: OPENAI_API_KEY=sk-… npm run dev (OPENAI_BASE_URL for any OpenAI-compatible server, e.g. http://127.0.0.1:11434/v1 for Ollama)");
    else say(`model: ${vars.OPENAI_BASE_URL ?? "https://api.openai.com/v1"} with your OPENAI_API_KEY`);

    // ---- what the runner needs from this machine ----
    const missing: string[] = [];
    const socketPath = process.env.DOCKER_SOCKET ?? DEFAULT_DOCKER_SOCKET;
    let docker: Docker | null = null;
    try {
      const engine = process.env.DOCKER_SOCKET ? { socketPath, started: false, stop: () => Promise.resolve() } : await ensureDockerEngine();
      if (engine.started) {
        say(`docker: started dockerd (no engine answered on ${engine.socketPath}); it stops with the factory`);
        stops.push(() => engine.stop());
      }
      docker = new Docker({ socketPath: engine.socketPath });
      await docker.ping();
    } catch (error) {
      docker = null;
      missing.push(`Docker (${error instanceof Error ? error.message : String(error)}; install it with \`sudo apt-get install -y docker.io\` or \`${INSTALL_ALL}\`): without it there is no runner, so builds and deploys wait`);
    }
    if (docker && !(await works("docker", ["compose", "version"]))) missing.push(`docker compose v2 (\`${INSTALL_ALL}\`): deploys fail without it`);
    if (!(await works("ansible-playbook", ["--version"]))) missing.push(`Ansible (\`sudo apt-get install -y ansible\`): deploys fail without it`);
    const hasCaddy = await works(process.env.CADDY_BINARY ?? "caddy", ["version"]);
    if (!hasCaddy) missing.push(`Caddy (\`sudo apt-get install -y caddy\`): deploys cannot route to projects without it`);

    let codingWorker = "";
    if (docker) {
      try {
        say("checking the job images (built offline from Debian's packages when missing: a few minutes the first time)…");
        const base = await ensureDebianBase(docker);
        const node = await ensureNodeBase(docker);
        codingWorker = await buildCodingWorker(docker, { base, preinstalled: true });
        await ensureReleaseBase(docker);
        const template = await ensureTemplateBase(docker);
        const standIns = [template, node].filter((image) => image.built).map((image) => image.tag);
        say(`images: ${codingWorker}${standIns.length ? `; ${standIns.join(" and ")} made here from the local Debian base (and node_modules' node and npm), since nothing can be pulled` : ""}`);
      } catch (error) {
        missing.push(`the job images (${error instanceof Error ? error.message : String(error)}; \`${INSTALL_ALL}\` installs debootstrap)`);
        docker = null;
      }
    }

    // The projects' bots reach the Telegram stand-in on an address the runner lets releases through to.
    const releaseTelegram = docker && standins.telegram ? await offerTelegramToReleases(docker, standins.telegram) : null;
    if (releaseTelegram) say(`telegram: the projects' bots reach the stand-in at ${releaseTelegram}`);

    // ---- wrangler dev ----
    const inspectorPort = await freePort();
    const wranglerArgs = [
      WRANGLER, "dev",
      ...(options.prebuiltWorker ? await prebuiltWorkerArgs(ROOT, WRANGLER) : []),
      "--port", String(options.port),
      "--inspector-port", String(inspectorPort),
      "--ip", "127.0.0.1",
      "--persist-to", join(options.stateDir, "wrangler"),
      "--var", `DB_WS_PROXY:${wsProxy}`,
      // The chat's links to the live task view.
      "--var", `PUBLIC_URL:${vars.PUBLIC_URL || url}`,
      "--var", `MODEL_RELAY_URL:${vars.MODEL_RELAY_URL || relay.url}`,
      "--show-interactive-dev-session=false",
      ...varArgs({ ...(codingWorker ? { CODING_WORKER_IMAGE: codingWorker } : {}), ...(releaseTelegram ? { RELEASE_TELEGRAM_API_URL: releaseTelegram } : {}), ...standins.vars, ...options.vars }),
    ];
    // The worker's secrets: .dev.vars, a model named in the environment, the stand-ins' keys. In a file
    // of their own (0600), not on the command line, where any process could read them.
    const secrets = { ...fileVars, ...pick(vars, ["OPENAI_API_KEY", "OPENAI_BASE_URL"]), ...Object.fromEntries(Object.entries(standins.vars).filter(([name]) => SECRET_VARS.has(name))) };
    const envFile = join(options.stateDir, "worker.env");
    writeFileSync(envFile, `${Object.entries(secrets).map(([key, value]) => (value.includes("\n") ? `${key}="${value.replaceAll("\n", "\\n")}"` : `${key}=${value}`)).join("\n")}\n`, { mode: 0o600 });
    wranglerArgs.push("--env-file", envFile);
    const wrangler = managed(
      () => spawnCollecting(process.execPath, wranglerArgs, { cwd: ROOT, env: { ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false" } }),
      (spawned) =>
        waitFor(
          async () => ((await fetch(`${url}/healthz`)).status === 200 ? true : undefined),
          90_000,
          () => `wrangler dev did not answer on ${url}/healthz:\n${spawned.output().slice(-3000)}`,
          () => spawned.child.exitCode !== null,
        ),
      options.echo,
    );
    stops.push(() => wrangler.stop());
    say(`starting wrangler dev on ${url}`);
    await wrangler.first;

    const api = apiClient(url, adminKey);

    // ---- the local runner, with Caddy ----
    const handle = options.handle ?? "local";
    let runner: ManagedProcess | null = null;
    let caddy: TestCaddy | null = null;
    if (docker) {
      if (hasCaddy) {
        caddy = await startCaddy({ dir: join(options.stateDir, "caddy"), httpPort: options.caddyPort, keep: true });
        const started = caddy;
        stops.push(() => started.stop());
      }
      const configPath = await enrollRunner({ api, url, handle, dir: join(options.stateDir, "runner"), caddyPort: caddy ? options.caddyPort : null, say });
      const config = JSON.parse(readFileSync(configPath, "utf8")) as Record<string, unknown>;
      const dockerConfig = (config.docker ?? {}) as Record<string, unknown>;
      writeFileSync(
        configPath,
        JSON.stringify(
          {
            ...config,
            docker: { ...dockerConfig, socketPath, egress: { ...((dockerConfig.egress ?? {}) as Record<string, unknown>), internalTargets: [...standins.targets, relay.target], releaseInternalTargets: LOCAL_RELEASE_TARGETS } },
            registries: standins.registries,
            botGateway: LOCAL_BOT_GATEWAY,
            deploymentsRoot: join(options.stateDir, "deployments"),
            ...(options.releasePorts ? { releasePorts: options.releasePorts } : {}),
            ...(caddy ? { caddy: { adminSocket: caddy.adminSocket, configPath: caddy.configPath, httpUrl: caddy.httpUrl, listen: [`127.0.0.1:${options.caddyPort}`], disableTls: true } } : {}),
          },
          null,
          2,
        ),
        { mode: 0o600 },
      );
      const started = managed(
        () => spawnCollecting(process.execPath, [RUNNER_BIN, "run", "--config", configPath], { cwd: ROOT, env: { ...process.env, NO_COLOR: "1" } }),
        (spawned) =>
          waitFor(
            async () => ((await api<{ server: { status: string } }>(`/api/servers/${handle}`)).body.server.status === "online" ? true : undefined),
            60_000,
            () => `the runner did not come online:\n${spawned.output().slice(-3000)}`,
            () => spawned.child.exitCode !== null,
          ),
        options.echo,
      );
      stops.push(() => started.stop());
      await started.first;
      runner = started;
      say(`runner: server "${handle}" is online (its egress jobs may reach ${standins.targets.join(", ") || "no stand-in"}); releases in ${join(options.stateDir, "deployments")}`);
      if (caddy) say(`caddy: deployed projects answer on ${caddy.httpUrl} (curl -H 'Host: <project>.localhost' ${caddy.httpUrl}/)`);
    }
    for (const line of missing) say(`missing: ${line}`);

    return {
      url,
      adminKey,
      consoleUrl: `${url}/chat`,
      caddyUrl: caddy?.httpUrl ?? null,
      handle,
      standins,
      wrangler,
      runner,
      missing,
      scriptedModel,
      api,
      stop: stopAll,
    };
  } catch (error) {
    await stopAll();
    throw error;
  }
}

/** Calls the factory's API with a key (the admin's by default): status and JSON body. */
export function apiClient(url: string, adminKey: string): Factory["api"] {
  const client = stackClient(url, adminKey);
  return (path, init) => client.api(path, init);
}

/** Registers the server `handle` (once) and enrolls a runner for it in `dir` (once): the config's path. */
async function enrollRunner(options: { api: Factory["api"]; url: string; handle: string; dir: string; caddyPort: number | null; say(line: string): void }): Promise<string> {
  const configPath = join(options.dir, "config.json");
  const existing = await options.api<{ server?: { runnerId: string | null } }>(`/api/servers/${options.handle}`);
  if (existing.status === 401) throw new Error("the admin key in .dev.vars was refused");
  if (existing.status === 200 && existsSync(configPath)) return configPath;
  const created =
    existing.status === 404
      ? await options.api<{ enrollment: { token: string } }>("/api/servers", { json: { handle: options.handle, host: "localhost", ...(options.caddyPort ? { publicHttpPort: options.caddyPort } : {}) } })
      : await options.api<{ enrollment: { token: string } }>(`/api/servers/${options.handle}/enrollment`, { json: {} });
  if (created.status !== 201) throw new Error(`could not get an enrollment token: ${JSON.stringify(created.body)}`);
  mkdirSync(options.dir, { recursive: true });
  const enroll = spawnCollecting(process.execPath, [RUNNER_BIN, "enroll", "--edge", options.url, "--token", created.body.enrollment.token, "--config", configPath, "--state-dir", join(options.dir, "state")], { cwd: ROOT });
  const code = await enroll.exited;
  if (code !== 0) throw new Error(`enrolling the local runner failed (exit ${String(code)}): ${enroll.output()}`);
  options.say(`runner: enrolled for server "${options.handle}" (config in ${configPath})`);
  return configPath;
}

function pick(source: Record<string, string | undefined>, names: string[]): Record<string, string> {
  return Object.fromEntries(names.flatMap((name) => (source[name] ? [[name, source[name]]] : [])));
}

function varArgs(vars: Record<string, string>): string[] {
  return Object.entries(vars)
    .filter(([name]) => !SECRET_VARS.has(name))
    .flatMap(([name, value]) => ["--var", `${name}:${value}`]);
}
