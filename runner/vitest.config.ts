/**
 * The runner's test project (runner/test/). The repository's vitest.config.ts lists it among its
 * projects and gives it what belongs to the whole run: the global setup (test/setup/global.ts: the
 * Docker engine and test image, Postgres, the shared stack, the heavy-file gate, handed to every
 * project through provide/inject), the sequencer, two workers and the summary reporter. Run it from
 * the repository root: `npx vitest run runner/test/journal.test.ts`, or `npx vitest run --project runner`.
 */
import { fileURLToPath } from "node:url";
import { defineProject } from "vitest/config";

export default defineProject({
  // The repository, not runner/: the tests import scripts/lib/ and src/shared/, and their files are
  // named runner/test/… in reports, as the other projects' files are named from the root.
  root: fileURLToPath(new URL("..", import.meta.url)),
  test: {
    name: "runner",
    include: ["runner/test/**/*.test.ts"],
    environment: "node",
    // A real Docker engine, Caddy and Ansible on a busy 2-core machine, as in the root's node project.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Modules shared by the files a worker runs, as in the root's node project.
    isolate: false,
  },
});
