#!/usr/bin/env node
/**
 * `orchestrator-runner`: the daemon on each VPS. Exit codes: 0 success, 2 usage error,
 * 3 the command could not be done (no config, enrollment refused, control plane unreachable).
 */
import { parseArgs } from "node:util";
import { ConfigError, defaultConfigPath, loadConfig } from "./src/config.ts";
import { RunnerDaemon } from "./src/daemon.ts";
import { enroll, EnrollError } from "./src/enroll.ts";
import { JournalLockedError } from "./src/journal.ts";

const USAGE = `Usage:
  orchestrator-runner enroll --edge <url> --token <token> [--config <path>] [--state-dir <dir>] [--concurrency N] [--force]
      generate this runner's key pair, exchange the one-time token for its identity, write the config (0600)
  orchestrator-runner run [--config <path>]
      connect to the control plane and run the jobs it signs for this runner, until SIGTERM/SIGINT

The config path defaults to /etc/orchestrator-runner/config.json as root, else
~/.config/orchestrator-runner/config.json (or ORCHESTRATOR_RUNNER_CONFIG).`;

class UsageError extends Error {}

async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  if (command === "enroll") {
    const { values } = parseArgs({
      args,
      options: {
        edge: { type: "string" },
        token: { type: "string" },
        config: { type: "string" },
        "state-dir": { type: "string" },
        concurrency: { type: "string" },
        force: { type: "boolean" },
      },
    });
    if (!values.edge || !values.token) throw new UsageError("enroll needs --edge and --token");
    const concurrency = values.concurrency === undefined ? undefined : Number(values.concurrency);
    if (concurrency !== undefined && !(Number.isInteger(concurrency) && concurrency >= 1 && concurrency <= 64)) {
      throw new UsageError("--concurrency must be a whole number from 1 to 64");
    }
    const configPath = values.config ?? defaultConfigPath();
    const result = await enroll({
      edge: values.edge,
      token: values.token,
      configPath,
      force: values.force,
      settings: { ...(values["state-dir"] ? { stateDir: values["state-dir"] } : {}), ...(concurrency ? { concurrency } : {}) },
    });
    process.stdout.write(`enrolled as runner ${result.runnerId} of server ${result.server}; config written to ${result.configPath}\n`);
    process.stdout.write(`start it with: orchestrator-runner run --config ${result.configPath}\n`);
    return 0;
  }
  if (command === "run") {
    const { values } = parseArgs({ args, options: { config: { type: "string" } } });
    const config = loadConfig(values.config ?? defaultConfigPath());
    const daemon = new RunnerDaemon(config);
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      process.stderr.write(`${JSON.stringify({ level: "info", msg: "stopping", signal })}\n`);
      daemon.stop().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    };
    process.on("SIGTERM", () => stop("SIGTERM"));
    process.on("SIGINT", () => stop("SIGINT"));
    await daemon.start();
    return new Promise<number>(() => undefined);
  }
  if (command === undefined || command === "help" || command === "--help" || command === "-h") {
    process.stdout.write(`${USAGE}\n`);
    return command === undefined ? 2 : 0;
  }
  throw new UsageError(`unknown command "${command}"`);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof UsageError || (error instanceof TypeError && "code" in error && String(error.code).startsWith("ERR_PARSE_ARGS"))) {
      process.stderr.write(`orchestrator-runner: ${error.message}\n\n${USAGE}\n`);
      process.exit(2);
    }
    if (error instanceof ConfigError || error instanceof EnrollError || error instanceof JournalLockedError) {
      process.stderr.write(`orchestrator-runner: ${error.message}\n`);
      process.exit(3);
    }
    process.stderr.write(`orchestrator-runner: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
