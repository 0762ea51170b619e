/** An ExecutorContext for testing executors on their own: records what they report. */
import { TEST_RELEASE_PORTS } from "../../scripts/lib/ports.ts";
import { LOCAL_RELEASE_TARGETS } from "../../scripts/lib/standins-network.ts";
import Docker from "dockerode";
import { MAX_LOG_LINE_CHARS, truncateText } from "../../src/shared/limits.ts";
import { RunnerConfig, type RunnerConfigInput } from "../src/config.ts";
import { EgressGateway } from "../src/egress.ts";
import type { AbortReason, ExecutorContext } from "../src/executors/types.ts";

const KEY = "A".repeat(43);

export function testConfig(overrides: Partial<RunnerConfigInput> = {}): RunnerConfig {
  const config = RunnerConfig.parse({
    edge: "http://127.0.0.1:1",
    runnerId: "run_test",
    server: "test",
    privateKey: KEY,
    publicKey: KEY,
    controlPlanePublicKey: KEY,
    stateDir: "/tmp/orchestrator-runner-test",
    releasePorts: TEST_RELEASE_PORTS,
    // Never the public registry from a test: a test that installs names its stand-in.
    registries: { npm: "http://127.0.0.1:9/", pypi: "http://127.0.0.1:9/simple/", pypiFiles: null },
    ...overrides,
  });
  // As every runner on this machine has it: they share one firewall table (scripts/lib/standins-network.ts).
  config.docker.egress.releaseInternalTargets = [...new Set([...config.docker.egress.releaseInternalTargets, ...LOCAL_RELEASE_TARGETS])];
  return config;
}

export interface RecordingContext extends ExecutorContext {
  lines: { stream: string; line: string }[];
  steps: { step: string; message: string; data?: Record<string, unknown> }[];
  abort(reason: AbortReason): void;
}

export function recordingContext(config: RunnerConfig = testConfig(), jobId = `job_${Date.now()}`): RecordingContext {
  const controller = new AbortController();
  const lines: RecordingContext["lines"] = [];
  const steps: RecordingContext["steps"] = [];
  return {
    jobId,
    signal: controller.signal,
    config,
    egress: new EgressGateway(new Docker({ socketPath: config.docker.socketPath }), config.docker.egress),
    botGateway: null,
    lines,
    steps,
    // Cut as the daemon cuts, so executors can be tested on long lines.
    log: (line, stream = "stdout", cut = 0) => lines.push({ stream, line: truncateText(line, MAX_LOG_LINE_CHARS, cut) }),
    progress: (step, message, data) => steps.push({ step, message, data }),
    abort: (reason) => controller.abort(reason),
  };
}
