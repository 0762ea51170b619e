/**
 * The local Postgres (tests, `npm run dev`, the demo) keeps its password's SCRAM verifier at one
 * iteration (scripts/lib/postgres.ts), which the Neon driver computes in JavaScript: through the same
 * driver and proxy the worker uses, the password is still checked by SCRAM-SHA-256.
 */
import { sql } from "drizzle-orm";
import { describe, expect, inject, it } from "vitest";
import { createDb } from "../../src/db/client.ts";

describe("the local Postgres", () => {
  it("stores a one-iteration SCRAM-SHA-256 verifier, and still refuses a wrong password", async () => {
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
      expect(refused instanceof Error ? String(refused.cause) : refused).toMatch(/password authentication failed/);
    } finally {
      await wrong.close();
    }
  });
});
