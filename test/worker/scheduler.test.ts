/**
 * The scheduler's parts in workerd: the Lock Durable Object's lease (one holder at a time, renewal,
 * release, takeover after expiry), jobs run under it (two runs started together: one does the work),
 * `server_sync` turning silence into `missing` with an incident, and the incidents API.
 */
import { env } from "cloudflare:workers";
import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { createDb } from "../../src/db/client.ts";
import { servers } from "../../src/db/schema.ts";
import { getLock } from "../../src/platform/lock.ts";
import { createLogger } from "../../src/lib/log.ts";
import { serverSync } from "../../src/scheduler/server-sync.ts";
import { withLock } from "../../src/scheduler/with-lock.ts";
import { adminKey, call, createUserWithKey } from "./helpers.ts";
import { enrolledRunner } from "./runner-helpers.ts";

const log = createLogger("error");
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("the Lock lease", () => {
  it("has one holder at a time, renews only for its holder, and is taken over once expired", async () => {
    const lock = getLock(env, `test-${crypto.randomUUID()}`);
    const first = await lock.acquire("run-a", 60_000);
    expect(first.ok).toBe(true);
    if (!first.ok) return;
    const second = await lock.acquire("run-b", 60_000);
    expect(second).toMatchObject({ ok: false, heldBy: "run-a" });
    expect((await lock.renew("not-the-token", 60_000)).ok).toBe(false);
    expect((await lock.renew(first.lease.token, 60_000)).ok).toBe(true);
    expect(await lock.release("not-the-token")).toBe(false);
    expect(await lock.release(first.lease.token)).toBe(true);
    expect(await lock.status()).toEqual({ held: false });

    // A holder that dies never renews: a minute later its lease is someone else's.
    const dying = await lock.acquire("run-c", 1000);
    expect(dying.ok).toBe(true);
    const later = Date.now() + 61_000;
    const taken = await lock.acquire("run-d", 60_000, later);
    expect(taken).toMatchObject({ ok: true, tookOver: { holder: "run-c" } });
    if (dying.ok) expect((await lock.renew(dying.lease.token, 1000, later)).ok).toBe(false);
  });

  it("lets exactly one of two runs started together do the work, and the next run proceed after a holder died", async () => {
    const name = `job-${crypto.randomUUID().slice(0, 8)}`;
    let worked = 0;
    const work = async () => {
      worked++;
      await sleep(400);
      return "done";
    };
    const [a, b] = await Promise.all([withLock(env, log, name, "run-1", 5000, work), withLock(env, log, name, "run-2", 5000, work)]);
    expect(worked).toBe(1);
    expect([a.ran, b.ran].sort()).toEqual([false, true]);
    const skipped = a.ran ? b : a;
    expect(skipped).toMatchObject({ ran: false, heldBy: a.ran ? "run-1" : "run-2" });

    // A run that died holding the lock (acquired, never released): its lease runs out, the next run works.
    await getLock(env, `scheduler:${name}`).acquire("run-that-died", 1000);
    expect((await withLock(env, log, name, "run-3", 5000, work)).ran).toBe(false);
    await sleep(1100);
    expect(await withLock(env, log, name, "run-4", 5000, work)).toMatchObject({ ran: true, result: "done" });
    expect(worked).toBe(2);
  });
});

describe("server_sync", () => {
  it("marks a runner silent too long as missing with an incident, and resolves it when the runner is back", async () => {
    const runner = await enrolledRunner();
    const handle = createDb({ databaseUrl: env.DATABASE_URL, wsProxy: env.DB_WS_PROXY });
    try {
      const { db } = handle;
      const silentSince = new Date(Date.now() - 3_600_000);
      await db.update(servers).set({ status: "online", lastSeenAt: silentSince }).where(eq(servers.handle, runner.handle));
      const first = await serverSync(db, env, log, { only: [runner.handle] });
      expect(first.changed).toContainEqual({ handle: runner.handle, from: "online", to: "missing" });
      const open = await call(`/api/incidents?kind=runner_missing`, { key: adminKey() });
      const { incidents } = await open.json<{ incidents: { id: string; data: { handle: string } }[] }>();
      const incident = incidents.find((row) => row.data.handle === runner.handle);
      expect(incident).toBeDefined();
      // Synced again while still silent: no second incident.
      await serverSync(db, env, log, { only: [runner.handle] });
      const again = await (await call(`/api/incidents?kind=runner_missing`, { key: adminKey() })).json<{ incidents: { data: { handle: string } }[] }>();
      expect(again.incidents.filter((row) => row.data.handle === runner.handle)).toHaveLength(1);

      await db.update(servers).set({ status: "online", lastSeenAt: new Date() }).where(eq(servers.handle, runner.handle));
      expect((await serverSync(db, env, log, { only: [runner.handle] })).resolved).toBeGreaterThanOrEqual(1);
      const closed = await (await call(`/api/incidents?kind=runner_missing&open=false`, { key: adminKey() })).json<{ incidents: { id: string; resolvedAt: string | null }[] }>();
      expect(closed.incidents.find((row) => row.id === incident?.id)?.resolvedAt).toBeTruthy();
    } finally {
      await handle.close();
    }
  });
});

describe("incidents", () => {
  it("are for admins, and resolving one twice is a conflict", async () => {
    const { key } = await createUserWithKey("not-admin");
    expect((await call("/api/incidents", { key })).status).toBe(403);
    expect((await call("/api/incidents/inc_nope/resolve", { method: "POST", key: adminKey(), json: {} })).status).toBe(404);
    const runner = await enrolledRunner();
    const handle = createDb({ databaseUrl: env.DATABASE_URL, wsProxy: env.DB_WS_PROXY });
    try {
      await handle.db.update(servers).set({ status: "online", lastSeenAt: new Date(0) }).where(eq(servers.handle, runner.handle));
      await serverSync(handle.db, env, log, { only: [runner.handle] });
    } finally {
      await handle.close();
    }
    const { incidents } = await (await call("/api/incidents?kind=runner_missing", { key: adminKey() })).json<{ incidents: { id: string; data: { handle: string } }[] }>();
    const id = incidents.find((row) => row.data.handle === runner.handle)?.id ?? "";
    const resolved = await call(`/api/incidents/${id}/resolve`, { method: "POST", key: adminKey(), json: { note: "replaced the VPS" } });
    expect(resolved.status).toBe(200);
    expect(await resolved.json()).toMatchObject({ incident: { id, data: { resolution: "replaced the VPS" } } });
    expect((await call(`/api/incidents/${id}/resolve`, { method: "POST", key: adminKey(), json: {} })).status).toBe(409);
  });
});
