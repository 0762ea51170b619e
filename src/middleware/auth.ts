import { and, eq, gt, isNull, or, sql } from "drizzle-orm";
import { createMiddleware } from "hono/factory";
import { apiKeys, users } from "../db/schema.ts";
import { AppError } from "../lib/app-error.ts";
import { BOOTSTRAP_ADMIN_USER_ID } from "../lib/api-keys.ts";
import type { AppEnv, Principal, Scope } from "../lib/context.ts";
import { constantTimeEqual, sha256Hex } from "../lib/crypto.ts";

/**
 * Requires `Authorization: Bearer <key>`: either the ADMIN_API_KEY secret (compared in constant
 * time) or a stored, unrevoked, unexpired key. Each key is rate-limited on its own.
 */
export const authenticate = createMiddleware<AppEnv>(async (c, next) => {
  const header = c.req.header("authorization") ?? "";
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!match?.[1]) {
    throw new AppError("unauthorized", "Missing API key: send the header `Authorization: Bearer <key>`");
  }
  const presented = match[1];
  const hash = await sha256Hex(presented);

  const { success } = await c.env.API_RATE_LIMITER.limit({ key: hash });
  if (!success) throw new AppError("rate_limited", "Too many requests for this API key; retry in a minute");

  const principal = await resolvePrincipal(c.env.ADMIN_API_KEY, presented, hash, c.var.db);
  if (!principal) throw new AppError("unauthorized", "Invalid, revoked or expired API key");
  c.set("principal", principal);
  c.set("log", c.var.log.child({ keyId: principal.keyId }));
  await next();
});

async function resolvePrincipal(
  adminKey: string,
  presented: string,
  hash: string,
  db: AppEnv["Variables"]["db"],
): Promise<Principal | null> {
  if (adminKey && (await constantTimeEqual(presented, adminKey))) {
    return { userId: BOOTSTRAP_ADMIN_USER_ID, keyId: "bootstrap", scopes: ["admin"], isAdmin: true };
  }
  // One round trip both finds the key and records its use.
  const [row] = await db
    .update(apiKeys)
    .set({ lastUsedAt: sql`now()` })
    .from(users)
    .where(
      and(
        eq(apiKeys.keyHash, hash),
        eq(users.id, apiKeys.userId),
        isNull(apiKeys.revokedAt),
        or(isNull(apiKeys.expiresAt), gt(apiKeys.expiresAt, sql`now()`)),
      ),
    )
    .returning({ id: apiKeys.id, userId: apiKeys.userId, scopes: apiKeys.scopes, userIsAdmin: users.isAdmin });
  if (!row) return null;
  // An admin-scoped key counts only while its user is still an admin.
  const isAdmin = row.scopes.includes("admin") && row.userIsAdmin;
  return { userId: row.userId, keyId: row.id, scopes: row.scopes, isAdmin };
}

/** Allows the request only if the caller's key has one of `scopes` (admins pass every check). */
export function requireScope(...scopes: Scope[]) {
  return createMiddleware<AppEnv>(async (c, next) => {
    const { isAdmin, scopes: held } = c.var.principal;
    if (!isAdmin && !scopes.some((scope) => held.includes(scope))) {
      throw new AppError("forbidden", `This needs an API key with scope: ${scopes.join(" or ")}`);
    }
    await next();
  });
}

/** Admin-only routes. */
export const requireAdmin = requireScope("admin");
