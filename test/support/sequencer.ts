/**
 * The order the test files start in, for the heavy gate (test/support/heavy-gate.ts): one heavy file
 * at a time, so the heavy files in a row are the run's longest path, and the other workers
 * (`maxWorkers` less one) run light files beside it. Each heavy file is followed by a share of light
 * files that takes those workers a little less time than the heavy file takes (by the seconds in
 * test/support/file-seconds.json). The next heavy file is then taken as the share runs out, so no heavy
 * file waits for light files to be taken first. Light files that fit no share run at the end.
 *
 * The files of the worker project, which share one workerd (`isolate: false` in the Workers pool),
 * stay together, one after another: vitest keeps that runner for the next file only when that file is
 * next in line, and starting a fresh workerd and importing the worker into it costs ~5 CPU-s a file.
 * (The node and runner projects share a worker's modules between files too, but a forked worker is
 * cheap to replace: their files are spread among the heavy ones.)
 */
import { readFileSync } from "node:fs";
import { relative } from "node:path";
import { BaseSequencer, type TestSpecification } from "vitest/node";
import { z } from "zod";
import { HEAVY_MARK } from "./heavy-gate.ts";

const EXPECTED = z.object({ seconds: z.record(z.string(), z.number()) }).parse(JSON.parse(readFileSync(new URL("./file-seconds.json", import.meta.url), "utf8"))).seconds;
/** A share is filled to this part of its heavy file's time (per light worker): a share that runs over stalls the heavy files. */
const SHARE_OF_HEAVY = 0.85;
/** The pool @cloudflare/vitest-plugin runs the worker project in. */
const WORKERS_POOL = "cloudflare-pool";

export default class HeavySpreadSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    // The base order (largest files first) breaks ties between files of equal expected seconds.
    const sorted = await super.sort(files);
    const heavySet = new Set(sorted.filter((file) => readFileSync(file.moduleId, "utf8").includes(HEAVY_MARK)));
    const seconds = (file: TestSpecification) => EXPECTED[relative(process.cwd(), file.moduleId)] ?? (heavySet.has(file) ? 120 : 10);
    const longestFirst = (a: TestSpecification, b: TestSpecification) => seconds(b) - seconds(a);
    const heavy = sorted.filter((file) => heavySet.has(file)).sort(longestFirst);
    if (heavy.length === 0) return sorted;
    // A unit is one light file, or every file of a project that shares its runtime between files.
    const units: TestSpecification[][] = [];
    const shared = new Map<string, TestSpecification[]>();
    for (const file of sorted.filter((file) => !heavySet.has(file)).sort(longestFirst)) {
      if (!(file.project.config.isolate === false && file.project.config.pool === WORKERS_POOL)) {
        units.push([file]);
        continue;
      }
      const unit = shared.get(file.project.name);
      if (unit) unit.push(file);
      else {
        const first = [file];
        shared.set(file.project.name, first);
        units.push(first);
      }
    }
    const unitSeconds = (unit: TestSpecification[]) => unit.reduce((sum, file) => sum + seconds(file), 0);
    units.sort((a, b) => unitSeconds(b) - unitSeconds(a));

    // Longest units first, each into the share with the most room left, if it fits there.
    const lightWorkers = Math.max(1, this.ctx.config.maxWorkers - 1);
    const shares = heavy.map((file) => ({ heavy: file, room: seconds(file) * SHARE_OF_HEAVY * lightWorkers, files: [] as TestSpecification[] }));
    const leftover: TestSpecification[] = [];
    for (const unit of units) {
      const share = shares.reduce((best, candidate) => (candidate.room > best.room ? candidate : best));
      if (share.room >= unitSeconds(unit)) {
        share.files.push(...unit);
        share.room -= unitSeconds(unit);
      } else leftover.push(...unit);
    }
    return [...shares.flatMap((share) => [share.heavy, ...share.files]), ...leftover];
  }
}
