/**
 * caddy.sync: makes Caddy serve exactly the payload's routes (domain → 127.0.0.1:<port>), where every
 * port is one of the server's release ports (config `releasePorts`): a public route can never point
 * at another service on the server.
 *
 * The payload is the server's full route list, so the executor renders a whole Caddy JSON config
 * rather than patching the running one: the result does not depend on what Caddy held before.
 * Order matters for safety: render → `caddy validate` → atomic write of `configPath` → POST /load.
 * A config Caddy refuses never reaches the file, and if /load refuses it (e.g. a listener that cannot
 * bind), the previous file is put back; Caddy itself keeps running its old config on a failed /load.
 * So after any failure the running config and the file a restart reads are both the last good one.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, open, readFile, rename, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { z } from "zod";
import { type JobPayload, outsideReleasePorts } from "../../../src/shared/job-payloads.ts";
import { parseJson } from "../../../src/shared/json.ts";
import { AdminSocketError, adminConfig, adminRequest, checkAdminSocket } from "../caddy-admin.ts";
import type { RunnerConfig } from "../config.ts";
import { ensureReloadHandover } from "../reload-handover.ts";
import type { Executor, ExecutorOutcome } from "./types.ts";

type Route = JobPayload<"caddy.sync">["routes"][number];

const VALIDATE_TIMEOUT_MS = 30_000;
const LOAD_TIMEOUT_MS = 30_000;
/** The one server in the rendered config; its name only shows up in Caddy's logs and errors. */
const SERVER_NAME = "orchestrator";

export const caddySync: Executor<JobPayload<"caddy.sync">> = (payload, context) =>
  // Two syncs at once would race on the file and on /load; the later one must win whole.
  serialised(context.config.caddy.configPath, async () => {
    const { caddy } = context.config;
    if (context.signal.aborted) return { ok: false, message: `stopped before syncing: ${String(context.signal.reason)}` };
    const routes = payload.routes.map((route) => ({ ...route, domain: route.domain.toLowerCase() }));
    const domains = routes.map((route) => route.domain);

    context.progress("render", `rendering ${routes.length} route${routes.length === 1 ? "" : "s"}`, { domains });
    const duplicate = findDuplicate(routes);
    if (duplicate) return { ok: false, message: duplicate };
    const outside = outsideReleasePorts(routes, context.config.releasePorts);
    if (outside) return { ok: false, message: `${outside}; nothing was changed` };
    const generationFile = `${caddy.configPath}.generation`;
    const served = await readGeneration(generationFile);
    if (payload.generation !== undefined && served !== undefined && payload.generation <= served) {
      return { ok: true, message: `caddy already serves a newer route list (generation ${served}, this is ${payload.generation}); nothing to change`, data: { routes: routes.length, domains, generation: served, superseded: true } };
    }
    const text = `${JSON.stringify(renderCaddyConfig(routes, caddy), null, 2)}\n`;

    // The candidate goes next to configPath so that, once valid, a rename makes it the config atomically.
    const dir = dirname(caddy.configPath);
    await mkdir(dir, { recursive: true });
    const candidate = join(dir, `.${basename(caddy.configPath)}.${randomBytes(6).toString("hex")}.tmp`);
    await writeDurably(candidate, text);
    try {
      context.progress("validate", `checking the config with ${caddy.binary} validate`);
      const refusal = await validate(caddy.binary, candidate, context.signal);
      if (refusal) {
        for (const line of refusal.output.split("\n").filter(Boolean)) context.log(line, "stderr");
        return { ok: false, message: `caddy refused the config: ${refusal.message}` };
      }

      context.progress("write", `writing ${caddy.configPath}`);
      const previous = await readIfExists(caddy.configPath);
      await rename(candidate, caddy.configPath);

      context.progress("reload", `loading the config through Caddy's admin socket ${caddy.adminSocket}`);
      // So that the reload's new listeners take over the connections the old ones had not accepted yet.
      const handover = await ensureReloadHandover();
      if (handover) context.log(handover, "stderr");
      let loadError: string | undefined;
      try {
        await syncDirectory(dir);
        loadError = await load(caddy.adminSocket, text);
      } catch (error) {
        loadError = error instanceof Error ? error.message : String(error);
      }
      if (loadError) {
        await restore(caddy.configPath, previous);
        return { ok: false, message: loadError };
      }
    } finally {
      await unlink(candidate).catch(() => undefined); // already renamed unless something failed
    }

    if (payload.generation !== undefined) await writeDurably(generationFile, `${payload.generation}\n`);
    return {
      ok: true,
      message: `caddy serves ${routes.length} route${routes.length === 1 ? "" : "s"}`,
      data: { routes: routes.length, domains, ...(payload.generation !== undefined ? { generation: payload.generation } : {}) },
    } satisfies ExecutorOutcome;
  });

