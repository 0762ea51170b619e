/**
 * The engineering pipeline through the real path: the worker (wrangler dev) runs EngineeringWorkflow,
 * which calls the scripted model (the `openai` SDK) and the GitHub stand-in (octokit), and sends jobs
 * to a real runner that runs them in real Docker: repo.scaffold, then opencode in the coding-worker
 * image against the same scripted model, then pytest in that image. The stand-ins are the ones
 * `npm run dev` uses (standins/).
 *
 * Last, the web console (`/chat`) on this stack, in a real headless Chromium: a person signs in with
 * an API key, talks to the Product Owner agent over the chat WebSocket, confirms with a button, and gets
 * a task link that opens the live task view, inline and in its own page, while the build runs here.
 * `SCREENSHOTS_DIR=docs/screenshots` makes the README's pictures from it.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import Docker from "dockerode";
import { type Browser, chromium } from "playwright-core";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createDb } from "../../src/db/client.ts";
import { type EngineeringStack, startEngineeringStack } from "../../scripts/lib/engineering-stack.ts";
import type { TestRunner } from "../../scripts/lib/local-runner.ts";
import { ROOT, type Stack } from "../../scripts/lib/local-stack.ts";
import { spawnCollecting, waitFor } from "../../scripts/lib/processes.ts";
import type { TaskEvent } from "../../src/shared/events.ts";
import type { GitHubServer } from "../../standins/github-server.ts";
import { type ChatRequest, messageText, type ModelServer, type Scenario, type Turn } from "../../standins/model-server.ts";
import { demoScenario } from "../../standins/demo-scenario.ts";
import { oneHeavyFileAtATime } from "../support/heavy-gate.ts";

const run = promisify(execFile);
const HANDLE = "build-box";
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
// SCREENSHOTS_DIR=docs/screenshots makes the README's pictures.
const SCREENSHOTS = process.env.SCREENSHOTS_DIR ? resolve(process.env.SCREENSHOTS_DIR) : join(tmpdir(), "orchestrator-screenshots");

let env: EngineeringStack;
let stack: Stack;
let runner: TestRunner;
let docker: Docker;
let model: ModelServer;
let github: GitHubServer;
let MODEL_KEY = "";
const allEvents: TaskEvent[] = [];
const errorBodies: unknown[] = [];

// ---- The scripted model's parts ----

const SPEC = {
  summary: "A greeting service: GET /hello answers with a greeting for the name given.",
  modules: [{ name: "greeting", purpose: "builds the greeting text" }],
  routes: [{ method: "GET", path: "/hello", purpose: "greets ?name=" }],
  env: [{ name: "GREETING_PREFIX", kind: "user", description: "the word the greeting starts with" }],
};
const architect = (reply: string, name = "architect"): Turn => ({ name, match: { tools: false, anyMessage: "You are the Architect" }, reply: { content: reply } });
const write = (name: string, files: Record<string, string>): Turn => ({
  name,
  match: { tools: ["write"], lastRole: "user" },
  reply: { toolCalls: Object.entries(files).map(([path, content]) => ({ name: "write", arguments: { filePath: `/work/repo/${path}`, content } })) },
});
/** opencode's write tool overwrites only a file the agent has read: read first, then write. */
const rewrite = (name: string, path: string, content: string): Turn[] => [
  { name: `${name}: read`, match: { tools: ["read"], lastRole: "user" }, reply: { toolCalls: [{ name: "read", arguments: { filePath: `/work/repo/${path}` } }] } },
  { name: `${name}: write`, match: { tools: ["write"], lastRole: "tool" }, reply: { toolCalls: [{ name: "write", arguments: { filePath: `/work/repo/${path}`, content } }] } },
];
const done = (name: string, text: string): Turn => ({ name, match: { tools: true, lastRole: "tool" }, reply: { content: text } });

const GREETING_TEST = `from app.greeting import greeting\n\n\ndef test_greeting():\n    assert greeting("Ada") == "Hello, Ada!", "the greeting must end with an exclamation mark"\n`;
const BROKEN = `def greeting(name):\n    return f"Hello, {name}"\n`;
const FIXED = `def greeting(name):\n    return f"Hello, {name}!"\n`;

function load(scenario: Scenario) {
  model.load({ ...scenario, side: [{ name: "title", match: { tools: false, lastMessage: /title/i }, reply: { content: "A title" } }] });
}

// ---- Helpers ----

async function newProject(name: string, settings: Record<string, unknown> = {}) {
  const user = await stack.api<{ user: { id: string } }>("/api/users", { json: { name: `owner of ${name}` } });
  const key = await stack.api<{ key: string }>("/api/keys", { json: { userId: user.body.user.id, name: "eng" } });
  const project = await stack.api<{ project: { id: string } }>("/api/projects", {
    // Other test files enroll runners in the same database: the project names its build server.
    json: { name, description: "Greets people by name over HTTP.", ownerId: user.body.user.id, config: { server: HANDLE } },
  });
  expect(project.status).toBe(201);
  if (Object.keys(settings).length) {
    const patched = await stack.api(`/api/projects/${project.body.project.id}`, { method: "PATCH", json: settings, key: key.body.key });
    expect(patched.status, JSON.stringify(patched.body)).toBe(200);
  }
  return { id: project.body.project.id, key: key.body.key };
}

async function start(projectId: string, key: string) {
  const res = await stack.api<{ task: { id: string } }>(`/api/projects/${projectId}/engineering`, { json: {}, key });
  expect(res.status, JSON.stringify(res.body)).toBe(202);
  return res.body.task.id;
}

async function eventsOf(taskId: string): Promise<TaskEvent[]> {
  const res = await stack.api<{ events: TaskEvent[] }>(`/api/tasks/${taskId}/events?limit=1000`);
  return res.body.events;
}

/** Waits until the task's stream has an event `until` accepts; returns all events so far. */
async function until(taskId: string, accept: (event: TaskEvent) => boolean, timeoutMs = 180_000): Promise<TaskEvent[]> {
  let seen: TaskEvent[] = [];
  await waitFor(
    async () => {
      seen = await eventsOf(taskId);
      return seen.some(accept) ? true : undefined;
    },
    timeoutMs,
    () => `task ${taskId} did not get there; its events:\n${seen.map((e) => `${e.seq} ${e.type} ${e.step ?? ""} ${e.message}`).join("\n")}\nrunner:\n${runner.output().slice(-3000)}`,
  );
  return seen;
}

