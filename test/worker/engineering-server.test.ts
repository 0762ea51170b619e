/**
 * Where an engineering run's jobs go when nobody names a server: with several enrolled, where the
 * project deploys (the deploy pipeline's placement), against the real database.
 */
import { env } from "cloudflare:workers";
import { eq, inArray } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { withDb } from "../../src/db/client.ts";
import { servers } from "../../src/db/schema.ts";
import { buildServer } from "../../src/engineering/engineering.ts";
import { newHandle } from "./runner-helpers.ts";

describe("the server of an engineering run", () => {
  it("is the one named, else the project's, else the online server with the project's labels and room", async () => {
    const pool = crypto.randomUUID();
    const [offline, online, full] = [newHandle(), newHandle(), newHandle()];
    await withDb(env, async (db) => {
      const row = (handle: string, status: "online" | "offline", capacity: number) => ({ id: `srv_${handle}`, handle, host: `${handle}.example.test`, labels: { pool }, capacity, status, runnerId: `run_${handle}` });
      await db.insert(servers).values([row(offline, "offline", 50), row(online, "online", 5), row(full, "online", 0)]);
      try {
        const project = { id: `prj_${pool}`, name: "placed", managed: { serverLabels: { pool } } };
        // The only one that is online, carries the labels and has room (more enrolled servers exist: other tests').
        expect(await buildServer(db, project, undefined)).toBe(online);
        // Named by an admin or by the project, it is taken as given.
        expect(await buildServer(db, project, offline)).toBe(offline);
        expect(await buildServer(db, { ...project, managed: { ...project.managed, server: full } }, undefined)).toBe(full);
        // None fits: the placement says why.
        await db.update(servers).set({ status: "offline" }).where(eq(servers.handle, online));
        await expect(buildServer(db, project, undefined)).rejects.toThrow(/No server can take placed/);
      } finally {
        await db.delete(servers).where(inArray(servers.handle, [offline, online, full]));
      }
    });
  });
});
