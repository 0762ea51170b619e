/**
 * For the local factory (scripts/lib/factory.ts): the stand-ins for the outside services .dev.vars does not name, started on
 * 127.0.0.2 (see scripts/lib/engineering-stack.ts for why), and the worker variables that point at
 * them. The scripted model answers with the demo scenario (standins/demo-scenario.ts); the GitHub
 * stand-in keeps its repositories in .dev-state/github.
 */
import { randomBytes } from "node:crypto";
import type Docker from "dockerode";
import { writeFileSync } from "node:fs";
import { Api } from "grammy";
import { join } from "node:path";
import { demoScenario } from "../../standins/demo-scenario.ts";
import { GitHubServer } from "../../standins/github-server.ts";
import { TelegramServer } from "../../standins/telegram-server.ts";
import { ModelServer } from "../../standins/model-server.ts";
import { NpmRegistryServer } from "../../standins/npm-registry.ts";
import { PyPiServer } from "../../standins/pypi-registry.ts";
import { egressTarget } from "../../src/shared/job-payloads.ts";
import { STANDIN_HOST } from "./engineering-stack.ts";
import { ensureStandinsNetwork, STANDINS_NETWORK } from "./standins-network.ts";

export interface DevStandins {
  /** The stand-ins started (absent: a real service is configured). */
  model?: ModelServer;
  github?: GitHubServer;
  telegram?: TelegramServer;
  npm?: NpmRegistryServer;
  pypi?: PyPiServer;
  /**
   * The registries the runner's jobs install from (its `registries` setting): the stand-ins', or
   * NPM_REGISTRY_URL and PYPI_INDEX_URL (with PYPI_FILES_URL where its files are elsewhere).
   */
  registries: { npm: string; pypi: string; pypiFiles: string | null };
  /** Worker variables (`wrangler dev --var`) for what the stand-ins replace. */
  vars: Record<string, string>;
  /** host:port of each stand-in: what a local runner's egress jobs must be let through to. */
  targets: string[];
  stop(): Promise<void>;
}

