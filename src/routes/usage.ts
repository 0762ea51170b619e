/** `GET /api/usage?by=user|project|agent|model&from=&to=`: model spend, grouped (a user sees their own calls only). */
import { createRoute } from "@hono/zod-openapi";
import { z } from "zod";
import { apiDoc, apiRouter, errors, jsonResponse } from "../platform/openapi.ts";
import { requireScope } from "../platform/auth.ts";
import { usageReport } from "../models/usage.ts";
import { USAGE_GROUPS, UsageQuery, UsageRow } from "../shared/usage.ts";

const report = createRoute({
  ...apiDoc("usage"),
  method: "get",
  path: "/",
  summary: "Model spend, grouped by user, project, agent or model (a user sees their own calls only)",
  request: { query: UsageQuery },
  responses: {
    200: jsonResponse(z.object({ by: z.enum(USAGE_GROUPS), from: z.string().nullable(), to: z.string().nullable(), usage: z.array(UsageRow), totalUsd: z.number() }), "The report"),
    ...errors(400, 403),
  },
});

export const usageRoute = apiRouter();
usageRoute.use(requireScope("user"));
usageRoute.openapi(report, async (c) => {
  const query = c.req.valid("query");
  const rows = await usageReport(c.var.db, c.var.principal, query);
  return c.json({ by: query.by, from: query.from ?? null, to: query.to ?? null, usage: rows, totalUsd: rows.reduce((sum, row) => sum + row.costUsd, 0) }, 200);
});
