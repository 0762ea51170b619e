/**
 * `orchestrator new`, `orchestrator chat` and `orchestrator status` against the real worker
 * (`wrangler dev`) and its Product Owner agent, answered by the demo's scripted model.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { LocalDatabase } from "../../scripts/lib/local-db.ts";
import { freePort } from "../../scripts/lib/ports.ts";
import { waitFor } from "../../scripts/lib/processes.ts";
import { registerServer } from "../../scripts/lib/local-runner.ts";
import { ROOT, type Stack, startStack } from "../../scripts/lib/local-stack.ts";
import { demoScenario } from "../../standins/demo-scenario.ts";
import { GitHubServer } from "../../standins/github-server.ts";
import { type ChatRequest, messageText, ModelServer } from "../../standins/model-server.ts";
import { ownDatabase } from "../../test/support/shared.ts";
import WebSocket from "ws";
import { ChatSession } from "../chat.ts";

const MODEL_KEY = `sk-cli-chat-${randomBytes(8).toString("hex")}`;
let stack: Stack;
let model: ModelServer;
let github: GitHubServer;
let database: LocalDatabase;

beforeAll(async () => {
  // A database of its own: which servers have a runner decides what the agent answers.
  database = await ownDatabase("cli_chat");
  model = new ModelServer({ apiKey: MODEL_KEY, scenario: demoScenario() });
  github = new GitHubServer();
  await model.start();
  await github.start();
  stack = await startStack({
    databaseUrl: database.databaseUrl,
    dbWsProxy: database.wsProxy,
    adminKey: inject("adminApiKey"),
    vars: {
      OPENAI_BASE_URL: model.baseUrl,
      OPENAI_API_KEY: MODEL_KEY,
      GITHUB_API_URL: github.url,
      GITHUB_APP_ID: String(github.appId),
      GITHUB_INSTALLATION_ID: String(github.installationId),
      GITHUB_APP_PRIVATE_KEY: github.appPrivateKeyPem,
    },
  });
});
afterAll(async () => {
  await stack?.stop();
  await model?.stop();
  await github?.stop();
  await database?.stop();
});

interface Run {
  child: ChildProcess;
  stdout(): string;
  output(): string;
  exited: Promise<number | null>;
}

/** The CLI as a person runs it; with `stdin`, its input is a pipe that gives that text, then ends. */
function cli(args: string[], key: string, stdin?: string, url = stack.url): Run {
  const child = spawn(process.execPath, [inject("cliBundle"), ...args], {
    cwd: ROOT,
    env: { ...process.env, ORCHESTRATOR_CONFIG: "/nonexistent/config.json", ORCHESTRATOR_URL: url, ORCHESTRATOR_API_KEY: key, NO_COLOR: "1" },
    stdio: [stdin === undefined ? "ignore" : "pipe", "pipe", "pipe"],
  });
  let stdout = "";
  let all = "";
  child.stdout?.on("data", (chunk: Buffer) => ((stdout += chunk.toString()), (all += chunk.toString())));
  child.stderr?.on("data", (chunk: Buffer) => (all += chunk.toString()));
  if (stdin !== undefined) child.stdin?.end(stdin);
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return { child, stdout: () => stdout, output: () => all, exited };
}

const lines = (text: string) => text.split("\n").filter((line) => line.trim() !== "");
const finished = async (run: Run, ms = 90_000) => {
  const timer = setTimeout(() => run.child.kill("SIGKILL"), ms);
  const code = await run.exited;
  clearTimeout(timer);
  return code;
};

async function newUser(name = "cli-chat-user") {
  const user = await stack.api<{ user: { id: string } }>("/api/users", { json: { name } });
  const key = await stack.api<{ key: string }>("/api/keys", { json: { userId: user.body.user.id, name: "cli" } });
  expect(key.status).toBe(201);
  return { userId: user.body.user.id, key: key.body.key };
}

/** A description the scripted Product Owner makes a project of, with a name no other test takes. */
const uniqueAsk = () => {
  const word = `t${randomBytes(4).toString("hex")}`;
  return { text: `Recipe app for ${word} lovers`, project: `recipe-app-${word}-lovers` };
};

