import { sql } from "drizzle-orm";
import { Hono } from "hono";
import type { AppEnv } from "../lib/context.ts";

/** `GET /healthz`: answers only after a real round trip to the database. `GET /healthz/live`: the worker runs (no database). */
export const health = new Hono<AppEnv>()
  .get("/", async (c) => {
    await c.var.db.execute(sql`select 1`);
    return c.json({ ok: true, db: "ok" });
  })
  .get("/live", (c) => c.json({ ok: true }));
