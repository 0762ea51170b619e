import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";
import HeavySpreadSequencer from "./test/support/sequencer.ts";

export default defineConfig({
  test: {
    // Three test files at a time, but never two Docker-heavy ones (test/support/heavy-gate.ts): the
    // heavy ones slow each other down more than they gain, while light files beside one cost little.
    // Three rather than two (on 2 cores): many files spend much of their time waiting (on a container,
    // a retry's backoff, a health check), and a third file fills that time. Full runs on the 2-core
    // machine: 913 and 920 s with two, 823 and 910 s with three (runs here differ by up to 10 %).
    maxWorkers: 3,
    sequence: { sequencer: HeavySpreadSequencer },
    globalSetup: ["./test/setup/global.ts"],
    reporters: ["default", "./test/support/summary-reporter.ts"],
    projects: [
      {
        plugins: [
          cloudflareTest(({ inject }) => ({
            wrangler: { configPath: "./wrangler.toml" },
            remoteBindings: false,
            miniflare: {
              bindings: {
                DATABASE_URL: inject("databaseUrl"),
                DB_WS_PROXY: inject("dbWsProxy"),
                ADMIN_API_KEY: inject("adminApiKey"),
                SECRETS_ENCRYPTION_KEY: "dGVzdC1rZXktMzItYnl0ZXMtbG9uZy10ZXN0LWtleSE=",
                LOG_LEVEL: "warn",
                JOB_SIGNING_KEY: "d29ya2VyLXRlc3Qtam9iLXNpZ25pbmctc2VlZC0zMiE",
                RUNNER_ACK_LEASE_SECONDS: "2",
                JOB_WAIT_SLICE_SECONDS: "1",
              },
            },
          })),
        ],
        // The first request into a fresh workerd can take seconds on a busy 2-core machine: no test here is about speed.
        // One workerd for all the files a vitest worker runs (isolate: false), with the worker's modules
        // imported once: a fresh workerd per file cost ~5 CPU-s a file (the project took 351 CPU-s in
        // 257 s; now ~130 CPU-s in ~110 s). Files cannot see each other's data anyway: each makes its own
        // users, projects and Durable Object names, and restores what it spies on.
        test: { name: "worker", include: ["test/worker/**/*.test.ts"], testTimeout: 60_000, isolate: false },
      },
      {
        test: {
          name: "node",
          include: ["test/node/**/*.test.ts", "cli/**/*.test.ts"],
          environment: "node",
          testTimeout: 120_000,
          hookTimeout: 120_000,
          // Files one after another in a vitest worker share its imported modules, as in the worker
          // project above (a fresh process per file cost ~1 CPU-s a file). The files mock nothing and
          // set no globals; each starts and stops what it uses.
          isolate: false,
        },
      },
      // runner/test/, defined beside the runner; the settings above (global setup, sequencer, workers,
      // reporters) apply to it too. Through `extends` rather than the file's path, which would make
      // runner/ the project's root: its files keep their names from here (runner/test/…).
      { extends: "./runner/vitest.config.ts" },
    ],
  },
});
