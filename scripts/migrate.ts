/**
 * `npm run db:migrate`: applies migrations/ to DATABASE_URL (from the environment, else .dev.vars).
 * A local URL is reached through a short-lived WebSocket proxy, exactly as the worker reaches it.
 */
import { resolve } from "node:path";
import { isLocalDatabase, readDevVars } from "./lib/dev-vars.ts";
import { runMigrations } from "./lib/migrate.ts";
import { startWsProxy } from "./lib/ws-proxy.ts";

const databaseUrl = process.env.DATABASE_URL || readDevVars(resolve(process.env.DEV_VARS_FILE ?? ".dev.vars")).DATABASE_URL;
if (!databaseUrl) {
  console.error("db:migrate: set DATABASE_URL (or run `npm run dev` once to create .dev.vars)");
  process.exit(2);
}
const url = new URL(databaseUrl);
const proxy = isLocalDatabase(databaseUrl)
  ? await startWsProxy({ port: 0, targets: [{ host: url.hostname, port: Number(url.port || 5432) }] })
  : undefined;
try {
  await runMigrations(databaseUrl, proxy?.address);
  console.log(`db:migrate: migrations applied to ${url.host}${url.pathname}`);
} catch (error) {
  console.error(`db:migrate: failed: ${error instanceof Error ? error.message.replace(/\nparams: [\s\S]*$/, "") : String(error)}`);
  process.exitCode = 1;
} finally {
  await proxy?.close();
}
