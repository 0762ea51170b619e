import { createRoute } from "@hono/zod-openapi";
import { and, desc, eq, isNull, type SQL } from "drizzle-orm";
import { z } from "zod";
import { apiKeys, projects, users } from "../db/schema.ts";
import { getProductOwner } from "../product-owner/client.ts";
import { AppError, notFound } from "../lib/app-error.ts";
import { generateApiKey } from "../platform/api-keys.ts";
import type { Principal } from "../lib/context.ts";
import { newId } from "../lib/crypto.ts";
import { apiDoc, apiRouter, errors, jsonBody, jsonResponse, views } from "../platform/openapi.ts";
import { requireScope } from "../platform/auth.ts";
import { type ApiKeyView, CreateApiKey, Page } from "../shared/api.ts";

const IdParam = z.object({ id: z.string().min(1).max(64) });
const ListQuery = Page.extend({ userId: z.string().min(1).optional(), revoked: z.enum(["true", "false"]).optional() });

type KeyRow = typeof apiKeys.$inferSelect;
const view = (row: KeyRow): ApiKeyView => ({
  id: row.id,
  userId: row.userId,
  name: row.name,
  prefix: row.prefix,
  scopes: row.scopes,
  projectId: row.projectId,
  createdAt: row.createdAt.toISOString(),
  lastUsedAt: row.lastUsedAt?.toISOString() ?? null,
  expiresAt: row.expiresAt?.toISOString() ?? null,
  revokedAt: row.revokedAt?.toISOString() ?? null,
});

/** Admins manage every key; a user their own (a project-limited key manages none). */
function keysOf(principal: Principal): SQL | undefined {
  return principal.isAdmin ? undefined : eq(apiKeys.userId, principal.userId ?? "");
}

function refuseLimited(principal: Principal): void {
  if (principal.projectId) throw new AppError("forbidden", "A key limited to one project cannot manage keys");
}

const doc = apiDoc("keys");
const create = createRoute({
  ...doc,
  method: "post",
  path: "/",
  summary: "Issue a key: the plain key is in this response only",
  description: "A user issues `user` keys for themselves; an admin issues any scope for anyone (an admin-scoped key only for an admin user). `projectId` limits the key to one project of its owner.",
  request: { body: jsonBody(CreateApiKey) },
  responses: { 201: jsonResponse(z.object({ apiKey: views.ApiKey, key: z.string().describe("The key itself: shown once, never stored") }), "The new key"), ...errors(400, 403, 413, 415) },
});
const list = createRoute({
  ...doc,
  method: "get",
  path: "/",
  summary: "List keys (an admin's: all; a user's: their own), never the key itself",
  request: { query: ListQuery },
  responses: { 200: jsonResponse(z.object({ keys: z.array(views.ApiKey) }), "The keys"), ...errors(400, 403) },
});
const revoke = createRoute({
  ...doc,
  method: "delete",
  path: "/{id}",
  summary: "Revoke a key: it fails at once",
  request: { params: IdParam },
  responses: { 200: jsonResponse(z.object({ apiKey: views.ApiKey }), "The revoked key"), ...errors(400, 403, 404, 409) },
});

/**
 * `/api/keys`: issue (the plain key is in that one response only), list (prefix, scopes, owner,
 * project, last use, expiry; never the key) and revoke. A revoked key fails at once.
 */
export const keysRoute = apiRouter();
keysRoute.use(requireScope("user"));
keysRoute
  .openapi(create, async (c) => {
    const body = c.req.valid("json");
    const { principal } = c.var;
    refuseLimited(principal);
    const userId = body.userId ?? principal.userId;
    if (!userId) throw new AppError("invalid_request", "userId is required for this key");
    if (!principal.isAdmin && userId !== principal.userId) throw new AppError("forbidden", "Only an admin issues keys for another user");
    if (!principal.isAdmin && body.scopes.some((scope) => scope !== "user")) throw new AppError("forbidden", "Only an admin issues admin or runner keys");
    const [owner] = await c.var.db.select().from(users).where(eq(users.id, userId));
    if (!owner) throw new AppError("invalid_request", `No user with id ${userId}`);
    if (body.scopes.includes("admin") && !owner.isAdmin) throw new AppError("invalid_request", "Only a user with isAdmin can hold an admin-scoped key");
    if (body.expiresAt && Date.parse(body.expiresAt) <= Date.now()) throw new AppError("invalid_request", "expiresAt must be in the future");
    if (body.projectId) {
      const [project] = await c.var.db.select({ ownerId: projects.ownerId }).from(projects).where(eq(projects.id, body.projectId));
      if (!project || project.ownerId !== owner.id) throw new AppError("invalid_request", `No project ${body.projectId} owned by ${owner.id}`);
      if (body.scopes.includes("admin")) throw new AppError("invalid_request", "A key limited to a project cannot be an admin key");
    }
    const { key, hash, prefix } = await generateApiKey();
    const [row] = await c.var.db
      .insert(apiKeys)
      .values({
        id: newId("key"),
        userId: owner.id,
        name: body.name,
        keyHash: hash,
        prefix,
        scopes: [...new Set(body.scopes)],
        projectId: body.projectId ?? null,
        expiresAt: body.expiresAt ? new Date(body.expiresAt) : null,
      })
      .returning();
    if (!row) throw new Error("insert returned no row");
    return c.json({ apiKey: view(row), key }, 201);
  })
  .openapi(list, async (c) => {
    const { limit, offset, userId, revoked } = c.req.valid("query");
    refuseLimited(c.var.principal);
    const rows = await c.var.db
      .select()
      .from(apiKeys)
      .where(and(keysOf(c.var.principal), userId ? eq(apiKeys.userId, userId) : undefined, revoked === "true" ? undefined : isNull(apiKeys.revokedAt)))
      .orderBy(desc(apiKeys.createdAt))
      .limit(limit)
      .offset(offset);
    return c.json({ keys: rows.map(view) }, 200);
  })
  .openapi(revoke, async (c) => {
    refuseLimited(c.var.principal);
    const { id } = c.req.valid("param");
    const [row] = await c.var.db
      .update(apiKeys)
      .set({ revokedAt: new Date() })
      .where(and(eq(apiKeys.id, id), keysOf(c.var.principal), isNull(apiKeys.revokedAt)))
      .returning();
    if (row) {
      // A chat the key signed in to ends with it: its sockets are closed now (each message checks the key too).
      await (await getProductOwner(c.env, `web:${row.userId}`))
        .endKey(row.id)
        .catch((error: unknown) => c.var.log.warn("could not close the revoked key's chat sockets", { keyId: row.id, error: error instanceof Error ? error.message : String(error) }));
      return c.json({ apiKey: view(row) }, 200);
    }
    const [known] = await c.var.db.select({ revokedAt: apiKeys.revokedAt }).from(apiKeys).where(and(eq(apiKeys.id, id), keysOf(c.var.principal)));
    if (!known) notFound("API key");
    throw new AppError("conflict", "This key is revoked already");
  });
