/**
 * The runner through the real path: worker (wrangler dev) → RunnerHub → a real `orchestrator-runner`
 * process → the real Docker engine, with the job's output read back from the task's stream. It runs
 * on the test run's shared wrangler dev; its servers' handles are its own.
 */
import { readFileSync, statSync } from "node:fs";
import Docker from "dockerode";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { TEST_RELEASE_PORTS } from "../../scripts/lib/ports.ts";
import { startCaddy, startUpstream, type TestCaddy, type Upstream } from "../../scripts/lib/caddy.ts";
import { adminRequest } from "../../runner/src/caddy-admin.ts";
import { TEST_IMAGE } from "../../scripts/lib/docker-engine.ts";
import { ROOT, type StackClient } from "../../scripts/lib/local-stack.ts";
import { sharedStack } from "../support/shared.ts";
import { spawnCollecting, waitFor } from "../../scripts/lib/processes.ts";
import type { TaskEvent } from "../../src/shared/events.ts";
import { MAX_EVENT_MESSAGE_CHARS } from "../../src/shared/limits.ts";
import { enrolledRunner, finishedJob, jobInState, registerServer, runnerCli, submitJob, type TestRunner } from "../../scripts/lib/local-runner.ts";

let stack: StackClient;
let docker: Docker;
let runner: TestRunner;
let caddy: TestCaddy;
let app: Upstream;
const HANDLE = "vps-one";

async function taskWithEvents() {
  const user = await stack.api<{ user: { id: string } }>("/api/users", { json: { name: "runner-test" } });
  const task = await stack.api<{ task: { id: string } }>("/api/tasks", { json: { type: "deploy", ownerId: user.body.user.id } });
  return task.body.task.id;
}

async function events(taskId: string) {
  return (await stack.api<{ events: TaskEvent[] }>(`/api/tasks/${taskId}/events?limit=1000`)).body.events;
}

async function containersFor(jobId: string) {
  return docker.listContainers({ all: true, filters: { label: [`orchestrator.job=${jobId}`] } });
}

beforeAll(async () => {
  docker = new Docker({ socketPath: inject("dockerSocket") });
  stack = sharedStack();
  caddy = await startCaddy();
  app = await startUpstream("hello from the app");
  const { enrollment } = await registerServer(stack, HANDLE);
  runner = await enrolledRunner(stack, enrollment.token, {
    // Caddy's listener is on this machine's loopback: egress jobs may be sent there, and nowhere else inside.
    docker: { socketPath: inject("dockerSocket"), egress: { internalTargets: [`127.0.0.1:${caddy.httpPort}`] } },
    concurrency: 2,
    releasePorts: TEST_RELEASE_PORTS,
    caddy: { adminSocket: caddy.adminSocket, httpUrl: caddy.httpUrl, configPath: caddy.configPath, listen: [`127.0.0.1:${caddy.httpPort}`], disableTls: true },
  });
}, 180_000);

afterAll(async () => {
  await runner?.stop();
  await caddy?.stop();
  await app?.close();
});

