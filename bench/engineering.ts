/**
 * `npm run bench -- engineering [--rounds 10]`: the engineering pipeline's own overhead per round.
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
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { promisify } from "node:util";
import Docker from "dockerode";
import { ensureDockerEngine, ensureTestImage } from "../scripts/lib/docker-engine.ts";
import { startEngineeringStack } from "../scripts/lib/engineering-stack.ts";
import { ensureLocalCodingWorker } from "../scripts/lib/images.ts";
import { startLocalDatabase } from "../scripts/lib/local-db.ts";
import { waitFor } from "../scripts/lib/processes.ts";
import type { JobView } from "../src/shared/api.ts";
import type { TaskEvent } from "../src/shared/events.ts";
import { nowMs, percentile, round } from "./stats.ts";

const run = promisify(execFile);
const GOAL_MS = 300;

export async function engineering(options: { rounds: number }): Promise<void> {
  const engine = await ensureDockerEngine();
  const docker = new Docker({ socketPath: engine.socketPath });
  await ensureTestImage(docker);
  const image = await ensureLocalCodingWorker(docker);
  const db = await startLocalDatabase("bench_engineering");
  const env = await startEngineeringStack({ databaseUrl: db.databaseUrl, dbWsProxy: db.wsProxy, adminKey: `ork_bench${randomBytes(16).toString("hex")}`, dockerSocket: engine.socketPath, image });
  const { stack, model } = env;
  try {
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
    const user = await stack.api<{ user: { id: string } }>("/api/users", { json: { name: "bench" } });
    const project = await stack.api<{ project: { id: string } }>("/api/projects", { json: { name: "bench-rounds", description: "trivial", ownerId: user.body.user.id, config: { server: env.handle } } });
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
  } finally {
    await env.stop();
    await db.stop();
    await engine.stop();
  }
}
