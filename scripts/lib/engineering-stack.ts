/**
 * The whole engineering path on this machine, for tests and the benchmark: the scripted model, the
 * GitHub stand-in and the npm registry stand-in (standins/), the worker under wrangler dev configured to use them, and a real runner
 * whose job containers may reach them through the egress proxy.
 *
 * The stand-ins listen on 127.0.0.2: a container's own loopback (127.0.0.1) is never proxied, so the
 * stand-ins are reached through the egress proxy, as api.openai.com and github.com would be.
 */
import { randomBytes } from "node:crypto";
import { GitHubServer } from "../../standins/github-server.ts";
import { ModelServer } from "../../standins/model-server.ts";
import { NpmRegistryServer } from "../../standins/npm-registry.ts";
import { PyPiServer } from "../../standins/pypi-registry.ts";
import { egressTarget } from "../../src/shared/job-payloads.ts";
import type { RunnerConfigInput } from "../../runner/src/config.ts";
import { enrolledRunner, registerServer, type TestRunner } from "./local-runner.ts";
import { type Stack, startStack } from "./local-stack.ts";
import { freePort } from "./ports.ts";
import { startRelayForwarder } from "./relay-forward.ts";

export const STANDIN_HOST = "127.0.0.2";

export interface EngineeringStack {
  stack: Stack;
  runner: TestRunner;
  model: ModelServer;
  github: GitHubServer;
  /** Where the Node kinds' jobs install from (the runner's registries.npm). */
  npm: NpmRegistryServer;
  /** Where the Python kinds' jobs install from (the runner's registries.pypi). */
  pypi: PyPiServer;
  modelKey: string;
  handle: string;
  stop(): Promise<void>;
}

export async function startEngineeringStack(options: {
  databaseUrl: string;
  dbWsProxy: string;
  adminKey: string;
  dockerSocket: string;
  image: string;
  handle?: string;
  /** More worker vars (e.g. the deploy pipeline's drain time). */
  vars?: Record<string, string>;
  /** More runner settings (e.g. Caddy, release ports, the deployments root for the deploy pipeline). */
  runner?: Partial<RunnerConfigInput>;
}): Promise<EngineeringStack> {
  const modelKey = `sk-test-${randomBytes(12).toString("hex")}`;
  const handle = options.handle ?? "build-box";
  const model = new ModelServer({ apiKey: modelKey });
  const github = new GitHubServer();
  const npm = new NpmRegistryServer();
  const pypi = new PyPiServer();
  await model.start(0, STANDIN_HOST);
  await github.start(0, STANDIN_HOST);
  await npm.start(0, STANDIN_HOST);
  await pypi.start(0, STANDIN_HOST);
  // Job containers reach the model only through the worker's relay, offered to them on STANDIN_HOST.
  const port = await freePort();
  const relay = await startRelayForwarder(port);
  const stack = await startStack({
    databaseUrl: options.databaseUrl,
    dbWsProxy: options.dbWsProxy,
    adminKey: options.adminKey,
    port,
    vars: {
      MODEL_RELAY_URL: relay.url,
      OPENAI_BASE_URL: model.baseUrl,
      OPENAI_API_KEY: modelKey,
      GITHUB_API_URL: github.url,
      GITHUB_APP_ID: String(github.appId),
      GITHUB_INSTALLATION_ID: String(github.installationId),
      GITHUB_APP_PRIVATE_KEY: github.appPrivateKeyPem,
      CODING_WORKER_IMAGE: options.image,
      JOB_WAIT_SLICE_SECONDS: "1",
      ...options.vars,
    },
  });
  const { enrollment } = await registerServer(stack, handle);
  const runner = await enrolledRunner(stack, enrollment.token, {
    docker: { socketPath: options.dockerSocket, egress: { internalTargets: [relay.target, egressTarget(github.url), egressTarget(npm.url), egressTarget(pypi.url)] } },
    registries: { npm: `${npm.url}/`, pypi: pypi.indexUrl, pypiFiles: null },
    concurrency: 2,
    ...options.runner,
  });
  await runner.start();
  return {
    stack,
    runner,
    model,
    github,
    npm,
    pypi,
    modelKey,
    handle,
    async stop() {
      await runner.stop();
      await relay.close();
      await stack.stop();
      await model.stop();
      await github.stop();
      await npm.stop();
      await pypi.stop();
    },
  };
}
