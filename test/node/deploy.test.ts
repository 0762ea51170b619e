/**
 * The deploy pipeline through the real path: worker (wrangler dev) → DeployWorkflow → RunnerHub → a
 * real runner → Ansible (deploy_project.yml) → docker compose v2 → a real Caddy, with the scripted
 * model (EnvAnalyzer) and the GitHub stand-in holding the fixture project (test/fixtures/deploy-app).
 *
 * One project goes through a life: v1 (waiting for a user secret), v2 under steady load (zero
 * failed requests), a broken release under load (turned away, v2 keeps serving), v3, a rollback to
 * v2 with no build, and an undeploy.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { cpSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import Docker from "dockerode";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startCaddy, type TestCaddy } from "../../scripts/lib/caddy.ts";
import { type EngineeringStack, startEngineeringStack } from "../../scripts/lib/engineering-stack.ts";
import { ROOT } from "../../scripts/lib/local-stack.ts";
import { TEST_RELEASE_PORTS } from "../../scripts/lib/ports.ts";
import { waitFor } from "../../scripts/lib/processes.ts";
import type { DeploymentView } from "../../src/shared/deploys.ts";
import type { TaskEvent } from "../../src/shared/events.ts";

const run = promisify(execFile);
const HANDLE = "deploy-box";
const FIXTURE = join(ROOT, "test", "fixtures", "deploy-app");

let env: EngineeringStack;
let caddy: TestCaddy;
let docker: Docker;
let work: string;
let deploymentsRoot: string;
let projectId: string;
let projectName: string;
let domain: string;
const WEATHER_KEY = `wk-${randomBytes(10).toString("hex")}`;

async function git(args: string[], cwd: string, token?: string) {
  const auth = token ? { GIT_CONFIG_COUNT: "1", GIT_CONFIG_KEY_0: "http.extraHeader", GIT_CONFIG_VALUE_0: `Authorization: Basic ${Buffer.from(`x-access-token:${token}`).toString("base64")}` } : {};
  return run("git", args, { cwd, env: { ...process.env, ...auth, GIT_AUTHOR_NAME: "t", GIT_AUTHOR_EMAIL: "t@t", GIT_COMMITTER_NAME: "t", GIT_COMMITTER_EMAIL: "t@t" } });
}

/** Commits the fixture with VERSION set (a version ending in "-broken" fails its health check), pushes it to main, returns the SHA. */
async function pushVersion(version: string): Promise<string> {
  const dir = join(work, "checkout");
  rmSync(join(dir, "app"), { recursive: true, force: true });
  cpSync(FIXTURE, dir, { recursive: true });
  writeFileSync(join(dir, "VERSION"), `${version}\n`);
  await git(["add", "-A"], dir);
  await git(["commit", "-q", "-m", version], dir);
  await git(["push", "-q", "origin", "HEAD:main"], dir, env.github.issueToken());
  return (await git(["rev-parse", "HEAD"], dir)).stdout.trim();
}

async function events(taskId: string): Promise<TaskEvent[]> {
  return (await env.stack.api<{ events: TaskEvent[] }>(`/api/tasks/${taskId}/events?limit=1000`)).body.events;
}

const listing = (all: TaskEvent[]) => all.map((e) => `${e.type} ${e.step ?? ""} ${e.message}`).join("\n");

async function ended(taskId: string, ms = 240_000): Promise<TaskEvent[]> {
  let seen: TaskEvent[] = [];
  return waitFor(
    async () => {
      seen = await events(taskId);
      return seen.some((e) => e.type === "task.completed" || e.type === "task.failed" || e.type === "task.cancelled") ? seen : undefined;
    },
    ms,
    () => `task ${taskId} did not end:\n${listing(seen)}\n${env.runner.output().slice(-3000)}`,
  );
}

async function deploy(json: Record<string, unknown> = {}): Promise<string> {
  const started = await env.stack.api<{ task: { id: string } }>(`/api/projects/${projectId}/deploy`, { json });
  expect(started.status, JSON.stringify(started.body)).toBe(202);
  return started.body.task.id;
}

