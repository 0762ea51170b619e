/**
 * `npm run bench` for the benches that run containers (jobs, engineering); the others are
 * test/node/bench-stacks.test.ts. Not behind the heavy gate: a few small containers and two stacks for
 * ~25 s fit beside a heavy file, and nothing here asserts a speed. Each bench runs in its own processes (its own wrangler dev
 * and runner, its own database on the test run's Postgres) and the assertions are about what each
 * prints, not how fast: so they run at once, and the file takes as long as the slower.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { spawnCollecting } from "../../scripts/lib/processes.ts";
import { ROOT } from "../../scripts/lib/local-stack.ts";
import { sharedDatabaseEnv } from "../support/shared.ts";

const env = { ...process.env, ...sharedDatabaseEnv() };

describe("npm run bench", () => {
  it.concurrent("jobs: runs every case through the local stack and prints one JSON line each", { timeout: 300_000 }, async () => {
    const bench = spawnCollecting(process.execPath, [join(ROOT, "bench", "run.ts"), "jobs", "--jobs", "20", "--in-flight", "1,4", "--docker-runs", "2", "--log-lines", "2000"], { cwd: ROOT, env });
    expect(await bench.exited, bench.output()).toBe(0);
    const lines = bench
      .output()
      .split("\n")
      .filter((line) => line.startsWith('{"bench":"jobs"'))
      .map((line) => JSON.parse(line) as Record<string, number | string>);
    expect(lines.map((l) => `${l.case}:${l.in_flight ?? ""}`)).toEqual(["noop:1", "noop:4", "sign_verify:", "docker_run_true:", "docker_run_log_lines:"]);
    for (const noop of lines.slice(0, 2)) {
      expect(noop.p50_ms).toBeGreaterThan(0);
      expect(noop.p99_ms).toBeGreaterThanOrEqual(Number(noop.p50_ms));
      expect(noop.jobs_per_s).toBeGreaterThan(0);
    }
    expect(lines[2]?.sign_plus_verify_us).toBeGreaterThan(0);
    expect(lines[3]?.ratio_p50).toBeGreaterThan(0);
    // Every line reached the task's stream: 2000 log events plus the job's step and terminal events.
    expect(lines[4]?.events).toBeGreaterThanOrEqual(2000);
    expect(lines[4]?.events_per_s).toBeGreaterThan(0);
  });

  it.concurrent("engineering: runs rounds through the whole pipeline and prints the overhead beside the bare docker runs", { timeout: 300_000 }, async () => {
    const bench = spawnCollecting(process.execPath, [join(ROOT, "bench", "run.ts"), "engineering", "--rounds", "1", "--only", "overhead"], { cwd: ROOT, env });
    expect(await bench.exited, bench.output()).toBe(0);
    const [line] = bench
      .output()
      .split("\n")
      .filter((text) => text.startsWith('{"bench":"engineering"'))
      .map((text) => JSON.parse(text) as Record<string, number | boolean>);
    expect(line).toMatchObject({ case: "round_overhead", rounds: 1, goal_overhead_ms: 300 });
    expect(line?.inside_containers_p50_ms).toBeGreaterThan(0);
    expect(line?.round_wall_p50_ms).toBeGreaterThan(Number(line?.inside_containers_p50_ms));
    expect(line?.overhead_p50_ms).toBeGreaterThan(0);
    expect(line?.bare_docker_run_two_p50_ms).toBeGreaterThan(0);
  });

});
