/**
 * `npm run dev` (scripts/dev.ts) run as a new user runs it, for the test files about it: each file gets
 * a scratch folder of its own (module state: a test file's modules are its own).
 */
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll } from "vitest";
import { freePort } from "../../scripts/lib/ports.ts";
import { type Spawned, spawnCollecting, waitFor } from "../../scripts/lib/processes.ts";

const root = resolve(import.meta.dirname, "..", "..");
/** The file's scratch folder: each `npm run dev` here keeps its state and vars file in it. */
export const work = mkdtempSync(join(tmpdir(), "orchestrator-dev-"));
// As root, Postgres runs as the `postgres` user, which must be able to reach its data folder.
chmodSync(work, 0o755);
export const varsFile = join(work, "dev.vars");
let running: Spawned | undefined;

/** Call once at the top of the test file: stops a dev left running by a failed test, removes `work`. */
export function cleanUpDevRuns(): void {
  afterAll(async () => {
    if (running?.child.exitCode === null) {
      running.child.kill("SIGINT");
      await running.exited;
    }
    rmSync(work, { recursive: true, force: true });
  });
}

export type DevPorts = { http: number; pg: number; proxy: number; model: number; github: number; telegram: number; npm: number; caddy: number };

/** A free port for each thing `npm run dev` listens on. */
export async function devPorts(): Promise<DevPorts> {
  return { http: await freePort(), pg: await freePort(), proxy: await freePort(), model: await freePort(), github: await freePort(), telegram: await freePort(), npm: await freePort(), caddy: await freePort() };
}

/** Starts `npm run dev` (scripts/dev.ts) on these ports; resolves once it says it is ready. */
export async function startDev(ports: DevPorts, options: { env?: Record<string, string>; state?: string; vars?: string } = {}) {
  const started = Date.now();
  const dev = spawnCollecting(process.execPath, [join(root, "scripts", "dev.ts")], {
    cwd: root,
    env: {
      ...process.env,
      PORT: String(ports.http),
      DEV_PG_PORT: String(ports.pg),
      DEV_PROXY_PORT: String(ports.proxy),
      DEV_MODEL_PORT: String(ports.model),
      DEV_GITHUB_PORT: String(ports.github),
      DEV_TELEGRAM_PORT: String(ports.telegram),
      DEV_NPM_PORT: String(ports.npm),
      DEV_CADDY_PORT: String(ports.caddy),
      DEV_STATE_DIR: join(work, options.state ?? "state"),
      DEV_VARS_FILE: options.vars ?? varsFile,
      ...options.env,
    },
  });
  running = dev;
  await waitFor(
    async () => {
      const res = await fetch(`http://127.0.0.1:${ports.http}/healthz`);
      return res.status === 200 ? ((await res.json()) as unknown) : undefined;
    },
    60_000,
    () => dev.output(),
    () => dev.child.exitCode !== null,
  );
  const readyMs = Date.now() - started;
  // Then the local runner, its Caddy and the console's link.
  await waitFor(
    () => (dev.output().includes("ready. The web console: ") ? true : undefined),
    120_000,
    () => dev.output(),
    () => dev.child.exitCode !== null,
  );
  return { dev, readyMs };
}

/** Ctrl-C, as a person stops it; its exit code. */
export async function stopDev(dev: Spawned) {
  dev.child.kill("SIGINT");
  return dev.exited;
}

/** The API of a running dev, with a key. */
export const api = (port: number, key: string, path: string, init: RequestInit = {}) =>
  fetch(`http://127.0.0.1:${port}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json", ...init.headers },
  });
