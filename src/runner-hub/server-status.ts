/**
 * The RunnerHub's writes of its server's status to Postgres, one after another so a late "online"
 * never lands after an "offline". The hub holds the live state; Postgres follows it for the API.
 */
import { eq } from "drizzle-orm";
import { createDb } from "../db/client.ts";
import { servers } from "../db/schema.ts";
import type { Logger } from "../lib/log.ts";

export class ServerStatusWriter {
  private readonly env: Env;
  private readonly ctx: DurableObjectState;
  private readonly log: Logger;
  private writes: Promise<void> = Promise.resolve();
  /** When the last write was asked for: heartbeats write at most every few seconds. */
  lastWriteAt = 0;

  constructor(env: Env, ctx: DurableObjectState, log: Logger) {
    this.env = env;
    this.ctx = ctx;
    this.log = log;
  }

  write(serverId: string, status: "online" | "offline"): Promise<void> {
    this.lastWriteAt = Date.now();
    const seenAt = new Date();
    const next = this.writes.then(() => this.update(serverId, status, seenAt));
    this.writes = next;
    return next;
  }

  private async update(serverId: string, status: "online" | "offline", seenAt: Date): Promise<void> {
    const handle = createDb({ databaseUrl: this.env.DATABASE_URL, wsProxy: this.env.DB_WS_PROXY });
    try {
      await handle.db.update(servers).set({ status, lastSeenAt: seenAt }).where(eq(servers.id, serverId));
    } catch (error) {
      // The connection state lives in the hub; Postgres catches up on the next heartbeat.
      this.log.warn("server status not written", { serverId, error });
    } finally {
      this.ctx.waitUntil(handle.close().catch(() => undefined));
    }
  }
}
