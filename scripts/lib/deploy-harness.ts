/**
 * The deploy pipeline on this machine, for tests and the benchmark: the engineering stack (stand-ins,
 * worker, runner) plus a real Caddy and the Telegram stand-in, the fixture project
 * (test/fixtures/deploy-app) pushed to the GitHub stand-in, and a visitor that reaches projects through
 * Caddy with their Host header.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { appendFileSync, cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import Docker from "dockerode";
import { TelegramServer } from "../../standins/telegram-server.ts";
import type { DeploymentView } from "../../src/shared/deploys.ts";
import type { TaskEvent } from "../../src/shared/events.ts";
import { startCaddy, type TestCaddy } from "./caddy.ts";
import { type EngineeringStack, startEngineeringStack } from "./engineering-stack.ts";
import { ROOT } from "./local-stack.ts";
import { removeReleasesIn } from "./docker-engine.ts";
import { DEPLOY_RELEASE_PORTS } from "./ports.ts";
import { waitFor } from "./processes.ts";

const run = promisify(execFile);
export const FIXTURE = join(ROOT, "test", "fixtures", "deploy-app");

/** What the EnvAnalyzer answers for the fixture's .env.example. */
export const FIXTURE_ENV_ANALYSIS = {
  variables: [
    { name: "PORT", kind: "computed", reason: "the port to listen on" },
    { name: "DOMAIN", kind: "computed", reason: "the public domain" },
    { name: "SESSION_SECRET", kind: "infra", reason: "signs sessions" },
    { name: "WEATHER_API_KEY", kind: "user", reason: "the weather provider's API key" },
  ],
};

export interface Fixture {
  projectId: string;
  projectName: string;
  domain: string;
  checkout: string;
}

export interface Answer {
  status: number;
  body: string;
  /** When it arrived (ms, performance.now()). */
  at: number;
}

export const versionOf = (answer: { body: string }): string | null => {
  try {
    return (JSON.parse(answer.body) as { version?: string }).version ?? null;
  } catch {
    return null;
  }
};

export const listing = (events: TaskEvent[]) => events.map((e) => `${e.type} ${e.step ?? ""} ${e.message}`).join("\n");

export class DeployHarness {
  readonly env: EngineeringStack;
  readonly caddy: TestCaddy;
  readonly telegram: TelegramServer;
  readonly work: string;
  readonly handle: string;
  private ownerId = "";
  private readonly docker: Docker;
  private readonly releasePorts: { from: number; to: number };

  private constructor(env: EngineeringStack, caddy: TestCaddy, telegram: TelegramServer, work: string, handle: string, docker: Docker, releasePorts: { from: number; to: number }) {
    this.env = env;
    this.caddy = caddy;
    this.telegram = telegram;
    this.work = work;
    this.handle = handle;
    this.docker = docker;
    this.releasePorts = releasePorts;
  }

  /**
   * `releasePorts`: the runner's range; test files that run at the same time each need their own (the
   * playbook refuses a port something else holds).
   */
  static async start(options: { databaseUrl: string; dbWsProxy: string; adminKey: string; dockerSocket: string; image: string; handle: string; drainSeconds?: number; releasePorts?: { from: number; to: number }; vars?: (telegram: TelegramServer) => Record<string, string> }): Promise<DeployHarness> {
    const releasePorts = options.releasePorts ?? DEPLOY_RELEASE_PORTS;
    const docker = new Docker({ socketPath: options.dockerSocket });
    // A run killed before its teardown leaves releases that restart with the engine and hold this
    // range's ports, which the playbook then rightly refuses to take: clear them first.
    await removeReleasesIn(docker, releasePorts);
    const work = mkdtempSync(join(tmpdir(), "deploy-harness-"));
    const caddy = await startCaddy();
    const telegram = new TelegramServer();
    await telegram.start();
    const env = await startEngineeringStack({
      ...options,
      vars: { DEPLOY_DRAIN_SECONDS: String(options.drainSeconds ?? 2), DEPLOY_HEALTH_SECONDS: "8", TELEGRAM_API_URL: telegram.url, RUNNER_ACK_LEASE_SECONDS: "3", ...options.vars?.(telegram) },
      runner: {
        releasePorts,
        deploymentsRoot: join(work, "deployments"),
        caddy: { adminSocket: caddy.adminSocket, httpUrl: caddy.httpUrl, configPath: caddy.configPath, listen: [`127.0.0.1:${caddy.httpPort}`], disableTls: true },
      },
    });
    env.model.load({ turns: [], side: [{ name: "env-analyzer", match: { tools: false, anyMessage: "You are the EnvAnalyzer" }, reply: { content: JSON.stringify(FIXTURE_ENV_ANALYSIS) } }] });
    return new DeployHarness(env, caddy, telegram, work, options.handle, docker, releasePorts);
  }

