import { and, desc, eq, isNull, sql } from "drizzle-orm";
import { Hono } from "hono";
import { z } from "zod";
import { incidents } from "../db/schema.ts";
import { AppError, notFound } from "../lib/app-error.ts";
import type { AppEnv } from "../lib/context.ts";
import { validate } from "../lib/validate.ts";
import { requireAdmin } from "../middleware/auth.ts";
import { Page } from "../shared/api.ts";

const ListQuery = Page.extend({ kind: z.string().max(60).optional(), open: z.enum(["true", "false"]).optional() });

const IdParam = z.object({ id: z.string().min(1).max(64) });
const Resolve = z.strictObject({ note: z.string().trim().max(2000).optional() }).default({});

const view = (row: typeof incidents.$inferSelect) => ({ ...row, openedAt: row.openedAt.toISOString(), resolvedAt: row.resolvedAt?.toISOString() ?? null });

/**
 * `GET /api/incidents`: what needs an admin (a Product Owner's `needs_human_approval`, a runner gone
 * missing, a deployment failing its health checks…), open ones unless `open=false`, newest first.
 * `POST /api/incidents/:id/resolve`: closes one, with an optional note.
 */
export const incidentsRoute = new Hono<AppEnv>()
  .use(requireAdmin)
  .post("/:id/resolve", validate("param", IdParam), validate("json", Resolve), async (c) => {
    const { note } = c.req.valid("json");
    const [row] = await c.var.db
      .update(incidents)
      .set({ resolvedAt: new Date(), ...(note ? { data: sql`coalesce(${incidents.data}, '{}'::jsonb) || ${JSON.stringify({ resolution: note, resolvedBy: c.var.principal.userId })}::jsonb` } : {}) })
      .where(and(eq(incidents.id, c.req.valid("param").id), isNull(incidents.resolvedAt)))
      .returning();
    if (row) return c.json({ incident: view(row) });
    const [known] = await c.var.db.select({ id: incidents.id }).from(incidents).where(eq(incidents.id, c.req.valid("param").id));
    if (!known) notFound("Incident");
    throw new AppError("conflict", "This incident is resolved already");
  })
  .get("/", validate("query", ListQuery), async (c) => {
  const { limit, offset, kind, open } = c.req.valid("query");
  const rows = await c.var.db
    .select()
    .from(incidents)
    .where(and(kind ? eq(incidents.kind, kind) : undefined, open === "false" ? undefined : isNull(incidents.resolvedAt)))
    .orderBy(desc(incidents.openedAt))
    .limit(limit)
    .offset(offset);
  return c.json({ incidents: rows.map(view) });
  });