const TERMINAL = ["task.completed", "task.failed", "task.cancelled"];
async function finished(taskId: string, timeoutMs?: number) {
  const events = await until(taskId, (event) => TERMINAL.includes(event.type), timeoutMs);
  allEvents.push(...events);
  return { events, last: events.at(-1) as TaskEvent };
}

function cli(args: string[], key: string) {
  return spawnCollecting(process.execPath, [inject("cliBundle"), ...args], {
    cwd: ROOT,
    env: { ...process.env, ORCHESTRATOR_CONFIG: "/nonexistent/config.json", ORCHESTRATOR_URL: stack.url, ORCHESTRATOR_API_KEY: key },
  });
}

const git = (args: string[]) => run("git", args).then((result) => result.stdout.trim());

/** The knowledge index's text for a project (its task logs among it). */
async function projectChunks(projectId: string): Promise<string[]> {
  const handle = createDb({ databaseUrl: inject("databaseUrl"), wsProxy: inject("dbWsProxy") });
  try {
    const { rows } = await handle.db.execute<{ text: string }>(sql`select text from rag_chunks where project_id = ${projectId}`);
    return rows.map((row) => row.text);
  } finally {
    await handle.close();
  }
}

oneHeavyFileAtATime();

beforeAll(async () => {
  docker = new Docker({ socketPath: inject("dockerSocket") });
  env = await startEngineeringStack({
    databaseUrl: inject("databaseUrl"),
    dbWsProxy: inject("dbWsProxy"),
    adminKey: inject("adminApiKey"),
    dockerSocket: inject("dockerSocket"),
    image: inject("codingWorkerImage"),
    handle: HANDLE,
  });
  ({ stack, runner, model, github } = env);
  MODEL_KEY = env.modelKey;
}, 240_000);

afterAll(async () => {
  await env?.stop();
});