describe("before any server has a runner", () => {
  it("new: sends the message, prints the confirmation, answers it with --yes and prints the agent's answer", async () => {
    const { key } = await newUser();
    const run = cli(["new", "Weather bot with notifications", "--yes"], key);
    expect(await finished(run), run.output()).toBe(0);
    expect(lines(run.stdout())).toEqual([
      "po> Start building weather-bot-notifications? This creates its GitHub repository and spends model budget.",
      "    1) ✅ Confirm   2) ✖ Cancel",
      "    → yes (--yes)",
      "    ✔ Confirmed",
      "po> I could not do it: No server has an enrolled runner to run the engineering jobs; enroll one first (see runner/README.md)",
    ]);
  });

  it("new: without --yes and with nothing on stdin, leaves the question open and exits 3", async () => {
    const { key } = await newUser();
    const { text, project } = uniqueAsk();
    const run = cli(["new", text], key, "");
    expect(await finished(run), run.output()).toBe(3);
    expect(run.stdout()).toContain(`po> Start building ${project}? `);
    expect(run.output()).toMatch(new RegExp(`orchestrator: no answer to "Start building ${project}\\? [^"]*" \\(input ended\\); it stays open`));
  });

  it("chat: talks over piped stdin, one turn per line, answers a question by its number, and shows the history next time", async () => {
    const { key } = await newUser();
    const { text, project } = uniqueAsk();
    const first = cli(["chat"], key, `hello\n${text}\n2\n`);
    expect(await finished(first), first.output()).toBe(0);
    expect(lines(first.stdout())).toEqual([
      "you> hello",
      expect.stringMatching(/^po> \[scripted model\] Hello! Describe the product you want/),
      `you> ${text}`,
      expect.stringMatching(new RegExp(`^po> Start building ${project}\\? `)),
      "    1) ✅ Confirm   2) ✖ Cancel",
      "you> 2",
      "    ✖ Cancelled",
      "po> Cancelled: nothing was done.",
    ]);

    // Next time: the conversation so far (the question closed, its buttons gone); /quit sends nothing.
    const again = cli(["chat"], key, "/quit\nhello\n");
    expect(await finished(again), again.output()).toBe(0);
    expect(lines(again.stdout())).toEqual([
      "you> hello",
      expect.stringMatching(/^po> \[scripted model\] Hello! Describe the product you want/),
      `you> ${text}`,
      expect.stringMatching(new RegExp(`^po> Start building ${project}\\? `)),
      "    ✖ Cancelled",
      "po> Cancelled: nothing was done.",
    ]);
  });

  it("status: says so when the person has no projects, and lists a draft one", async () => {
    const { key } = await newUser();
    const empty = cli(["status"], key);
    expect(await finished(empty)).toBe(0);
    expect(lines(empty.stdout())).toEqual(['No projects yet. Start one with: orchestrator new "<what you want>"', "No active tasks."]);

    const { text, project } = uniqueAsk();
    expect(await finished(cli(["new", text, "--yes"], key))).toBe(0);
    const table = cli(["status"], key);
    expect(await finished(table)).toBe(0);
    expect(lines(table.stdout())).toEqual([expect.stringMatching(/^PROJECT\s+STATUS\s+UPDATED$/), expect.stringMatching(new RegExp(`^${project}\\s+draft\\s+\\d+s ago$`)), "No active tasks."]);
  });
});

