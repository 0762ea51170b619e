/**
 * The real worker under `wrangler dev` on a free port, wired to the test run's Postgres
 * (from test/setup/global.ts). For Node tests: the CLI, the browser view, the benchmarks.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { freePort } from "./ports.ts";
import { type Spawned, spawnCollecting, waitFor } from "./processes.ts";
import { prebuiltWorkerArgs } from "./worker-bundle.ts";

export const ROOT = resolve(import.meta.dirname, "..", "..");
export const WRANGLER = join(ROOT, "node_modules", "wrangler", "bin", "wrangler.js");
/** The stack's SECRETS_ENCRYPTION_KEY, so tests can sign view tokens as the worker would. */
export const STACK_SECRETS_KEY = Buffer.from("stack-test-key-0123456789abcdef!").toString("base64");
/** The stack's JOB_SIGNING_KEY (an Ed25519 seed), so tests can tell its signatures from others'. */
export const STACK_JOB_SIGNING_KEY = Buffer.from("stack-job-signing-seed-32-bytes!").toString("base64url");

/** A running worker as a client sees it: where it answers and the admin's key. */
export interface StackClient {
  url: string;
  port: number;
  adminKey: string;
  /** Calls the API with a key (the admin's by default) and returns status and JSON body. */
  api<T = unknown>(path: string, init?: { method?: string; json?: unknown; key?: string }): Promise<{ status: number; body: T }>;
}

export interface Stack extends StackClient {
  /** wrangler dev's local state (Durable Objects' SQLite, queues…): what tests search for leaked secrets. */
  stateDir: string;
  process: Spawned;
  stop(): Promise<void>;
}

/** A client of a worker someone else started (the test run's shared stack). */
export function stackClient(url: string, adminKey: string): StackClient {
  return {
    url,
    port: Number(new URL(url).port),
    adminKey,
    async api<T>(path: string, init: { method?: string; json?: unknown; key?: string } = {}) {
      const res = await fetch(`${url}${path}`, {
        method: init.method ?? (init.json === undefined ? "GET" : "POST"),
        headers: { authorization: `Bearer ${init.key ?? adminKey}`, "content-type": "application/json" },
        body: init.json === undefined ? undefined : JSON.stringify(init.json),
      });
      const text = await res.text();
      return { status: res.status, body: (text ? JSON.parse(text) : null) as T };
    },
  };
}

export interface StackOptions {
  databaseUrl: string;
  dbWsProxy: string;
  adminKey: string;
  logLevel?: string;
  /** Extra variables, e.g. shorter leases for tests. */
  vars?: Record<string, string>;
  /** The port to listen on (a free one unless given). */
  port?: number;
  /**
   * Bundle the sources at start and again on every edit, as `npm run dev` does. Otherwise the stack
   * runs the worker bundled once for these sources (scripts/lib/worker-bundle.ts).
   */
  live?: boolean;
  /** How long wrangler has to answer 200 on /healthz (60 s unless given). */
  readyTimeoutMs?: number;
}

/**
 * Starts `wrangler dev` on its own port. When the port was ours to choose and wrangler found it taken
 * ("Address already in use": between freePort() finding it free and wrangler binding it, another
 * process of the run took it; seen in the bench test, whose five benches start stacks at once), it
 * starts again on another port, up to three times.
 */
export async function startStack(options: StackOptions): Promise<Stack> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startStackOnce(options);
    } catch (error) {
      if (options.port !== undefined || attempt >= 3 || !/Address already in use/.test(String(error))) throw error;
    }
  }
}

async function startStackOnce(options: StackOptions): Promise<Stack> {
  const dir = mkdtempSync(join(tmpdir(), "orchestrator-stack-"));
  const envFile = join(dir, "dev.vars");
  const port = options.port ?? (await freePort());
  const url = `http://127.0.0.1:${port}`;
  writeFileSync(
    envFile,
    [
      `DATABASE_URL=${options.databaseUrl}`,
      `ADMIN_API_KEY=${options.adminKey}`,
      `SECRETS_ENCRYPTION_KEY=${STACK_SECRETS_KEY}`,
      `JOB_SIGNING_KEY=${STACK_JOB_SIGNING_KEY}`,
      // The chat's links to the live task view point here.
      `PUBLIC_URL=${url}`,
      // A multi-line value (a PEM key) goes in double quotes with its newlines escaped, as dotenv reads it.
      ...Object.entries(options.vars ?? {}).map(([key, value]) => (value.includes("\n") ? `${key}="${value.replaceAll("\n", "\\n")}"` : `${key}=${value}`)),
    ].join("\n"),
  );
  const script = options.live ? [] : await prebuiltWorkerArgs(ROOT, WRANGLER);
  const child = spawnCollecting(
    process.execPath,
    [
      WRANGLER, "dev", ...script,
      "--port", String(port),
      // Its own inspector port: two stacks starting at once would otherwise both take the default (9229).
      "--inspector-port", String(await freePort()),
      "--ip", "127.0.0.1",
      "--env-file", envFile,
      "--persist-to", join(dir, "state"),
      "--var", `DB_WS_PROXY:${options.dbWsProxy}`,
      "--var", `LOG_LEVEL:${options.logLevel ?? "warn"}`,
      "--show-interactive-dev-session=false",
    ],
    { cwd: ROOT, env: { ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false" } },
  );
  try {
    await waitFor(
      async () => ((await fetch(`${url}/healthz`)).status === 200 ? true : undefined),
      options.readyTimeoutMs ?? 60_000,
      () => child.output(),
      () => child.child.exitCode !== null,
    );
  } catch (error) {
    await terminate(child);
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    ...stackClient(url, options.adminKey),
    stateDir: join(dir, "state"),
    process: child,
    async stop() {
      await terminate(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Stops wrangler with SIGTERM, and SIGKILL only if it is still there 10 s later. The process we spawn
 * is wrangler's launcher (bin/wrangler.js), which passes SIGTERM on to wrangler itself and that to
 * workerd; a SIGKILL to the launcher would leave both running, holding the port.
 */
async function terminate(child: Spawned): Promise<void> {
  const running = () => child.child.exitCode === null && child.child.signalCode === null;
  if (!running()) return;
  child.child.kill("SIGTERM");
  await Promise.race([child.exited, new Promise((resolve) => setTimeout(resolve, 10_000))]);
  if (running()) child.child.kill("SIGKILL");
}

/** A user with a `user` key, and a task of theirs, made through the API. */
export async function userWithTask(stack: StackClient, type: "engineering" | "deploy" = "engineering") {
  const user = await stack.api<{ user: { id: string } }>("/api/users", { json: { name: "cli-user" } });
  const key = await stack.api<{ key: string }>("/api/keys", { json: { userId: user.body.user.id, name: "cli" } });
  const task = await stack.api<{ task: { id: string } }>("/api/tasks", { json: { type, ownerId: user.body.user.id } });
  return { userId: user.body.user.id, key: key.body.key, taskId: task.body.task.id };
}