describe("enrollment", () => {
  it("stores the identity with mode 0600, refuses a used or expired token, and shows the status", async () => {
    const config = JSON.parse(readFileSync(runner.configPath, "utf8")) as { runnerId: string; server: string; privateKey: string };
    expect(statSync(runner.configPath).mode & 0o777).toBe(0o600);
    expect(config.runnerId).toMatch(/^run_/);
    expect(config.server).toBe(HANDLE);

    const server = await stack.api<{ server: { status: string; runnerId: string } }>(`/api/servers/${HANDLE}`);
    expect(server.body.server).toMatchObject({ status: "offline", runnerId: config.runnerId });

    // The token of a fresh server, used twice: the second use is refused, and nothing is overwritten.
    const other = await registerServer(stack, "vps-used");
    const first = runnerCli(["enroll", "--edge", stack.url, "--token", other.enrollment.token, "--config", `${runner.dir}/used-1.json`]);
    expect(await first.exited).toBe(0);
    const second = runnerCli(["enroll", "--edge", stack.url, "--token", other.enrollment.token, "--config", `${runner.dir}/used-2.json`]);
    expect(await second.exited).toBe(3);
    expect(second.output()).toContain("not valid or was already used");

    const expiring = await registerServer(stack, "vps-expired", { enrollmentTtlSeconds: 1 });
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const late = runnerCli(["enroll", "--edge", stack.url, "--token", expiring.enrollment.token, "--config", `${runner.dir}/late.json`]);
    expect(await late.exited).toBe(3);
    expect(late.output()).toContain("expired");
    const pending = await stack.api<{ server: { status: string; runnerId: string | null } }>(`/api/servers/vps-expired`);
    expect(pending.body.server).toMatchObject({ status: "pending", runnerId: null });
  });

  it("is online while the runner is connected and offline after it stops", async () => {
    await runner.start();
    // The hub records the connection after the runner sees it open: wait for the row, not the socket.
    const online = await waitFor(
      async () => {
        const answer = await stack.api<{ server: { status: string; lastSeenAt: string }; runner: { connected: boolean } }>(`/api/servers/${HANDLE}`);
        return answer.body.server.status === "online" ? answer : undefined;
      },
      30_000,
      () => "the server never showed online",
    );
    expect(online.body.server.status).toBe("online");
    expect(online.body.runner.connected).toBe(true);
    expect(Date.now() - Date.parse(online.body.server.lastSeenAt)).toBeLessThan(15_000);
    // What an operator sees in the CLI.
    const env = { ...process.env, ORCHESTRATOR_URL: stack.url, ORCHESTRATOR_API_KEY: stack.adminKey };
    const list = spawnCollecting(process.execPath, [inject("cliBundle"), "servers", "list"], { cwd: ROOT, env });
    expect(await list.exited, list.output()).toBe(0);
    expect(list.output()).toMatch(new RegExp(`^${HANDLE}\\s+online\\s+${HANDLE}\\.example\\.test\\s+last seen \\d+s ago$`, "m"));
    const show = spawnCollecting(process.execPath, [inject("cliBundle"), "servers", "show", HANDLE], { cwd: ROOT, env });
    expect(await show.exited, show.output()).toBe(0);
    expect(show.output()).toContain(", connected; last heartbeat");
    const missing = spawnCollecting(process.execPath, [inject("cliBundle"), "servers", "show", "no-such-server"], { cwd: ROOT, env });
    expect(await missing.exited).toBe(3);
    expect(missing.output()).toContain("server no-such-server not found");
    await runner.stop();
    await waitFor(
      async () => ((await stack.api<{ server: { status: string } }>(`/api/servers/${HANDLE}`)).body.server.status === "offline" ? true : undefined),
      10_000,
      () => "server never showed offline",
    );
    await runner.start();
  });
});

describe("the orchestrator-runner command", () => {
  it("runs from the repository root as `npx orchestrator-runner`, and says how to use it", async () => {
    const help = spawnCollecting("npx", ["--no-install", "orchestrator-runner", "--help"], { cwd: ROOT, env: process.env });
    expect(await help.exited, help.output()).toBe(0);
    expect(help.output()).toContain("orchestrator-runner enroll --edge <url> --token <token>");
    const bad = spawnCollecting("npx", ["--no-install", "orchestrator-runner", "enroll", "--edge", stack.url], { cwd: ROOT, env: process.env });
    expect(await bad.exited).toBe(2);
    expect(bad.output()).toContain("enroll needs --edge and --token");
    const plain = spawnCollecting("npx", ["--no-install", "orchestrator-runner", "enroll", "--edge", "http://203.0.113.9", "--token", "ort_whatever-token", "--config", `${runner.dir}/plain.json`], { cwd: ROOT, env: process.env });
    expect(await plain.exited).toBe(3);
    expect(plain.output()).toContain("--edge must be an https:// URL");
    const noConfig = spawnCollecting("npx", ["--no-install", "orchestrator-runner", "run", "--config", `${runner.dir}/absent.json`], { cwd: ROOT, env: process.env });
    expect(await noConfig.exited).toBe(3);
    expect(noConfig.output()).toContain("no runner config at");
  });
});

