/**
 * The whole factory end to end, started as `npm run dev` starts it (scripts/lib/factory.ts: embedded
 * Postgres, wrangler dev, the stand-ins, a local runner with Docker, Ansible, compose and Caddy), on
 * ports and a state folder of its own. First `npm run demo` against it: "Build me a service that says
 * hello at /hello" in the web console's chat, a confirmation, and a live URL. Then a person writes to
 * the Product Owner's bot in the Telegram stand-in, as in Telegram, with a failure injected at each
 * stage; each ends as a person would expect, and nothing is lost or done twice (containers, commits,
 * releases, chat messages are counted).
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import Docker from "dockerode";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type Factory, startFactory } from "../../scripts/lib/factory.ts";
import { freePort } from "../../scripts/lib/ports.ts";
import { isListening, spawnCollecting, waitFor } from "../../scripts/lib/processes.ts";
import { ROOT } from "../../scripts/lib/local-stack.ts";
import type { CheckpointView } from "../../src/shared/checkpoints.ts";
import type { DeploymentView } from "../../src/shared/deploys.ts";
import type { TaskEvent } from "../../src/shared/events.ts";
import { demoScenario } from "../../standins/demo-scenario.ts";
import type { Turn } from "../../standins/model-server.ts";
import type { SentMessage } from "../../standins/telegram-server.ts";
import { removeDataVolumes, removeReleasesIn } from "../../scripts/lib/docker-engine.ts";
import { PIP_INSTALL } from "../../src/shared/registries.ts";
import { oneHeavyFileAtATime } from "../support/heavy-gate.ts";

const run = promisify(execFile);
/** Release ports of this file's runner: apart from the deploy tests' (21000-21999) and the test upstreams' (43000+). */
const RELEASE_PORTS = { from: 22_000, to: 22_999 };
const HANDLE = "factory-box";

let work = "";
let factory: Factory;
let docker: Docker;
let token = "";
let updateId = 90_000;
let messageId = 2_000_000;
let nextChat = 7100;

const telegram = () => {
  const server = factory.standins.telegram;
  if (!server) throw new Error("the factory runs no Telegram stand-in");
  return server;
};
const github = () => {
  const server = factory.standins.github;
  if (!server) throw new Error("the factory runs no GitHub stand-in");
  return server;
};
const model = () => {
  const server = factory.standins.model;
  if (!server) throw new Error("the factory runs no scripted model");
  return server;
};

const person = (id: number) => ({ id, is_bot: false, first_name: `Person ${id}` });
/** Sends a message as the person; resolves with its message id. */
async function send(chatId: number, text: string): Promise<number> {
  const update = { update_id: ++updateId, message: { message_id: ++messageId, date: Math.floor(Date.now() / 1000), chat: { id: chatId, type: "private", first_name: "P" }, from: person(chatId), text } };
  expect(await telegram().deliverUpdate(token, update)).toBe(200);
  return update.message.message_id;
}
const sentTo = (chatId: number) => telegram().messages.filter((m) => m.chatId === chatId);
const chatLog = (chatId: number) => JSON.stringify(sentTo(chatId).map((m) => m.text), null, 1);
async function replyMatching(chatId: number, pattern: RegExp, ms = 240_000): Promise<SentMessage> {
  return waitFor(
    () => sentTo(chatId).find((m) => pattern.test(m.text)),
    ms,
    () => `chat ${chatId} has no message like ${pattern}: ${chatLog(chatId)}\n--- wrangler:\n${factory.wrangler.output().slice(-3000)}\n--- runner:\n${factory.runner?.output().slice(-3000) ?? ""}`,
  );
}
async function press(message: SentMessage, label: RegExp): Promise<void> {
  const markup = message.params.reply_markup as { inline_keyboard: { text: string; callback_data: string }[][] } | string;
  const rows = typeof markup === "string" ? (JSON.parse(markup) as { inline_keyboard: { text: string; callback_data: string }[][] }) : markup;
  const button = rows.inline_keyboard.flat().find((b) => label.test(b.text));
  if (!button) throw new Error(`no button ${label} under ${message.text}`);
  const status = await telegram().deliverUpdate(token, { update_id: ++updateId, callback_query: { id: `cb${updateId}`, from: person(Number(message.chatId)), chat_instance: "ci", data: button.callback_data, message: { ...message.message } } });
  expect(status).toBe(200);
}
const count = (chatId: number, pattern: RegExp) => sentTo(chatId).filter((m) => pattern.test(m.text)).length;

/** The projects this file made, whose releases it removes at the end. */
const built = new Set<string>();

/** The person asks for it and confirms; resolves with the project's name. */
async function ask(chatId: number, text: string): Promise<string> {
  await send(chatId, text);
  const question = await replyMatching(chatId, /Start building (\S+) and deploy it once its tests pass\?/, 60_000);
  await press(question, /Confirm/);
  const name = /Start building (\S+) and deploy/.exec(question.text)?.[1] ?? "";
  built.add(name);
  return name;
}

async function project(name: string) {
  const { body } = await factory.api<{ projects: { id: string; name: string; repositoryUrl: string | null; spec: Record<string, unknown> | null }[] }>(`/api/projects?name=${name}`);
  const found = body.projects.find((p) => p.name === name);
  if (!found) throw new Error(`no project ${name}`);
  return found;
}
async function tasksOf(projectId: string) {
  return (await factory.api<{ tasks: { id: string; type: string; status: string }[] }>(`/api/tasks?projectId=${projectId}`)).body.tasks;
}
async function events(taskId: string): Promise<TaskEvent[]> {
  return (await factory.api<{ events: TaskEvent[] }>(`/api/tasks/${taskId}/events?limit=1000`)).body.events;
}
async function deployments(projectId: string): Promise<DeploymentView[]> {
  return (await factory.api<{ deployments: DeploymentView[] }>(`/api/projects/${projectId}/deployments`)).body.deployments;
}
/**
 * The containers of this factory's releases of `name`: the same project name may run on this Docker
 * engine from another factory (a demo, `npm run dev`), so they are told apart by their release ids.
 */