  /** Stops everything, and removes whatever releases (and their networks) a failed test left running. */
  async stop(): Promise<void> {
    await this.env.stop();
    await removeReleasesIn(this.docker, this.releasePorts);
    await this.caddy.stop();
    await this.telegram.stop();
    rmSync(this.work, { recursive: true, force: true });
  }

  async git(args: string[], cwd: string, token?: string) {
    const auth = token ? { GIT_CONFIG_COUNT: "1", GIT_CONFIG_KEY_0: "http.extraHeader", GIT_CONFIG_VALUE_0: `Authorization: Basic ${Buffer.from(`x-access-token:${token}`).toString("base64")}` } : {};
    return run("git", args, { cwd, env: { ...process.env, ...auth, GIT_AUTHOR_NAME: "t", GIT_AUTHOR_EMAIL: "t@t", GIT_COMMITTER_NAME: "t", GIT_COMMITTER_EMAIL: "t@t" } });
  }

  /** A project whose repository (in the GitHub stand-in) is the fixture; `extraEnv` lines go into its .env.example. */
  async newFixture(prefix: string, extraEnv: string[] = [], ownerId?: string): Promise<Fixture> {
    const name = `${prefix}-${randomBytes(3).toString("hex")}`;
    const created = await fetch(`${this.env.github.url}/orgs/${this.env.github.org}/repos`, {
      method: "POST",
      headers: { authorization: `token ${this.env.github.issueToken()}`, "content-type": "application/json" },
      body: JSON.stringify({ name, private: true }),
    });
    if (created.status !== 201) throw new Error(`creating repository ${name}: ${created.status}`);
    const repo = (await created.json()) as { clone_url: string; html_url: string };
    const checkout = join(this.work, name);
    await this.git(["init", "-q", "-b", "main", checkout], this.work);
    await this.git(["remote", "add", "origin", repo.clone_url], checkout);
    if (extraEnv.length) writeFileSync(join(checkout, ".env.extra"), `${extraEnv.join("\n")}\n`);
    if (!this.ownerId) this.ownerId = (await this.env.stack.api<{ user: { id: string } }>("/api/users", { json: { name: "deployer" } })).body.user.id;
    const project = await this.env.stack.api<{ project: { id: string } }>("/api/projects", { json: { name, description: "the deploy fixture", ownerId: ownerId ?? this.ownerId, config: { server: this.handle } } });
    const patched = await this.env.stack.api(`/api/projects/${project.body.project.id}`, { method: "PATCH", json: { repositoryUrl: repo.html_url } });
    if (patched.status !== 200) throw new Error(`setting ${name}'s repository: ${patched.status}`);
    return { projectId: project.body.project.id, projectName: name, domain: `${name}.localhost`, checkout };
  }