describe("docker.run", () => {
  it("streams the container's lines to the task in order and reports the exit code", async () => {
    const taskId = await taskWithEvents();
    const job = await submitJob(stack, HANDLE, {
      type: "docker.run",
      taskId,
      finishTask: true,
      payload: { image: TEST_IMAGE, cmd: ["sh", "-c", "for i in $(seq 1 30); do echo line $i; done; echo oops >&2; exit 3"] },
    });
    const done = await finishedJob(stack, HANDLE, job.id);
    expect(done).toMatchObject({ state: "failed", outcome: { ok: false, exitCode: 3, reason: "failed" } });
    const list = await events(taskId);
    const logs = list.filter((e) => e.type === "log" && e.data?.stream === "stdout").map((e) => e.message);
    expect(logs).toEqual(Array.from({ length: 30 }, (_, i) => `line ${i + 1}`));
    expect(list.filter((e) => e.data?.stream === "stderr").map((e) => e.message)).toEqual(["oops"]);
    const types = list.map((e) => e.type);
    expect(types.indexOf("step.started")).toBeLessThan(types.indexOf("log"));
    const completed = list.find((e) => e.type === "step.completed");
    expect(completed?.data).toMatchObject({ jobId: job.id, ok: false, exitCode: 3 });
    expect(list.at(-1)).toMatchObject({ type: "task.failed" });
    expect(await containersFor(job.id)).toEqual([]);
  });

  it("stores a 20,000-character line in the task's stream cut to what an event holds, with a marker, and keeps the next line whole", async () => {
    const taskId = await taskWithEvents();
    const job = await submitJob(stack, HANDLE, {
      type: "docker.run",
      taskId,
      payload: { image: TEST_IMAGE, cmd: ["sh", "-c", "head -c 20000 /dev/zero | tr '\\0' q; echo; echo next"] },
    });
    expect(await finishedJob(stack, HANDLE, job.id)).toMatchObject({ state: "succeeded" });
    const logs = (await events(taskId)).filter((e) => e.type === "log").map((e) => e.message);
    expect(logs).toHaveLength(2);
    expect(logs[0]?.length).toBeLessThanOrEqual(MAX_EVENT_MESSAGE_CHARS);
    expect(logs[0]).toMatch(/^q{16000,} … \[truncated: \d+ more characters\]$/);
    expect(logs[1]).toBe("next");
  });

  it("kills a job past its timeout and says so", async () => {
    const started = Date.now();
    const job = await submitJob(stack, HANDLE, { type: "docker.run", payload: { image: TEST_IMAGE, cmd: ["sleep", "60"], timeoutSeconds: 2 } });
    const done = await finishedJob(stack, HANDLE, job.id);
    expect(done).toMatchObject({ state: "failed", outcome: { ok: false, reason: "timeout" } });
    expect(done.outcome?.message).toContain("timed out after 2 s");
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(await containersFor(job.id)).toEqual([]);
  });

  it("cancels a running job", async () => {
    const job = await submitJob(stack, HANDLE, { type: "docker.run", payload: { image: TEST_IMAGE, cmd: ["sleep", "60"] } });
    await jobInState(stack, HANDLE, job.id, "running");
    const res = await stack.api<{ job: { id: string } }>(`/api/servers/${HANDLE}/jobs/${job.id}/cancel`, { method: "POST" });
    expect(res.status).toBe(202);
    const done = await finishedJob(stack, HANDLE, job.id);
    expect(done).toMatchObject({ state: "cancelled", outcome: { reason: "cancelled" } });
    expect(await containersFor(job.id)).toEqual([]);
  });

  it("reports an over-long failure message shortened, and stays connected for the next job", async () => {
    const job = await submitJob(stack, HANDLE, { type: "docker.run", payload: { image: TEST_IMAGE, cmd: [`/x${"a".repeat(9990)}`] } });
    const done = await finishedJob(stack, HANDLE, job.id);
    expect(done).toMatchObject({ state: "failed", outcome: { ok: false, reason: "failed" } });
    expect(done.outcome?.message).toContain("the container did not start");
    expect(done.outcome?.message.length).toBeLessThanOrEqual(10_000);
    const next = await submitJob(stack, HANDLE, { type: "noop", payload: {} });
    expect(await finishedJob(stack, HANDLE, next.id, 15_000)).toMatchObject({ state: "succeeded" });
  });

  it("runs a job id at most once when the runner is killed mid-job and restarted", async () => {
    const taskId = await taskWithEvents();
    const since = Math.floor(Date.now() / 1000);
    const job = await submitJob(stack, HANDLE, {
      type: "docker.run",
      taskId,
      payload: { image: TEST_IMAGE, cmd: ["sh", "-c", "echo started; sleep 60"] },
    });
    await waitFor(async () => ((await events(taskId)).some((e) => e.message === "started") ? true : undefined), 30_000, () => "job never started");
    await runner.kill();
    await runner.start();
    const done = await finishedJob(stack, HANDLE, job.id);
    expect(done).toMatchObject({ state: "failed", outcome: { ok: false, reason: "interrupted" } });
    // One container was ever created for the job, and the restarted runner removed it.
    const created = await dockerEvents(since, job.id, "create");
    expect(created).toBe(1);
    expect(await containersFor(job.id)).toEqual([]);
    expect((await events(taskId)).filter((e) => e.message === "started")).toHaveLength(1);
  });
});

