/**
 * `npm run dev` as a new user runs it: first start writes secrets and prints the admin key,
 * /healthz answers within 60 s, data survives a restart, Ctrl-C stops every process it started,
 * and losing Postgres answers 503 without writing anything.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { freePort } from "../../scripts/lib/ports.ts";
import { isListening, type Spawned, spawnCollecting, waitFor } from "../../scripts/lib/processes.ts";
import { oneHeavyFileAtATime } from "../support/heavy-gate.ts";

const root = resolve(import.meta.dirname, "..", "..");
const work = mkdtempSync(join(tmpdir(), "orchestrator-dev-"));
// As root, Postgres runs as the `postgres` user, which must be able to reach its data folder.
chmodSync(work, 0o755);
const varsFile = join(work, "dev.vars");
let running: Spawned | undefined;

afterAll(async () => {
  if (running?.child.exitCode === null) {
    running.child.kill("SIGINT");
    await running.exited;
  }
  rmSync(work, { recursive: true, force: true });
});

async function startDev(ports: { http: number; pg: number; proxy: number; model: number; github: number; telegram: number; caddy: number }, options: { env?: Record<string, string>; state?: string; vars?: string } = {}) {
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

async function stopDev(dev: Spawned) {
  dev.child.kill("SIGINT");
  return dev.exited;
}

const api = (port: number, key: string, path: string, init: RequestInit = {}) =>
  fetch(`http://127.0.0.1:${port}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json", ...init.headers },
  });

oneHeavyFileAtATime();

describe("npm run dev", () => {
  it("starts, serves, survives a restart and stops cleanly", async () => {
    const ports = { http: await freePort(), pg: await freePort(), proxy: await freePort(), model: await freePort(), github: await freePort(), telegram: await freePort(), caddy: await freePort() };

    const first = await startDev(ports);
    expect(first.readyMs).toBeLessThan(60_000);
    const keyLine = /ADMIN_API_KEY=(ork_[a-z0-9]+)/.exec(first.dev.output());
    expect(keyLine?.[1]).toBeTruthy();
    const adminKey = keyLine?.[1] ?? "";
    expect(readFileSync(varsFile, "utf8")).toContain(`ADMIN_API_KEY=${adminKey}`);
    expect(statSync(varsFile).mode & 0o777).toBe(0o600);

    const created = await api(ports.http, adminKey, "/api/projects", {
      method: "POST",
      body: JSON.stringify({ name: "weather-bot", description: "Weather bot with notifications" }),
    });
    expect(created.status).toBe(201);
    // No model configured: it says so in one line, with how to set one, and the scripted stand-in answers.
    expect(first.dev.output()).toMatch(/model: none configured, so the SCRIPTED stand-in answers .*OPENAI_API_KEY=/);
    // The local runner enrolled itself and is online; Caddy listens for <project>.localhost.
    const server = await api(ports.http, adminKey, "/api/servers/local");
    expect(((await server.json()) as { server: { status: string; publicHttpPort: number } }).server).toMatchObject({ status: "online", publicHttpPort: ports.caddy });
    expect(await isListening(ports.caddy)).toBe(true);
    // The console link signs the local user in.
    const link = /The web console: (\S+)/.exec(first.dev.output())?.[1] ?? "";
    expect(link).toMatch(new RegExp(`^http://127.0.0.1:${ports.http}/chat\\?token=`));
    expect((await fetch(link)).status).toBe(200);

    // Postgres goes away under the running system: 503 db_unavailable, and nothing is written.
    // (ports.pg is the pooler's, which stays up: postmaster.pid's 4th line is Postgres's own port.)
    const [postmaster, , , postgresPort] = readFileSync(join(work, "state", "postgres", "postmaster.pid"), "utf8").split("\n");
    expect(Number(postgresPort)).not.toBe(ports.pg);
    process.kill(Number(postmaster), "SIGINT");
    await waitFor(async () => ((await isListening(Number(postgresPort))) ? undefined : true), 15_000, () => "postgres still up");
    const health = await fetch(`http://127.0.0.1:${ports.http}/healthz`);
    expect(health.status).toBe(503);
    expect(((await health.json()) as { error: { code: string } }).error.code).toBe("db_unavailable");
    const lost = await api(ports.http, adminKey, "/api/projects", {
      method: "POST",
      body: JSON.stringify({ name: "lost-project" }),
    });
    expect(lost.status).toBe(503);
    expect(lost.headers.get("content-type")).toContain("application/json");

    // Ctrl-C stops wrangler, the proxy and Postgres.
    expect(await stopDev(first.dev)).toBe(0);
    for (const port of Object.values(ports)) expect(await isListening(port), `port ${port}`).toBe(false);

    // Second run: same data, same key, no new key printed.
    const second = await startDev(ports);
    expect(second.dev.output()).not.toContain(adminKey);
    const list = await api(ports.http, adminKey, "/api/projects");
    const names = ((await list.json()) as { projects: { name: string }[] }).projects.map((p) => p.name);
    expect(names).toEqual(["weather-bot"]);
    expect(await stopDev(second.dev)).toBe(0);
    for (const port of Object.values(ports)) expect(await isListening(port), `port ${port}`).toBe(false);
  });

  it("names what the machine lacks, with the command that installs it, and starts the rest", async () => {
    const ports = { http: await freePort(), pg: await freePort(), proxy: await freePort(), model: await freePort(), github: await freePort(), telegram: await freePort(), caddy: await freePort() };
    // No Docker engine and no Caddy binary where it looks.
    const { dev } = await startDev(ports, { state: "bare-state", vars: join(work, "bare.vars"), env: { DOCKER_SOCKET: join(work, "no-docker.sock"), CADDY_BINARY: join(work, "no-caddy") } });
    const output = dev.output();
    expect(output).toMatch(/missing: Docker \(.*sudo apt-get install -y docker\.io.*\): without it there is no runner, so builds and deploys wait/);
    expect(output).toMatch(/missing: Caddy \(`sudo apt-get install -y caddy`\)/);
    // The rest runs: the API, the console, the stand-ins; no runner is registered.
    expect((await fetch(`http://127.0.0.1:${ports.http}/healthz`)).status).toBe(200);
    expect(output).toContain("ready. The web console: ");
    const adminKey = /ADMIN_API_KEY=(ork_[a-z0-9]+)/.exec(output)?.[1] ?? "";
    const servers = (await (await api(ports.http, adminKey, "/api/servers")).json()) as { servers: unknown[] };
    expect(servers.servers).toEqual([]);
    expect(await stopDev(dev)).toBe(0);
  });
});
