/**
 * The order the test files start in, for `maxWorkers: 2`: the heavy files (those that call
 * oneHeavyFileAtATime, test/support/heavy-gate.ts) spread out, with an even share of the light files
 * between each two, so that while one worker holds the gate the other has light files to run.
 */
import { readFileSync } from "node:fs";
import { BaseSequencer, type TestSpecification } from "vitest/node";
import { HEAVY_MARK } from "./heavy-gate.ts";

export default class HeavySpreadSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    // The base order first (longest known first, from earlier runs' durations, or largest files).
    const sorted = await super.sort(files);
    const heavy = sorted.filter((file) => readFileSync(file.moduleId, "utf8").includes(HEAVY_MARK));
    const light = sorted.filter((file) => !heavy.includes(file));
    if (heavy.length === 0) return sorted;
    const share = Math.ceil(light.length / heavy.length);
    return heavy.flatMap((file, i) => [file, ...light.slice(i * share, (i + 1) * share)]);
  }
}
