/**
 * The `orchestrator` CLI against the real worker (`wrangler dev`), as a user runs it.
 */
import { describe, expect, inject, it } from "vitest";
import WebSocket from "ws";
import { WATCHER_ACK_WINDOW, WATCHER_TOO_SLOW } from "../../src/shared/events.ts";
import { freePort } from "../../scripts/lib/ports.ts";
import { spawnCollecting, waitFor } from "../../scripts/lib/processes.ts";
import { ROOT, type StackClient, userWithTask } from "../../scripts/lib/local-stack.ts";
import { sharedStack } from "../../test/support/shared.ts";
import { startTcpProxy } from "../../test/support/tcp-proxy.ts";

const stack: StackClient = sharedStack();

function cli(args: string[], env: Record<string, string>) {
  return spawnCollecting(process.execPath, [inject("cliBundle"), ...args], {
    cwd: ROOT,
    env: { ...process.env, ORCHESTRATOR_CONFIG: "/nonexistent/config.json", ...env },
  });
}

const lines = (text: string) => text.split("\n").filter((line) => line.trim() !== "");
const append = (taskId: string, event: Record<string, unknown>) => stack.api(`/api/tasks/${taskId}/events`, { json: event });

describe("orchestrator … status --follow", () => {
  it("prints one line per event as they arrive, resumes after a dropped connection, and exits 0 on completion", async () => {
    const { key, taskId } = await userWithTask(stack);
    const proxy = await startTcpProxy(stack.port);
    const follow = cli(["engineering", "status", taskId, "--follow"], { ORCHESTRATOR_URL: proxy.url, ORCHESTRATOR_API_KEY: key });
    const stdout = () => lines(follow.output()).filter((line) => !line.startsWith("…"));

    await append(taskId, { type: "task.started", message: "Engineering task started" });
    await append(taskId, { type: "step.started", step: "Architect", message: "analyzing requirements..." });
    await waitFor(() => (stdout().length >= 2 ? true : undefined), 10_000, () => follow.output());

    proxy.dropAll(); // the network drops; events keep coming
    await append(taskId, { type: "step.started", step: "Developer", message: "implementing feature X..." });
    await append(taskId, { type: "log", step: "Developer", message: "committed 3f2a9c1" });
    await waitFor(() => (stdout().length >= 4 ? true : undefined), 15_000, () => follow.output());
    await append(taskId, { type: "task.completed", message: "Task completed successfully" });

    expect(await follow.exited).toBe(0);
    expect(stdout()).toEqual([
      "⏳ Engineering task started",
      "📦 Architect: analyzing requirements...",
      "🔨 Developer: implementing feature X...",
      "   Developer: committed 3f2a9c1",
      "✅ Task completed successfully",
    ]);
    expect(follow.output()).toMatch(/resuming after event #2/);
    await proxy.close();
  });

  it("prints NDJSON with --json and exits 1 when the task fails", async () => {
    const { key, taskId } = await userWithTask(stack, "deploy");
    await append(taskId, { type: "task.started", message: "Deploy started" });
    const follow = cli(["deploy", "status", taskId, "--follow", "--json"], { ORCHESTRATOR_URL: stack.url, ORCHESTRATOR_API_KEY: key });
    await waitFor(() => (lines(follow.output()).length >= 1 ? true : undefined), 10_000, () => follow.output());
    await append(taskId, { type: "task.failed", message: "health check failed", data: { attempts: 3 } });
    expect(await follow.exited).toBe(1);
    const events = lines(follow.output()).map((line) => JSON.parse(line) as { seq: number; type: string; data?: unknown });
    expect(events.map((e) => [e.seq, e.type])).toEqual([
      [1, "task.started"],
      [2, "task.failed"],
    ]);
    expect(events[1]?.data).toEqual({ attempts: 3 });
  });

  it("replays a finished task and exits with its outcome", async () => {
    const { key, taskId } = await userWithTask(stack);
    await append(taskId, { type: "task.started", message: "go" });
    await append(taskId, { type: "task.cancelled", message: "cancelled by the user" });
    const follow = cli(["engineering", "status", taskId, "--follow"], { ORCHESTRATOR_URL: stack.url, ORCHESTRATOR_API_KEY: key });
    expect(await follow.exited).toBe(1);
    expect(lines(follow.output())).toEqual(["⏳ go", "⏹️  cancelled by the user"]);
  });
});

describe("orchestrator errors are one line and a non-zero exit", () => {
  it("unknown task, wrong key, server down, wrong kind, bad usage", async () => {
    const { key, taskId } = await userWithTask(stack, "deploy");
    const unknown = cli(["engineering", "status", "eng_nope", "--follow"], { ORCHESTRATOR_URL: stack.url, ORCHESTRATOR_API_KEY: key });
    expect(await unknown.exited).toBe(3);
    expect(lines(unknown.output())).toEqual(["orchestrator: task eng_nope not found"]);

    const badKey = cli(["tasks", "list"], { ORCHESTRATOR_URL: stack.url, ORCHESTRATOR_API_KEY: "ork_wrongwrongwrongwrongwrongwrongwrongwrong" });
    expect(await badKey.exited).toBe(3);
    expect(lines(badKey.output())).toEqual(["orchestrator: API key rejected: Invalid, revoked or expired API key"]);

    const deadPort = await freePort();
    const down = cli(["engineering", "status", taskId, "--follow"], { ORCHESTRATOR_URL: `http://127.0.0.1:${deadPort}`, ORCHESTRATOR_API_KEY: key });
    expect(await down.exited).toBe(3);
    expect(lines(down.output())).toEqual([`orchestrator: cannot reach Orchestrator at http://127.0.0.1:${deadPort}: connection refused`]);

    const wrongKind = cli(["engineering", "status", taskId], { ORCHESTRATOR_URL: stack.url, ORCHESTRATOR_API_KEY: key });
    expect(await wrongKind.exited).toBe(2);
    expect(wrongKind.output()).toContain(`use \`orchestrator deploy status ${taskId}\``);

    const noConfig = cli(["tasks", "list"], { ORCHESTRATOR_URL: "", ORCHESTRATOR_API_KEY: "" });
    expect(await noConfig.exited).toBe(3);
    expect(noConfig.output()).toContain("set ORCHESTRATOR_URL and ORCHESTRATOR_API_KEY");

    const usage = cli(["engineering", "frobnicate"], { ORCHESTRATOR_URL: stack.url, ORCHESTRATOR_API_KEY: key });
    expect(await usage.exited).toBe(2);
    expect(usage.output()).toContain("Usage:");
  });
});

describe("orchestrator tasks and status", () => {
  it("lists tasks, shows a status summary and prints a live view link", async () => {
    const { key, taskId } = await userWithTask(stack);
    await append(taskId, { type: "task.started", message: "Engineering task started" });
    await append(taskId, { type: "step.started", step: "Tester", message: "running the test suite" });
    const env = { ORCHESTRATOR_URL: stack.url, ORCHESTRATOR_API_KEY: key };

    const list = cli(["tasks", "list"], env);
    expect(await list.exited).toBe(0);
    expect(list.output()).toMatch(new RegExp(`${taskId}\\s+engineering\\s+running`));
    const listJson = cli(["tasks", "list", "--json"], env);
    expect(await listJson.exited).toBe(0);
    expect((JSON.parse(listJson.output()) as { id: string }[]).map((t) => t.id)).toEqual([taskId]);

    const status = cli(["engineering", "status", taskId], env);
    expect(await status.exited).toBe(0);
    expect(status.output()).toContain(`${taskId}  engineering  running`);
    expect(status.output()).toContain("🧪 Tester: running the test suite");

    const link = cli(["tasks", "link", taskId], env);
    expect(await link.exited).toBe(0);
    const url = lines(link.output())[0] ?? "";
    expect(url).toMatch(new RegExp(`^${stack.url}/tasks/${taskId}\\?token=`));
    expect((await fetch(url)).status).toBe(200);
  });

  it("runs as `npx orchestrator` from the repository root", async () => {
    const { key } = await userWithTask(stack);
    const npx = spawnCollecting("npx", ["--no-install", "orchestrator", "tasks", "list", "--json"], {
      cwd: ROOT,
      env: { ...process.env, ORCHESTRATOR_URL: stack.url, ORCHESTRATOR_API_KEY: key, ORCHESTRATOR_CONFIG: "/nonexistent" },
    });
    expect(await npx.exited, npx.output()).toBe(0);
    expect(npx.output()).toContain('"type":"engineering"');
  });
});

describe("a live watcher that stops acknowledging (independent ws client against wrangler dev)", () => {
  it("is told and closed (4008) the moment it falls a window behind, and gets nothing more", async () => {
    const { key, taskId } = await userWithTask(stack);
    const socket = new WebSocket(`${stack.url.replace(/^http/, "ws")}/api/tasks/${taskId}/ws`, { headers: { authorization: `Bearer ${key}` } });
    const frames: { at: number; frame: { type: string; code?: string; after?: number; event?: { seq: number } } }[] = [];
    let closeFrameAt = 0;
    socket.on("message", (data: Buffer) => frames.push({ at: Date.now(), frame: JSON.parse(data.toString()) as (typeof frames)[number]["frame"] }));
    await new Promise((resolve) => socket.once("open", resolve));
    const watch = setInterval(() => {
      // CLOSING once the server's close frame is in (the TCP connection goes later).
      if (!closeFrameAt && socket.readyState === WebSocket.CLOSING) closeFrameAt = Date.now();
    }, 5);
    let behindAt = 0;
    for (let seq = 1; seq <= WATCHER_ACK_WINDOW + 44; seq++) {
      await append(taskId, { type: "log", message: `line ${seq}` });
      if (seq === WATCHER_ACK_WINDOW + 1) behindAt = Date.now();
    }
    const burstEnd = Date.now();
    await waitFor(() => (closeFrameAt ? true : undefined), 15_000, () => "no close frame");
    clearInterval(watch);
    socket.terminate();

    const told = frames.find((f) => f.frame.type === "stream:error");
    expect(told?.frame).toMatchObject({ code: WATCHER_TOO_SLOW, after: 0 });
    const toldAfterMs = (told?.at ?? Infinity) - behindAt;
    const closeAfterMs = closeFrameAt - behindAt;
    console.log(`slow watcher: told ${toldAfterMs} ms and sent the close frame ${closeAfterMs} ms after falling behind; the burst went on for ${burstEnd - behindAt} ms`);
    expect(toldAfterMs).toBeLessThan(500);
    expect(closeAfterMs).toBeLessThan(500);
    const events = frames.filter((f) => f.frame.type === "event:appended").map((f) => f.frame.event?.seq);
    expect(events).toEqual(Array.from({ length: WATCHER_ACK_WINDOW }, (_, i) => i + 1));
  });
});
