/** `GET /api/usage?by=user|project|agent|model&from=&to=`: model spend, grouped (a user sees their own calls only). */
import { Hono } from "hono";
import type { AppEnv } from "../lib/context.ts";
import { validate } from "../lib/validate.ts";
import { requireScope } from "../middleware/auth.ts";
import { usageReport } from "../services/usage.ts";
import { UsageQuery } from "../shared/usage.ts";

export const usageRoute = new Hono<AppEnv>().use(requireScope("user")).get("/", validate("query", UsageQuery), async (c) => {
  const query = c.req.valid("query");
  const rows = await usageReport(c.var.db, c.var.principal, query);
  return c.json({ by: query.by, from: query.from ?? null, to: query.to ?? null, usage: rows, totalUsd: rows.reduce((sum, row) => sum + row.costUsd, 0) });
});
