import { createRoute } from "@hono/zod-openapi";
import { and, desc, eq, isNull, sql } from "drizzle-orm";
import { z } from "zod";
import { incidents } from "../db/schema.ts";
import { AppError, notFound } from "../lib/app-error.ts";
import { apiDoc, apiRouter, errors, jsonBody, jsonResponse, named } from "../platform/openapi.ts";
import { requireAdmin } from "../platform/auth.ts";
import { Page } from "../shared/api.ts";

const ListQuery = Page.extend({ kind: z.string().max(60).optional(), open: z.enum(["true", "false"]).optional() });

const IdParam = z.object({ id: z.string().min(1).max(64) });
const Resolve = z.strictObject({ note: z.string().trim().max(2000).optional() }).default({});

const view = (row: typeof incidents.$inferSelect) => ({ ...row, openedAt: row.openedAt.toISOString(), resolvedAt: row.resolvedAt?.toISOString() ?? null });

const Incident = named(
  z.object({
    id: z.string(),
    projectId: z.string().nullable(),
    serverId: z.string().nullable(),
    kind: z.string(),
    severity: z.string(),
    message: z.string(),
    data: z.record(z.string(), z.unknown()).nullable(),
    openedAt: z.string(),
    resolvedAt: z.string().nullable(),
  }),
  "Incident",
);
const doc = apiDoc("incidents");
const resolve = createRoute({
  ...doc,
  method: "post",
  path: "/{id}/resolve",
  summary: "Close an incident, with an optional note (admin)",
  request: { params: IdParam, body: jsonBody(Resolve, "An optional note; the body may be left out") },
  responses: { 200: jsonResponse(z.object({ incident: Incident }), "The resolved incident"), ...errors(400, 403, 404, 409, 413, 415) },
});
const list = createRoute({
  ...doc,
  method: "get",
  path: "/",
  summary: "What needs an admin, newest first: open incidents unless open=false (admin)",
  request: { query: ListQuery },
  responses: { 200: jsonResponse(z.object({ incidents: z.array(Incident) }), "The incidents"), ...errors(400, 403) },
});

/**
 * `GET /api/incidents`: what needs an admin (a Product Owner's `needs_human_approval`, a runner gone
 * missing, a deployment failing its health checks…), open ones unless `open=false`, newest first.
 * `POST /api/incidents/:id/resolve`: closes one, with an optional note.
 */
export const incidentsRoute = apiRouter();
incidentsRoute.use(requireAdmin);
incidentsRoute
  .openapi(resolve, async (c) => {
    const { note } = c.req.valid("json");
    const [row] = await c.var.db
      .update(incidents)
      .set({ resolvedAt: new Date(), ...(note ? { data: sql`coalesce(${incidents.data}, '{}'::jsonb) || ${JSON.stringify({ resolution: note, resolvedBy: c.var.principal.userId })}::jsonb` } : {}) })
      .where(and(eq(incidents.id, c.req.valid("param").id), isNull(incidents.resolvedAt)))
      .returning();
    if (row) return c.json({ incident: view(row) }, 200);
    const [known] = await c.var.db.select({ id: incidents.id }).from(incidents).where(eq(incidents.id, c.req.valid("param").id));
    if (!known) notFound("Incident");
    throw new AppError("conflict", "This incident is resolved already");
  })
  .openapi(list, async (c) => {
  const { limit, offset, kind, open } = c.req.valid("query");
  const rows = await c.var.db
    .select()
    .from(incidents)
    .where(and(kind ? eq(incidents.kind, kind) : undefined, open === "false" ? undefined : isNull(incidents.resolvedAt)))
    .orderBy(desc(incidents.openedAt))
    .limit(limit)
    .offset(offset);
  return c.json({ incidents: rows.map(view) }, 200);
  });