describe("the engineering pipeline", () => {
  let first: { id: string; key: string };

  it("fails a round on a real test failure, reworks it, and completes with a pushed SHA whose tests pass", { timeout: 300_000 }, async () => {
    load({
      turns: [
        // Not JSON the first time: the Architect is shown why and asked once more.
        architect("Here is the spec you asked for!", "architect (prose)"),
        architect(JSON.stringify(SPEC)),
        write("round 1: a greeting that misses its mark", { "app/greeting.py": BROKEN, "tests/test_greeting.py": GREETING_TEST }),
        done("round 1 done", "Added the greeting module and its test."),
        ...rewrite("round 2: the fix", "app/greeting.py", FIXED),
        done("round 2 done", "Fixed the greeting."),
      ],
    });
    first = await newProject("greeter");
    // An acceptance check its owner sets before there is a spec: the Architect's spec keeps it.
    const ownCheck = { name: "greets", method: "GET", path: "/hello", expect: { status: 200, bodyContains: "Hello" } };
    expect((await stack.api(`/api/projects/${first.id}`, { method: "PATCH", json: { acceptance: [ownCheck] }, key: first.key })).status).toBe(200);
    const taskId = await start(first.id, first.key);
    const { events, last } = await finished(taskId);
    expect(last.type, last.message).toBe("task.completed");
    expect(model.remaining()).toEqual([]);

    // The Architect's retry carried the validation error.
    const architectCalls = model.requests.filter((request) => messageText((request.body as ChatRequest).messages[0]).includes("You are the Architect"));
    expect(architectCalls).toHaveLength(2);
    expect(messageText((architectCalls[1]?.body as ChatRequest).messages.at(-1))).toContain("the reply is not JSON");

    // Round 1's failure, parsed: the test's name and its message.
    const tester1 = events.find((event) => event.type === "step.completed" && event.step === "tester" && event.data?.round === 1);
    expect(tester1?.message).toContain("Tester round 1: failed");
    const failures = (tester1?.data?.tests as { failures: { test: string; message: string }[] }).failures;
    expect(failures[0]?.test).toBe("tests.test_greeting::test_greeting");
    expect(failures[0]?.message).toContain("the greeting must end with an exclamation mark");
    // ...went back to the Developer, whose second round was told about it.
    const round2 = model.requests.find((request) => request.answeredBy === "round 2: the fix: write");
    expect(round2).toBeDefined();
    expect(events.some((event) => event.type === "step.started" && event.step === "developer" && event.data?.round === 2 && event.message.includes("fixing 1 failure"))).toBe(true);
    // The agent's and the tests' output arrived as log lines.
    expect(events.some((event) => event.type === "log" && event.message.includes("tool write"))).toBe(true);
    expect(events.some((event) => event.type === "log" && event.message.includes("3 passed in"))).toBe(true);

    // The final SHA is on the branch in the repository, and its tests pass when run again by hand.
    const sha = String(last.data?.sha);
    const branch = String(last.data?.branch);
    expect(branch).toBe(`orchestrator/${taskId}`);
    const bare = github.repoPath("greeter");
    expect(await git(["--git-dir", bare, "rev-parse", `refs/heads/${branch}`])).toBe(sha);
    // ...and main was moved forward to it.
    expect(last.data).toMatchObject({ merged: true, defaultBranch: "main" });
    expect(await git(["--git-dir", bare, "rev-parse", "refs/heads/main"])).toBe(sha);
    const checkout = mkdtempSync(join(tmpdir(), "greeter-"));
    await git(["clone", "--quiet", bare, checkout]);
    await git(["-C", checkout, "checkout", "--quiet", sha]);
    const retest = await run("docker", ["run", "--rm", "--network", "none", "--user", "0", "-v", `${checkout}:/src`, "-w", "/src", inject("codingWorkerImage"), "python3", "-m", "pytest", "-q", "-p", "no:cacheprovider"]);
    expect(retest.stdout).toMatch(/3 passed/);
    // TASK.md was the agent's, not the repository's.
    await expect(git(["-C", checkout, "cat-file", "-e", `${sha}:TASK.md`])).rejects.toThrow();

    // The project has its spec, its repository and its new status.
    const project = await stack.api<{ project: { spec: { summary: string }; repositoryUrl: string; status: string } }>(`/api/projects/${first.id}`, { key: first.key });
    expect(project.body.project).toMatchObject({ spec: { summary: SPEC.summary, acceptance: [ownCheck] }, repositoryUrl: `${github.url}/${github.org}/greeter`, status: "ready" });
    // The key went to the model and the agent, as the bearer of their requests.
    expect(model.requests.every((request) => request.apiKey === MODEL_KEY)).toBe(true);
  });

  it("runs again on the same project without a second repository, reusing the spec, held to a coverage threshold; main moved meanwhile, so the work is a pull request; the deploy it was asked for is not started once the key that asked is revoked", { timeout: 240_000 }, async () => {
    const patched = await stack.api<{ project: { config: { engineering: Record<string, unknown> } } }>(`/api/projects/${first.id}`, { method: "PATCH", json: { coverageThreshold: 60 }, key: first.key });
    expect(patched.body.project.config.engineering).toEqual({ coverageThreshold: 60 });
    load({ turns: [write("a passing change", { "tests/test_more.py": "from app.greeting import greeting\n\n\ndef test_more():\n    assert greeting('Bo') == 'Hello, Bo!'\n" }), done("done", "ok")] });
    // Asked with a second key of the owner's, to deploy once the tests pass; that key is revoked meanwhile.
    const issued = await stack.api<{ apiKey: { id: string }; key: string }>("/api/keys", { json: { name: "laptop" }, key: first.key });
    expect(issued.status).toBe(201);
    const asked = await stack.api<{ task: { id: string } }>(`/api/projects/${first.id}/engineering`, { json: { deploy: true }, key: issued.body.key });
    expect(asked.status, JSON.stringify(asked.body)).toBe(202);
    const taskId = asked.body.task.id;
    expect((await stack.api(`/api/keys/${issued.body.apiKey.id}`, { method: "DELETE", key: first.key })).status).toBe(200);
    // A person pushes to main while the Developer works: main cannot be fast-forwarded to the work.
    await waitFor(async () => ((await eventsOf(taskId)).some((event) => event.type === "step.started" && event.step === "developer") ? true : undefined), 120_000, () => "the Developer never started");
    const bare = github.repoPath("greeter");
    const before = await git(["--git-dir", bare, "rev-parse", "refs/heads/main"]);
    const pushed = (await run("git", ["--git-dir", bare, "commit-tree", `${before}^{tree}`, "-p", before, "-m", "A person's commit"], { env: { ...process.env, GIT_AUTHOR_NAME: "Ada", GIT_AUTHOR_EMAIL: "ada@example.test", GIT_COMMITTER_NAME: "Ada", GIT_COMMITTER_EMAIL: "ada@example.test" } })).stdout.trim();
    await git(["--git-dir", bare, "update-ref", "refs/heads/main", pushed, before]);
    const { events, last } = await finished(taskId);
    expect(last.type, last.message).toBe("task.completed");
    // The work went to a pull request into main, which merges cleanly; main is the person's.
    expect(last.data).toMatchObject({ merged: false, pullRequest: { number: 1 } });
    expect(last.message).toContain("main has moved on meanwhile, so the work is in pull request #1");
    const pulls = (await (await fetch(`${github.url}/repos/${github.org}/greeter/pulls`, { headers: { authorization: `token ${github.issueToken(["greeter"])}` } })).json()) as { number: number; state: string; mergeable: boolean; head: { ref: string; sha: string }; base: { ref: string } }[];
    expect(pulls).toMatchObject([{ number: 1, state: "open", mergeable: true, head: { ref: String(last.data?.branch), sha: String(last.data?.sha) }, base: { ref: "main" } }]);
    expect(await git(["--git-dir", bare, "rev-parse", "refs/heads/main"])).toBe(pushed);
    expect(last.data?.deploy).toEqual({ notDeployed: "the key that asked for it no longer works" });
    expect(last.message).toContain("not deployed: the key that asked for it no longer works");
    const deploys = await stack.api<{ tasks: unknown[] }>(`/api/tasks?projectId=${first.id}&type=deploy`);
    expect(deploys.body.tasks).toEqual([]);
    expect(events.find((event) => event.step === "architect" && event.type === "step.completed")?.message).toContain("already there, reused");
    expect(events.some((event) => event.step === "architect" && event.message.includes("the stored spec is used"))).toBe(true);
    expect(github.requests.filter((request) => request.method === "POST" && request.path.endsWith("/repos"))).toHaveLength(1);
    // With a threshold, the template's coverage command ran and its figure was read.
    expect(events.find((event) => event.type === "step.started" && event.step === "tester")?.message).toContain("--cov=app");
    const tester = events.find((event) => event.type === "step.completed" && event.step === "tester");
    expect((tester?.data?.tests as { coverage: number }).coverage).toBeGreaterThan(60);
    // It started from main, where the first run's work is.
    expect(events.find((event) => event.step === "preparer" && event.type === "step.completed")?.message).toContain("already scaffolded");
  });

  it("takes a change request on the built project: a brief, rounds on change/<n>-…, a pull request with main untouched; changed more from the CLI on the same branch and pull request; discarded from the CLI, its pull request is closed and its branch deleted", { timeout: 300_000 }, async () => {
    // Shipping one (merge, checks, deploy) is the factory test's, from the chat.
    model.load(demoScenario());
    const bare = github.repoPath("greeter");
    const pullsOf = async () => (await (await fetch(`${github.url}/repos/${github.org}/greeter/pulls?state=all`, { headers: { authorization: `token ${github.issueToken(["greeter"])}` } })).json()) as { number: number; state: string; merged: boolean; head: { ref: string } }[];
    type Change = { number: number; branch: string; status: string; taskId: string; pullRequest: { number: number; url: string } | null };

    // A project never built has nothing to change: refused, nothing created.
    const unbuilt = await newProject("never-built");
    const refused = await stack.api<{ error: { code: string; message: string } }>(`/api/projects/${unbuilt.id}/changes`, { json: { request: "say bye at /bye" }, key: unbuilt.key });
    expect(refused.status).toBe(409);
    expect(refused.body.error.message).toContain("was never built");
    expect((await stack.api<{ changes: unknown[] }>(`/api/projects/${unbuilt.id}/changes`, { key: unbuilt.key })).body.changes).toEqual([]);
    // Nor one whose repository is gone (here: named, but never made).
    const gone = await stack.api(`/api/projects/${unbuilt.id}`, { method: "PATCH", json: { spec: { ...SPEC, template: "python-http" }, repositoryUrl: `${github.url}/${github.org}/never-built` } });
    expect(gone.status, JSON.stringify(gone.body)).toBe(200);
    const goneRefused = await stack.api<{ error: { message: string } }>(`/api/projects/${unbuilt.id}/changes`, { json: { request: "say bye at /bye" }, key: unbuilt.key });
    expect(goneRefused.status).toBe(409);
    expect(goneRefused.body.error.message).toContain(`repository (${github.url}/${github.org}/never-built) is gone`);
    // Another owner's key does not see this project's changes, nor does the owner's key limited to another project.
    expect((await stack.api(`/api/projects/${first.id}/changes`, { key: unbuilt.key })).status).toBe(404);
    const other = await stack.api<{ project: { id: string } }>("/api/projects", { json: { name: "greeter-two", description: "Another one." }, key: first.key });
    expect(other.status).toBe(201);
    const limited = await stack.api<{ key: string }>("/api/keys", { json: { name: "other only", projectId: other.body.project.id }, key: first.key });
    expect(limited.status).toBe(201);
    expect((await stack.api(`/api/projects/${first.id}/changes`, { key: limited.body.key })).status).toBe(404);
    expect((await stack.api(`/api/projects/${first.id}/changes`, { json: { request: "say bye at /bye" }, key: limited.body.key })).status).toBe(404);

    const mainBefore = await git(["--git-dir", bare, "rev-parse", "refs/heads/main"]);
    // From the CLI, as `orchestrator change <project> "…"`.
    const started = cli(["change", "greeter", "Also say bye at /bye"], first.key);
    expect(await started.exited, started.output()).toBe(0);
    const taskId = /^change #1 started on change\/1-also-say-bye-at-bye \(task (eng_[A-Za-z0-9]+)\)/m.exec(started.output())?.[1] ?? "";
    expect(taskId, started.output()).toBeTruthy();
    // No build beside a change (changes run beside each other: the case after this one).
    const busy = await stack.api<{ error: { message: string } }>(`/api/projects/${first.id}/engineering`, { json: {}, key: first.key });
    expect(busy.status).toBe(409);
    expect(busy.body.error.message).toMatch(/^Project greeter already has an engineering run in progress \(task eng_/);
    const { events, last } = await finished(taskId);
    expect(last.type, last.message).toBe("task.completed");
    expect(events.find((event) => event.step === "architect" && event.type === "step.completed")?.message).toContain("change #1: Add GET /bye, which says bye");
    // The project is not deployed: its change gets no preview, and says so.
    expect(last.message).toMatch(/^Change #1 to greeter: the tests pass at [0-9a-f]{12} after 1 round .*; pull request #\d+ .* is open: ship it or discard it; no preview: Project greeter is not deployed, so change #1 gets no preview$/);
    // The work is on the change's branch and in a pull request; main is as it was.
    expect(await git(["--git-dir", bare, "rev-parse", "refs/heads/main"])).toBe(mainBefore);
    expect(await git(["--git-dir", bare, "show", "change/1-also-say-bye-at-bye:app/main.py"])).toContain('("GET", "/bye")');
    const open = (await stack.api<{ change: Change }>(`/api/projects/${first.id}/changes/1`, { key: first.key })).body.change;
    expect(open).toMatchObject({ status: "open", taskId, pullRequest: { number: (last.data?.pullRequest as { number: number }).number } });
    expect((await pullsOf()).find((pull) => pull.number === open.pullRequest?.number)).toMatchObject({ state: "open", head: { ref: "change/1-also-say-bye-at-bye" } });

    // Changed more from the CLI: another round on the same branch from its head, the same pull request updated, the brief grown.
    const headBefore = await git(["--git-dir", bare, "rev-parse", "refs/heads/change/1-also-say-bye-at-bye"]);
    const again = cli(["changes", "more", "greeter", "1", "Also say ciao at /ciao", "--follow"], first.key);
    expect(await again.exited, again.output()).toBe(0);
    const moreTask = /change #1 goes on on change\/1-also-say-bye-at-bye \(task (eng_[A-Za-z0-9]+)\)/.exec(again.output())?.[1] ?? "";
    expect(moreTask, again.output()).toBeTruthy();
    const more = await finished(moreTask);
    expect(more.last.message).toMatch(new RegExp(`^Change #1 to greeter: the tests pass at [0-9a-f]{12} after 1 round .*; pull request #${open.pullRequest?.number ?? 0} .* is open`));
    expect(more.events.find((event) => event.step === "architect" && event.type === "step.completed")?.message).toMatch(/change #1: .*ciao.* \(2 changes, 2 acceptance checks\)/);
    const moreMain = await git(["--git-dir", bare, "show", "change/1-also-say-bye-at-bye:app/main.py"]);
    expect(moreMain).toContain('("GET", "/bye")');
    expect(moreMain).toContain('("GET", "/ciao")');
    await git(["--git-dir", bare, "merge-base", "--is-ancestor", headBefore, "refs/heads/change/1-also-say-bye-at-bye"]);
    expect(await git(["--git-dir", bare, "rev-parse", "refs/heads/main"])).toBe(mainBefore);
    expect((await stack.api<{ change: Change }>(`/api/projects/${first.id}/changes/1`, { key: first.key })).body.change).toMatchObject({ status: "open", taskId: moreTask, pullRequest: { number: open.pullRequest?.number } });
    expect((await pullsOf()).filter((pull) => pull.head.ref === "change/1-also-say-bye-at-bye").map((pull) => pull.state)).toEqual(["open"]);

    // Discarded from the CLI: the pull request closed unmerged, the branch gone, main untouched.
    const discarded = cli(["changes", "discard", "greeter", "1"], first.key);
    expect(await discarded.exited, discarded.output()).toBe(0);
    expect(discarded.output()).toContain("change #1 discarded: its pull request closed and change/1-also-say-bye-at-bye deleted");
    expect((await pullsOf()).find((pull) => pull.number === open.pullRequest?.number)).toMatchObject({ state: "closed", merged: false });
    await expect(git(["--git-dir", bare, "rev-parse", "--verify", "refs/heads/change/1-also-say-bye-at-bye"])).rejects.toThrow();
    expect(await git(["--git-dir", bare, "rev-parse", "refs/heads/main"])).toBe(mainBefore);
    // A discarded change does not change more, ship, nor is it discarded twice.
    const noMore = await stack.api<{ error: { message: string } }>(`/api/projects/${first.id}/changes/1/more`, { json: { request: "say hi at /hi" }, key: first.key });
    expect(noMore.status).toBe(409);
    expect(noMore.body.error.message).toBe("Change #1 is discarded: only an open change (its tests passed, its pull request open) can change more");
    expect((await stack.api(`/api/projects/${first.id}/changes/1/ship`, { method: "POST", key: first.key })).status).toBe(409);
    expect((await stack.api(`/api/projects/${first.id}/changes/1/discard`, { method: "POST", key: first.key })).status).toBe(409);
    // Limited to its project, the owner's other key can neither ship nor discard it either.
    expect((await stack.api(`/api/projects/${first.id}/changes/1/discard`, { method: "POST", key: limited.body.key })).status).toBe(404);

    // A change cancelled while it builds (its workflow stopped before it could say so) can be discarded.
    const second = await stack.api<{ change: Change; task: { id: string } }>(`/api/projects/${first.id}/changes`, { json: { request: "say ciao at /ciao" }, key: first.key });
    expect(second.status, JSON.stringify(second.body)).toBe(202);
    await until(second.body.task.id, (event) => event.type === "step.started" && event.step === "developer");
    expect((await stack.api(`/api/projects/${first.id}/changes/2/discard`, { method: "POST", key: first.key })).status).toBe(409);
    expect((await stack.api(`/api/tasks/${second.body.task.id}/cancel`, { json: {}, key: first.key })).status).toBe(200);
    expect((await finished(second.body.task.id)).last.type).toBe("task.cancelled");
    expect((await stack.api<{ change: Change }>(`/api/projects/${first.id}/changes/2`, { key: first.key })).body.change.status).toBe("building");
    const cancelled = await stack.api<{ change: Change }>(`/api/projects/${first.id}/changes/2/discard`, { method: "POST", key: first.key });
    expect(cancelled.status, JSON.stringify(cancelled.body)).toBe(200);
    expect(cancelled.body.change.status).toBe("discarded");
    expect(await git(["--git-dir", bare, "rev-parse", "refs/heads/main"])).toBe(mainBefore);

    const listed = cli(["changes", "list", "greeter"], first.key);
    expect(await listed.exited).toBe(0);
    expect(listed.output()).toMatch(/^#2 +discarded +change\/2-say-ciao-at-ciao +-/m);
    expect(listed.output()).toMatch(/^#1 +discarded +change\/1-also-say-bye-at-bye +PR #\d+/m);

    // The first build's passing round is the project's one checkpoint (the changes never reached main).
    const points = cli(["checkpoints", "greeter"], first.key);
    expect(await points.exited).toBe(0);
    // (main moved past it since: the person's commit of the case before.)
    const point = /^#1 +build +([0-9a-f]{12}) .* not deployed +\d+ passed +← latest$/m.exec(points.output())?.[1];
    expect(point, points.output()).toBeTruthy();
    await git(["--git-dir", bare, "merge-base", "--is-ancestor", point ?? "", mainBefore]);
    // An undo asks first, saying what happens to the data; no answer does nothing.
    const declined = cli(["undo", "greeter"], first.key);
    expect(await declined.exited).toBe(1);
    expect(declined.output()).toContain("data directory (/data) is not rolled back");
    expect(declined.output()).toContain("nothing was done");
    const tooFew = cli(["undo", "greeter", "--yes"], first.key);
    expect(await tooFew.exited).toBe(3);
    expect(tooFew.output()).toMatch(/HTTP 409: Project greeter has one checkpoint only \(#1\): there is nothing before it to go back to/);
    expect(await git(["--git-dir", bare, "rev-parse", "refs/heads/main"])).toBe(mainBefore);
  });

  it("builds two changes at once, on two branches; shipped from the CLI, the first merges and the second takes it in: main merged into its branch, the conflict resolved by a Developer round of its own, tested again, its pull request updated; then it ships too", { timeout: 300_000 }, async () => {
    model.load(demoScenario());
    const bare = github.repoPath("greeter");
    const headOf = (ref: string) => git(["--git-dir", bare, "rev-parse", ref]);
    type Change = { number: number; branch: string; status: string; taskId: string; testedSha: string | null; pullRequest: { number: number } | null; deployTaskId: string | null };
    const ask = async (request: string) => {
      const res = await stack.api<{ change: Change; task: { id: string } }>(`/api/projects/${first.id}/changes`, { json: { request }, key: first.key });
      expect(res.status, JSON.stringify(res.body)).toBe(202);
      return res.body;
    };
    // Both asked before either ends: two tasks at once, each on its own branch from the same main.
    const bye = await ask("Also say bye at /bye");
    const hola = await ask("Also say hola at /hola");
    expect([bye.change.status, hola.change.status]).toEqual(["building", "building"]);
    expect(hola.change.number).toBe(bye.change.number + 1);
    const [byeEnd, holaEnd] = await Promise.all([finished(bye.task.id), finished(hola.task.id)]);
    expect(byeEnd.last.type, byeEnd.last.message).toBe("task.completed");
    expect(holaEnd.last.type, holaEnd.last.message).toBe("task.completed");
    const mainBefore = await headOf("refs/heads/main");
    const holaTested = await headOf(`refs/heads/${hola.change.branch}`);
    const holaPull = (holaEnd.last.data?.pullRequest as { number: number }).number;

    // Shipped from the CLI: the project is not deployed, so merged only; the other open change catches up.
    const shipped = cli(["changes", "ship", "greeter", String(bye.change.number)], first.key);
    expect(await shipped.exited, shipped.output()).toBe(0);
    expect(shipped.output()).toMatch(new RegExp(`^change #${bye.change.number} merged \\([0-9a-f]{12}\\); greeter is not deployed: orchestrator deploy greeter puts it live$`, "m"));
    const catchUpTask = new RegExp(`^change #${hola.change.number} catches up with it \\(task (eng_[A-Za-z0-9]+)\\)`, "m").exec(shipped.output())?.[1] ?? "";
    expect(catchUpTask, shipped.output()).toBeTruthy();
    const mainShipped = await headOf("refs/heads/main");
    await git(["--git-dir", bare, "merge-base", "--is-ancestor", mainBefore, mainShipped]);
    expect(await git(["--git-dir", bare, "show", "main:app/main.py"])).toContain('("GET", "/bye")');

    // The catch-up: main merged into the branch conflicts (both changes added a route at one place), a Developer round resolves it, the Tester passes it.
    const caught = await finished(catchUpTask);
    expect(caught.last.type, caught.last.message).toBe("task.completed");
    expect(caught.events.find((event) => event.type === "task.started")?.message).toContain(`Change #${hola.change.number} to greeter catches up (change #${bye.change.number} was shipped)`);
    expect(caught.events.some((event) => event.type === "step.progress" && /main moved on since change #\d+ began and conflicts with it/.test(event.message))).toBe(true);
    expect(caught.events.find((event) => event.type === "step.started" && event.step === "developer")?.message).toContain("merging main into " + hola.change.branch + " and resolving its conflicts");
    expect(caught.events.some((event) => event.type === "step.started" && event.step === "architect")).toBe(false);
    expect(caught.last.message).toMatch(new RegExp(`^Change #${hola.change.number} to greeter: the tests pass at [0-9a-f]{12} after 1 round .*; pull request #${holaPull} .* is open`));
    const holaHead = await headOf(`refs/heads/${hola.change.branch}`);
    // A merge commit of the tested head and main, with both routes, main untouched by it.
    expect((await git(["--git-dir", bare, "rev-list", "--parents", "-n", "1", holaHead])).split(" ").slice(1)).toEqual([holaTested, mainShipped]);
    const merged = await git(["--git-dir", bare, "show", `${holaHead}:app/main.py`]);
    expect(merged).toContain('("GET", "/bye")');
    expect(merged).toContain('("GET", "/hola")');
    expect(merged).not.toMatch(/^(<<<<<<<|=======|>>>>>>>)/m);
    expect(await headOf("refs/heads/main")).toBe(mainShipped);
    const reopened = (await stack.api<{ change: Change }>(`/api/projects/${first.id}/changes/${hola.change.number}`, { key: first.key })).body.change;
    expect(reopened).toMatchObject({ status: "open", taskId: catchUpTask, testedSha: holaHead, pullRequest: { number: holaPull } });

    // It ships as GitHub would merge it now: cleanly, main gets both; nothing else is open to catch up.
    const second = await stack.api<{ change: Change; catchingUp: unknown[] }>(`/api/projects/${first.id}/changes/${hola.change.number}/ship`, { method: "POST", key: first.key });
    expect(second.status, JSON.stringify(second.body)).toBe(202);
    expect(second.body).toMatchObject({ change: { status: "shipped", deployTaskId: null }, catchingUp: [] });
    const finalMain = await git(["--git-dir", bare, "show", "main:app/main.py"]);
    expect(finalMain).toContain('("GET", "/bye")');
    expect(finalMain).toContain('("GET", "/hola")');
  });

  it("asks for a decision when the rounds run out: continue goes on, stop fails it cleanly", { timeout: 300_000 }, async () => {
    load({
      turns: [
        architect(JSON.stringify(SPEC)),
        write("round 1", { "app/greeting.py": BROKEN, "tests/test_greeting.py": GREETING_TEST }),
        done("round 1 done", "Done."),
        ...rewrite("round 2", "app/greeting.py", BROKEN.replace("Hello", "Hi")),
        done("round 2 done", "Done again."),
      ],
    });
    const project = await newProject("stubborn", { maxIterations: 1 });
    // Started and followed from the CLI, by the project's name.
    const follower = cli(["engineering", "start", "stubborn", "--follow"], project.key);
    const taskId = await waitFor(() => /started (eng_\w+)/.exec(follower.output())?.[1], 30_000, () => follower.output());
    const asked = await until(taskId, (event) => event.type === "task.needs_input");
    const question = asked.find((event) => event.type === "task.needs_input");
    expect(question?.data).toMatchObject({ kind: "decision", options: ["continue", "stop"], rounds: 1 });
    const task = await stack.api<{ task: { status: string; pendingInput: { inputId: string } } }>(`/api/tasks/${taskId}`, { key: project.key });
    expect(task.body.task).toMatchObject({ status: "needs_input", pendingInput: { kind: "decision", inputId: "after-1" } });

    // A wrong answer is refused and changes nothing.
    const wrong = await stack.api<{ error: { code: string; message: string } }>(`/api/tasks/${taskId}/input`, { json: { decision: "maybe" }, key: project.key });
    expect(wrong.status).toBe(400);
    expect(wrong.body.error.message).toContain("Not an answer to");
    errorBodies.push(wrong.body);

    const goOn = cli(["tasks", "answer", taskId, "continue", "--rounds", "1"], project.key);
    expect(await goOn.exited, goOn.output()).toBe(0);
    // The same question answered twice: the second is refused.
    const again = await stack.api(`/api/tasks/${taskId}/input`, { json: { decision: "stop" }, key: project.key });
    expect(again.status).toBe(409);
    errorBodies.push(again.body);

    const second = await until(taskId, (event) => event.type === "task.needs_input" && event.data?.rounds === 2);
    expect(second.some((event) => event.message.includes("Going on for 1 more round"))).toBe(true);
    const stop = await stack.api(`/api/tasks/${taskId}/input`, { json: { decision: "stop", reason: "not worth it" }, key: project.key });
    expect(stop.status).toBe(202);
    const { last } = await finished(taskId);
    expect(last.type).toBe("task.failed");
    expect(last.message).toContain("stopped by decision after 2 rounds (not worth it)");
    // The follower printed the run as it went, told how to answer, and exited 1 for the failure.
    expect(await follower.exited).toBe(1);
    expect(follower.output()).toContain("❓ The tests still fail after 1 round");
    expect(follower.output()).toContain(`answer with: orchestrator tasks answer ${taskId} continue`);
    expect(follower.output()).toContain("❌ stopped by decision after 2 rounds");
    expect(model.remaining()).toEqual([]);
  });

  it("fails the step when the Developer's commit is not in the repository", { timeout: 240_000 }, async () => {
    load({
      turns: [
        architect(JSON.stringify(SPEC)),
        {
          name: "push elsewhere",
          match: { tools: ["bash"], lastRole: "user" },
          reply: { toolCalls: [{ name: "bash", arguments: { command: "git init --bare -q /tmp/decoy.git && git remote set-url origin /tmp/decoy.git && echo x > x.txt", description: "Point origin elsewhere" } }] },
        },
        done("done", "Done."),
      ],
    });
    const project = await newProject("decoyed");
    const taskId = await start(project.id, project.key);
    const { last, events } = await finished(taskId);
    expect(last.type, events.map((e) => `${e.type} ${e.message}`).join("\n")).toBe("task.failed");
    expect(last.message).toMatch(/Developer round 1 reported commit [0-9a-f]{40}, which is not in orchestrator-test\/decoyed/);
  });

  it("fails the round with the output's tail when the agent exits non-zero", { timeout: 240_000 }, async () => {
    load({ turns: [architect(JSON.stringify(SPEC)), { name: "refuse", match: { tools: true }, reply: { error: { status: 400, message: "This model's maximum context length is exceeded" } } }] });
    const project = await newProject("refused");
    const taskId = await start(project.id, project.key);
    const { last } = await finished(taskId);
    expect(last.type).toBe("task.failed");
    expect(last.message).toContain("Developer round 1: opencode exited with code 1");
    expect(last.message).toContain("maximum context length is exceeded");
  });

  it("fails the round when the agent runs out of time", { timeout: 240_000 }, async () => {
    load({ turns: [architect(JSON.stringify(SPEC)), { name: "hang", match: { tools: true }, reply: { delayMs: 120_000, content: "too late" } }] });
    const project = await newProject("sluggish", { agentTimeoutSeconds: 8 });
    const started = Date.now();
    const taskId = await start(project.id, project.key);
    const { last } = await finished(taskId);
    expect(last.type).toBe("task.failed");
    expect(last.message).toContain("Developer round 1: opencode did not finish within 8 s");
    // Stopped at its time, not when the model (hung for two minutes) would have answered.
    expect(Date.now() - started).toBeLessThan(90_000);
  });

  it("cancels mid-Developer: the container is gone and the task ends cancelled", { timeout: 240_000 }, async () => {
    load({ turns: [architect(JSON.stringify(SPEC)), { name: "hang", match: { tools: true }, reply: { delayMs: 120_000, content: "too late" } }] });
    const project = await newProject("cancelled");
    const taskId = await start(project.id, project.key);
    await until(taskId, (event) => event.type === "step.started" && event.step === "docker.run");
    // Other test files run job containers meanwhile: only this task's jobs count.
    const developJob = await waitFor(
      async () => (await eventsOf(taskId)).find((event) => event.type === "step.started" && event.step === "docker.run")?.data?.jobId as string | undefined,
      30_000,
      () => "no Developer job started",
    );
    const jobContainers = async () => docker.listContainers({ all: true, filters: { label: [`orchestrator.job=${developJob}`] } });
    await waitFor(async () => ((await jobContainers()).length > 0 ? true : undefined), 30_000, () => "no job container started");

    const cancel = cli(["tasks", "cancel", taskId], project.key);
    expect(await cancel.exited, cancel.output()).toBe(0);
    expect(cancel.output()).toContain(`${taskId}: cancelled (stopped ${developJob})`);
    expect(await jobContainers()).toEqual([]);
    const { last } = await finished(taskId);
    expect(last.type).toBe("task.cancelled");
    // Cancelling again is refused.
    const again = await stack.api(`/api/tasks/${taskId}/cancel`, { json: {}, key: project.key });
    expect(again.status).toBe(409);
    errorBodies.push(again.body);
  });

  it("fails clearly when the Architect's reply is not a valid spec twice", { timeout: 120_000 }, async () => {
    load({ turns: [architect("{\"summary\": \"no modules\"}", "bad 1"), architect("still not a spec", "bad 2")] });
    const project = await newProject("unspecified");
    const taskId = await start(project.id, project.key);
    const { last } = await finished(taskId);
    expect(last.type).toBe("task.failed");
    expect(last.message).toContain("the Architect's reply was rejected twice; the second time: the reply is not JSON");
    const repos = github.requests.filter((request) => request.method === "POST" && request.path.endsWith("/repos"));
    expect(repos.every((request) => !request.path.includes("unspecified"))).toBe(true);
  });

  it("declines a description no template can make: the task fails saying what the factory builds, and no repository is made", { timeout: 120_000 }, async () => {
    load({ turns: [architect(JSON.stringify({ decline: "a mobile app runs on phones, not on a server." }), "decline")] });
    const project = await newProject("phoneapp");
    const taskId = await start(project.id, project.key);
    const { last } = await finished(taskId);
    expect(last.type).toBe("task.failed");
    expect(last.message).toContain("The factory cannot build this: a mobile app runs on phones, not on a server. It builds:\n- python-http: a small HTTP service in Python");
    expect(github.requests.filter((request) => request.method === "POST" && JSON.stringify(request).includes("phoneapp"))).toEqual([]);
    expect(model.remaining()).toEqual([]);
  });

  it("keeps the factory's keys out of a Developer told to print them, and its credentials end with its job", { timeout: 240_000 }, async () => {
    // A task that steers the agent to print everything it holds, as text it read could; and tests that try /proc/1/environ.
    // Fails the round (and so the task) if the tests can see the token, in their environment or PID 1's.
    const SPY_TEST = `import os\n\n\ndef test_the_token_is_out_of_reach():\n    assert "GIT_TOKEN" not in os.environ\n    try:\n        data = open("/proc/1/environ", "rb").read()\n    except OSError:\n        return\n    assert b"GIT_TOKEN" not in data, "the token is readable from /proc/1/environ"\n`;
    load({
      turns: [
        architect(JSON.stringify(SPEC)),
        {
          name: "print everything",
          match: { tools: ["bash"], lastRole: "user" },
          reply: {
            toolCalls: [
              {
                name: "bash",
                arguments: {
                  // PID 1's environment by a path spelled so that opencode's own guard does not see it.
                  command: `env; git config -l; git remote -v; python3 -c "import base64; print(open(base64.b64decode('${Buffer.from("/proc/1/environ").toString("base64")}').decode()).read())"; printf %s "$OPENAI_API_KEY" | base64 -w0 | rev; echo; printf %s "$GIT_TOKEN" | base64 -w0 | rev; echo`,
                  description: "Print the environment",
                },
              },
              { name: "write", arguments: { filePath: "/work/repo/tests/test_spy.py", content: SPY_TEST } },
            ],
          },
        },
        done("done", "Printed it all."),
      ],
    });
    const project = await newProject("spied-on");
    const taskId = await start(project.id, project.key);
    const { events, last } = await finished(taskId);
    expect(last.type, last.message).toBe("task.completed");
    expect(events.some((event) => event.step === "tester" && event.message.includes("Tester round 1: passed: 3 passed"))).toBe(true);
    // What the agent's command printed, as the job collected it.
    const jobs = await stack.api<{ jobs: { taskId: string | null; outcome: { data?: { files?: Record<string, { content?: string }> } } | null }[] }>(`/api/servers/${HANDLE}/jobs?limit=200`);
    const printed = jobs.body.jobs
      .filter((job) => job.taskId === taskId)
      .map((job) => job.outcome?.data?.files?.["/out/agent.jsonl"]?.content ?? "")
      .join("\n")
      .replace(/\\n/g, "\n");
    // It ran as an unprivileged user without the token: PID 1's environment was closed to it.
    expect(printed).toContain("Permission denied: '/proc/1/environ'");
    // The job's model credential, as the agent printed it (base64, reversed: no mask knows that form).
    const reversed = printed.split("\n").map((line) => line.trim()).find((line) => /^[A-Za-z0-9+/=]{40,}$/.test(line) && Buffer.from([...line].reverse().join(""), "base64").toString().startsWith("orj_"));
    // (Once, in a full run, this line was missing: the message shows what the agent printed instead.)
    expect(reversed, `the credential's printed form, in what the agent printed:\n${printed.slice(-4000)}`).toBeDefined();
    const credential = Buffer.from([...(reversed ?? "")].reverse().join(""), "base64").toString();
    // ...which the relay refuses now that its job has ended; it never was the factory's key.
    const relayed = await fetch(`${stack.url}/relay/v1/models`, { headers: { authorization: `Bearer ${credential}` } });
    expect(relayed.status).toBe(401);
    expect(credential).not.toBe(MODEL_KEY);
    // Each repository token a job got was revoked when the job ended.
    const tokens = github.issuedTokens();
    expect(tokens.length).toBeGreaterThan(0);

    // Nothing anywhere holds the factory's key or a repository token, in any form they were printed in.
    const forms = (secret: string) => {
      const b64 = Buffer.from(secret).toString("base64");
      return [secret, b64, [...b64].reverse().join(""), Buffer.from(`x-access-token:${secret}`).toString("base64")];
    };
    await waitFor(async () => ((await projectChunks(project.id)).length > 0 ? true : undefined), 60_000, () => "the task log was not indexed");
    const places = { events: JSON.stringify(events), runner: runner.output(), worker: stack.process.output(), jobs: JSON.stringify(jobs.body), index: (await projectChunks(project.id)).join("\n") };
    for (const [where, text] of Object.entries(places)) {
      for (const secret of [MODEL_KEY, ...tokens]) for (const form of forms(secret)) expect(text.includes(form), `${where} holds a form of a secret`).toBe(false);
    }
    // Every token a job used for git (the worker itself never runs git) was revoked when its job ended.
    expect(github.gitTokens.size).toBeGreaterThan(0);
    for (const token of github.gitTokens) expect(github.tokenWorks(token), "a job's repository token outlived its job").toBe(false);
  });

  it("never shows the model key: not in any event, runner log line or error body", async () => {
    expect(allEvents.length).toBeGreaterThan(50);
    for (const text of [JSON.stringify(allEvents), runner.output(), stack.process.output(), JSON.stringify(errorBodies)]) {
      expect(text).not.toContain(MODEL_KEY);
    }
    // The jobs as the API shows them have it redacted too.
    const jobs = await stack.api<{ jobs: unknown[] }>(`/api/servers/${HANDLE}/jobs?limit=200`);
    expect(JSON.stringify(jobs.body)).not.toContain(MODEL_KEY);
    expect(JSON.stringify(jobs.body)).toContain("[redacted]");
  });
});

describe("the web console", () => {
  let opened: Browser | undefined;

  afterAll(async () => {
    await opened?.close();
  });

  it("holds a conversation that ends with a task link, which opens the live view", async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run scripts/install-system-deps.sh (Debian's chromium)`);
    mkdirSync(SCREENSHOTS, { recursive: true });
    model.load(demoScenario());
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
    });
    opened = browser;
    const user = await stack.api<{ user: { id: string } }>("/api/users", { json: { name: "Ada" } });
    const key = (await stack.api<{ key: string }>("/api/keys", { json: { userId: user.body.user.id, name: "console" } })).body.key;
    const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
    const errors: string[] = [];
    page.on("pageerror", (error) => errors.push(error.message));

    // A wrong key is refused with the server's message; the right one signs in.
    await page.goto(`${stack.url}/chat`);
    await page.fill("#api-key", "ork_not-a-key");
    await page.click("#signin-submit");
    await page.waitForSelector("#signin-error:not([hidden])");
    expect(await page.textContent("#signin-error")).toMatch(/Invalid, revoked or expired API key/);
    await page.fill("#api-key", key);
    await page.click("#signin-submit");
    await page.waitForSelector('#connection[data-connected="true"]');
    expect(await page.evaluate(() => JSON.stringify(sessionStorage))).not.toContain(key);

    await page.fill("#composer", "Weather bot with notifications");
    await page.press("#composer", "Enter");
    await page.waitForSelector('#messages [data-from="user"]');
    const question = page.locator('#messages [data-from="agent"]', { hasText: "Start building weather-bot-notifications?" });
    await question.waitFor({ timeout: 60_000 });
    expect(await page.getAttribute("#state", "data-state")).toBe("AWAITING");
    // Other test files enroll servers in the same database: this project's jobs run on this stack's runner.
    const { body } = await stack.api<{ projects: { id: string; config: Record<string, unknown> }[] }>("/api/projects?name=weather-bot-notifications");
    const project = body.projects[0];
    expect(project).toBeDefined();
    expect((await stack.api(`/api/projects/${project?.id ?? ""}`, { method: "PATCH", json: { config: { ...project?.config, server: HANDLE } } })).status).toBe(200);
    await question.getByRole("button", { name: /Confirm/ }).click();

    const link = page.locator("a[data-task-link]").first();
    await link.waitFor({ timeout: 60_000 });
    const href = (await link.getAttribute("href")) ?? "";
    expect(href).toMatch(new RegExp(`^${stack.url}/tasks/eng_[A-Za-z0-9]+\\?token=`));
    // The live view inline…
    const inline = page.frameLocator("details.task-live iframe").first();
    await inline.locator("#log li").first().waitFor({ timeout: 30_000 });
    // …and in its own page, which follows the task to its end.
    const live = await browser.newPage();
    await live.goto(href);
    await live.waitForSelector("#result[data-outcome]", { timeout: 240_000 });
    expect(await live.getAttribute("#result", "data-outcome")).toBe("completed");
    await live.setViewportSize({ width: 1280, height: 860 });
    await live.screenshot({ path: join(SCREENSHOTS, "task-view-live.png"), fullPage: false });
    // The chat tells the outcome when the task ends.
    await page.locator('#messages [data-from="agent"]', { hasText: "✅ weather-bot-notifications" }).waitFor({ timeout: 60_000 });
    await page.screenshot({ path: join(SCREENSHOTS, "chat-console.png"), fullPage: false });
    expect(errors).toEqual([]);

    // A reload keeps the conversation: the agent's history comes back over the socket.
    await page.reload();
    await page.waitForSelector('#connection[data-connected="true"]');
    await page.locator('#messages [data-from="agent"]', { hasText: "Start building weather-bot-notifications?" }).waitFor();
    expect(await page.locator('#messages [data-from="agent"]', { hasText: "Start building" }).getByRole("button").count()).toBe(0);
  }, 400_000);
});
