/**
 * What the test run starts once (test/setup/global.ts) for the files that can share it.
 * - sharedStack(): one `wrangler dev` (job wait slices of 1 s, a runner ack lease of 3 s) for files
 *   that need no other worker settings or stand-ins of their own. A file that does (a scripted model,
 *   Telegram) starts its own with startStack.
 * - ownDatabase(): a database of the file's own on the run's Postgres, for files whose assertions
 *   depend on what else is in the database (which servers have a runner, the whole bot pool).
 */
import { inject } from "vitest";
import { type DatabaseServer, databaseOnServer, type LocalDatabase, sharedServerEnv } from "../../scripts/lib/local-db.ts";
import { type StackClient, stackClient } from "../../scripts/lib/local-stack.ts";

export function sharedStack(): StackClient {
  return stackClient(inject("sharedStackUrl"), inject("adminApiKey"));
}

function runServer(): DatabaseServer {
  return { databaseUrl: inject("databaseUrl"), directUrl: inject("databaseDirectUrl"), wsProxy: inject("dbWsProxy") };
}

export function ownDatabase(name: string): Promise<LocalDatabase> {
  return databaseOnServer(runServer(), name, { template: inject("databaseTemplate") });
}

/** The environment under which `npm run bench` makes its databases on the run's Postgres. */
export function sharedDatabaseEnv(): Record<string, string> {
  return sharedServerEnv(runServer(), inject("databaseTemplate"));
}