describe("with a server that has a runner (enrolled; none runs, so its tasks wait)", () => {
  beforeAll(async () => {
    const { enrollment } = await registerServer(stack, "cli-box");
    const enrolled = await stack.api("/runner/enroll", { json: { token: enrollment.token, publicKey: randomBytes(32).toString("base64url") } });
    expect(enrolled.status, JSON.stringify(enrolled.body)).toBeLessThan(300);
  });

  it("new --follow: reads the answer from piped stdin, prints the task link and follows the task to its end", async () => {
    const { key } = await newUser();
    const { text, project } = uniqueAsk();
    const run = cli(["new", text, "--follow"], key, "nonsense\n1\n");
    const link = await waitFor(() => /Watch live: (\S+)/.exec(run.stdout())?.[1], 60_000, () => run.output());
    const taskId = /\/tasks\/([A-Za-z0-9_]+)\?token=/.exec(link)?.[1] ?? "";
    expect(link).toMatch(new RegExp(`^${stack.url}/tasks/eng_[A-Za-z0-9]+\\?token=`));
    expect((await fetch(link)).status).toBe(200);
    await waitFor(() => (run.output().includes(`following ${taskId}`) ? true : undefined), 30_000, () => run.output());
    const out = lines(run.stdout());
    expect(out.slice(0, 4)).toEqual([expect.stringMatching(new RegExp(`^po> Start building ${project}\\? `)), "    1) ✅ Confirm   2) ✖ Cancel", "    → yes", "    ✔ Confirmed"]);
    expect(out.slice(4, 5)).toEqual([expect.stringMatching(/^po> /)]);
    expect(out).toContain(`    Watch live: ${link}`);
    expect(run.output()).toContain('"nonsense" is none of the choices; answer 1-2 or yes/no');

    // The person stops it elsewhere: the follow ends with the task, and so does the CLI (1: cancelled).
    expect((await stack.api(`/api/tasks/${taskId}/cancel`, { json: {}, key })).status).toBe(200);
    expect(await finished(run), run.output()).toBe(1);
    expect(lines(run.stdout()).at(-1)).toMatch(/^⏹️ {2}/);
  });

  it("new without --follow exits 0 once the link is printed; status shows the project and its active task", async () => {
    const { key } = await newUser();
    const { text, project } = uniqueAsk();
    const run = cli(["new", text, "--yes"], key);
    expect(await finished(run), run.output()).toBe(0);
    const taskId = /Watch live: \S+\/tasks\/([A-Za-z0-9_]+)\?token=/.exec(run.stdout())?.[1] ?? "";
    expect(taskId, run.output()).toMatch(/^eng_/);

    const table = cli(["status"], key);
    expect(await finished(table)).toBe(0);
    expect(lines(table.stdout())).toEqual([
      expect.stringMatching(/^PROJECT\s+STATUS\s+UPDATED$/),
      expect.stringMatching(new RegExp(`^${project}\\s+engineering\\s+\\d+s ago$`)),
      expect.stringMatching(/^TASK\s+TYPE\s+STATUS\s+PROJECT\s+CREATED$/),
      expect.stringMatching(new RegExp(`^${taskId}\\s+engineering\\s+(queued|running)\\s+${project}\\s+\\d+s ago$`)),
    ]);
    const json = cli(["status", "--json"], key);
    expect(await finished(json)).toBe(0);
    const body = JSON.parse(json.stdout()) as { projects: { name: string; status: string }[]; tasks: { id: string; projectId: string }[] };
    expect(body.projects.map((p) => [p.name, p.status])).toEqual([[project, "engineering"]]);
    expect(body.tasks.map((t) => t.id)).toEqual([taskId]);
    await stack.api(`/api/tasks/${taskId}/cancel`, { json: {}, key });
  });
});

describe("orchestrator new/chat errors", () => {
  it("a wrong key, a server that is down and a missing message are one line and a non-zero exit", async () => {
    const badKey = "ork_wrongwrongwrongwrongwrongwrongwrongwrong";
    for (const args of [["new", "Weather bot with notifications", "--yes"], ["chat"], ["status"]]) {
      const run = cli(args, badKey, "");
      expect(await finished(run), run.output()).toBe(3);
      expect(lines(run.output())).toEqual(["orchestrator: API key rejected: Invalid, revoked or expired API key"]);
    }

    const deadPort = await freePort();
    const down = cli(["chat"], badKey, "", `http://127.0.0.1:${deadPort}`);
    expect(await finished(down)).toBe(3);
    expect(lines(down.output())).toEqual([`orchestrator: cannot reach Orchestrator at http://127.0.0.1:${deadPort}: connection refused`]);

    const { key } = await newUser();
    const usage = cli(["new"], key);
    expect(await finished(usage)).toBe(2);
    expect(usage.output()).toContain("new needs what you want built");
    expect(usage.output()).toContain('orchestrator new "<what you want>" [--yes] [--follow]');
  });
});