async function containers(name: string) {
  const releases = new Set((await deployments((await project(name)).id)).map((d) => d.sourceDeploymentId ?? d.id));
  const all = await docker.listContainers({ all: true, filters: { label: [`orchestrator.project=${name}`] } });
  return all.filter((container) => releases.has(container.Labels["orchestrator.release"] ?? ""));
}
const commits = async (name: string) => Number((await run("git", ["--git-dir", github().repoPath(name), "rev-list", "--count", "main"])).stdout.trim());
const head = async (name: string) => (await run("git", ["--git-dir", github().repoPath(name), "rev-parse", "main"])).stdout.trim();

/** One GET through Caddy with the project's Host header, as a browser sends it for http://<project>.localhost:<port>. */
function visit(name: string, path: string): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined> }> {
  return new Promise((resolve) => {
    const req = request(`${factory.caddyUrl ?? ""}${path}`, { headers: { host: `${name}.localhost` }, agent: false, timeout: 5000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", (error) => resolve({ status: 0, body: error.message, headers: {} }));
    req.end();
  });
}

/** The demo's scripted model, with `turns` answered first (each once, in order). */
function script(turns: Turn[] = []): void {
  model().load({ ...demoScenario(), turns });
}

/** A project that went live: what the person and the system must show for it. */
async function expectLive(chatId: number, name: string, path = "/hello", says = "hello") {
  const live = await replyMatching(chatId, new RegExp(`🚀 ${name} is live at (\\S+)`));
  expect(live.text).toContain(`http://${name}.localhost:`);
  const answer = await visit(name, path);
  expect(answer.status, answer.body).toBe(200);
  expect(JSON.parse(answer.body)).toEqual({ message: says });
  return live;
}

oneHeavyFileAtATime();

beforeAll(async () => {
  docker = new Docker({ socketPath: inject("dockerSocket") });
  // Releases a killed earlier run left on this file's ports restart with the engine: cleared first.
  await removeReleasesIn(docker, RELEASE_PORTS);
  work = mkdtempSync(join(tmpdir(), "orchestrator-factory-"));
  // As root, Postgres runs as the `postgres` user, which must reach its data folder.
  chmodSync(work, 0o755);
  const lines: string[] = [];
  factory = await startFactory({
    stateDir: join(work, "state"),
    varsFile: join(work, "dev.vars"),
    port: await freePort(),
    pgPort: await freePort(),
    proxyPort: await freePort(),
    caddyPort: await freePort(),
    standinPorts: { model: 0, github: 0, telegram: 0, npm: 0, pypi: 0 },
    handle: HANDLE,
    releasePorts: RELEASE_PORTS,
    vars: { DEPLOY_DRAIN_SECONDS: "1", DEPLOY_HEALTH_SECONDS: "8", JOB_WAIT_SLICE_SECONDS: "1", RUNNER_ACK_LEASE_SECONDS: "3", LOG_LEVEL: "info" },
    echo: false,
    prebuiltWorker: true,
    say: (line) => lines.push(line),
  });
  expect(factory.missing, lines.join("\n")).toEqual([]);
  expect(factory.scriptedModel).toBe(true);
  token = factory.standins.vars.TELEGRAM_BOT_TOKEN ?? "";
  expect(token).toBeTruthy();
}, 300_000);

afterAll(async () => {
  // The releases of this file's projects (the factory's runner leaves them running, as a server would).
  const mine = new Map<string, { list: Docker.ContainerInfo[]; releases: string[] }>();
  for (const name of built) {
    const releases = await project(name).then(async (row) => (await deployments(row.id)).map((d) => d.sourceDeploymentId ?? d.id)).catch(() => []);
    mine.set(name, { list: await containers(name).catch(() => []), releases });
  }
  await factory?.stop();
  for (const [name, { list, releases }] of mine) {
    for (const container of list) await docker.getContainer(container.Id).remove({ force: true }).catch(() => undefined);
    for (const release of releases) await docker.getImage(`orchestrator-release/${name}:${release}`).remove({ force: true }).catch(() => undefined);
    // A network another factory's release still uses stays (Docker refuses to remove it).
    const networks = await docker.listNetworks({ filters: { label: [`orchestrator.project=${name}`] } });
    for (const network of networks) await docker.getNetwork(network.Id).remove().catch(() => undefined);
    await removeDataVolumes(docker, (project) => project === name);
  }
  rmSync(work, { recursive: true, force: true });
}, 120_000);

let happy = { name: "", commits: 0 };

describe("the factory, from one chat message to a live URL", () => {
  it("npm run demo: builds, tests and deploys 'a service that says hello at /hello' from one message and one confirmation, and ends with its URL and answer", async () => {
    const demo = spawnCollecting(process.execPath, [join(ROOT, "scripts", "demo.ts")], {
      cwd: ROOT,
      env: { ...process.env, PORT: new URL(factory.url).port, DEV_STATE_DIR: join(work, "state"), DEV_VARS_FILE: join(work, "dev.vars"), DEV_CADDY_PORT: new URL(factory.caddyUrl ?? "").port, NO_COLOR: "1" },
    });
    expect(await demo.exited, demo.output()).toBe(0);
    const output = demo.output();
    const name = /🚀 (\S+) is live at/.exec(output)?.[1] ?? "";
    built.add(name);
    expect(name).toBe("service-hello");
    happy = { name, commits: 0 };
    expect(output).toContain(`using the factory npm run dev runs on ${factory.url}`);
    expect(output).toContain("the model is the SCRIPTED stand-in");
    expect(output).toMatch(/\[demo\] the web console, signed in as you: http:\/\/127\.0\.0\.1:\d+\/chat\?token=/);
    expect(output).toMatch(/\[demo\] live task view: http:\/\/127\.0\.0\.1:\d+\/tasks\/eng_/);
    expect(output).toMatch(/\[demo\] live task view: http:\/\/127\.0\.0\.1:\d+\/tasks\/dep_/);
    expect(output).toContain(`[demo] http://${name}.localhost:${new URL(factory.caddyUrl ?? "").port}/hello answered 200: {"message": "hello"}`);
    expect(await visit(name, "/hello")).toMatchObject({ status: 200 });
    // The acceptance check the Architect wrote from "says hello at /hello" held before and after the route moved.
    expect(output).toMatch(new RegExp(`🚀 ${name} is live at \\S+ \\(its acceptance check passes\\)`));
    const built12 = new RegExp(`✅ ${name}: the tests pass at ([0-9a-f]{12})`).exec(output)?.[1];
    expect(built12, output).toBeTruthy();
    expect(output).toContain("Deploying it now, as you asked.");

    // The repository holds the tested commit on main.
    const row = await project(name);
    const tasks = await tasksOf(row.id);
    const build = tasks.find((task) => task.type === "engineering");
    const release = tasks.find((task) => task.type === "deploy");
    expect(build?.status).toBe("completed");
    expect(release?.status).toBe("completed");
    const buildEvents = await events(build?.id ?? "");
    const sha = (buildEvents.at(-1)?.data as { sha?: string } | undefined)?.sha ?? "";
    expect(sha.slice(0, 12)).toBe(built12);
    expect(await head(name)).toBe(sha);
    happy.commits = await commits(name);
    // The task streams hold the whole story, from task.started to task.completed.
    for (const task of [build, release]) {
      const stream = await events(task?.id ?? "");
      expect(stream[0]?.type).toBe("task.started");
      expect(stream.at(-1)?.type).toBe("task.completed");
      expect(stream.map((e) => e.seq)).toEqual(stream.map((_, i) => i + 1));
    }
    const releaseEvents = await events(release?.id ?? "");
    expect(releaseEvents.at(-1)?.data?.commit).toBe(sha);
    // llm_usage holds the model calls' cost.
    const usage = (await factory.api<{ usage: { key: string; calls: number; costUsd: number }[] }>("/api/usage?by=agent")).body.usage;
    for (const agent of ["architect", "developer", "env_analyzer", "intent_parser", "product_owner"]) {
      const row = usage.find((u) => u.key === agent);
      expect(row, `${agent} in ${JSON.stringify(usage)}`).toBeTruthy();
      expect(row?.costUsd).toBeGreaterThan(0);
    }
    // Once each: one release live, one container, one build message, one live message.
    expect((await deployments(row.id)).map((d) => d.status)).toEqual(["active"]);
    expect((await containers(name)).filter((c) => c.State === "running")).toHaveLength(1);
    expect(output.split("\n").filter((line) => line.includes(`✅ ${name}: the tests pass`))).toHaveLength(1);
    expect(output.split("\n").filter((line) => line.includes(`🚀 ${name} is live`))).toHaveLength(1);
  }, 400_000);
});

/** The template's code, as the coding agent sees it: exact snippets to edit. */
const HEALTH = 'def health(_handler):\n    return 200, {"ok": True}\n';
const ROUTES = '    ("GET", "/healthz"): health,\n';

/**
 * Each case below is a whole chat → build → test → deploy (about a minute here), so failures at
 * different stages share a run where one does not hide the other: the build's failure and the
 * deploy's question; the control plane's restart mid-build and the runner's mid-deploy.
 */
describe("the project kinds", () => {
  it("a static site: the Architect picks the kind, and one message ends in a live page with its caching headers and the headline asked for", async () => {
    script();
    const chatId = nextChat++;
    const name = await ask(chatId, 'Build me a static site that shows "Welcome aboard"');
    const live = await replyMatching(chatId, new RegExp(`🚀 ${name} is live at \\S+ \\(its acceptance check passes\\)`));
    expect(live.text).toContain(`http://${name}.localhost:`);
    // The chat said which kind was built.
    expect((await replyMatching(chatId, new RegExp(`^✅ ${name}: the tests pass`))).text).toContain("Built as: static-site (a static web site");
    const { body } = await factory.api<{ project: { spec: { template: string; acceptance: { name: string }[] } } }>(`/api/projects/${(await project(name)).id}`);
    expect(body.project.spec).toMatchObject({ template: "static-site", acceptance: [{ name: "the page shows Welcome aboard" }] });
    const page = await visit(name, "/");
    expect(page.status, page.body).toBe(200);
    expect(page.body).toContain('<h2 id="headline">Welcome aboard</h2>');
    expect(page.headers).toMatchObject({ "content-type": "text/html; charset=utf-8", "cache-control": "no-cache" });
    expect(page.headers.etag).toMatch(/^"[0-9a-f]{32}"$/);
    expect((await visit(name, "/assets/style.css")).headers).toMatchObject({ "content-type": "text/css; charset=utf-8", "cache-control": "public, max-age=3600" });
    expect((await visit(name, "/../app/main.py")).status).toBe(404);
  }, 400_000);

  it("a TypeScript service: its packages from the registry through the proxy, a committed lockfile, vitest's results, and a release with the dependencies alone", async () => {
    script();
    const registry = factory.standins.npm;
    if (!registry) throw new Error("the factory runs no npm registry stand-in");
    const downloadsBefore = registry.downloads.length;
    const chatId = nextChat++;
    const name = await ask(chatId, "Build me a TypeScript service that says hi at /hi");
    await expectLive(chatId, name, "/hi", "hi");
    const built = await replyMatching(chatId, new RegExp(`^✅ ${name}: the tests pass`));
    // Both tests ran and passed (the template's and the agent's), as vitest's JUnit report said.
    expect(built.text).toContain("(2 passed)");
    expect(built.text).toContain("Built as: typescript-http (an HTTP service in TypeScript");
    // The Developer's `npm install` fetched the packages; the Tester's and the release's `npm ci` found them in the tenant's cache.
    const fetched = registry.downloads.slice(downloadsBefore);
    expect(fetched).toEqual(expect.arrayContaining(["hono@4.13.19", "@hono/node-server@2.1.11", "vitest@4.1.12"]));
    expect(fetched.filter((spec) => spec === "hono@4.13.19")).toHaveLength(1);
    // The round committed the lockfile (not node_modules), and the release installed from it.
    const lockfile = JSON.parse((await run("git", ["--git-dir", github().repoPath(name), "show", "main:package-lock.json"])).stdout) as { packages: Record<string, unknown> };
    expect(Object.keys(lockfile.packages)).toEqual(expect.arrayContaining(["node_modules/hono", "node_modules/vitest"]));
    expect((await run("git", ["--git-dir", github().repoPath(name), "ls-tree", "-r", "--name-only", "main"])).stdout).not.toContain("node_modules/");
    const [release] = (await containers(name)).filter((container) => container.State === "running");
    const listing = (await run("docker", ["exec", release?.Id ?? "", "ls", "/app/node_modules"])).stdout;
    expect(listing).toContain("hono");
    expect(listing).not.toContain("vitest");
  }, 400_000);

  it("npm run demo -- bot: the seed's weather bot with notifications from one message, with a bot from the pool, answers a person through the Bot API; a subscription survives a redeploy and a rollback", async () => {
    script();
    const demo = spawnCollecting(process.execPath, [join(ROOT, "scripts", "demo.ts"), "bot"], {
      cwd: ROOT,
      env: { ...process.env, PORT: new URL(factory.url).port, DEV_STATE_DIR: join(work, "state"), DEV_VARS_FILE: join(work, "dev.vars"), DEV_CADDY_PORT: new URL(factory.caddyUrl ?? "").port, NO_COLOR: "1" },
    });
    expect(await demo.exited, demo.output()).toBe(0);
    const output = demo.output();
    // Its checks: /healthz over HTTP, and a message to the bot through the runner's Bot API gateway.
    const name = /🚀 (\S+) is live at \S+ \(all 2 acceptance checks pass\)/.exec(output)?.[1] ?? "";
    expect(name, output).toBeTruthy();
    built.add(name);
    // Its tests: the template's two and the agent's two, as vitest's JUnit report counted them.
    expect(output).toMatch(new RegExp(`✅ ${name}: the tests pass at [0-9a-f]{12} after 1 round \\(4 passed\\)`));
    expect(output).toContain("Built as: telegram-bot");
    // The pool was empty: the demo registered a bot of the stand-in, and the project got it.
    expect(output).toMatch(/the bot pool had no free bot: registered @demo_\w+_bot/);
    const username = /@(\w+) answered: Hello! Send \/help to see what I can do\./.exec(output)?.[1] ?? "";
    expect(username, output).toMatch(/^demo_\w+_bot$/);
    expect(output).toContain(`@${username} answered: Subscribed: you will get the forecast for Lisbon every morning.`);
    const row = await project(name);
    const bots = (await factory.api<{ bots: { username: string; projectId: string | null }[] }>("/api/telegram-bots")).body.bots;
    expect(bots.find((bot) => bot.username === username)?.projectId).toBe(row.id);
    const known = (await (await fetch(`${telegram().url}/_standin/bots`)).json()) as { bots: { username: string; token: string }[] };
    const token = known.bots.find((bot) => bot.username === username)?.token ?? "";

    // The subscription is in SQLite in the project's data directory, and outlives releases.
    const database = join(work, "state", "deployments", name, "data", "bot.sqlite");
    const subscriptions = async () => (await run("python3", ["-c", "import sqlite3, sys; print(sorted(r[1] for r in sqlite3.connect(sys.argv[1]).execute('select chat_id, topic from subscriptions')))", database])).stdout.trim();
    expect(await subscriptions()).toBe("['lisbon']");
    for (const path of [`/api/projects/${row.id}/deploy`, `/api/projects/${row.id}/rollback`]) {
      const started = await factory.api<{ task: { id: string } }>(path, { json: {} });
      expect(started.status, JSON.stringify(started.body)).toBe(202);
      await waitFor(async () => ((await events(started.body.task.id)).some((event) => event.type === "task.completed") ? true : undefined), 180_000, () => `${path} did not complete`);
      expect(await subscriptions()).toBe("['lisbon']");
      if (path.endsWith("/deploy")) {
        // The new release was sent the check's message while the old one still served the bot's users.
        const checked = (await events(started.body.task.id)).find((event) => event.step === "acceptance");
        expect(checked?.message, JSON.stringify(checked)).toMatch(/✓ \/weather Lisbon answers from the table: the bot replied "Lisbon: Sunny, 24 °C"/);
      }
    }
    // The release running now (the rollback's) knows the demo's subscription, and answers a new person too.
    const demoChat = 424_242;
    // The checks' conversations stayed on the server: the bot has written to nobody but the demo's person.
    expect(telegram().messages.filter((m) => m.username === username && m.chatId !== demoChat).map((m) => [m.chatId, m.text])).toEqual([]);
    const userChat = nextChat++;
    const tell = (chat: number, text: string) =>
      telegram().deliverUpdate(token, { message: { message_id: ++messageId, date: Math.floor(Date.now() / 1000), chat: { id: chat, type: "private", first_name: "Ada" }, from: person(chat), text, entities: [{ type: "bot_command", offset: 0, length: text.split(" ")[0]?.length ?? 0 }] } });
    const answered = (chat: number, text: string) => telegram().messages.some((m) => m.username === username && m.chatId === chat && m.text === text);
    await tell(demoChat, "/subscriptions");
    await waitFor(() => (answered(demoChat, "You get the forecast for: Lisbon") ? true : undefined), 60_000, () => `no answer after the rollback: ${JSON.stringify(telegram().messages.filter((m) => m.username === username).map((m) => m.text))}`);
    await tell(userChat, "/weather Tokyo");
    await waitFor(() => (answered(userChat, "Tokyo: Clear, 21 °C") ? true : undefined), 60_000, () => "no answer to /weather");
  }, 500_000);
});

describe("the same scenario with a failure injected at each stage", () => {
  let keyed = { chatId: 0, name: "" };

  it("a failing test, then a missing user secret: the Developer fixes it in round two, the deploy asks for the key in the chat and goes on once it is given; the greeting's package comes from PyPI, once", async () => {
    const fixing = { tools: true, lastRole: "tool", anyMessage: "The tests failed in the previous round" } as const;
    const pypiBefore = factory.standins.pypi?.downloads.length ?? 0;
    script([
      {
        name: "round 1: a package pinned and installed, as TASK.md says",
        match: { tools: ["bash", "write"], lastRole: "tool", anyMessage: "# The spec" },
        reply: {
          toolCalls: [
            { name: "write", arguments: { filePath: "/work/repo/requirements.txt", content: "Jinja2==3.1.2\nMarkupSafe==2.1.2\n" } },
            { name: "bash", arguments: { command: `cd /work/repo && ${PIP_INSTALL}`, description: "Install the pinned packages" } },
          ],
        },
      },
      {
        name: "round 1: a typo in the greeting",
        match: { tools: ["edit", "write"], lastRole: "tool", anyMessage: "# The spec" },
        reply: {
          toolCalls: [
            { name: "edit", arguments: { filePath: "/work/repo/app/main.py", oldString: "import json\n", newString: "import json\n\nfrom jinja2 import Template\n" } },
            { name: "edit", arguments: { filePath: "/work/repo/app/main.py", oldString: HEALTH, newString: `${HEALTH}\n\ndef route_hello(_handler):\n    return 200, {"message": Template("{{ word }}").render(word="helo")}\n` } },
            { name: "edit", arguments: { filePath: "/work/repo/app/main.py", oldString: ROUTES, newString: `${ROUTES}    ("GET", "/hello"): route_hello,\n` } },
            { name: "write", arguments: { filePath: "/work/repo/tests/test_route_hello.py", content: 'def test_hello(get):\n    status, body = get("/hello")\n    assert status == 200\n    assert body == {"message": "hello"}\n' } },
          ],
        },
      },
      { name: "round 2: the fix", match: fixing, reply: { toolCalls: [{ name: "edit", arguments: { filePath: "/work/repo/app/main.py", oldString: 'word="helo"', newString: 'word="hello"' } }] } },
      { name: "round 2: done", match: fixing, reply: { content: "[scripted model] Fixed the greeting's typo." } },
    ]);
    const chatId = nextChat++;
    const value = `gk-${randomBytes(12).toString("hex")}`;
    const name = await ask(chatId, "Build me a keyed greeting service that says hello at /hello using my GREETING_API_KEY");
    keyed = { chatId, name };

    // The build: round one's test fails, round two fixes it.
    const built = await replyMatching(chatId, new RegExp(`^✅ ${name}: the tests pass at [0-9a-f]{12} after 2 rounds`));
    expect(built.text).toContain("Deploying it now");
    expect(model().remaining()).toEqual([]);
    const build = (await tasksOf((await project(name)).id)).find((task) => task.type === "engineering");
    const stream = await events(build?.id ?? "");
    expect(stream.some((e) => e.step === "tester" && /1 failed/.test(e.message))).toBe(true);
    // Round one's commit and round two's, on top of the scaffold: one more than the happy path.
    expect(await commits(name)).toBe(happy.commits + 1);

    // The deploy: asks for the key, takes it from the chat and deletes the person's message.
    await replyMatching(chatId, new RegExp(`needs GREETING_API_KEY`));
    const secretMessage = await send(chatId, value);
    await replyMatching(chatId, /Saved GREETING_API_KEY/);
    expect(telegram().deletedUserMessages.some((d) => d.chatId === chatId && d.messageId === secretMessage)).toBe(true);
    await expectLive(chatId, name);
    const [container] = (await containers(name)).filter((c) => c.State === "running");
    expect((await docker.getContainer(container?.Id ?? "").inspect()).Config.Env).toContain(`GREETING_API_KEY=${value}`);
    // Jinja2 rendered the live answer: downloaded once, by the Developer's install; the Tester's rounds
    // and the release's install found it in the owner's package cache.
    expect(factory.standins.pypi?.downloads.slice(pypiBefore)).toEqual(["Jinja2==3.1.2", "MarkupSafe==2.1.2"]);
    // Asked once, told once.
    expect(count(chatId, /needs GREETING_API_KEY/)).toBe(1);
    expect(count(chatId, /^✅/)).toBe(1);
    expect(count(chatId, /🚀/)).toBe(1);
    expect((await deployments((await project(name)).id)).map((d) => d.status)).toEqual(["active"]);

    // The value is nowhere else: not in a message sent, a model request, a task event, the outbox,
    // wrangler's or the runner's output, or the Durable Objects' storage.
    expect(telegram().messages.some((m) => m.text.includes(value))).toBe(false);
    expect(model().requests.some((r) => JSON.stringify(r.body).includes(value))).toBe(false);
    for (const task of await tasksOf((await project(name)).id)) expect(JSON.stringify(await events(task.id))).not.toContain(value);
    expect(JSON.stringify((await factory.api("/api/telegram/outbox?limit=500")).body)).not.toContain(value);
    expect(factory.wrangler.output()).not.toContain(value);
    expect(factory.runner?.output()).not.toContain(value);
    const workerState = join(work, "state", "wrangler");
    // The SQLite files are there to search (the check is not vacuous), and none holds it.
    expect(filesContaining(workerState, "").some((path) => /\.sqlite$/.test(path))).toBe(true);
    expect(filesContaining(workerState, value)).toEqual([]);
  }, 500_000);

  it("a change asked in the chat: a pull request and a preview that answers with it while production does not; shipped with the preview's button, production answers with it and the preview is gone; undone, production answers as before with no rebuild; a second change discarded leaves nothing", async () => {
    expect(keyed.name, "the case before ran first").toBeTruthy();
    const { chatId, name } = keyed;
    script();
    await send(chatId, `change ${name}: also say bye at /bye`);
    const question = await replyMatching(chatId, new RegExp(`Start this change to ${name}: “also say bye at /bye”\\?`));
    await press(question, /Confirm/);
    const offered = await replyMatching(chatId, new RegExp(`^✅ Change #1 to ${name}: the tests pass at [0-9a-f]{12} after 1 round`));
    expect(offered.text).toMatch(/pull request #\d+ \(\S+\) is open: ship it or discard it; its preview is being deployed/);
    expect(offered.text).toContain(`Say “ship change 1 of ${name}” to merge it and put it live`);
    // Its preview: a release of its own at <project>--1, checked for the change's check and the project's.
    const previewed = await replyMatching(chatId, new RegExp(`^🚀 The preview of change #1 of ${name} is live at http://${name}--1\\.localhost:\\d+ \\(all 2 acceptance checks pass\\): ship it or discard it`));
    expect(previewed.text).toContain(`ship change 1 of ${name}`);
    const previewBye = await visit(`${name}--1`, "/bye");
    expect(previewBye.status, previewBye.body).toBe(200);
    // Production is as it was until the change ships.
    expect((await visit(name, "/bye")).status).toBe(404);
    expect(await visit(name, "/hello")).toMatchObject({ status: 200 });
    const previewContainers = () => docker.listContainers({ all: true, filters: { label: [`orchestrator.project=${name}--1`] } });
    expect((await previewContainers()).map((c) => c.State)).toEqual(["running"]);
    // Someone pushes to the change's branch after its tests passed: shipping merges the tested head, not that.
    const tested = (await factory.api<{ change: { testedSha: string; branch: string } }>(`/api/projects/${(await project(name)).id}/changes/1`)).body.change;
    const bareRepo = github().repoPath(name);
    const untested = (await run("git", ["--git-dir", bareRepo, "commit-tree", `${tested.testedSha}^{tree}`, "-p", tested.testedSha, "-m", "an untested push"], { env: { ...process.env, GIT_AUTHOR_NAME: "t", GIT_AUTHOR_EMAIL: "t@t", GIT_COMMITTER_NAME: "t", GIT_COMMITTER_EMAIL: "t@t" } })).stdout.trim();
    await run("git", ["--git-dir", bareRepo, "update-ref", `refs/heads/${tested.branch}`, untested, tested.testedSha]);
    // Shipped with the button under the preview's link (the press is the confirmation).
    await press(previewed, /Ship it/);
    // The change's own check (from "say bye at /bye") joined the project's: both hold before and after the route moved.
    await replyMatching(chatId, new RegExp(`🚀 ${name} is live at \\S+ \\(all 2 acceptance checks pass\\)`));
    const bye = await visit(name, "/bye");
    expect(bye.status, bye.body).toBe(200);
    expect(JSON.parse(bye.body)).toEqual({ message: "bye" });
    expect(await visit(name, "/hello")).toMatchObject({ status: 200 });
    expect((await deployments((await project(name)).id)).map((d) => d.status)).toEqual(["active", "superseded"]);
    // Shipped, its preview is gone: no route, no container, no data.
    expect((await visit(`${name}--1`, "/bye")).status).not.toBe(200);
    expect(await previewContainers()).toEqual([]);
    expect((await docker.listVolumes({ filters: { label: [`orchestrator.project=${name}--1`] } })).Volumes ?? []).toEqual([]);
    // Shipped: main is the pull request's merge (the live release's commit), the branch is gone, and the project keeps the change's check.
    const shipped = (await factory.api<{ change: { status: string; mergeSha: string; branch: string } }>(`/api/projects/${(await project(name)).id}/changes/1`)).body.change;
    expect(shipped).toMatchObject({ status: "shipped", branch: "change/1-also-say-bye-at-bye" });
    expect(await head(name)).toBe(shipped.mergeSha);
    expect((await run("git", ["--git-dir", bareRepo, "rev-parse", `${shipped.mergeSha}^2`])).stdout.trim()).toBe(tested.testedSha);
    await expect(run("git", ["--git-dir", bareRepo, "merge-base", "--is-ancestor", untested, shipped.mergeSha])).rejects.toThrow();
    expect((await deployments((await project(name)).id))[0]?.commitSha).toBe(shipped.mergeSha);
    const bare = github().repoPath(name);
    await expect(run("git", ["--git-dir", bare, "rev-parse", "--verify", `refs/heads/${shipped.branch}`])).rejects.toThrow();
    expect(JSON.stringify((await project(name)).spec?.acceptance)).toContain('"name":"GET /bye says bye"');
    // A shipped change does not ship twice.
    expect((await factory.api(`/api/projects/${(await project(name)).id}/changes/1/ship`, { method: "POST" })).status).toBe(409);

    // Undo, from the chat: the change taken back in one confirmed action.
    const id = (await project(name)).id;
    const checkpoints = async () => (await factory.api<{ checkpoints: CheckpointView[] }>(`/api/projects/${id}/checkpoints`)).body.checkpoints;
    const [changed, built] = await checkpoints();
    expect([changed, built].map((c) => [c?.number, c?.kind, c?.latest, c?.release?.live])).toEqual([[2, "change", true, true], [1, "build", false, false]]);
    expect(changed).toMatchObject({ commitSha: shipped.mergeSha, change: 1 });
    expect(changed?.tests).toMatch(/passed/);
    const releasesBefore = await deployments(id);
    const liveBefore = count(chatId, /🚀/);
    await send(chatId, `undo the last change of ${name}`);
    const confirm = await replyMatching(chatId, new RegExp(`Undo ${name}: back to the checkpoint before the latest one`));
    // What happens to the data is said before the person confirms.
    expect(confirm.text).toContain("data directory (/data) is not rolled back");
    await press(confirm, /Confirm/);
    const undone = await replyMatching(chatId, /^↩️ /);
    expect(undone.text).toMatch(new RegExp(`going back to checkpoint #1 .*revert commit [0-9a-f]{12}, and its release dep_\\w+ is starting again \\(no rebuild`));
    await waitFor(() => (count(chatId, /🚀/) > liveBefore ? true : undefined), 240_000, () => `no live message after the undo: ${JSON.stringify(sentTo(chatId).slice(-4).map((m) => m.text))}`);
    // Production answers as before the change, served by the first release's kept image: no build.
    expect((await visit(name, "/bye")).status).toBe(404);
    expect(await visit(name, "/hello")).toMatchObject({ status: 200 });
    const releases = await deployments(id);
    expect(releases).toHaveLength(releasesBefore.length + 1);
    const first = releasesBefore.find((release) => release.commitSha === built?.commitSha);
    expect(releases[0]).toMatchObject({ kind: "rollback", status: "active", sourceDeploymentId: first?.id, commitSha: await head(name) });
    // main: a revert commit on top of the merge, whose tree is the first build's; history kept.
    const main = await head(name);
    const git = async (...args: string[]) => (await run("git", ["--git-dir", bare, ...args])).stdout.trim();
    expect(await git("rev-parse", `${main}^`)).toBe(shipped.mergeSha);
    expect(await git("rev-parse", `${main}^{tree}`)).toBe(await git("rev-parse", `${built?.commitSha ?? ""}^{tree}`));
    expect(await git("log", "-1", "--format=%s", main)).toBe(`Undo: back to checkpoint #1 (${built?.summary ?? ""})`);
    const [undoPoint] = await checkpoints();
    expect(undoPoint).toMatchObject({ number: 3, kind: "undo", restores: 1, latest: true, commitSha: main, release: { deploymentId: releases[0]?.id, live: true } });
    // The checks went back with the code.
    expect(JSON.stringify((await project(name)).spec?.acceptance)).not.toContain("GET /bye");
    expect((await containers(name)).filter((c) => c.State === "running")).toHaveLength(1);

    // A second change, discarded with the button under its preview's link: nothing of it is left.
    await send(chatId, `change ${name}: also say ciao at /ciao`);
    await press(await replyMatching(chatId, new RegExp(`Start this change to ${name}: “also say ciao at /ciao”\\?`)), /Confirm/);
    const second = await replyMatching(chatId, new RegExp(`^🚀 The preview of change #2 of ${name} is live at`));
    expect((await visit(`${name}--2`, "/ciao")).status).toBe(200);
    const [secondContainer] = await docker.listContainers({ filters: { label: [`orchestrator.project=${name}--2`] } });
    const secondPort = secondContainer?.Ports.find((p) => p.PublicPort)?.PublicPort;
    expect(secondPort).toBeGreaterThan(0);
    await press(second, /Discard/);
    await replyMatching(chatId, new RegExp(`^🚀 The preview of change #2 of ${name} is removed: its route, 1 release and its data`));
    const discarded = (await factory.api<{ change: { status: string; pullRequest: { number: number } } }>(`/api/projects/${id}/changes/2`)).body.change;
    expect(discarded.status).toBe("discarded");
    expect((await visit(`${name}--2`, "/ciao")).status).not.toBe(200);
    expect(await docker.listContainers({ all: true, filters: { label: [`orchestrator.project=${name}--2`] } })).toEqual([]);
    expect((await docker.listVolumes({ filters: { label: [`orchestrator.project=${name}--2`] } })).Volumes ?? []).toEqual([]);
    expect(await docker.listNetworks({ filters: { label: [`orchestrator.project=${name}--2`] } })).toEqual([]);
    await expect(run("git", ["--git-dir", bare, "rev-parse", "--verify", "refs/heads/change/2-also-say-ciao-at-ciao"])).rejects.toThrow();
    expect(await isListening(secondPort ?? 0)).toBe(false);
    // Production as it was.
    expect((await visit(name, "/ciao")).status).toBe(404);
    expect(await visit(name, "/hello")).toMatchObject({ status: 200 });
  }, 500_000);

  it("an unhealthy release: turned away, while the previous one keeps serving", async () => {
    expect(keyed.name, "the case before ran first").toBeTruthy();
    const { chatId, name } = keyed;
    // A commit whose health check fails, pushed to main as a person might.
    const checkout = join(work, `${name}-broken`);
    const auth = Buffer.from(`x-access-token:${github().issueToken()}`).toString("base64");
    const git = (args: string[]) => run("git", ["-c", `http.extraHeader=Authorization: Basic ${auth}`, "-c", "user.name=t", "-c", "user.email=t@t", ...args], { cwd: work });
    await git(["clone", "-q", `${github().url}/${github().org}/${name}.git`, checkout]);
    const main = join(checkout, "app", "main.py");
    writeFileSync(main, readFileSync(main, "utf8").replace(HEALTH, 'def health(_handler):\n    return 500, {"ok": False}\n'));
    await git(["-C", checkout, "commit", "-q", "-am", "break the health check"]);
    await git(["-C", checkout, "push", "-q", "origin", "HEAD:main"]);

    const releasesBefore = (await deployments((await project(name)).id)).length;
    const liveBefore = count(chatId, /🚀/);
    await send(chatId, `deploy ${name}`);
    const question = await replyMatching(chatId, new RegExp(`Deploy ${name}\\?`));
    await press(question, /Confirm/);
    const failed = await replyMatching(chatId, new RegExp(`^❌ The deploy of ${name} failed`));
    expect(failed.text).toMatch(/health/i);
    // The release that was live still is, and nothing else runs.
    expect(await visit(name, "/hello")).toMatchObject({ status: 200 });
    const history = (await deployments((await project(name)).id)).map((d) => d.status);
    expect(history.filter((status) => status === "active")).toHaveLength(1);
    expect(history).toHaveLength(releasesBefore + 1);
    expect((await containers(name)).filter((c) => c.State === "running")).toHaveLength(1);
    expect(count(chatId, /🚀/)).toBe(liveBefore);
    expect(count(chatId, /^❌/)).toBe(1);
  }, 400_000);

  it("wrangler dev restarted mid-engineering, then the runner killed and restarted mid-deploy: the build and its deploy finish once", async () => {
    script();
    const runner = factory.runner;
    if (!runner) throw new Error("no runner");
    const chatId = nextChat++;
    const name = await ask(chatId, "Build me a sturdy service that says hello at /hello");
    const started = await replyMatching(chatId, new RegExp(`Building ${name} has started \\(task (eng_[A-Za-z0-9]+)\\)`));
    const taskId = /task (eng_[A-Za-z0-9]+)/.exec(started.text)?.[1] ?? "";
    await waitFor(async () => ((await events(taskId)).some((e) => e.step === "developer") ? true : undefined), 120_000, () => "the Developer never started");
    // Restarted while the Developer's job runs: its report wakes the workflow when it arrives. (Locally,
    // a workflow stopped inside a step's own code is not resumed by the next wrangler dev; Cloudflare's
    // runtime resumes it, and the hub's wake-up is what this is about.)
    await waitFor(() => runningJob("docker.run"), 120_000, () => "the Developer's job never ran");
    await factory.wrangler.stop();
    await factory.wrangler.start();
    await replyMatching(chatId, new RegExp(`^✅ ${name}: the tests pass`));

    // The runner killed while it runs the release playbook: no goodbye, no result sent.
    await replyMatching(chatId, new RegExp(`Deploying ${name} has started`));
    const playbookJob = await waitFor(() => runningJob("ansible.playbook"), 120_000, () => "the release playbook never ran");
    await runner.kill();
    await new Promise((resolve) => setTimeout(resolve, 2000));
    await runner.start();
    await expectLive(chatId, name);

    // The build: the same commits as the happy path, one start and one end.
    expect(await commits(name)).toBe(happy.commits);
    const stream = await events(taskId);
    expect(stream.filter((e) => e.type === "task.started")).toHaveLength(1);
    expect(stream.filter((e) => e.type === "task.completed")).toHaveLength(1);
    // The deploy: the interrupted release playbook was queued once more (the runner never runs a job twice itself).
    const deploy = (await tasksOf((await project(name)).id)).find((task) => task.type === "deploy");
    expect((await events(deploy?.id ?? "")).filter((e) => /running the release again/.test(e.message))).toHaveLength(1);
    expect((await deployments((await project(name)).id)).map((d) => d.status)).toEqual(["active"]);
    expect((await containers(name)).filter((c) => c.State === "running")).toHaveLength(1);
    // The killed playbook's install network (the job's own, to the registry) went with it when the runner came back.
    expect(await docker.listNetworks({ filters: { label: [`orchestrator.job=${playbookJob}`] } })).toEqual([]);
    expect(count(chatId, /^✅/)).toBe(1);
    expect(count(chatId, /🚀/)).toBe(1);
    expect(count(chatId, /^❌/)).toBe(0);
  }, 500_000);
});

/** The id of a job of this type the factory's runner is running now, if any. */
async function runningJob(type: string): Promise<string | undefined> {
  const { body } = await factory.api<{ jobs: { id: string; type: string }[] }>(`/api/servers/${HANDLE}/jobs?state=running`);
  return body.jobs.find((job) => job.type === type)?.id;
}

/** The files under `dir` whose bytes contain `needle`. */
function filesContaining(dir: string, needle: string): string[] {
  const found: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) found.push(...filesContaining(path, needle));
    else if (readFileSync(path).includes(needle)) found.push(path);
  }
  return found;
}
