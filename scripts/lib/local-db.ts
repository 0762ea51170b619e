import { randomBytes } from "node:crypto";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "drizzle-orm";
import { createDb } from "../../src/db/client.ts";
import { runMigrations } from "./migrate.ts";
import { freePort } from "./ports.ts";
import { pgbouncerBinary, startPooler } from "./pooler.ts";
import { startPostgres } from "./postgres.ts";
import { startWsProxy } from "./ws-proxy.ts";

/** A Postgres server already running, the pooler in front of it, and the WebSocket proxy in front of both. */
export interface DatabaseServer {
  /** What the app connects to: the pooler's address (Neon's pooled endpoint, in production). */
  databaseUrl: string;
  /** Postgres itself: for migrations and CREATE/DROP DATABASE, which a pooler's idle backends would get in the way of. */
  directUrl: string;
  /** The DB_WS_PROXY value for the worker. */
  wsProxy: string;
}

export interface LocalDatabase extends DatabaseServer {
  stop(): Promise<void>;
}

export interface LocalDatabaseServer extends LocalDatabase {
  /** Whether a pooler runs in front (pgbouncer is installed); without one, databaseUrl is directUrl. */
  pooled: boolean;
}

/**
 * The local database server: embedded Postgres (data in `<stateDir>/postgres`), PgBouncer in front of it
 * on `port` when it is installed (scripts/lib/pooler.ts; Postgres then takes a free port), and the
 * WebSocket proxy the Neon driver needs, on `proxyPort` (0: any).
 */
export async function startDatabaseServer(options: {
  stateDir: string;
  port: number;
  proxyPort: number;
  database: string;
  password: string;
  log?: (line: string) => void;
}): Promise<LocalDatabaseServer> {
  const pooled = pgbouncerBinary() !== undefined;
  const stops: (() => Promise<void>)[] = [];
  const stop = async () => {
    for (const step of stops.reverse()) await step().catch(() => undefined);
  };
  try {
    const postgresPort = pooled ? await freePort() : options.port;
    const postgres = await startPostgres({ dataDir: join(options.stateDir, "postgres"), port: postgresPort, database: options.database, password: options.password, log: options.log });
    // A Postgres stopped from outside may never answer; don't hang on it.
    stops.push(() => Promise.race([postgres.stop(), new Promise<void>((resolve) => setTimeout(resolve, 10_000))]));
    if (pooled) {
      const pooler = await startPooler({ dir: join(options.stateDir, "pooler"), port: options.port, postgresPort, scramVerifier: postgres.scramVerifier, log: options.log });
      stops.push(() => pooler.stop());
    }
    const proxy = await startWsProxy({ port: options.proxyPort, targets: [...new Set([options.port, postgresPort])].map((port) => ({ host: "127.0.0.1", port })) });
    stops.push(() => proxy.close());
    const url = (port: number) => `postgres://postgres:${encodeURIComponent(options.password)}@127.0.0.1:${port}/${options.database}`;
    return { databaseUrl: url(options.port), directUrl: url(postgresPort), wsProxy: proxy.address, pooled, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/**
 * Where throwaway databases go when a test run shares its server (test/setup/global.ts sets these
 * for the benchmarks it runs): a server (any database's URL on it), its proxy, and a migrated,
 * never-used database to copy.
 */
const SHARED = { url: "LOCAL_POSTGRES_URL", directUrl: "LOCAL_POSTGRES_DIRECT_URL", wsProxy: "LOCAL_DB_WS_PROXY", template: "LOCAL_POSTGRES_TEMPLATE" } as const;

export function sharedServerEnv(server: DatabaseServer, template: string): Record<string, string> {
  return { [SHARED.url]: server.databaseUrl, [SHARED.directUrl]: server.directUrl, [SHARED.wsProxy]: server.wsProxy, [SHARED.template]: template };
}

/**
 * A throwaway, migrated Postgres for tests and benchmarks: a server of its own (startDatabaseServer),
 * or, when the environment names a shared server, a database of its own there.
 */
export async function startLocalDatabase(name: string): Promise<LocalDatabase> {
  const shared = process.env[SHARED.url];
  const sharedDirect = process.env[SHARED.directUrl];
  const sharedProxy = process.env[SHARED.wsProxy];
  if (shared && sharedDirect && sharedProxy) {
    return databaseOnServer({ databaseUrl: shared, directUrl: sharedDirect, wsProxy: sharedProxy }, name, { template: process.env[SHARED.template] });
  }
  const stateDir = mkdtempSync(join(tmpdir(), `orchestrator-${name}-pg-`));
  // As root, Postgres runs as the `postgres` user, which must be able to enter the folder.
  chmodSync(stateDir, 0o755);
  const server = await startDatabaseServer({ stateDir, port: await freePort(), proxyPort: 0, database: name.replace(/\W/g, "_"), password: randomBytes(12).toString("hex") });
  try {
    await runMigrations(server.directUrl, server.wsProxy);
  } catch (error) {
    await server.stop();
    throw error;
  }
  return {
    ...server,
    async stop() {
      await server.stop();
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
}

/**
 * A database of its own on a running server, dropped on stop: a copy of `template` (a migrated
 * database nothing connects to; copying takes a fraction of migrating) or migrated here.
 */
export async function databaseOnServer(server: DatabaseServer, name: string, options: { template?: string } = {}): Promise<LocalDatabase> {
  const admin = createDb({ databaseUrl: server.directUrl, wsProxy: server.wsProxy });
  const database = `${name.replace(/\W/g, "_")}_${randomBytes(6).toString("hex")}`;
  const named = (serverUrl: string) => {
    const url = new URL(serverUrl);
    url.pathname = `/${database}`;
    return url.toString();
  };
  try {
    await admin.db.execute(sql.raw(`CREATE DATABASE ${database}${options.template ? ` TEMPLATE ${options.template}` : ""}`));
    if (!options.template) await runMigrations(named(server.directUrl), server.wsProxy);
  } catch (error) {
    await admin.close();
    throw error;
  }
  return {
    databaseUrl: named(server.databaseUrl),
    directUrl: named(server.directUrl),
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
