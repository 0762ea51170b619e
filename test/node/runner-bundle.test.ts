/**
 * The runner as a VPS installs it: `npm run build:runner` makes one ES module plus its playbooks,
 * which runs from a directory holding nothing else (no node_modules, no repository), enrolls, runs
 * jobs through the real control plane, and whose provision.yml installs that bundle.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { finishedJob, registerServer, submitJob } from "../../scripts/lib/local-runner.ts";
import { ROOT, type StackClient } from "../../scripts/lib/local-stack.ts";
import { sharedStack } from "../support/shared.ts";
import { type Spawned, spawnCollecting, waitFor } from "../../scripts/lib/processes.ts";
import { RUNNER_VERSION } from "../../runner/src/version.ts";

let stack: StackClient;
let dir: string;
let daemon: Spawned | undefined;
const HANDLE = "vps-bundled";

beforeAll(async () => {
  const build = spawnCollecting(process.execPath, [join(ROOT, "scripts", "build-runner.ts")], { cwd: ROOT, env: process.env });
  expect(await build.exited, build.output()).toBe(0);
  // Unpacked where no node_modules can be found by walking up.
  dir = mkdtempSync(join(tmpdir(), "bundle-"));
  execFileSync("tar", ["-xzf", join(ROOT, "dist", `orchestrator-runner-${RUNNER_VERSION}.tar.gz`), "-C", dir]);
  stack = sharedStack();
}, 180_000);

afterAll(async () => {
  daemon?.child.kill("SIGTERM");
  await daemon?.exited;
});

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
    daemon = run(["run", "--config", configPath]);
    const started = daemon;
    await waitFor(() => (started.output().includes('"msg":"connected"') ? true : undefined), 30_000, () => started.output(), () => started.child.exitCode !== null);

    const noop = await submitJob(stack, HANDLE, { type: "noop", payload: { echo: "from the bundle" } });
    expect(await finishedJob(stack, HANDLE, noop.id)).toMatchObject({ state: "succeeded", outcome: { data: { echo: "from the bundle" } } });
    // Its playbooks came with it.
    const facts = await submitJob(stack, HANDLE, { type: "ansible.playbook", payload: { playbook: "facts.yml" } });
    const factsDone = await finishedJob(stack, HANDLE, facts.id, 60_000);
    expect(factsDone.state, factsDone.outcome?.message).toBe("succeeded");

    // provision.yml, run by this runner, would install this very bundle as the service.
    const provision = await submitJob(stack, HANDLE, { type: "provision", payload: { check: true } });
    const provisioned = await finishedJob(stack, HANDLE, provision.id, 90_000);
    expect(provisioned.state, provisioned.outcome?.message).toBe("succeeded");
    const tasks = (provisioned.outcome?.data?.tasks ?? []) as { name: string; status: string }[];
    expect(tasks).toContainEqual(expect.objectContaining({ name: "Install the runner from its bundle", status: "changed" }));
    expect(tasks).toContainEqual(expect.objectContaining({ name: "Runner service unit" }));
  });
});