describe("routing a deployed service", () => {
  it("caddy.sync publishes a route, health.check sees it through Caddy, and a refused sync changes nothing", async () => {
    const taskId = await taskWithEvents();
    const synced = await submitJob(stack, HANDLE, { type: "caddy.sync", taskId, payload: { routes: [{ domain: "shop.example.test", upstreamPort: app.port }] } });
    expect(await finishedJob(stack, HANDLE, synced.id)).toMatchObject({ state: "succeeded", outcome: { data: { domains: ["shop.example.test"] } } });
    const healthy = await submitJob(stack, HANDLE, {
      type: "health.check",
      taskId,
      payload: { domain: "shop.example.test", expectBody: "hello from the app", attempts: 3, intervalMs: 100 },
    });
    expect(await finishedJob(stack, HANDLE, healthy.id)).toMatchObject({ state: "succeeded", outcome: { ok: true, data: { attempts: 1, status: 200 } } });

    // Two routes for one domain: refused before Caddy is touched; the published route keeps serving.
    const refused = await submitJob(stack, HANDLE, {
      type: "caddy.sync",
      payload: { routes: [{ domain: "shop.example.test", upstreamPort: app.port }, { domain: "shop.example.test", upstreamPort: app.port === TEST_RELEASE_PORTS.to ? app.port - 1 : app.port + 1 }] },
    });
    expect(await finishedJob(stack, HANDLE, refused.id)).toMatchObject({ state: "failed", outcome: { ok: false, reason: "failed" } });
    const still = await submitJob(stack, HANDLE, { type: "health.check", payload: { domain: "shop.example.test", attempts: 1 } });
    expect(await finishedJob(stack, HANDLE, still.id)).toMatchObject({ state: "succeeded" });

    // Removing the route: the domain stops being served, and the check says so.
    const removed = await submitJob(stack, HANDLE, { type: "caddy.sync", payload: { routes: [] } });
    expect(await finishedJob(stack, HANDLE, removed.id)).toMatchObject({ state: "succeeded" });
    const gone = await submitJob(stack, HANDLE, { type: "health.check", payload: { domain: "shop.example.test", attempts: 2, intervalMs: 100 } });
    const goneDone = await finishedJob(stack, HANDLE, gone.id);
    expect(goneDone).toMatchObject({ state: "failed", outcome: { ok: false, data: { status: 404 } } });
    expect(goneDone.outcome?.message).toContain("unhealthy after 2 attempts");

    const steps = (await events(taskId)).filter((e) => e.type === "step.completed").map((e) => e.step);
    expect(steps).toEqual(["caddy.sync", "health.check"]);
  });
});

