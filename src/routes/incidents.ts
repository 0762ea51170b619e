import { and, desc, eq, isNull } from "drizzle-orm";
import { Hono } from "hono";
import { z } from "zod";
import { incidents } from "../db/schema.ts";
import type { AppEnv } from "../lib/context.ts";
import { validate } from "../lib/validate.ts";
import { requireAdmin } from "../middleware/auth.ts";
import { Page } from "../shared/api.ts";

const ListQuery = Page.extend({ kind: z.string().max(60).optional(), open: z.enum(["true", "false"]).optional() });

/** `GET /api/incidents`: what needs an admin (a Product Owner's `needs_human_approval`, failed health checks…), newest first. */
export const incidentsRoute = new Hono<AppEnv>().use(requireAdmin).get("/", validate("query", ListQuery), async (c) => {
  const { limit, offset, kind, open } = c.req.valid("query");
  const rows = await c.var.db
    .select()
    .from(incidents)
    .where(and(kind ? eq(incidents.kind, kind) : undefined, open === "false" ? undefined : isNull(incidents.resolvedAt)))
    .orderBy(desc(incidents.openedAt))
    .limit(limit)
    .offset(offset);
  return c.json({ incidents: rows.map((row) => ({ ...row, openedAt: row.openedAt.toISOString(), resolvedAt: row.resolvedAt?.toISOString() ?? null })) });
});