export async function startDevStandins(options: {
  vars: Record<string, string>;
  stateDir: string;
  workerUrl: string;
  say: (line: string) => void;
  /** Their ports (0: any free one); DEV_MODEL_PORT, DEV_GITHUB_PORT, DEV_TELEGRAM_PORT, DEV_NPM_PORT, DEV_PYPI_PORT or 8790-8794 by default. */
  ports?: { model?: number; github?: number; telegram?: number; npm?: number; pypi?: number };
}): Promise<DevStandins> {
  const vars: Record<string, string> = {};
  const started: Pick<DevStandins, "model" | "github" | "telegram" | "npm" | "pypi"> = {};
  const targets: string[] = [];
  const stops: (() => Promise<void>)[] = [];
  if (!options.vars.OPENAI_API_KEY) {
    const key = "sk-dev-standin";
    const model = new ModelServer({ apiKey: key, scenario: demoScenario() });
    await model.start(options.ports?.model ?? Number(process.env.DEV_MODEL_PORT ?? 8790), STANDIN_HOST);
    started.model = model;
    // Only the worker calls it: job containers reach the model through the worker's relay.
    Object.assign(vars, { OPENAI_BASE_URL: model.baseUrl, OPENAI_API_KEY: key });
    stops.push(() => model.stop());
  }
  if (!options.vars.GITHUB_APP_ID) {
    const github = new GitHubServer({ dir: join(options.stateDir, "github") });
    await github.start(options.ports?.github ?? Number(process.env.DEV_GITHUB_PORT ?? 8791), STANDIN_HOST);
    started.github = github;
    Object.assign(vars, {
      GITHUB_API_URL: github.url,
      GITHUB_APP_ID: String(github.appId),
      GITHUB_INSTALLATION_ID: String(github.installationId),
      GITHUB_APP_PRIVATE_KEY: github.appPrivateKeyPem,
    });
    targets.push(egressTarget(github.url));
    stops.push(() => github.stop());
    options.say(`github: the stand-in on ${github.url}, repositories in ${join(options.stateDir, "github")} (set GITHUB_APP_ID… in .dev.vars for a real App)`);
  }
  const githubUrl: string | undefined = vars.GITHUB_API_URL;
  if (!options.vars.TELEGRAM_API_URL) {
    const telegram = new TelegramServer();
    await telegram.start(options.ports?.telegram ?? Number(process.env.DEV_TELEGRAM_PORT ?? 8792), STANDIN_HOST);
    started.telegram = telegram;
    vars.TELEGRAM_API_URL = telegram.url;
    // The Product Owner's own bot, its webhook pointed at this worker as `npm run telegram:set-webhook` would.
    if (!options.vars.TELEGRAM_BOT_TOKEN) {
      const token = telegram.addBot({ username: "orchestrator_dev_bot" });
      const secret = randomBytes(16).toString("hex");
      await new Api(token, { apiRoot: telegram.url }).setWebhook(`${options.workerUrl}/telegram/webhook`, { secret_token: secret });
      Object.assign(vars, { TELEGRAM_BOT_TOKEN: token, TELEGRAM_WEBHOOK_SECRET: secret, TELEGRAM_SIGNUP: "open" });
    }
    stops.push(() => telegram.stop());
    options.say(`telegram: the Bot API stand-in on ${telegram.url}, the Product Owner as @orchestrator_dev_bot (POST /_standin/bots makes a bot; set TELEGRAM_API_URL in .dev.vars for the real one)`);
  }
  // The projects' packages: the real registry (or a mirror) when NPM_REGISTRY_URL names one, else the stand-in.
  let npmRegistry = process.env.NPM_REGISTRY_URL ?? "";
  if (!npmRegistry) {
    const npm = await new NpmRegistryServer().start(options.ports?.npm ?? Number(process.env.DEV_NPM_PORT ?? 8793), STANDIN_HOST);
    started.npm = npm;
    npmRegistry = `${npm.url}/`;
    targets.push(egressTarget(npm.url));
    stops.push(() => npm.stop());
    options.say(`npm: the registry stand-in on ${npm.url}, serving the ${npm.packages.size} packages in node_modules (set NPM_REGISTRY_URL for a real registry)`);
  }
  let pypiIndex = process.env.PYPI_INDEX_URL ?? "";
  let pypiFiles = process.env.PYPI_FILES_URL || null;
  if (!pypiIndex) {
    const pypi = await new PyPiServer().start(options.ports?.pypi ?? Number(process.env.DEV_PYPI_PORT ?? 8794), STANDIN_HOST);
    started.pypi = pypi;
    pypiIndex = pypi.indexUrl;
    pypiFiles = null;
    targets.push(egressTarget(pypi.url));
    stops.push(() => pypi.stop());
    options.say(`pypi: the index stand-in on ${pypi.url}, serving the ${pypi.projects.size} Python distributions installed on this machine (set PYPI_INDEX_URL for a real index)`);
  }
  // For the factory's runner (what its egress jobs may reach) and dev:fixture (where to put the fixture's repository).
  writeFileSync(join(options.stateDir, "standins.json"), JSON.stringify({ targets, ...(githubUrl ? { github: githubUrl } : {}), ...(started.telegram ? { telegram: started.telegram.url } : {}) }, null, 2));
  return {
    ...started,
    registries: { npm: npmRegistry, pypi: pypiIndex, pypiFiles },
    vars,
    targets,
    async stop() {
      for (const stop of stops) await stop();
    },
  };
}

/** The Telegram stand-in where the projects' releases can reach it (scripts/lib/standins-network.ts): also on the stand-ins network's gateway. */
export async function offerTelegramToReleases(docker: Docker, telegram: TelegramServer): Promise<string> {
  await ensureStandinsNetwork(docker);
  return telegram.listenAlso(0, STANDINS_NETWORK.gateway);
}
