/**
 * The runner as a VPS installs it: `npm run build:runner` makes one ES module plus its playbooks,
 * which runs from a directory holding nothing else (no node_modules, no repository), enrolls, runs
 * jobs through the real control plane, and provisions its server: the provisioning workflow runs
 * provision.yml (in check mode: a real run would reconfigure this machine) and facts.yml on it, and
 * provision.yml would install this very bundle as the service. The rest of the runner's behaviour is
 * tested on the runner from source (test/node/runner.test.ts); the bundle is the same code.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { finishedJob, registerServer, submitJob } from "../../scripts/lib/local-runner.ts";
import { ROOT, type StackClient } from "../../scripts/lib/local-stack.ts";
import { sharedStack } from "../support/shared.ts";
import { type Spawned, spawnCollecting, waitFor } from "../../scripts/lib/processes.ts";
import { RUNNER_VERSION } from "../../runner/src/version.ts";
import { OtlpServer } from "../../standins/otlp-server.ts";
import type { TaskEvent } from "../../src/shared/events.ts";

let stack: StackClient;
let dir: string;
let daemon: Spawned | undefined;
let otlp: OtlpServer;
const HANDLE = "vps-bundled";

beforeAll(async () => {
  const build = spawnCollecting(process.execPath, [join(ROOT, "scripts", "build-runner.ts")], { cwd: ROOT, env: process.env });
  expect(await build.exited, build.output()).toBe(0);
  // Unpacked where no node_modules can be found by walking up.
  dir = mkdtempSync(join(tmpdir(), "bundle-"));
  execFileSync("tar", ["-xzf", join(ROOT, "dist", `orchestrator-runner-${RUNNER_VERSION}.tar.gz`), "-C", dir]);
  stack = sharedStack();
  otlp = new OtlpServer();
  await otlp.start();
}, 180_000);

afterAll(async () => {
  daemon?.child.kill("SIGTERM");
  await daemon?.exited;
  await otlp?.stop();
  // The bundle and the runner's state (~4 MB a run).
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function events(taskId: string) {
  return (await stack.api<{ events: TaskEvent[] }>(`/api/tasks/${taskId}/events?limit=1000`)).body.events;
}

function readIfThere(path: string): string {
  return existsSync(path) ? readFileSync(path, "utf8") : "";
}

describe("the bundled runner", () => {
  it("is one module and its playbooks, and runs jobs with nothing else installed", { timeout: 120_000 }, async () => {
    const bundle = join(dir, "runner");
    expect(readdirSync(bundle).sort()).toEqual(["README.md", "ansible", "orchestrator-runner.mjs", "orchestrator-runner.mjs.LEGAL.txt", "package.json", "templates"]);
    expect(existsSync(join(dir, "node_modules"))).toBe(false);

    const { enrollment } = await registerServer(stack, HANDLE);
    const configPath = join(dir, "config.json");
    const run = (args: string[]) => spawnCollecting(process.execPath, [join(bundle, "orchestrator-runner.mjs"), ...args], { cwd: dir, env: { ...process.env, NODE_PATH: "" } });
    const enroll = run(["enroll", "--edge", stack.url, "--token", enrollment.token, "--config", configPath, "--state-dir", join(dir, "state")]);
    expect(await enroll.exited, enroll.output()).toBe(0);
    // Its job spans go to the OTLP stand-in (the provisioning below checks them).
    const config = JSON.parse(readFileSync(configPath, "utf8")) as Record<string, unknown>;
    writeFileSync(configPath, JSON.stringify({ ...config, tracing: { otlpEndpoint: otlp.tracesUrl, flushIntervalMs: 200 } }, null, 2), { mode: 0o600 });
    daemon = run(["run", "--config", configPath]);
    const started = daemon;
    await waitFor(() => (started.output().includes('"msg":"connected"') ? true : undefined), 30_000, () => started.output(), () => started.child.exitCode !== null);

    const noop = await submitJob(stack, HANDLE, { type: "noop", payload: { echo: "from the bundle" } });
    expect(await finishedJob(stack, HANDLE, noop.id)).toMatchObject({ state: "succeeded", outcome: { data: { echo: "from the bundle" } } });
  });

  it("provisions its server: provision.yml in check mode and facts.yml through the runner, woken by the hub, and completes the task, its jobs' spans children of the request's; provision.yml would install this very bundle, and check mode changes nothing on this machine", { timeout: 300_000 }, async () => {
    const wouldCreate = ["/etc/systemd/system/orchestrator-runner.service", "/etc/systemd/system/caddy.service.d/orchestrator.conf", "/var/lib/orchestrator-runner/caddy"];
    const existedBefore = wouldCreate.filter((path) => existsSync(path));
    const nftablesBefore = readIfThere("/etc/nftables.conf");
    const passwdBefore = readFileSync("/etc/passwd", "utf8");
    // The request carries a trace: the runner's job spans reach the OTLP receiver as its children.
    const traceId = randomBytes(16).toString("hex");
    const spanId = randomBytes(8).toString("hex");
    const res = await fetch(`${stack.url}/api/servers/${HANDLE}/provision`, {
      method: "POST",
      headers: { authorization: `Bearer ${stack.adminKey}`, "content-type": "application/json", traceparent: `00-${traceId}-${spanId}-01` },
      body: JSON.stringify({ check: true }),
    });
    const started = { status: res.status, body: (await res.json()) as { task: { id: string; type: string } } };
    expect(started.status).toBe(202);
    expect(started.body.task.type).toBe("provision");
    const taskId = started.body.task.id;
    const list = await waitFor(
      async () => {
        const all = await events(taskId);
        return all.some((e) => e.type === "task.completed" || e.type === "task.failed") ? all : undefined;
      },
      // Two playbooks on a 2-core machine that other test files keep busy.
      240_000,
      () => "the provision task never ended",
    );
    const last = list.at(-1);
    expect(last, JSON.stringify(list.filter((e) => e.type !== "log"))).toMatchObject({ type: "task.completed" });
    expect(last?.message).toContain("checked: playbook provision.yml (check mode)");
    expect(last?.data).toMatchObject({ facts: { os: expect.stringContaining("Debian") as unknown } });
    const completed = list.filter((e) => e.type === "step.completed").map((e) => `${e.step}:${String(e.data?.ok)}`);
    expect(completed).toEqual(["provision:true", "ansible.playbook:true"]);
    // What it would change, task by task: install this bundle as the service. No systemd here, so the
    // services' task is skipped, and a line says why.
    const unitExisted = existedBefore.includes("/etc/systemd/system/orchestrator-runner.service");
    const progress = list.filter((e) => e.type === "step.progress").map((e) => e.message);
    expect(progress).toContainEqual("Provision the orchestrator runner's server / Install the runner from its bundle: changed");
    expect(progress).toContainEqual(`Provision the orchestrator runner's server / Runner service unit: ${unitExisted ? "ok" : "changed"}`);
    expect(progress).toContainEqual(expect.stringMatching(/ \/ Firewall ruleset: (changed|ok)/));
    expect(progress).toContainEqual(expect.stringMatching(/ \/ Enable and start services: skipped/));
    expect(progress.filter((message) => / \/ [^:]+: failed/.test(message))).toEqual([]);
    expect(list.some((e) => e.type === "log" && e.message.includes("systemd is not running here (service manager: process_api): services were not enabled or started"))).toBe(true);
    expect(list.find((e) => e.type === "step.completed" && e.step === "provision")?.message).toMatch(/playbook provision\.yml \(check mode\): ok=\d+ changed=[1-9]\d* failed=0 skipped=\d+/);
    // Check mode changed nothing.
    expect(wouldCreate.filter((path) => existsSync(path))).toEqual(existedBefore);
    expect(readIfThere("/etc/nftables.conf")).toBe(nftablesBefore);
    expect(readFileSync("/etc/passwd", "utf8")).toBe(passwdBefore);
    const task = await stack.api<{ task: { status: string } }>(`/api/tasks/${taskId}`);
    expect(task.body.task.status).toBe("completed");

    // The task's events carry the trace too.
    expect(list.filter((e) => !e.traceparent?.includes(traceId)).map((e) => `${e.type} ${e.step ?? ""} ${e.message.slice(0, 80)}`)).toEqual([]);
    const spans = await waitFor(() => {
      const mine = otlp.spans.filter((span) => span.traceId === traceId);
      return mine.length >= 2 ? mine : undefined;
    }, 15_000, () => `spans received: ${JSON.stringify(otlp.spans.map((s) => [s.name, s.traceId]))}`);
    expect(spans.map((span) => span.name).sort()).toEqual(["job ansible.playbook", "job provision"]);
    for (const span of spans) {
      expect(span.parentSpanId).toBe(spanId);
      expect(span.resource).toMatchObject({ "service.name": "orchestrator-runner", "orchestrator.server": HANDLE });
      expect(span.attributes["orchestrator.job.ok"]).toBe(true);
      expect(typeof span.attributes["orchestrator.job.id"]).toBe("string");
    }
  });
});
