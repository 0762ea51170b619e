/**
 * `server_sync`: runner heartbeats become server status. A runner silent past
 * RUNNER_MISSING_AFTER_SECONDS is marked `missing` and opens a `runner_missing` incident; its return
 * closes it.
 */
import { and, eq, inArray, isNotNull, isNull } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { incidents, servers } from "../db/schema.ts";
import { newId } from "../lib/crypto.ts";
import type { Logger } from "../lib/log.ts";
import { serverStatus } from "../runner-hub/servers.ts";

export interface ServerSyncResult {
  checked: number;
  changed: { handle: string; from: string; to: string }[];
  opened: number;
  resolved: number;
}

/** `only`: these servers (an operator syncing one server by hand); otherwise every enrolled one. */
export async function serverSync(db: Db, env: Env, log: Logger, options: { now?: number; only?: string[] } = {}): Promise<ServerSyncResult> {
  const now = options.now ?? Date.now();
  const rows = await db.select().from(servers).where(and(isNotNull(servers.runnerId), options.only ? inArray(servers.handle, options.only) : undefined));
  const result: ServerSyncResult = { checked: rows.length, changed: [], opened: 0, resolved: 0 };
  for (const row of rows) {
    const status = serverStatus(row, env, now);
    if (status !== row.status) {
      // Only if nothing changed it meanwhile (the runner reconnecting writes `online`).
      const updated = await db.update(servers).set({ status }).where(and(eq(servers.id, row.id), eq(servers.status, row.status))).returning({ id: servers.id });
      if (updated.length) result.changed.push({ handle: row.handle, from: row.status, to: status });
    }
    const [open] = await db.select({ id: incidents.id }).from(incidents).where(and(eq(incidents.serverId, row.id), eq(incidents.kind, "runner_missing"), isNull(incidents.resolvedAt)));
    if (status === "missing" && !open) {
      await db.insert(incidents).values({ id: newId("inc"), serverId: row.id, kind: "runner_missing", severity: "critical", message: `The runner of ${row.handle} has been silent since ${row.lastSeenAt?.toISOString() ?? "it enrolled"}`, data: { handle: row.handle } });
      result.opened++;
      log.warn("runner missing", { handle: row.handle, lastSeenAt: row.lastSeenAt?.toISOString() ?? null });
    } else if (status === "online" && open) {
      await db.update(incidents).set({ resolvedAt: new Date(now) }).where(eq(incidents.id, open.id));
      result.resolved++;
      log.info("runner back", { handle: row.handle });
    }
  }
  return result;
}