  /** Commits the fixture with VERSION set (a version ending in "-broken" fails its health check), pushes it to `branch` (main), returns the SHA. */
  async pushVersion(fixture: Fixture, version: string, branch = "main"): Promise<string> {
    const dir = fixture.checkout;
    rmSync(join(dir, "app"), { recursive: true, force: true });
    cpSync(FIXTURE, dir, { recursive: true });
    writeFileSync(join(dir, "VERSION"), `${version}\n`);
    const extra = join(dir, ".env.extra");
    if (existsSync(extra)) appendFileSync(join(dir, ".env.example"), readFileSync(extra, "utf8"));
    await this.git(["add", "-A"], dir);
    await this.git(["commit", "-q", "--allow-empty", "-m", version], dir);
    await this.git(["push", "-q", "origin", `HEAD:refs/heads/${branch}`], dir, this.env.github.issueToken());
    return (await this.git(["rev-parse", "HEAD"], dir)).stdout.trim();
  }

  async putSecrets(fixture: Fixture, secrets: Record<string, string>): Promise<void> {
    const put = await this.env.stack.api(`/api/projects/${fixture.projectId}/secrets`, { method: "PUT", json: { secrets } });
    if (put.status !== 200) throw new Error(`PUT secrets: ${put.status}`);
  }

  /** Starts a pipeline on the project (`deploy`, `rollback` or `undeploy`) and returns its task id. */
  async start(fixture: Fixture, action: "deploy" | "rollback" | "undeploy" = "deploy", json: Record<string, unknown> = {}): Promise<string> {
    const started = await this.env.stack.api<{ task: { id: string } }>(`/api/projects/${fixture.projectId}/${action}`, { json });
    if (started.status !== 202) throw new Error(`${action}: ${started.status} ${JSON.stringify(started.body)}`);
    return started.body.task.id;
  }

  async events(taskId: string): Promise<TaskEvent[]> {
    return (await this.env.stack.api<{ events: TaskEvent[] }>(`/api/tasks/${taskId}/events?limit=1000`)).body.events;
  }

  /** The task's events once it has ended. */
  async ended(taskId: string, ms = 240_000): Promise<TaskEvent[]> {
    let seen: TaskEvent[] = [];
    return waitFor(
      async () => {
        seen = await this.events(taskId);
        return seen.some((e) => e.type === "task.completed" || e.type === "task.failed" || e.type === "task.cancelled") ? seen : undefined;
      },
      ms,
      () => `task ${taskId} did not end:\n${listing(seen)}\n${this.env.runner.output().slice(-3000)}`,
    );
  }

  async history(fixture: Fixture): Promise<DeploymentView[]> {
    return (await this.env.stack.api<{ deployments: DeploymentView[] }>(`/api/projects/${fixture.projectId}/deployments`)).body.deployments;
  }

  /** One GET through Caddy for `host`, as a visitor's browser would send it (a POST of `post`, when given). */
  visit(host: string, path = "/", post?: string): Promise<Answer> {
    return new Promise((resolve) => {
      const req = request(`${this.caddy.httpUrl}${path}`, { method: post === undefined ? "GET" : "POST", headers: { host }, agent: false, timeout: 5000 }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (body += chunk));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body, at: performance.now() }));
      });
      req.on("timeout", () => req.destroy(new Error("timeout")));
      req.on("error", (error) => resolve({ status: 0, body: error.message, at: performance.now() }));
      req.end(post);
    });
  }

  /**
   * A steady client: `perSecond` requests a second through Caddy until stopped; every answer is kept.
   * GETs of `path`, or with `post`, POSTs of post(n) for the n-th request.
   */
  steadyLoad(host: string, options: { perSecond?: number; path?: string; post?: (n: number) => string } = {}) {
    const { perSecond = 20, path = "/", post } = options;
    const answers: Answer[] = [];
    let running = true;
    const gap = 1000 / perSecond;
    const loop = (async () => {
      while (running) {
        const started = Date.now();
        answers.push(await this.visit(host, path, post?.(answers.length)));
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, gap - (Date.now() - started))));
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
}
