/**
 * `npm run dev:runner`: a runner on this machine for the system `npm run dev` runs, so that pipelines
 * have somewhere to run their jobs. It registers the server `local` (once), enrolls a runner for it in
 * .dev-state/runner/, lets its egress jobs reach the stand-ins `npm run dev` started
 * (.dev-state/standins.json), builds the coding-worker image offline if it is missing (root, Docker
 * and debootstrap: see scripts/install-system-deps.sh), starts a Caddy for the deploy pipeline's
 * routes (plain HTTP on 127.0.0.1:DEV_CADDY_PORT, admin on a unix socket, config kept in
 * .dev-state/caddy), and runs the runner until Ctrl-C. Releases live in .dev-state/deployments.
 * Settings: PORT, DEV_STATE_DIR, DEV_VARS_FILE, DEV_RUNNER_HANDLE, DOCKER_SOCKET, DEV_CADDY_PORT (8780).
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import Docker from "dockerode";
import { readDevVars } from "./lib/dev-vars.ts";
import { startCaddy } from "./lib/caddy.ts";
import { buildCodingWorker, ensureDebianBase, ensureReleaseBase } from "./lib/images.ts";
import { ROOT } from "./lib/local-stack.ts";
import { RUNNER_BIN } from "./lib/local-runner.ts";

const port = Number(process.env.PORT ?? 8787);
const edge = `http://127.0.0.1:${port}`;
const stateDir = resolve(ROOT, process.env.DEV_STATE_DIR ?? ".dev-state");
const vars = readDevVars(resolve(ROOT, process.env.DEV_VARS_FILE ?? ".dev.vars"));
const handle = process.env.DEV_RUNNER_HANDLE ?? "local";
const runnerDir = join(stateDir, "runner");
const configPath = join(runnerDir, "config.json");
const socketPath = process.env.DOCKER_SOCKET ?? "/var/run/docker.sock";
const caddyPort = Number(process.env.DEV_CADDY_PORT ?? 8780);
const say = (line: string) => console.log(`[dev:runner] ${line}`);

async function api<T>(path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const res = await fetch(`${edge}${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: { authorization: `Bearer ${vars.ADMIN_API_KEY ?? ""}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  }).catch(() => {
    throw new Error(`nothing answers on ${edge}: start the system first with \`npm run dev\``);
  });
  return { status: res.status, body: (await res.json()) as T };
}

function runner(args: string[]) {
  return spawn(process.execPath, [RUNNER_BIN, ...args], { cwd: ROOT, stdio: "inherit" });
}

async function enroll(): Promise<void> {
  const existing = await api<{ server?: { runnerId: string | null } }>(`/api/servers/${handle}`);
  if (existing.status === 401) throw new Error("the admin key in .dev.vars was refused: is `npm run dev` using the same .dev.vars?");
  if (existing.status === 200 && existsSync(configPath)) return;
  const created =
    existing.status === 404
      ? await api<{ enrollment: { token: string } }>("/api/servers", { handle, host: "localhost" })
      : await api<{ enrollment: { token: string } }>(`/api/servers/${handle}/enrollment`, {});
  if (created.status !== 201) throw new Error(`could not get an enrollment token: ${JSON.stringify(created.body)}`);
  mkdirSync(runnerDir, { recursive: true });
  const child = runner(["enroll", "--edge", edge, "--token", created.body.enrollment.token, "--config", configPath, "--state-dir", join(runnerDir, "state")]);
  const code = await new Promise<number | null>((done) => child.on("exit", done));
  if (code !== 0) throw new Error(`enrollment failed (exit ${String(code)})`);
}

async function main() {
  await enroll();
  const standinsFile = join(stateDir, "standins.json");
  if (!existsSync(standinsFile)) throw new Error(`${standinsFile} is missing: start the system first with \`npm run dev\``);
  const { targets } = JSON.parse(readFileSync(standinsFile, "utf8")) as { targets: string[] };
  const config = JSON.parse(readFileSync(configPath, "utf8")) as Record<string, unknown>;
  const docker = (config.docker ?? {}) as Record<string, unknown>;
  const egress = (docker.egress ?? {}) as Record<string, unknown>;
  const caddy = await startCaddy({ dir: join(stateDir, "caddy"), httpPort: caddyPort, keep: true });
  writeFileSync(
    configPath,
    JSON.stringify(
      {
        ...config,
        docker: { ...docker, socketPath, egress: { ...egress, internalTargets: targets } },
        deploymentsRoot: join(stateDir, "deployments"),
        caddy: { adminSocket: caddy.adminSocket, configPath: caddy.configPath, httpUrl: caddy.httpUrl, listen: [`127.0.0.1:${caddyPort}`], disableTls: true },
      },
      null,
      2,
    ),
    { mode: 0o600 },
  );
  say(`runner for server "${handle}"; its egress jobs may reach ${targets.join(", ") || "no stand-in (real services configured)"}`);
  say(`caddy: deployed projects answer on ${caddy.httpUrl} for their Host (curl -H 'Host: <project>.localhost' ${caddy.httpUrl}/)`);

  // The image of what runner/images/coding-worker holds now (tagged by content, so unchanged files cost nothing).
  const engine = new Docker({ socketPath });
  say("checking the coding-worker image (built offline from Debian's packages when missing: about a minute)…");
  const tag = await buildCodingWorker(engine, { base: await ensureDebianBase(engine), preinstalled: true });
  await engine.getImage(tag).tag({ repo: "orchestrator/coding-worker", tag: "latest" });
  say(`coding-worker image: ${tag} (orchestrator/coding-worker:latest); release base: ${await ensureReleaseBase(engine)}`);
  const child = runner(["run", "--config", configPath]);
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => child.kill(signal));
  child.on("exit", (code) => {
    void caddy.stop().finally(() => process.exit(code ?? 0));
  });
}

main().catch((error: unknown) => {
  console.error(`[dev:runner] failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