describe("the chat keeps each key's limits", () => {
  it("closes an open chat socket within seconds of its key being revoked, and the key's link stops working", async () => {
    const { key } = await newUser();
    const link = await stack.api<{ token: string }>("/api/chat/link", { method: "POST", key });
    expect(link.status).toBe(200);
    const socket = new WebSocket(`${stack.url.replace(/^http/, "ws")}/chat/ws`, { headers: { authorization: `Bearer ${key}` } });
    const history = new Promise<void>((resolve, reject) => {
      socket.once("message", () => resolve());
      socket.once("error", reject);
    });
    await history;
    const closed = new Promise<{ code: number }>((resolve) => socket.once("close", (code) => resolve({ code })));
    const [mine] = (await stack.api<{ keys: { id: string }[] }>("/api/keys", { key })).body.keys;
    const revokedAt = Date.now();
    expect((await stack.api(`/api/keys/${mine?.id ?? ""}`, { method: "DELETE", key })).status).toBe(200);
    // Closing starts when the server's close frame arrives (the TCP connection may linger after it).
    await waitFor(() => (socket.readyState !== WebSocket.OPEN ? true : undefined), 10_000, () => "the socket is still open");
    expect(Date.now() - revokedAt).toBeLessThan(5000);
    const { code } = await closed;
    expect(code).toBe(4401);
    const again = await fetch(`${stack.url}/chat/ws?token=${encodeURIComponent(link.body.token)}`);
    expect(again.status).toBe(401);
  });

  it("gives an admin's non-admin key the chat of a person, not an admin's: its tools see only their own projects", async () => {
    const adminUser = await stack.api<{ user: { id: string } }>("/api/users", { json: { name: `boss-${randomBytes(3).toString("hex")}`, isAdmin: true } });
    const plainKey = (await stack.api<{ key: string }>("/api/keys", { json: { userId: adminUser.body.user.id, name: "everyday", scopes: ["user"] } })).body.key;
    const mine = `mine-${randomBytes(3).toString("hex")}`;
    const theirs = `theirs-${randomBytes(3).toString("hex")}`;
    expect((await stack.api("/api/projects", { json: { name: mine }, key: plainKey })).status).toBe(201);
    const { key: otherKey } = await newUser();
    expect((await stack.api("/api/projects", { json: { name: theirs }, key: otherKey })).status).toBe(201);
    model.load({
      turns: [
        { name: "po: list", match: { tools: ["list_projects"], lastRole: "user" }, reply: { toolCalls: [{ name: "list_projects", arguments: {} }] } },
        { name: "po: answer", match: { tools: true, lastRole: "tool" }, reply: { toolCalls: [{ name: "respond", arguments: { text: "Here they are." } }] } },
        { name: "po: finish", match: { tools: true, lastRole: "tool" }, reply: { toolCalls: [{ name: "finish", arguments: {} }] } },
      ],
      side: [{ name: "intent", match: { tools: false, anyMessage: "You are the Intent Parser" }, reply: { content: JSON.stringify({ groups: ["project_management"], intent: "list every project" }) } }],
    });
    try {
      const session = await ChatSession.open({ url: stack.url, apiKey: plainKey }, new AbortController().signal);
      try {
        await session.turn({ type: "chat:message", text: "List every project there is, everyone's." }, 90_000);
        await waitFor(() => ([...session.entries.values()].some((entry) => entry.text.includes("Here they are")) ? true : undefined), 60_000, () => JSON.stringify([...session.entries.values()]));
      } finally {
        session.close();
      }
      const answered = model.requests.find((request) => request.answeredBy === "po: answer");
      const listed = ((answered?.body as ChatRequest | undefined)?.messages ?? []).filter((message) => message.role === "tool").map(messageText).join("\n");
      expect(listed).toContain(mine);
      expect(listed).not.toContain(theirs);
      // An admin key does see everyone's: the reach is the key's, not the user row's.
      expect(JSON.stringify((await stack.api("/api/projects?limit=200")).body)).toContain(theirs);
    } finally {
      model.load(demoScenario());
    }
  });
});
