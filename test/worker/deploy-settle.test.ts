/**
 * A cancel racing the deploy workflow's go-live, against the real database. Terminating a workflow
 * does not stop the step it is in, so a cancelled deploy's "route to new" or "mark active" may still
 * write after (or while) the cancel settles the release. Both take the release's row lock: whichever
 * comes second sees what the first did, and one release serves afterwards, the one from before.
 */
import { env } from "cloudflare:workers";
import { eq, sql } from "drizzle-orm";
import { afterEach, describe, expect, it } from "vitest";
import { createDb, type Db, type DbTx } from "../../src/db/client.ts";
import { deployments, servers, serviceDeployments } from "../../src/db/schema.ts";
import { claimStoppedRelease, pointRoute, recordLive, whileDeploying } from "../../src/deploy/deploys.ts";
import { call, createUserWithKey, uniqueName } from "./helpers.ts";
import { newHandle } from "./runner-helpers.ts";

const handles: { close(): Promise<void> }[] = [];
function connect(): Db {
  const handle = createDb({ databaseUrl: env.DATABASE_URL, wsProxy: env.DB_WS_PROXY });
  handles.push(handle);
  return handle.db;
}
afterEach(async () => {
  await Promise.all(handles.splice(0).map((handle) => handle.close().catch(() => undefined)));
});

/** A project serving v2 from `previous`, and `next` (v3) started and healthy, about to get the route. */
async function serving(db: Db) {
  const { key } = await createUserWithKey("settle");
  const project = (await (await call("/api/projects", { method: "POST", key, json: { name: uniqueName("settle") } })).json<{ project: { id: string; name: string } }>()).project;
  const handle = newHandle();
  const serverId = `srv_${handle}`;
  await db.insert(servers).values({ id: serverId, handle, host: `${handle}.example.test`, status: "online", runnerId: `run_${handle}` });
  const previous = { id: `dep_${crypto.randomUUID()}`, port: 20_001 };
  const next = { id: `dep_${crypto.randomUUID()}`, port: 20_002 };
  const domain = `${project.name}.example.test`;
  await db.insert(deployments).values([
    { id: previous.id, projectId: project.id, serverId, commitSha: "a".repeat(40), status: "active", port: previous.port, domain },
    { id: next.id, projectId: project.id, serverId, commitSha: "b".repeat(40), status: "deploying", port: next.port, domain, previousDeploymentId: previous.id },
  ]);
  await db.insert(serviceDeployments).values({ id: `svc_${project.id}`, projectId: project.id, serverId, domain, internalPort: previous.port, status: "active", activeDeploymentId: previous.id });
  return { projectId: project.id, previous, next };
}

/** The workflow's two steps for `next`, with the pieces src/workflows/deploy.ts runs: the route, then live. */
async function goLive(tx: DbTx, projectId: string, next: { id: string; port: number }, previousId: string): Promise<void> {
  const [service] = await tx.select().from(serviceDeployments).where(eq(serviceDeployments.projectId, projectId));
  if (!service) throw new Error("the project has no route");
  await pointRoute(tx, service, next);
  await recordLive(tx, next.id, { direct: "ok" }, { id: previousId, status: "superseded" });
}

async function state(db: Db, projectId: string) {
  const rows = await db.select({ id: deployments.id, status: deployments.status }).from(deployments).where(eq(deployments.projectId, projectId));
  const [service] = await db.select({ to: serviceDeployments.activeDeploymentId, port: serviceDeployments.internalPort }).from(serviceDeployments).where(eq(serviceDeployments.projectId, projectId));
  return { statuses: Object.fromEntries(rows.map((row) => [row.id, row.status])), route: service };
}

describe("a cancel during a deploy's go-live", () => {
  it("waits for a go-live step already running, then puts the route and the live release back", async () => {
    const db = connect();
    const { projectId, previous, next } = await serving(db);
    let holder = 0;
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const step = whileDeploying(connect(), next.id, async (tx) => {
      holder = (await tx.execute<{ pid: number }>(sql`select pg_backend_pid() as pid`)).rows[0]?.pid ?? 0;
      await goLive(tx, projectId, next, previous.id);
      await held;
    });
    await expect.poll(() => holder, { timeout: 20_000 }).not.toBe(0);
    const cancel = claimStoppedRelease(connect(), next.id, projectId, "cancelled by the test");
    // The cancel is waiting on the step's lock: observed in Postgres, not assumed after a sleep.
    await expect
      .poll(async () => (await db.execute<{ n: number }>(sql`select count(*)::int as n from pg_stat_activity where ${holder} = any(pg_blocking_pids(pid))`)).rows[0]?.n, { timeout: 20_000 })
      .toBe(1);
    release();
    expect(await step).toBe(true);
    expect(await cancel).toMatchObject({ routed: true });
    expect(await state(db, projectId)).toEqual({ statuses: { [previous.id]: "active", [next.id]: "failed" }, route: { to: previous.id, port: previous.port } });
  });

  it("leaves a go-live step that comes after it nothing to do", async () => {
    const db = connect();
    const { projectId, previous, next } = await serving(db);
    expect(await claimStoppedRelease(db, next.id, projectId, "cancelled by the test")).toMatchObject({ routed: false });
    expect(await whileDeploying(db, next.id, (tx) => goLive(tx, projectId, next, previous.id))).toBe(false);
    expect(await state(db, projectId)).toEqual({ statuses: { [previous.id]: "active", [next.id]: "failed" }, route: { to: previous.id, port: previous.port } });
  });

  it("keeps a release that is live once the one before it has stopped: it is the one serving", async () => {
    const db = connect();
    const { projectId, previous, next } = await serving(db);
    expect(await whileDeploying(db, next.id, (tx) => goLive(tx, projectId, next, previous.id))).toBe(true);
    await db.update(deployments).set({ port: null }).where(eq(deployments.id, previous.id));
    expect(await claimStoppedRelease(db, next.id, projectId, "cancelled by the test")).toBeNull();
    expect(await state(db, projectId)).toEqual({ statuses: { [previous.id]: "superseded", [next.id]: "active" }, route: { to: next.id, port: next.port } });
  });
});