/** One GET through Caddy for the project's Host, as a visitor's browser would send it. */
function visit(path = "/"): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = request(`${caddy.httpUrl}${path}`, { headers: { host: domain }, agent: false, timeout: 5000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", (error) => resolve({ status: 0, body: error.message }));
    req.end();
  });
}

/** A steady client: 20 requests a second through Caddy until stopped; every answer is kept. */
function steadyLoad() {
  const answers: { status: number; body: string }[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const started = Date.now();
      answers.push(await visit("/"));
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, 50 - (Date.now() - started))));
    }
  })();
  return {
    answers,
    async stop() {
      running = false;
      await loop;
      return answers;
    },
  };
}

const versionOf = (answer: { body: string }) => {
  try {
    return (JSON.parse(answer.body) as { version?: string }).version ?? null;
  } catch {
    return null;
  }
};

async function history(): Promise<DeploymentView[]> {
  return (await env.stack.api<{ deployments: DeploymentView[] }>(`/api/projects/${projectId}/deployments`)).body.deployments;
}

beforeAll(async () => {
  docker = new Docker({ socketPath: inject("dockerSocket") });
  work = mkdtempSync(join(tmpdir(), "deploy-test-"));
  deploymentsRoot = join(work, "deployments");
  caddy = await startCaddy();
  env = await startEngineeringStack({
    databaseUrl: inject("databaseUrl"),
    dbWsProxy: inject("dbWsProxy"),
    adminKey: inject("adminApiKey"),
    dockerSocket: inject("dockerSocket"),
    image: inject("codingWorkerImage"),
    handle: HANDLE,
    vars: { DEPLOY_DRAIN_SECONDS: "2" },
    runner: {
      releasePorts: TEST_RELEASE_PORTS,
      deploymentsRoot,
      caddy: { adminSocket: caddy.adminSocket, httpUrl: caddy.httpUrl, configPath: caddy.configPath, listen: [`127.0.0.1:${caddy.httpPort}`], disableTls: true },
    },
  });
  // The EnvAnalyzer's answer for the fixture's .env.example.
  env.model.load({
    turns: [],
    side: [
      {
        name: "env-analyzer",
        match: { tools: false, anyMessage: "You are the EnvAnalyzer" },
        reply: {
          content: JSON.stringify({
            variables: [
              { name: "PORT", kind: "computed", reason: "the port to listen on" },
              { name: "DOMAIN", kind: "computed", reason: "the public domain" },
              { name: "SESSION_SECRET", kind: "infra", reason: "signs sessions" },
              { name: "WEATHER_API_KEY", kind: "user", reason: "the weather provider's API key" },
            ],
          }),
        },
      },
    ],
  });

  // The fixture project in the GitHub stand-in, and the project pointing at it.
  projectName = `fixture-${randomBytes(3).toString("hex")}`;
  domain = `${projectName}.localhost`;
  const token = env.github.issueToken();
  const created = await fetch(`${env.github.url}/orgs/${env.github.org}/repos`, { method: "POST", headers: { authorization: `token ${token}`, "content-type": "application/json" }, body: JSON.stringify({ name: projectName, private: true }) });
  expect(created.status).toBe(201);
  const repo = (await created.json()) as { clone_url: string; html_url: string };
  const dir = join(work, "checkout");
  await git(["init", "-q", "-b", "main", dir], work);
  await git(["remote", "add", "origin", repo.clone_url], dir);
  const user = await env.stack.api<{ user: { id: string } }>("/api/users", { json: { name: "deployer" } });
  const project = await env.stack.api<{ project: { id: string } }>("/api/projects", { json: { name: projectName, description: "the deploy fixture", ownerId: user.body.user.id, config: { server: HANDLE } } });
  projectId = project.body.project.id;
  const patched = await env.stack.api(`/api/projects/${projectId}`, { method: "PATCH", json: { repositoryUrl: repo.html_url } });
  expect(patched.status).toBe(200);
}, 240_000);