describe("what a job cannot touch", () => {
  it("a container cannot reach Caddy's admin API, through any network it may have, and Caddy's config stays as it was", { timeout: 60_000 }, async () => {
    const synced = await submitJob(stack, HANDLE, { type: "caddy.sync", payload: { routes: [{ domain: "kept.example.test", upstreamPort: app.port }] } });
    expect(await finishedJob(stack, HANDLE, synced.id)).toMatchObject({ state: "succeeded" });
    const before = (await adminRequest(caddy.adminSocket, "GET", "/config/")).body;
    const takeover = JSON.stringify({ apps: { http: { servers: { evil: { listen: [":80"], routes: [] } } } } });
    const proxy = `p=\${HTTP_PROXY#http://}; gw=\${p%:*}; pp=\${p##*:}`;
    const script = [
      // The socket is a file on the host, never mounted into a container.
      `echo "== socket"; test -e ${caddy.adminSocket} && echo present || echo absent`,
      // Caddy's default admin port, through the proxy: not a listed destination (and nothing listens there).
      `echo "== admin port"; ${proxy}; (printf 'POST http://127.0.0.1:2019/load HTTP/1.0\\r\\nContent-Length: ${takeover.length}\\r\\n\\r\\n${takeover.replaceAll('"', '\\"')}'; sleep 1) | nc -w 3 $gw $pp | head -1`,
      // The one listed destination, Caddy's public listener, has no admin API behind it.
      `echo "== listener"; ${proxy}; (printf 'POST http://127.0.0.1:${caddy.httpPort}/load HTTP/1.0\\r\\nHost: nobody.example.test\\r\\n\\r\\n'; sleep 1) | nc -w 3 $gw $pp | head -1`,
      // Around the proxy, straight to the host: dropped by the firewall.
      `echo "== direct"; ${proxy}; echo x | nc -w 2 $gw 2019 || echo "direct failed"`,
    ].join("; ");
    const taskId = await taskWithEvents();
    const job = await submitJob(stack, HANDLE, {
      type: "docker.run",
      taskId,
      payload: { image: TEST_IMAGE, cmd: ["sh", "-c", script], network: "egress", egress: [`127.0.0.1:${caddy.httpPort}`], timeoutSeconds: 30 },
    });
    const done = await finishedJob(stack, HANDLE, job.id);
    expect(done.state, JSON.stringify(done.outcome)).toBe("succeeded");
    const out = (await events(taskId)).filter((e) => e.type === "log" && e.data?.stream === "stdout").map((e) => e.message);
    const after = (heading: string) => out[out.indexOf(`== ${heading}`) + 1];
    expect(after("socket")).toBe("absent");
    expect(after("admin port")).toBe("HTTP/1.1 403 Forbidden");
    // Caddy's catch-all for a host it does not serve: /load is just a path there.
    expect(after("listener")).toBe("HTTP/1.1 404 Not Found");
    expect(after("direct")).toBe("direct failed");
    // And on the server's own network, where 127.0.0.1:2019 would be Caddy's default: this runner refuses the job.
    const host = await submitJob(stack, HANDLE, { type: "docker.run", payload: { image: TEST_IMAGE, cmd: ["true"], network: "host" } });
    const refused = await finishedJob(stack, HANDLE, host.id);
    expect(refused.outcome?.message).toContain('network "host" is refused');

    expect((await adminRequest(caddy.adminSocket, "GET", "/config/")).body).toBe(before);
    const still = await submitJob(stack, HANDLE, { type: "health.check", payload: { domain: "kept.example.test", attempts: 2, intervalMs: 100 } });
    expect(await finishedJob(stack, HANDLE, still.id)).toMatchObject({ state: "succeeded" });
  });

  it("refuses, before anything is signed, provision.yml through ansible.playbook, env files outside the root, and routes outside the release ports", async () => {
    const refusal = async (json: Record<string, unknown>) => {
      const res = await stack.api<{ error: { code: string; message: string } }>(`/api/servers/${HANDLE}/jobs`, { json });
      expect(res.status, JSON.stringify(res.body)).toBe(400);
      return res.body.error.message;
    };
    expect(await refusal({ type: "ansible.playbook", payload: { playbook: "provision.yml", extraVars: { caddy_binary: "/bin/sh" } } })).toContain("provision.yml runs through the provision job type");
    expect(await refusal({ type: "ansible.playbook", payload: { playbook: "write-env.yml", extraVars: { project: "app", dest: "/etc/cron.d/x" } } })).toContain("extraVars");
    expect(await refusal({ type: "ansible.playbook", payload: { playbook: "write-env.yml", extraVars: { project: "../../etc" } } })).toContain("extraVars.project");
    const outside = await refusal({ type: "caddy.sync", payload: { routes: [{ domain: "db.example.test", upstreamPort: 5432 }] } });
    expect(outside).toContain(`release ports ${TEST_RELEASE_PORTS.from}-${TEST_RELEASE_PORTS.to}`);
    expect(outside).toContain("db.example.test → 5432");
  });
});

