/**
 * Lock: one Durable Object per lock name, holding at most one lease. A lease is acquired with a TTL,
 * renewed by its holder (with the token it was given), and released; while it lasts, a second holder
 * is refused and told who holds it until when. A holder that dies simply stops renewing: once its
 * lease has expired, the next acquire takes it over. The Durable Object's single-threaded execution
 * makes each call atomic, so two scheduler runs started together can never both hold it.
 */
import { DurableObject } from "cloudflare:workers";
import { migrate, type SqlMigration } from "../lib/sql-migrations.ts";
import type { AcquireResult } from "../platform/lock.ts";

const MIGRATIONS: readonly SqlMigration[] = [
  { version: 1, name: "lease", up: (sql) => sql.exec(`CREATE TABLE lease (id INTEGER PRIMARY KEY CHECK (id = 1), holder TEXT NOT NULL, token TEXT NOT NULL, acquired_at INTEGER NOT NULL, expires_at INTEGER NOT NULL)`) },
];

/** Leases last between a second and an hour: a scheduler job renews well before the end. */
const clampTtl = (ttlMs: number) => Math.min(3_600_000, Math.max(1000, Math.floor(ttlMs)));

export class Lock extends DurableObject<Env> {
  private readonly sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    migrate(ctx.storage, MIGRATIONS);
    this.sql = ctx.storage.sql;
  }

  private current(): { holder: string; token: string; acquired_at: number; expires_at: number } | undefined {
    return this.sql.exec<{ holder: string; token: string; acquired_at: number; expires_at: number }>(`SELECT holder, token, acquired_at, expires_at FROM lease WHERE id = 1`).toArray()[0];
  }

  acquire(holder: string, ttlMs: number, now = Date.now()): AcquireResult {
    const held = this.current();
    if (held && held.expires_at > now) return { ok: false, heldBy: held.holder, expiresAt: new Date(held.expires_at).toISOString() };
    const token = crypto.randomUUID();
    const expiresAt = now + clampTtl(ttlMs);
    this.sql.exec(`INSERT OR REPLACE INTO lease (id, holder, token, acquired_at, expires_at) VALUES (1, ?, ?, ?, ?)`, holder, token, now, expiresAt);
    return {
      ok: true,
      lease: { holder, token, acquiredAt: new Date(now).toISOString(), expiresAt: new Date(expiresAt).toISOString() },
      ...(held ? { tookOver: { holder: held.holder, expiredAt: new Date(held.expires_at).toISOString() } } : {}),
    };
  }

  /** Extends the lease; false when it is no longer this token's (expired and taken over, or released). */
  renew(token: string, ttlMs: number, now = Date.now()): { ok: boolean; expiresAt?: string } {
    const held = this.current();
    if (!held || held.token !== token || held.expires_at <= now) return { ok: false };
    const expiresAt = now + clampTtl(ttlMs);
    this.sql.exec(`UPDATE lease SET expires_at = ? WHERE id = 1`, expiresAt);
    return { ok: true, expiresAt: new Date(expiresAt).toISOString() };
  }

  /** Gives the lease up; only its holder can (false for any other token). */
  release(token: string): boolean {
    const held = this.current();
    if (!held || held.token !== token) return false;
    this.sql.exec(`DELETE FROM lease WHERE id = 1`);
    return true;
  }

  /** The lease as it stands, for operators and tests. */
  status(now = Date.now()): { held: false } | { held: true; holder: string; expiresAt: string } {
    const held = this.current();
    return held && held.expires_at > now ? { held: true, holder: held.holder, expiresAt: new Date(held.expires_at).toISOString() } : { held: false };
  }
}