afterAll(async () => {
  await env?.stop();
  await caddy?.stop();
  const left = await docker.listContainers({ all: true, filters: { label: [`orchestrator.project=${projectName}`] } });
  for (const container of left) await docker.getContainer(container.Id).remove({ force: true }).catch(() => undefined);
  rmSync(work, { recursive: true, force: true });
});

describe("deploying a project", () => {
  const secretsSeen: string[] = [WEATHER_KEY];

  it("v1: waits for the user's secret, then answers through Caddy with the generated and given secrets in its environment", async () => {
    await pushVersion("v1");
    const taskId = await deploy();
    let seen: TaskEvent[] = [];
    const asked = await waitFor(
      async () => (seen = await events(taskId)).find((e) => e.type === "task.needs_input"),
      180_000,
      () => `no question:\n${listing(seen)}`,
    );
    expect(asked.message).toContain("WEATHER_API_KEY");
    expect((asked.data as { fields: { name: string }[] }).fields.map((f) => f.name)).toEqual(["WEATHER_API_KEY"]);

    const put = await env.stack.api<{ secrets: { name: string; set: boolean }[]; resumedTask?: string }>(`/api/projects/${projectId}/secrets`, { method: "PUT", json: { secrets: { WEATHER_API_KEY: WEATHER_KEY } } });
    expect(put.status).toBe(200);
    expect(put.body.resumedTask).toBe(taskId);
    expect(JSON.stringify(put.body)).not.toContain(WEATHER_KEY);

    const all = await ended(taskId);
    expect(all.at(-1)?.type, listing(all)).toBe("task.completed");
    expect(all.at(-1)?.data?.url).toBe(`https://${domain}`);
    const answer = await visit("/");
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body)).toEqual({ version: "v1", domain });

    const [container] = await docker.listContainers({ filters: { label: [`orchestrator.project=${projectName}`] } });
    expect(container).toBeDefined();
    const environment = (await docker.getContainer(container?.Id ?? "").inspect()).Config.Env;
    expect(environment).toContain(`WEATHER_API_KEY=${WEATHER_KEY}`);
    expect(environment).toContain(`DOMAIN=${domain}`);
    const session = environment.find((line) => line.startsWith("SESSION_SECRET="))?.slice("SESSION_SECRET=".length) ?? "";
    expect(session).toMatch(/^[0-9a-f]{64}$/);
    secretsSeen.push(session);

    const names = await env.stack.api<{ secrets: { name: string; kind: string }[] }>(`/api/projects/${projectId}/secrets`);
    expect(names.body.secrets.map((s) => `${s.name}:${s.kind}`).sort()).toEqual(["SESSION_SECRET:infra", "WEATHER_API_KEY:user"]);
    const [release] = await history();
    expect(release?.status).toBe("active");

    // No secret in any event, log line, job or API response of the run.
    const jobs = await env.stack.api(`/api/servers/${HANDLE}/jobs?limit=200`);
    const text = JSON.stringify([all, names.body, await history(), jobs.body]);
    for (const secret of secretsSeen) expect(text).not.toContain(secret);
  }, 300_000);

  it("v2 goes out under steady load with no failed request, and the answers switch from v1 to v2", async () => {
    await pushVersion("v2");
    const load = steadyLoad();
    const taskId = await deploy();
    const all = await ended(taskId);
    await new Promise((resolve) => setTimeout(resolve, 3000)); // past the drain: v1 is stopped by now
    const answers = await load.stop();
    expect(all.at(-1)?.type, listing(all)).toBe("task.completed");
    const failed = answers.filter((a) => a.status !== 200);
    expect(failed, JSON.stringify(failed.slice(0, 5))).toEqual([]);
    const versions = answers.map(versionOf);
    expect(versions[0]).toBe("v1");
    expect(versions.at(-1)).toBe("v2");
    // Once v2 answered, v1 never did again.
    expect(versions.slice(versions.indexOf("v2"))).not.toContain("v1");
    const releases = await history();
    expect(releases.map((r) => r.status)).toEqual(["active", "superseded"]);
    expect(releases[1]?.port).toBeNull();
  }, 300_000);

  it("a release that fails its health check never gets traffic: v2 keeps answering and the task fails with the evidence", async () => {
    await pushVersion("v2-broken");
    const load = steadyLoad();
    const taskId = await deploy();
    const all = await ended(taskId);
    const answers = await load.stop();
    const end = all.at(-1);
    expect(end?.type).toBe("task.failed");
    expect(end?.message).toContain("unhealthy");
    expect(end?.message).toContain("503");
    expect(end?.message).toContain("this release is broken");
    expect(answers.filter((a) => a.status !== 200)).toEqual([]);
    expect(new Set(answers.map(versionOf))).toEqual(new Set(["v2"]));
    const [broken, active] = await history();
    expect(broken?.status).toBe("unhealthy");
    expect(broken?.port).toBeNull();
    expect(JSON.stringify(broken?.health)).toContain("this release is broken");
    expect(active?.status).toBe("active");
    const running = await docker.listContainers({ filters: { label: [`orchestrator.release=${broken?.id ?? ""}`] } });
    expect(running).toEqual([]);
  }, 300_000);

  it("v3, then a rollback to v2 with no build", async () => {
    await pushVersion("v3");
    const deployed = await ended(await deploy());
    expect(deployed.at(-1)?.type).toBe("task.completed");
    expect(versionOf(await visit("/"))).toBe("v3");

    const since = Math.floor(Date.now() / 1000);
    const imagesBefore = (await docker.listImages({ filters: { reference: [`orchestrator-release/${projectName}`] } })).map((image) => image.Id).sort();
    const rolled = await env.stack.api<{ task: { id: string } }>(`/api/projects/${projectId}/rollback`, { json: {} });
    expect(rolled.status, JSON.stringify(rolled.body)).toBe(202);
    const all = await ended(rolled.body.task.id);
    expect(all.at(-1)?.type, listing(all)).toBe("task.completed");
    expect(versionOf(await visit("/"))).toBe("v2");
    // Other test files build and tag images meanwhile: only this project's images count.
    const imageEvents = (await run("docker", ["events", "--since", String(since), "--until", String(Math.floor(Date.now() / 1000) + 1), "--filter", "type=image", "--format", "{{.Action}} {{.Actor.ID}} {{index .Actor.Attributes \"name\"}}"])).stdout.trim();
    expect(imageEvents.split("\n").filter((line) => line.includes(`orchestrator-release/${projectName}`) && /^(tag|build|import|pull) /.test(line))).toEqual([]);
    expect((await docker.listImages({ filters: { reference: [`orchestrator-release/${projectName}`] } })).map((image) => image.Id).sort()).toEqual(imagesBefore);
    const releases = await history();
    expect(releases[0]?.kind).toBe("rollback");
    expect(releases[0]?.status).toBe("active");
    expect(releases.find((r) => r.id === releases[0]?.previousDeploymentId)?.status).toBe("rolled_back");
  }, 300_000);

  it("undeploy removes the route, the containers, the images and the ports", async () => {
    const started = await env.stack.api<{ task: { id: string } }>(`/api/projects/${projectId}/undeploy`, { json: {} });
    expect(started.status).toBe(202);
    const all = await ended(started.body.task.id);
    expect(all.at(-1)?.type, listing(all)).toBe("task.completed");
    expect((await visit("/")).status).toBe(404);
    expect(await docker.listContainers({ all: true, filters: { label: [`orchestrator.project=${projectName}`] } })).toEqual([]);
    const images = await docker.listImages({ filters: { reference: [`orchestrator-release/${projectName}`] } });
    expect(images).toEqual([]);
    const releases = await history();
    expect(releases.every((r) => r.port === null && r.status === "removed")).toBe(true);
    const services = await env.stack.api<{ services: unknown[] }>(`/api/servers/${HANDLE}/services`);
    expect(services.body.services).toEqual([]);
  }, 300_000);
});
