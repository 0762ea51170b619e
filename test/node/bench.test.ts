import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { spawnCollecting } from "../../scripts/lib/processes.ts";
import { ROOT } from "../../scripts/lib/local-stack.ts";

describe("npm run bench -- fanout", () => {
  it("runs both cases end to end and prints one JSON line per watcher count", async () => {
    const bench = spawnCollecting(process.execPath, [join(ROOT, "bench", "run.ts"), "fanout", "--watchers", "2,5", "--events", "20"], { cwd: ROOT, env: process.env });
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
});
