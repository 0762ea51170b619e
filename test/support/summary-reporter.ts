import type { Reporter, TestModule } from "vitest/node";

/**
 * Ends the run with the slowest files (what the suite's time goes to) and one plain line,
 * `tests: N passed, N failed, N skipped`, for CI logs and humans.
 */
export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    const counts = { passed: 0, failed: 0, skipped: 0 };
    for (const module of testModules) {
      for (const test of module.children.allTests()) {
        const state = test.result().state;
        if (state === "passed") counts.passed++;
        else if (state === "failed") counts.failed++;
        else counts.skipped++;
      }
    }
    const files = testModules.map((module) => ({ file: module.relativeModuleId, seconds: module.diagnostic().duration / 1000 })).sort((a, b) => b.seconds - a.seconds);
    console.log(`\nslowest files:\n${files.slice(0, 15).map((f) => `  ${f.seconds.toFixed(1).padStart(6)} s  ${f.file}`).join("\n")}`);
    console.log(`\ntests: ${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped`);
  }
}
