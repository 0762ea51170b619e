/**
 * The order the test files start in, for `maxWorkers: 2` and the heavy gate (test/support/heavy-gate.ts):
 * one heavy file at a time, so the heavy files in a row are the run's longest path. Each heavy file is
 * followed by a share of light files that takes the other worker a little less time than the heavy
 * file takes (by the seconds in test/support/file-seconds.json). The workers then take turns: one runs
 * a heavy file while the other runs its share and then waits at the gate for the next heavy file, so no
 * heavy file waits for light files to be taken first. Light files that fit no share run at the end, on
 * both workers.
 */
import { readFileSync } from "node:fs";
import { relative } from "node:path";
import { BaseSequencer, type TestSpecification } from "vitest/node";
import { HEAVY_MARK } from "./heavy-gate.ts";

const EXPECTED = readExpectedSeconds();
/** A share is filled to this part of its heavy file's time: a share that runs over stalls the heavy files. */
const SHARE_OF_HEAVY = 0.85;

export default class HeavySpreadSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const isHeavy = (file: TestSpecification) => readFileSync(file.moduleId, "utf8").includes(HEAVY_MARK);
    const seconds = (file: TestSpecification) => EXPECTED[relative(process.cwd(), file.moduleId)] ?? (isHeavy(file) ? 120 : 10);
    const bySecondsDown = (a: TestSpecification, b: TestSpecification) => seconds(b) - seconds(a);
    const heavy = sorted.filter(isHeavy).sort(bySecondsDown);
    const light = sorted.filter((file) => !heavy.includes(file)).sort(bySecondsDown);
    if (heavy.length === 0) return sorted;

    // Longest light files first, each into the share with the most room left, if it fits there.
    const shares = heavy.map((file) => ({ room: seconds(file) * SHARE_OF_HEAVY, files: [] as TestSpecification[] }));
    const leftover: TestSpecification[] = [];
    for (const file of light) {
      const share = shares.reduce((best, candidate) => (candidate.room > best.room ? candidate : best));
      if (share.room >= seconds(file)) {
        share.files.push(file);
        share.room -= seconds(file);
      } else leftover.push(file);
    }
    return [...heavy.flatMap((file, i) => [file, ...(shares[i]?.files ?? [])]), ...leftover];
  }
}

function readExpectedSeconds(): Record<string, number> {
  const parsed: unknown = JSON.parse(readFileSync(new URL("./file-seconds.json", import.meta.url), "utf8"));
  if (typeof parsed !== "object" || parsed === null || !("seconds" in parsed) || typeof parsed.seconds !== "object" || parsed.seconds === null) return {};
  return Object.fromEntries(Object.entries(parsed.seconds).filter((entry): entry is [string, number] => typeof entry[1] === "number"));
}
