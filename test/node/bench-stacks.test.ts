/**
 * `npm run bench` for the benches that need no Docker (fanout, api, po): each runs end to end on its
 * own stack (wrangler dev, its own database on the test run's Postgres) and the assertions are about
 * what it prints, not how fast. One after another, beside the heavy files; the benches that run
 * containers (jobs, engineering) are test/node/bench.test.ts.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { spawnCollecting } from "../../scripts/lib/processes.ts";
import { ROOT } from "../../scripts/lib/local-stack.ts";
import { sharedDatabaseEnv } from "../support/shared.ts";

const env = { ...process.env, ...sharedDatabaseEnv() };

describe("npm run bench", () => {
  it("fanout: runs both cases end to end and prints one JSON line per watcher count", { timeout: 300_000 }, async () => {
    const bench = spawnCollecting(process.execPath, [join(ROOT, "bench", "run.ts"), "fanout", "--watchers", "2,5", "--events", "20"], { cwd: ROOT, env });
    expect(await bench.exited, bench.output()).toBe(0);
    const results = bench
      .output()
      .split("\n")
      .filter((line) => line.startsWith('{"bench":"fanout"'))
      .map((line) => JSON.parse(line) as { watchers: number; ours: Record<string, number>; redis_variant_a: Record<string, number> });
    expect(results.map((r) => r.watchers)).toEqual([2, 5]);
    for (const result of results) {
      for (const side of [result.ours, result.redis_variant_a]) {
        expect(side.p50_ms).toBeGreaterThan(0);
        expect(side.p99_ms).toBeGreaterThanOrEqual(side.p50_ms ?? 0);
        expect(side.events_per_s).toBeGreaterThan(0);
      }
    }
  });

  it("api: measures the projects route beside both health routes and prints one JSON line per route", { timeout: 300_000 }, async () => {
    const bench = spawnCollecting(process.execPath, [join(ROOT, "bench", "run.ts"), "api", "--clients", "4", "--requests", "40", "--warmup", "8"], { cwd: ROOT, env });
    expect(await bench.exited, bench.output()).toBe(0);
    const lines = bench
      .output()
      .split("\n")
      .filter((line) => line.startsWith('{"bench":"api"'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(lines.map((l) => l.case)).toEqual(["get_api_projects", "get_healthz", "get_healthz_live"]);
    for (const line of lines) {
      expect(line).toMatchObject({ clients: 4, requests: 40, rejected_429: 0, server_errors_5xx: 0, failed_to_connect: 0, statuses: { "200": 40 } });
      expect(line.p50_ms).toBeGreaterThan(0);
      expect(line.p99_ms).toBeGreaterThanOrEqual(Number(line.p50_ms));
    }
    // One key per client, each far under the 300-a-minute limit.
    expect(lines[0]).toMatchObject({ keys: 4, all_answers_200: true });
    expect(lines[0]?.max_requests_per_key).toBeLessThan(300);
    expect(typeof lines[0]?.minus_healthz_p50_ms).toBe("number");
    expect(typeof lines[0]?.meets_goal).toBe("boolean");
  });

  it("po: measures the webhook beside the no-op route, prompt tokens in both capability modes and the agent's storage", { timeout: 300_000 }, async () => {
    const bench = spawnCollecting(process.execPath, [join(ROOT, "bench", "run.ts"), "po", "--chats", "4", "--messages", "2", "--turns", "5,25"], { cwd: ROOT, env });
    expect(await bench.exited, bench.output()).toBe(0);
    type Latency = { p50_ms: number; p99_ms: number; requests: number };
    type Tokens = { prompt_tokens_per_turn: number; intent_parser_tokens_per_turn: number; tools_offered_per_turn: number[] };
    const lines = bench
      .output()
      .split("\n")
      .filter((line) => line.startsWith('{"bench":"po"'))
      .map((line) => JSON.parse(line) as Record<string, unknown> & { case: string; after_turns?: number });
    expect(lines.map((l) => `${l.case}${l.after_turns ? `:${l.after_turns}` : ""}`)).toEqual(["webhook_latency", "prompt_tokens", "agent_storage:5", "agent_storage:25"]);
    const [latency, tokens, ...storage] = lines;
    // Every message got its answer, once.
    expect(latency?.replies).toMatchObject({ expected: 8, answers: 8, chats_fully_answered: 4, chats_over_answered: 0 });
    for (const side of [latency?.webhook, latency?.noop_healthz_live] as Latency[]) {
      expect(side.requests).toBe(8);
      expect(side.p50_ms).toBeGreaterThan(0);
      expect(side.p99_ms).toBeGreaterThanOrEqual(side.p50_ms);
    }
    expect(typeof latency?.meets_goal).toBe("boolean");
    // The intent parser runs (and is counted) only with selection; every tool is offered without it.
    const selected = tokens?.selected as Tokens;
    const all = tokens?.all as Tokens;
    expect(selected.intent_parser_tokens_per_turn).toBeGreaterThan(0);
    expect(all.intent_parser_tokens_per_turn).toBe(0);
    expect(Math.max(...selected.tools_offered_per_turn)).toBeLessThan(Math.min(...all.tools_offered_per_turn));
    expect(selected.prompt_tokens_per_turn).toBeLessThan(all.prompt_tokens_per_turn);
    expect(typeof tokens?.reduction_pct).toBe("number");
    for (const line of storage) {
      expect(line.replies).toBe(line.after_turns);
      expect(line.bytes).toBeGreaterThan(0);
      expect(line.state).not.toBe("PROCESSING");
    }
    // Past 40 stored turns the old ones are summarised away.
    expect(storage[1]).toMatchObject({ summary: true });
    expect(storage[1]?.turns).toBeLessThanOrEqual(60);
  });
});
