/**
 * `npm run dev:fixture`: puts the deploy fixture (test/fixtures/deploy-app) in the GitHub stand-in
 * that `npm run dev` runs, as the repository of a project `deploy-fixture` on the server `local`
 * (`npm run dev` runs its runner), gives it the one secret only its owner could (WEATHER_API_KEY), and says how
 * to deploy it. Run again, it pushes the fixture once more (VERSION=<argument>, default v1).
 * Settings: PORT, DEV_STATE_DIR, DEV_VARS_FILE, DEV_RUNNER_HANDLE, DEV_CADDY_PORT.
 */
import { execFile } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { readDevVars } from "./lib/dev-vars.ts";
import { ROOT } from "./lib/local-stack.ts";

const run = promisify(execFile);
const port = Number(process.env.PORT ?? 8787);
const edge = `http://127.0.0.1:${port}`;
const stateDir = resolve(ROOT, process.env.DEV_STATE_DIR ?? ".dev-state");
const vars = readDevVars(resolve(ROOT, process.env.DEV_VARS_FILE ?? ".dev.vars"));
const handle = process.env.DEV_RUNNER_HANDLE ?? "local";
const caddyPort = Number(process.env.DEV_CADDY_PORT ?? 8780);
const NAME = "deploy-fixture";
const version = process.argv[2] ?? "v1";

async function api<T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const res = await fetch(`${edge}${path}`, {
    method,
    headers: { authorization: `Bearer ${vars.ADMIN_API_KEY ?? ""}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  }).catch(() => {
    throw new Error(`nothing answers on ${edge}: start the system first with \`npm run dev\``);
  });
  return { status: res.status, body: (await res.json()) as T };
}

async function main() {
  const standinsFile = join(stateDir, "standins.json");
  if (!existsSync(standinsFile)) throw new Error(`${standinsFile} is missing: start the system first with \`npm run dev\``);
  const { github } = JSON.parse(readFileSync(standinsFile, "utf8")) as { github?: string };
  if (!github) throw new Error("npm run dev is using a real GitHub App (.dev.vars): push test/fixtures/deploy-app to a repository of yours instead");
  const issued = await fetch(`${github}/_standin/token`, { method: "POST" });
  const { token, org } = (await issued.json()) as { token: string; org: string };
  const auth = { authorization: `token ${token}`, "content-type": "application/json" };

  // The repository, once.
  let repo = await fetch(`${github}/repos/${org}/${NAME}`, { headers: auth });
  if (repo.status === 404) repo = await fetch(`${github}/orgs/${org}/repos`, { method: "POST", headers: auth, body: JSON.stringify({ name: NAME, private: true }) });
  const { clone_url: cloneUrl, html_url: htmlUrl } = (await repo.json()) as { clone_url: string; html_url: string };

  // The fixture at VERSION, pushed to main on top of what is there.
  const dir = mkdtempSync(join(tmpdir(), "dev-fixture-"));
  const env = { ...process.env, GIT_CONFIG_COUNT: "1", GIT_CONFIG_KEY_0: "http.extraHeader", GIT_CONFIG_VALUE_0: `Authorization: Basic ${Buffer.from(`x-access-token:${token}`).toString("base64")}`, GIT_AUTHOR_NAME: "dev", GIT_AUTHOR_EMAIL: "dev@localhost", GIT_COMMITTER_NAME: "dev", GIT_COMMITTER_EMAIL: "dev@localhost" };
  try {
    await run("git", ["init", "-q", "-b", "main", dir]);
    await run("git", ["-C", dir, "fetch", "-q", cloneUrl, "main"], { env }).then(
      () => run("git", ["-C", dir, "reset", "-q", "--hard", "FETCH_HEAD"]),
      () => undefined, // an empty repository: the first push makes main
    );
    cpSync(join(ROOT, "test", "fixtures", "deploy-app"), dir, { recursive: true });
    writeFileSync(join(dir, "VERSION"), `${version}\n`);
    await run("git", ["-C", dir, "add", "-A"]);
    await run("git", ["-C", dir, "commit", "-q", "--allow-empty", "-m", `deploy fixture ${version}`], { env });
    await run("git", ["-C", dir, "push", "-q", cloneUrl, "HEAD:main"], { env });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  // The project, once, on the local server.
  const found = await api<{ projects: { id: string; name: string }[] }>("GET", `/api/projects?name=${NAME}`);
  let projectId = found.body.projects.find((project) => project.name === NAME)?.id;
  if (!projectId) {
    const users = await api<{ users?: { id: string }[] }>("GET", "/api/users?limit=1");
    const ownerId = users.body.users?.[0]?.id ?? (await api<{ user: { id: string } }>("POST", "/api/users", { name: "dev" })).body.user.id;
    const created = await api<{ project: { id: string } }>("POST", "/api/projects", { name: NAME, description: "The deploy pipeline's fixture: answers its version, and /healthz", ownerId, config: { server: handle } });
    if (created.status !== 201) throw new Error(`could not create the project: ${JSON.stringify(created.body)}`);
    projectId = created.body.project.id;
  }
  await api("PATCH", `/api/projects/${projectId}`, { repositoryUrl: htmlUrl });
  await api("PUT", `/api/projects/${projectId}/secrets`, { secrets: { WEATHER_API_KEY: "dev-weather-key" } });
  console.log(`[dev:fixture] ${NAME} (${projectId}) at ${version} in ${htmlUrl}, on server ${handle}. Deploy it with:

  ORCHESTRATOR_URL=${edge} ORCHESTRATOR_API_KEY=<the admin key in .dev.vars> npx orchestrator deploy start ${NAME} --follow
  curl -H 'Host: ${NAME}.localhost' http://127.0.0.1:${caddyPort}/`);
}

main().catch((error: unknown) => {
  console.error(`[dev:fixture] ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