/** Caddy's native JSON config for the routes: one server, a host-matched reverse proxy per domain. */
export function renderCaddyConfig(routes: readonly Route[], caddy: RunnerConfig["caddy"]): Record<string, unknown> {
  const server: Record<string, unknown> = {
    listen: caddy.listen,
    routes: [
      ...routes.map((route) => ({
        match: [{ host: [route.domain] }],
        handle: [{ handler: "reverse_proxy", upstreams: [{ dial: `127.0.0.1:${route.upstreamPort}` }] }],
        terminal: true,
      })),
      // Without this, Caddy answers a host it has no route for with an empty 200, which a health
      // check (or a person) would take for a working site.
      { handle: [{ handler: "static_response", status_code: 404, body: "no site is configured for this host\n" }] },
    ],
  };
  if (caddy.disableTls) server.automatic_https = { disable: true };
  // /load replaces the whole config, admin section included: without it the admin endpoint would
  // move back to Caddy's default address (a loopback port) and the next sync could not reach it.
  return { admin: adminConfig(caddy.adminSocket), apps: { http: { servers: { [SERVER_NAME]: server } } } };
}


async function readGeneration(path: string): Promise<number | undefined> {
  const text = await readIfExists(path);
  const value = text === null ? Number.NaN : Number(text.trim());
  return Number.isInteger(value) ? value : undefined;
}

function findDuplicate(routes: readonly Route[]): string | undefined {
  const seen = new Map<string, number>();
  for (const route of routes) {
    const port = seen.get(route.domain);
    if (port !== undefined) {
      return `duplicate domain ${route.domain} (upstream ports ${port} and ${route.upstreamPort}): each domain can have only one route; nothing was changed`;
    }
    seen.set(route.domain, route.upstreamPort);
  }
  return undefined;
}

/** Runs `caddy validate`; resolves with Caddy's complaint, or undefined when it accepts the file. */
function validate(binary: string, path: string, signal: AbortSignal): Promise<{ message: string; output: string } | undefined> {
  return new Promise((resolve, reject) => {
    execFile(binary, ["validate", "--config", path], { signal, timeout: VALIDATE_TIMEOUT_MS }, (error, stdout, stderr) => {
      if (!error) return resolve(undefined);
      const code = error.code;
      if (code === "ENOENT") return reject(new Error(`the caddy binary "${binary}" was not found: install Caddy or set caddy.binary in the runner config`));
      if (signal.aborted) return reject(new Error(`caddy validate stopped: ${String(signal.reason)}`));
      const output = `${stdout}${stderr}`;
      if (error.killed) return resolve({ message: `caddy validate did not finish within ${VALIDATE_TIMEOUT_MS / 1000} s`, output });
      resolve({ message: caddyErrorLine(output) ?? `caddy validate exited with code ${String(code)}`, output });
    });
  });
}

/** Caddy prints JSON log lines and then one `Error: …` line saying what is wrong. */
function caddyErrorLine(output: string): string | undefined {
  const lines = output.split("\n").map((line) => line.trim());
  const error = lines.find((line) => line.startsWith("Error: "));
  if (error) return error.slice("Error: ".length);
  return lines.filter((line) => line && !line.startsWith("{")).at(-1);
}

/** How Caddy's admin API answers a refusal. */
const CaddyError = z.object({ error: z.string() });

/** POSTs the config to Caddy's /load; resolves with the reason when Caddy does not take it. */
async function load(socketPath: string, text: string): Promise<string | undefined> {
  let response: { status: number; body: string };
  try {
    await checkAdminSocket(socketPath);
    // Deliberately not tied to the job's signal: /load takes milliseconds, and giving up on a load
    // Caddy may already have applied would leave the file and the running config disagreeing.
    response = await adminRequest(socketPath, "POST", "/load", text, LOAD_TIMEOUT_MS);
  } catch (error) {
    if (error instanceof AdminSocketError) return error.message;
    return `could not reach Caddy's admin socket ${socketPath}: ${error instanceof Error ? error.message : String(error)}`;
  }
  if (response.status >= 200 && response.status < 300) return undefined;
  // Caddy's JSON error, or else the raw text.
  const message = parseJson(CaddyError, response.body).data?.error ?? response.body.trim();
  return `caddy refused the config (${response.status}): ${message || "no reason given"}`;
}

async function readIfExists(path: string): Promise<string | null> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw error;
  }
}

/** Puts the previous config file back (or removes the new one if there was none). */
async function restore(path: string, previous: string | null): Promise<void> {
  if (previous === null) {
    await unlink(path).catch(() => undefined);
  } else {
    const temp = `${path}.${randomBytes(6).toString("hex")}.tmp`;
    await writeDurably(temp, previous);
    await rename(temp, path);
  }
  await syncDirectory(dirname(path));
}

/** Writes and fsyncs, so a crash right after the rename cannot leave an empty or partial config. */
async function writeDurably(path: string, text: string): Promise<void> {
  // Readable by all: Caddy usually runs as its own user, and the config holds no secrets.
  const handle = await open(path, "w", 0o644);
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Makes a rename in `dir` durable. */
async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

const queues = new Map<string, Promise<unknown>>();

/** Runs `work` after every earlier call with the same key has settled. */
function serialised<T>(key: string, work: () => Promise<T>): Promise<T> {
  const run = (queues.get(key) ?? Promise.resolve()).then(work);
  const settled = run.catch(() => undefined);
  queues.set(key, settled);
  void settled.then(() => {
    if (queues.get(key) === settled) queues.delete(key);
  });
  return run;
}
