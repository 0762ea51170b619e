/**
 * `npm run bench -- jobs`: the runner's job path through the local stack (wrangler dev → RunnerHub →
 * a real `orchestrator-runner` process → back), one JSON line per case:
 * - noop: N no-op jobs, `--in-flight` at a time; dispatch-to-result latency (from sending
 *   `POST /api/servers/:handle/jobs?wait=30` until its answer carries the result) p50/p99, and jobs/s;
 * - sign_verify: the cost of signing one job and verifying it (Ed25519 over canonical JSON, WebCrypto in Node);
 * - docker_run: a `docker.run` of `true` through the whole path against `docker run --rm <image> true`
 *   from the Docker CLI, in the same run, as a ratio of medians;
 * - docker_run_log_lines: a `docker.run` printing `--log-lines` lines on a task: the time from the POST
 *   until the task's stream holds its terminal event, and the events per second delivered into the
 *   stream, beside the same container run by the Docker CLI with its output discarded.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import Docker from "dockerode";
import { ensureDockerEngine, ensureTestImage, TEST_IMAGE } from "../scripts/lib/docker-engine.ts";
import { startLocalDatabase } from "../scripts/lib/local-db.ts";
import { enrolledRunner, registerServer } from "../scripts/lib/local-runner.ts";
import { startStack, type Stack } from "../scripts/lib/local-stack.ts";
import type { JobView } from "../src/shared/api.ts";
import { generateKeySeed, importPrivateKey, importPublicKey, type JobEnvelope, signJob, verifyJob } from "../src/shared/jobs.ts";
import { nowMs, percentile, round } from "./stats.ts";

const run = promisify(execFile);
const HANDLE = "bench-vps";

interface Options {
  jobs: number;
  /** One noop case per value: 1 measures latency alone, more measures throughput under load. */
  inFlight: number[];
  dockerRuns: number;
  logLines: number;
}

/** Submits a job and long-polls until it has a result; returns the job and the elapsed milliseconds. */
async function dispatch(stack: Stack, body: Record<string, unknown>): Promise<{ job: JobView; ms: number }> {
  const started = nowMs();
  const created = await stack.api<{ job: JobView }>(`/api/servers/${HANDLE}/jobs?wait=30`, { json: body });
  if (created.status !== 201) throw new Error(`POST job: ${created.status} ${JSON.stringify(created.body)}`);
  let job = created.body.job;
  while (!["succeeded", "failed", "cancelled"].includes(job.state)) {
    const res = await stack.api<{ job: JobView }>(`/api/servers/${HANDLE}/jobs/${job.id}?wait=30`);
    job = res.body.job;
  }
  if (job.state !== "succeeded") throw new Error(`job ${job.id} ${job.state}: ${job.outcome?.message ?? ""}`);
  return { job, ms: nowMs() - started };
}

async function noopCase(stack: Stack, options: { jobs: number; inFlight: number }) {
  // Warm-up: the first jobs pay for isolate start-up and imports.
  for (let i = 0; i < 5; i++) await dispatch(stack, { type: "noop", payload: {} });
  const latencies = new Float64Array(options.jobs);
  let next = 0;
  const started = nowMs();
  const worker = async () => {
    while (next < options.jobs) {
      const index = next++;
      latencies[index] = (await dispatch(stack, { type: "noop", payload: { echo: String(index) } })).ms;
    }
  };
  await Promise.all(Array.from({ length: options.inFlight }, worker));
  const elapsed = nowMs() - started;
  return {
    bench: "jobs",
    case: "noop",
    jobs: options.jobs,
    in_flight: options.inFlight,
    p50_ms: round(percentile(latencies, 50)),
    p99_ms: round(percentile(latencies, 99)),
    jobs_per_s: round(options.jobs / (elapsed / 1000), 1),
  };
}

async function signVerifyCase() {
  const { seed, publicKey } = await generateKeySeed();
  const { privateKey } = await importPrivateKey(seed);
  const verifyKey = await importPublicKey(publicKey);
  const now = Math.floor(Date.now() / 1000);
  const envelope = (i: number): JobEnvelope => ({
    v: 1,
    id: `job_bench_${i}`,
    runner: "run_bench",
    type: "docker.run",
    payload: { image: TEST_IMAGE, cmd: ["sh", "-c", "echo hello"], env: { A: "1" }, timeoutSeconds: 600 },
    iat: now,
    exp: now + 3600,
    nonce: `nonce-bench-${i}-xxxxxxxx`,
  });
  const rounds = 2000;
  for (let i = 0; i < 200; i++) await verifyJob(await signJob(privateKey, envelope(i)), { publicKey: verifyKey, runnerId: "run_bench" });
  let signMs = 0;
  let verifyMs = 0;
  for (let i = 0; i < rounds; i++) {
    const t0 = nowMs();
    const signed = await signJob(privateKey, envelope(i));
    const t1 = nowMs();
    const check = await verifyJob(signed, { publicKey: verifyKey, runnerId: "run_bench" });
    const t2 = nowMs();
    if (!check.ok) throw new Error(check.message);
    signMs += t1 - t0;
    verifyMs += t2 - t1;
  }
  return {
    bench: "jobs",
    case: "sign_verify",
    rounds,
    sign_us: round((signMs / rounds) * 1000, 1),
    verify_us: round((verifyMs / rounds) * 1000, 1),
    sign_plus_verify_us: round(((signMs + verifyMs) / rounds) * 1000, 1),
  };
}

