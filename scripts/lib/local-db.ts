import { randomBytes } from "node:crypto";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
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

/** A throwaway, migrated Postgres (embedded) with its WebSocket proxy, for tests and benchmarks. */
export async function startLocalDatabase(name: string): Promise<LocalDatabase> {
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
