/**
 * `npm run bench -- engineering [--rounds 10] [--only overhead|typescript]`: the engineering pipeline's own
 * overhead per round, and the typescript-http kind's installs in its first two rounds.
 *
 * One run of `--rounds` Developer → Tester rounds on the python-http template, with the scripted model
 * (the agent answers at once and changes nothing) and a test command that runs no tests (`true`), so
 * every round fails and the next one starts. For each round:
 *   wall     from the Developer's step.started to the Tester's step.completed, as the task stream has them
 *   inside   the two containers' own run time (the engine's StartedAt → FinishedAt, reported by the runner)
 *   overhead wall − inside: the workflow's steps, the hub, the runner, the egress network, container set-up
 * printed as p50 and max, beside the bare `docker run --rm <image> true` of two containers in a row
 * (on an internal bridge, as the rounds' containers are, and with no network), measured in the same
 * run. Docker's own start and teardown of two containers on a bridge take about 400 ms here, so the
 * line also gives the overhead beyond that. Goal: overhead ≤ 300 ms per round.
 *
 * Then, in the same stack, two rounds of the typescript-http kind whose agent runs `npm install` in
 * each, as a Developer of that kind does (through the job's egress proxy to the npm registry stand-in,
 * with the owner's package cache): round 1 with the scaffold's package.json and an empty cache, round 2
 * with the lockfile round 1 committed and the cache round 1 filled (the stand-in's tarballs packed
 * before round 1, as a real registry has them, and node_modules kept for the lockfile by round 1's
 * Developer: runner/images/coding-worker/orchestrator-packages). Printed: each round's install time,
 * the agent's `npm install` (timed in the container, read back from its tool result) plus the restore
 * of the kept node_modules (from the job's log), beside the round's whole time.
 * Goal: round 2 spends at most half of round 1's time installing.
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { promisify } from "node:util";
import Docker from "dockerode";
import { ensureDockerEngine, ensureTestImage } from "../scripts/lib/docker-engine.ts";
import { startEngineeringStack } from "../scripts/lib/engineering-stack.ts";
import { ensureLocalCodingWorker } from "../scripts/lib/images.ts";
import { startLocalDatabase } from "../scripts/lib/local-db.ts";
import { ROOT } from "../scripts/lib/local-stack.ts";
import { waitFor } from "../scripts/lib/processes.ts";
import type { JobView } from "../src/shared/api.ts";
import type { TaskEvent } from "../src/shared/events.ts";
import { type ChatMessage, messageText } from "../standins/model-server.ts";
import { nowMs, percentile, round } from "./stats.ts";

const run = promisify(execFile);
const GOAL_MS = 300;
const INSTALL_GOAL_RATIO = 0.5;

export async function engineering(options: { rounds: number; only?: string | undefined }): Promise<void> {
  if (options.only !== undefined && options.only !== "overhead" && options.only !== "typescript") throw new Error(`--only takes overhead or typescript, not ${options.only}`);
  const engine = await ensureDockerEngine();
  const docker = new Docker({ socketPath: engine.socketPath });
  await ensureTestImage(docker);
  const image = await ensureLocalCodingWorker(docker);
  const db = await startLocalDatabase("bench_engineering");
  const env = await startEngineeringStack({ databaseUrl: db.databaseUrl, dbWsProxy: db.wsProxy, adminKey: `ork_bench${randomBytes(16).toString("hex")}`, dockerSocket: engine.socketPath, image });
  try {
    const user = await env.stack.api<{ user: { id: string } }>("/api/users", { json: { name: "bench" } });
    if (options.only !== "typescript") await roundOverhead(env, user.body.user.id, options.rounds, image);
    if (options.only !== "overhead") await typescriptInstalls(env, user.body.user.id);
  } finally {
    await env.stop();
    await db.stop();
    await engine.stop();
  }
}

/** The python-http rounds that change nothing: the pipeline's overhead per round, beside bare docker runs. */
async function roundOverhead(env: Awaited<ReturnType<typeof startEngineeringStack>>, ownerId: string, rounds: number, image: string): Promise<void> {
  const { stack, model } = env;
  const options = { rounds };
  model.load({
    turns: [
      {
        name: "architect",
        match: { tools: false, anyMessage: "You are the Architect" },
        reply: { content: JSON.stringify({ summary: "A trivial service for the benchmark.", modules: [{ name: "app", purpose: "answers /healthz" }] }) },
      },
    ],
    // Every agent turn: done at once, nothing changed.
    side: [{ name: "agent", match: { tools: true }, reply: { content: "Nothing to change." } }],
  });
  const project = await stack.api<{ project: { id: string } }>("/api/projects", { json: { name: "bench-rounds", description: "trivial", ownerId: ownerId, config: { server: env.handle } } });
  await stack.api(`/api/projects/${project.body.project.id}`, { method: "PATCH", json: { testCommand: "true", maxIterations: options.rounds } });
  const started = await stack.api<{ task: { id: string } }>(`/api/projects/${project.body.project.id}/engineering`, { json: {} });
  if (started.status !== 202) throw new Error(`start: ${started.status} ${JSON.stringify(started.body)}`);
  const taskId = started.body.task.id;
  let seen: TaskEvent[] = [];
  const events = await waitFor(
    async () => {
      const page = (await stack.api<{ events: TaskEvent[] }>(`/api/tasks/${taskId}/events?limit=1000`)).body.events;
      seen = page;
      return page.some((event) => event.type === "task.needs_input" || event.type === "task.failed" || event.type === "task.completed") ? page : undefined;
    },
    60_000 + options.rounds * 60_000,
    // What the stream had got to, and the runner's last words: where it stalled.
    () => `the rounds did not finish; the stream's last events:\n${seen.filter((event) => event.type !== "log").slice(-8).map((event) => `${event.at} ${event.type} ${event.step ?? ""} ${event.message}`).join("\n")}\nrunner: ${env.runner.output().slice(-1500)}\nworker: ${stack.process.output().slice(-2500)}`,
  );
  const ended = events.find((event) => event.type === "task.failed" || event.type === "task.completed");
  if (ended) throw new Error(`the run ended before its rounds were done: ${ended.message}`);
  await stack.api(`/api/tasks/${taskId}/input`, { json: { decision: "stop" } });

  const job = async (id: unknown) => (await stack.api<{ job: JobView }>(`/api/servers/${env.handle}/jobs/${String(id)}`)).body.job;
  const walls: number[] = [];
  const insides: number[] = [];
  const overheads: number[] = [];
  for (let r = 1; r <= options.rounds; r++) {
    const begin = events.find((event) => event.type === "step.started" && event.step === "developer" && event.data?.round === r);
    const developed = events.find((event) => event.type === "step.completed" && event.step === "developer" && event.data?.round === r);
    const tested = events.find((event) => event.type === "step.completed" && event.step === "tester" && event.data?.round === r);
    if (!begin || !developed || !tested) throw new Error(`round ${r} is missing from the stream`);
    const inside = Number((await job(developed.data?.jobId)).outcome?.data?.ranMs) + Number((await job(tested.data?.jobId)).outcome?.data?.ranMs);
    const wall = Date.parse(tested.at) - Date.parse(begin.at);
    walls.push(wall);
    insides.push(inside);
    overheads.push(wall - inside);
  }

  // Docker's own part: the same image run bare, twice in a row, on the kind of network each round's
  // two containers get (an internal bridge), and with no network at all.
  const bareNetwork = `bench-bare-${randomBytes(3).toString("hex")}`;
  await run("docker", ["network", "create", "--internal", bareNetwork]);
  const bareOn = async (network: string) => {
    const times: number[] = [];
    for (let i = 0; i < options.rounds; i++) {
      const t = nowMs();
      await run("docker", ["run", "--rm", "--network", network, image, "true"]);
      await run("docker", ["run", "--rm", "--network", network, image, "true"]);
      times.push(nowMs() - t);
    }
    return percentile(times, 50);
  };
  const bareBridge = await bareOn(bareNetwork);
  const bareNone = await bareOn("none");
  await run("docker", ["network", "rm", bareNetwork]);
  const overhead = percentile(overheads, 50);
  console.log(
    JSON.stringify({
      bench: "engineering",
      case: "round_overhead",
      rounds: options.rounds,
      overhead_p50_ms: round(overhead),
      overhead_max_ms: round(Math.max(...overheads)),
      round_wall_p50_ms: round(percentile(walls, 50)),
      inside_containers_p50_ms: round(percentile(insides, 50)),
      bare_docker_run_two_p50_ms: round(bareBridge),
      bare_docker_run_two_no_network_p50_ms: round(bareNone),
      // What the pipeline adds beyond what running the same two containers by hand costs.
      overhead_beyond_bare_docker_p50_ms: round(overhead - bareBridge),
      goal_overhead_ms: GOAL_MS,
      meets_goal: overhead <= GOAL_MS,
      meets_goal_beyond_bare_docker: overhead - bareBridge <= GOAL_MS,
    }),
  );
}