async function dockerCase(stack: Stack, options: Options, socketPath: string) {
  const ours = new Float64Array(options.dockerRuns);
  const plain = new Float64Array(options.dockerRuns);
  const env = { ...process.env, DOCKER_HOST: `unix://${socketPath}` };
  // Warm-up for both, then alternate so drift in the engine affects both sides alike.
  await dispatch(stack, { type: "docker.run", payload: { image: TEST_IMAGE, cmd: ["true"] } });
  await run("docker", ["run", "--rm", "--network", "none", TEST_IMAGE, "true"], { env });
  for (let i = 0; i < options.dockerRuns; i++) {
    ours[i] = (await dispatch(stack, { type: "docker.run", payload: { image: TEST_IMAGE, cmd: ["true"] } })).ms;
    const t0 = nowMs();
    await run("docker", ["run", "--rm", "--network", "none", TEST_IMAGE, "true"], { env });
    plain[i] = nowMs() - t0;
  }
  const oursP50 = percentile(ours, 50);
  const plainP50 = percentile(plain, 50);
  return {
    bench: "jobs",
    case: "docker_run_true",
    runs: options.dockerRuns,
    ours_p50_ms: round(oursP50),
    ours_p99_ms: round(percentile(ours, 99)),
    plain_docker_run_p50_ms: round(plainP50),
    plain_docker_run_p99_ms: round(percentile(plain, 99)),
    ratio_p50: round(oursP50 / plainP50, 2),
  };
}

/** Waits until the task's stream is closed (its terminal event is in); returns its last seq. */
async function streamClosed(stack: Stack, taskId: string): Promise<number> {
  for (;;) {
    const res = await stack.api<{ stream: { lastSeq: number; closed: boolean } }>(`/api/tasks/${taskId}`);
    if (res.body.stream.closed) return res.body.stream.lastSeq;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function logLinesCase(stack: Stack, options: Options, socketPath: string) {
  const cmd = ["sh", "-c", `seq 1 ${options.logLines}`];
  const env = { ...process.env, DOCKER_HOST: `unix://${socketPath}` };
  const t0 = nowMs();
  await run("docker", ["run", "--rm", "--network", "none", TEST_IMAGE, ...cmd], { env, maxBuffer: 64 * 1024 * 1024 });
  const plainMs = nowMs() - t0;
  const task = await stack.api<{ task: { id: string } }>("/api/tasks", { json: { type: "maintenance" } });
  const started = nowMs();
  const created = await stack.api<{ job: JobView }>(`/api/servers/${HANDLE}/jobs`, {
    json: { type: "docker.run", payload: { image: TEST_IMAGE, cmd, timeoutSeconds: 1800 }, taskId: task.body.task.id, finishTask: true },
  });
  if (created.status !== 201) throw new Error(`POST job: ${created.status} ${JSON.stringify(created.body)}`);
  const events = await streamClosed(stack, task.body.task.id);
  const elapsed = nowMs() - started;
  return {
    bench: "jobs",
    case: "docker_run_log_lines",
    lines: options.logLines,
    events,
    until_last_event_ms: round(elapsed),
    events_per_s: round(events / (elapsed / 1000), 1),
    plain_docker_run_ms: round(plainMs),
  };
}

export async function jobs(options: Options): Promise<void> {
  const engine = await ensureDockerEngine();
  await ensureTestImage(new Docker({ socketPath: engine.socketPath }));
  const db = await startLocalDatabase("bench_jobs");
  const stack = await startStack({ databaseUrl: db.databaseUrl, dbWsProxy: db.wsProxy, adminKey: `ork_bench${Date.now()}`, logLevel: "error" });
  const { enrollment } = await registerServer(stack, HANDLE);
  const runner = await enrolledRunner(stack, enrollment.token, { docker: { socketPath: engine.socketPath }, concurrency: Math.max(16, ...options.inFlight) });
  try {
    await runner.start();
    for (const inFlight of options.inFlight) console.log(JSON.stringify(await noopCase(stack, { jobs: options.jobs, inFlight })));
    console.log(JSON.stringify(await signVerifyCase()));
    console.log(JSON.stringify(await dockerCase(stack, options, engine.socketPath)));
    console.log(JSON.stringify(await logLinesCase(stack, options, engine.socketPath)));
  } finally {
    await runner.stop();
    await stack.stop();
    await db.stop();
    await engine.stop();
  }
}
