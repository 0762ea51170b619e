import type { Reporter, TestModule } from "vitest/node";

/**
 * Ends the run with the slowest files (what the suite's time goes to), when each started and ended
 * (a heavy file's time includes its wait at the heavy gate, test/support/heavy-gate.ts), and one plain
 * line, `tests: N passed, N failed, N skipped`, for CI logs and humans.
 */
export default class SummaryReporter implements Reporter {
  private readonly runStarted = Date.now();
  private readonly started = new Map<string, number>();
  private readonly ended = new Map<string, number>();

  onTestModuleStart(module: TestModule): void {
    this.started.set(module.moduleId, Date.now());
  }

  onTestModuleEnd(module: TestModule): void {
    this.ended.set(module.moduleId, Date.now());
  }

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
    const at = (time: number | undefined) => (time === undefined ? "     ?" : ((time - this.runStarted) / 1000).toFixed(0).padStart(6));
    const files = testModules
      .map((module) => ({ file: module.relativeModuleId, seconds: module.diagnostic().duration / 1000, from: at(this.started.get(module.moduleId)), to: at(this.ended.get(module.moduleId)) }))
      .sort((a, b) => b.seconds - a.seconds);
    console.log(`\nslowest files (seconds; started and ended, from the run's start):\n${files.slice(0, 15).map((f) => `  ${f.seconds.toFixed(1).padStart(6)} s  ${f.from} → ${f.to}  ${f.file}`).join("\n")}`);
    console.log(`\ntests: ${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped`);
  }
}
