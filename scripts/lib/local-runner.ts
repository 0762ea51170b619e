/**
 * Real runner daemons for Node tests: a server registered through the API, the runner enrolled with
 * the real CLI, and `orchestrator-runner run` as a child process that can be stopped, killed and restarted.
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LOCAL_BOT_GATEWAY, LOCAL_RELEASE_TARGETS } from "./standins-network.ts";
import type { RunnerConfigInput } from "../../runner/src/config.ts";
import type { StackClient } from "./local-stack.ts";
import { ROOT } from "./local-stack.ts";
import { type Spawned, spawnCollecting, waitFor } from "./processes.ts";
import type { JobView } from "../../src/shared/api.ts";

export const RUNNER_BIN = join(ROOT, "runner", "bin.ts");

export function runnerCli(args: string[]): Spawned {
  return spawnCollecting(process.execPath, [RUNNER_BIN, ...args], { cwd: ROOT, env: { ...process.env, NO_COLOR: "1" } });
}

export async function registerServer(stack: StackClient, handle: string, extra: Record<string, unknown> = {}) {
  const res = await stack.api<{ server: { id: string }; enrollment: { token: string; command: string } }>("/api/servers", {
    json: { handle, host: `${handle}.example.test`, ...extra },
  });
  if (res.status !== 201) throw new Error(`POST /api/servers: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

export interface TestRunner {
  dir: string;
  configPath: string;
  process: Spawned | null;
  start(): Promise<void>;
  /** SIGTERM and wait. */
  stop(): Promise<void>;
  /** SIGKILL: no goodbye, no results sent. */
  kill(): Promise<void>;
  output(): string;
}

/** Enrolls a runner with the CLI (and checks it worked), then applies test settings to its config. */
export async function enrolledRunner(stack: StackClient, token: string, settings: Partial<RunnerConfigInput> = {}): Promise<TestRunner> {
  const dir = mkdtempSync(join(tmpdir(), "orchestrator-runner-"));
  const configPath = join(dir, "config.json");
  const enroll = runnerCli(["enroll", "--edge", stack.url, "--token", token, "--config", configPath, "--state-dir", join(dir, "state")]);
  const code = await enroll.exited;
  if (code !== 0) throw new Error(`enroll exited ${code}: ${enroll.output()}`);
  const config = JSON.parse(readFileSync(configPath, "utf8")) as Record<string, unknown>;
  // Every runner on this machine lets releases reach the stand-ins' address: they share one firewall table (standins-network.ts).
  const egress = { ...settings.docker?.egress, releaseInternalTargets: [...new Set([...(settings.docker?.egress?.releaseInternalTargets ?? []), ...LOCAL_RELEASE_TARGETS])] };
  // A test's runner installs packages only from a stand-in it is given: without one, npm and pip are
  // pointed at a port where nothing listens, never at the public registries (the runner's defaults).
  const registries = settings.registries ?? { npm: "http://127.0.0.1:9/", pypi: "http://127.0.0.1:9/simple/", pypiFiles: null };
  writeFileSync(configPath, JSON.stringify({ ...config, botGateway: LOCAL_BOT_GATEWAY, ...settings, registries, docker: { ...settings.docker, egress } }, null, 2), { mode: 0o600 });
  let outputs = "";
  const runner: TestRunner = {
    dir,
    configPath,
    process: null,
    async start() {
      const child = runnerCli(["run", "--config", configPath]);
      runner.process = child;
      const before = outputs;
      await waitFor(
        () => (child.output().includes('"msg":"connected"') ? true : undefined),
        30_000,
        () => `runner did not connect: ${before}${child.output()}`,
        () => child.child.exitCode !== null,
      );
    },
    async stop() {
      await end("SIGTERM");
    },
    async kill() {
      await end("SIGKILL");
    },
    output: () => outputs + (runner.process?.output() ?? ""),
  };
  async function end(signal: NodeJS.Signals) {
    const child = runner.process;
    if (!child) return;
    if (child.child.exitCode === null && child.child.signalCode === null) {
      child.child.kill(signal);
      await child.exited;
    }
    outputs += child.output();
    runner.process = null;
  }
  return runner;
}

export async function submitJob(stack: StackClient, handle: string, body: Record<string, unknown>): Promise<JobView> {
  const res = await stack.api<{ job: JobView }>(`/api/servers/${handle}/jobs`, { json: body });
  if (res.status !== 201) throw new Error(`POST jobs: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.job;
}

/** Waits (long-polling the API) until the job has finished. */
export async function finishedJob(stack: StackClient, handle: string, id: string, timeoutMs = 60_000): Promise<JobView> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const res = await stack.api<{ job: JobView }>(`/api/servers/${handle}/jobs/${id}?wait=20`);
    if (res.status !== 200) throw new Error(`GET job: ${res.status} ${JSON.stringify(res.body)}`);
    if (["succeeded", "failed", "cancelled"].includes(res.body.job.state)) return res.body.job;
  }
  throw new Error(`job ${id} did not finish in ${timeoutMs} ms`);
}

export async function jobInState(stack: StackClient, handle: string, id: string, state: string, timeoutMs = 30_000): Promise<JobView> {
  return waitFor(
    async () => {
      const res = await stack.api<{ job: JobView }>(`/api/servers/${handle}/jobs/${id}`);
      return res.body.job.state === state ? res.body.job : undefined;
    },
    timeoutMs,
    () => `job ${id} never reached ${state}`,
  );
}
