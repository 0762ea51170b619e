import { randomBytes } from "node:crypto";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "drizzle-orm";
import { createDb } from "../../src/db/client.ts";
import { runMigrations } from "./migrate.ts";
import { freePort } from "./ports.ts";
import { startPostgres } from "./postgres.ts";
import { startWsProxy } from "./ws-proxy.ts";

export interface LocalDatabase {
  databaseUrl: string;
  /** The DB_WS_PROXY value for the worker. */
  wsProxy: string;
  stop(): Promise<void>;
}

/** A Postgres server already running, and the WebSocket proxy in front of it. */
export interface DatabaseServer {
  databaseUrl: string;
  wsProxy: string;
}

/**
 * Where throwaway databases go when a test run shares its server (test/setup/global.ts sets these
 * for the benchmarks it runs): a server (any database's URL on it), its proxy, and a migrated,
 * never-used database to copy.
 */
const SHARED = { url: "LOCAL_POSTGRES_URL", wsProxy: "LOCAL_DB_WS_PROXY", template: "LOCAL_POSTGRES_TEMPLATE" } as const;

export function sharedServerEnv(server: DatabaseServer, template: string): Record<string, string> {
  return { [SHARED.url]: server.databaseUrl, [SHARED.wsProxy]: server.wsProxy, [SHARED.template]: template };
}

/**
 * A throwaway, migrated Postgres for tests and benchmarks: a server of its own (embedded) with its
 * WebSocket proxy, or, when the environment names a shared server, a database of its own there.
 */
export async function startLocalDatabase(name: string): Promise<LocalDatabase> {
  const shared = process.env[SHARED.url];
  const sharedProxy = process.env[SHARED.wsProxy];
  if (shared && sharedProxy) return databaseOnServer({ databaseUrl: shared, wsProxy: sharedProxy }, name, { template: process.env[SHARED.template] });
  const dataDir = mkdtempSync(join(tmpdir(), `orchestrator-${name}-pg-`));
  // As root, Postgres runs as the `postgres` user, which must be able to enter the folder.
  chmodSync(dataDir, 0o755);
  const pg = await startPostgres({ dataDir: join(dataDir, "data"), port: await freePort(), database: name.replace(/\W/g, "_"), password: randomBytes(12).toString("hex") });
  const proxy = await startWsProxy({ port: 0, target: { host: "127.0.0.1", port: pg.port } });
  await runMigrations(pg.url, proxy.address);
  return {
    databaseUrl: pg.url,
    wsProxy: proxy.address,
    async stop() {
      await proxy.close();
      await pg.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * A database of its own on a running server, dropped on stop: a copy of `template` (a migrated
 * database nothing connects to; copying takes a fraction of migrating) or migrated here.
 */
export async function databaseOnServer(server: DatabaseServer, name: string, options: { template?: string } = {}): Promise<LocalDatabase> {
  const admin = createDb({ databaseUrl: server.databaseUrl, wsProxy: server.wsProxy });
  const database = `${name.replace(/\W/g, "_")}_${randomBytes(6).toString("hex")}`;
  const url = new URL(server.databaseUrl);
  url.pathname = `/${database}`;
  try {
    await admin.db.execute(sql.raw(`CREATE DATABASE ${database}${options.template ? ` TEMPLATE ${options.template}` : ""}`));
    if (!options.template) await runMigrations(url.toString(), server.wsProxy);
  } catch (error) {
    await admin.close();
    throw error;
  }
  return {
    databaseUrl: url.toString(),
    wsProxy: server.wsProxy,
    async stop() {
      try {
        await admin.db.execute(sql.raw(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`));
      } finally {
        await admin.close();
      }
    },
  };
}