describe("redelivery", () => {
  // Each round forces the window (the runner is stopped before the job reaches it), so five rounds
  // cover what twenty did: the repeats are for a job left over from one round meeting the next runner.
  it("runs each job once and loses none when the runner is killed between delivery and acceptance, 5 times", { timeout: 180_000 }, async () => {
    if (!runner.process) await runner.start();
    const since = Math.floor(Date.now() / 1000);
    const ids: string[] = [];
    for (let round = 0; round < 5; round++) {
      const pid = runner.process?.child.pid;
      if (!pid) throw new Error("the runner is not running");
      // Stopped, the runner cannot read the job the hub sends: delivered, never accepted, then killed.
      process.kill(pid, "SIGSTOP");
      const job = await submitJob(stack, HANDLE, { type: "docker.run", payload: { image: TEST_IMAGE, cmd: ["true"] } });
      await jobInState(stack, HANDLE, job.id, "delivered");
      await runner.kill();
      await runner.start();
      ids.push(job.id);
      // Sent again to the new runner, it runs; it ends before the next round stops that runner.
      await finishedJob(stack, HANDLE, job.id, 60_000);
    }
    for (const id of ids) {
      const done = await finishedJob(stack, HANDLE, id, 60_000);
      expect(done, JSON.stringify(done)).toMatchObject({ state: "succeeded", outcome: { ok: true, exitCode: 0 } });
      expect(done.attempts).toBeGreaterThanOrEqual(2);
    }
    const created = await Promise.all(ids.map((id) => dockerEvents(since, id, "create")));
    expect(created).toEqual(ids.map(() => 1));
  });
});

describe("provisioning a server (workflow)", () => {
  // The provisioning itself (provision.yml in check mode, then facts.yml) runs on the bundled runner a
  // VPS installs: test/node/runner-bundle.test.ts.
  it("refuses to provision a server without a runner", async () => {
    await registerServer(stack, "vps-unenrolled");
    const res = await stack.api<{ error: { code: string; message: string } }>(`/api/servers/vps-unenrolled/provision`, { json: {} });
    expect(res.status).toBe(409);
    expect(res.body.error.message).toContain("no enrolled runner");
  });
});

describe("the queue", () => {
  it("keeps jobs for an offline runner until it connects, and fails them clearly after their deadline", async () => {
    await runner.stop();
    const waiting = await submitJob(stack, HANDLE, { type: "noop", payload: { echo: "hello" } });
    const doomed = await submitJob(stack, HANDLE, { type: "noop", payload: {}, ttlSeconds: 5 });
    expect(waiting.state).toBe("queued");
    const failed = await finishedJob(stack, HANDLE, doomed.id, 30_000);
    expect(failed).toMatchObject({ state: "failed", outcome: { reason: "undelivered" } });
    expect(failed.outcome?.message).toContain("did not take the job before its deadline");
    await runner.start();
    const done = await finishedJob(stack, HANDLE, waiting.id);
    expect(done).toMatchObject({ state: "succeeded", outcome: { ok: true, data: { echo: "hello" } } });
  });

  it("answers bad job requests with a clear error", async () => {
    const bad = await stack.api<{ error: { code: string; message: string } }>(`/api/servers/${HANDLE}/jobs`, {
      json: { type: "docker.run", payload: { image: TEST_IMAGE, network: "bridge" } },
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toContain("network");
    // Extra vars outrank connection settings in Ansible: a payload may not set ansible_* at all.
    const interpreter = await stack.api<{ error: { code: string; message: string } }>(`/api/servers/${HANDLE}/jobs`, {
      json: { type: "ansible.playbook", payload: { playbook: "facts.yml", extraVars: { ansible_python_interpreter: "touch /tmp/x; python3" } } },
    });
    expect(interpreter.status).toBe(400);
    expect(interpreter.body.error.message).toContain('Unrecognized key: "ansible_python_interpreter"');
    // provision takes only the firewall settings: paths end up in root's systemd units.
    const unitPath = await stack.api<{ error: { message: string } }>(`/api/servers/${HANDLE}/jobs`, {
      json: { type: "provision", payload: { check: true, extraVars: { runner_node_path: "/tmp/evil" } } },
    });
    expect(unitPath.status).toBe(400);
    expect(unitPath.body.error.message).toContain("runner_node_path");
    const unknown = await stack.api<{ error: { code: string } }>(`/api/servers/${HANDLE}/jobs`, { json: { type: "shell", payload: {} } });
    expect(unknown.status).toBe(400);
    const missing = await stack.api<{ error: { code: string } }>(`/api/servers/nope-server/jobs/job_x`);
    expect(missing.status).toBe(404);
  });
});

/** Counts Docker events of one kind for a job's containers since `since` (unix seconds). */
async function dockerEvents(since: number, jobId: string, action: string): Promise<number> {
  const stream = (await docker.getEvents({
    since,
    until: Math.floor(Date.now() / 1000) + 1,
    filters: { type: ["container"], label: [`orchestrator.job=${jobId}`], event: [action] },
  }));
  let text = "";
  for await (const chunk of stream) text += String(chunk);
  return text.split("\n").filter((line) => line.trim()).length;
}