/** The typescript-http kind's first two Developer rounds, each with the agent's `npm install` timed. */
async function typescriptInstalls(env: Awaited<ReturnType<typeof startEngineeringStack>>, ownerId: string): Promise<void> {
  const { stack, model } = env;
  const install = "cd /work/repo && start=$(date +%s%N) && npm install --loglevel=error && echo \"install-ms $(( ($(date +%s%N) - start) / 1000000 ))\"";
  model.load({
    turns: [
      {
        name: "architect",
        match: { tools: false, anyMessage: "You are the Architect" },
        reply: { content: JSON.stringify({ summary: "A TypeScript service for the benchmark.", template: "typescript-http", modules: [{ name: "app", purpose: "answers /healthz" }] }) },
      },
    ],
    side: [
      // Each round's agent: installs the packages first, as a Developer of a Node kind does, then is done.
      { name: "install", match: { tools: true, lastRole: "user" }, reply: { toolCalls: [{ name: "bash", arguments: { command: install, description: "Install the packages" } }] } },
      { name: "done", match: { tools: true, lastRole: "tool" }, reply: { content: "Installed the packages." } },
    ],
  });
  // As a real registry has them: the template's packages packed before round 1 asks for them.
  const manifest = JSON.parse(readFileSync(join(ROOT, "runner", "templates", "typescript-http", "package.json"), "utf8")) as { dependencies?: Record<string, string>; devDependencies?: Record<string, string> };
  await env.npm.warm(Object.keys({ ...manifest.dependencies, ...manifest.devDependencies }));
  const from = model.requests.length;
  const project = await stack.api<{ project: { id: string } }>("/api/projects", { json: { name: "bench-typescript", description: "trivial", ownerId, config: { server: env.handle } } });
  await stack.api(`/api/projects/${project.body.project.id}`, { method: "PATCH", json: { testCommand: "true", maxIterations: 2 } });
  const started = await stack.api<{ task: { id: string } }>(`/api/projects/${project.body.project.id}/engineering`, { json: {} });
  if (started.status !== 202) throw new Error(`start: ${started.status} ${JSON.stringify(started.body)}`);
  const events = await waitFor(
    async () => {
      const page = (await stack.api<{ events: TaskEvent[] }>(`/api/tasks/${started.body.task.id}/events?limit=1000`)).body.events;
      return page.some((event) => event.type === "task.needs_input" || event.type === "task.failed" || event.type === "task.completed") ? page : undefined;
    },
    600_000,
    () => "the TypeScript rounds did not finish",
  );
  const ended = events.find((event) => event.type === "task.failed" || event.type === "task.completed");
  if (ended) throw new Error(`the TypeScript run ended before its rounds were done: ${ended.message}`);
  await stack.api(`/api/tasks/${started.body.task.id}/input`, { json: { decision: "stop" } });
  // The agent's tool results, in order: one install per round.
  const installs = model.requests
    .slice(from)
    .flatMap((request) => ("messages" in request.body ? (request.body.messages as ChatMessage[]) : []).filter((message) => message.role === "tool").map((message) => /install-ms (\d+)/.exec(messageText(message))?.[1]).slice(-1))
    .filter((value): value is string => value !== undefined)
    .map(Number);
  const [firstNpm, secondNpm] = installs;
  if (firstNpm === undefined || secondNpm === undefined) throw new Error(`expected an install in each of the two rounds, got ${JSON.stringify(installs)}`);
  const bounds = (r: number) => {
    const begin = events.find((event) => event.type === "step.started" && event.step === "developer" && event.data?.round === r);
    const tested = events.find((event) => event.type === "step.completed" && event.step === "tester" && event.data?.round === r);
    return begin && tested ? { from: Date.parse(begin.at), to: Date.parse(tested.at) } : null;
  };
  const wall = (r: number) => {
    const span = bounds(r);
    return span ? span.to - span.from : null;
  };
  // The Developer's restore of the packages a round before installed (orchestrator-packages), which is installing too.
  const restored = (r: number) => {
    const span = bounds(r);
    const line = events.find((event) => event.type === "log" && span && Date.parse(event.at) >= span.from && Date.parse(event.at) <= span.to && /restored from the cache in \d+ ms/.test(event.message));
    return Number(/in (\d+) ms/.exec(line?.message ?? "")?.[1] ?? 0);
  };
  const first = firstNpm + restored(1);
  const second = secondNpm + restored(2);
  const ratio = round(second / first, 2);
  console.log(
    JSON.stringify({
      bench: "engineering",
      case: "typescript_install",
      round1_install_ms: first,
      round1_npm_install_ms: firstNpm,
      round1_restore_ms: restored(1),
      round1_wall_ms: wall(1),
      round2_install_ms: second,
      round2_npm_install_ms: secondNpm,
      round2_restore_ms: restored(2),
      round2_wall_ms: wall(2),
      ratio_round2_to_round1: ratio,
      goal_ratio: INSTALL_GOAL_RATIO,
      meets_goal: ratio <= INSTALL_GOAL_RATIO,
    }),
  );
}
