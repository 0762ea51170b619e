/**
 * The local Postgres (tests, `npm run dev`, the demo) keeps its password's SCRAM verifier at one
 * iteration (scripts/lib/postgres.ts), which the Neon driver computes in JavaScript: through the same
 * driver and proxy the worker uses, the password is still checked by SCRAM-SHA-256. PgBouncer pools
 * the connections (scripts/lib/pooler.ts): a new connection gets a backend an earlier one used.
 */
import { sql } from "drizzle-orm";
import { describe, expect, inject, it } from "vitest";
import { createDb } from "../../src/db/client.ts";

describe("the local Postgres", () => {
  it("stores a one-iteration SCRAM-SHA-256 verifier, and still refuses a wrong password (the pooler checks it against that verifier)", async () => {
    const url = new URL(inject("databaseUrl"));
    const right = createDb({ databaseUrl: url.href, wsProxy: inject("dbWsProxy") });
    try {
      const { rows } = await right.db.execute<{ rolpassword: string }>(sql`SELECT rolpassword FROM pg_authid WHERE rolname = current_user`);
      expect(rows[0]?.rolpassword).toMatch(/^SCRAM-SHA-256\$1:/);
    } finally {
      await right.close();
    }
    url.password = `${decodeURIComponent(url.password)}-wrong`;
    const wrong = createDb({ databaseUrl: url.href, wsProxy: inject("dbWsProxy") });
    try {
      // drizzle wraps the driver's error; the server's answer is its cause.
      const refused: unknown = await wrong.db.execute(sql`SELECT 1`).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(refused instanceof Error ? String(refused.cause) : refused).toMatch(/password authentication failed|SASL authentication failed/);
    } finally {
      await wrong.close();
    }
  });

  it("hands a new connection a backend an earlier one used, reset: the pooler in front of Postgres", async () => {
    const backend = async () => {
      const handle = createDb({ databaseUrl: inject("databaseUrl"), wsProxy: inject("dbWsProxy") });
      try {
        // A session setting that must not outlive the connection that made it.
        const { rows } = await handle.db.execute<{ pid: number; zone: string }>(sql`SELECT pg_backend_pid() AS pid, current_setting('TimeZone') AS zone`);
        await handle.db.execute(sql`SET TimeZone = 'Asia/Tokyo'`);
        return rows[0];
      } finally {
        await handle.close();
      }
    };
    const seen = new Map<number, string>();
    // Other files use the pool at the same time: some of these connections get the same backend.
    for (let i = 0; i < 20; i++) {
      const row = await backend();
      if (!row) throw new Error("no row");
      expect(row.zone).not.toBe("Asia/Tokyo");
      seen.set(row.pid, row.zone);
    }
    expect(seen.size).toBeLessThan(20);
    const direct = createDb({ databaseUrl: inject("databaseDirectUrl"), wsProxy: inject("dbWsProxy") });
    try {
      const { rows } = await direct.db.execute<{ pid: number }>(sql`SELECT pg_backend_pid() AS pid`);
      expect(seen.has(Number(rows[0]?.pid))).toBe(false);
    } finally {
      await direct.close();
    }
  });
});
