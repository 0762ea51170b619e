import { and, eq, gt, isNull, or, sql } from "drizzle-orm";
import type { Context } from "hono";
import { createMiddleware } from "hono/factory";
import { apiKeys, users } from "../db/schema.ts";
import { AppError } from "../lib/app-error.ts";
import { BOOTSTRAP_ADMIN_USER_ID } from "./api-keys.ts";
import type { AppEnv, Principal, Scope } from "../lib/context.ts";
import { constantTimeEqual, sha256Hex } from "../lib/crypto.ts";
import { verifyViewToken } from "../lib/view-token.ts";
import { authFailed } from "./rate-limit.ts";

/**
 * Requires `Authorization: Bearer <key>`: either the ADMIN_API_KEY secret (compared in constant
 * time) or a stored, unrevoked, unexpired key. Each key is rate-limited on its own.
 */
export const authenticate = createMiddleware<AppEnv>(async (c, next) => {
  const header = c.req.header("authorization") ?? "";
  const viewToken = c.req.query("token");
  if (viewToken && !header) {
    c.set("principal", await failingSlowly(c, () => viewTokenPrincipal(c.env.SECRETS_ENCRYPTION_KEY, viewToken, c.req.method, c.req.path)));
    c.set("log", c.var.log.child({ keyId: "view-token" }));
    return next();
  }
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!match?.[1]) {
    await authFailed(c);
    throw new AppError("unauthorized", "Missing API key: send the header `Authorization: Bearer <key>`");
  }
  const presented = match[1];
  const principal = await resolvePrincipal(c.env, presented, c.var.db);
  if (!principal) {
    await authFailed(c);
    throw new AppError("unauthorized", "Invalid, revoked or expired API key");
  }
  c.set("principal", principal);
  c.set("log", c.var.log.child({ keyId: principal.keyId }));
  await next();
});

/** Runs a check that throws `unauthorized` on failure, counting the failure against the caller's address. */
export async function failingSlowly<T>(c: Context<AppEnv>, check: () => Promise<T>): Promise<T> {
  try {
    return await check();
  } catch (error) {
    if (error instanceof AppError && error.code === "unauthorized") await authFailed(c);
    throw error;
  }
}

const VIEWABLE = /^\/api\/tasks\/([^/]+)\/(ws|events)$/;
const VIEW_TOKEN_PROBLEM = {
  malformed: "The view link is malformed; ask for a new one",
  bad_signature: "The view link is not valid; ask for a new one",
  expired: "The view link has expired; ask for a new one",
  other_task: "The view link is for another task",
} as const;

/** A view token opens exactly one task's live stream (GET …/ws or …/events) and nothing else. */
async function viewTokenPrincipal(secret: string, token: string, method: string, path: string): Promise<Principal> {
  const match = VIEWABLE.exec(path);
  if (method !== "GET" || !match?.[1]) {
    throw new AppError("unauthorized", "A view token only opens a task's live stream; use an API key for anything else");
  }
  const taskId = decodeURIComponent(match[1]);
  const check = await verifyViewToken(secret, token, taskId);
  if (!check.ok) throw new AppError("unauthorized", VIEW_TOKEN_PROBLEM[check.reason]);
  return { userId: null, keyId: "view-token", scopes: [], isAdmin: false, viewTaskId: taskId };
}

/** The bootstrap admin: the ADMIN_API_KEY secret, standing for the users row the first migration made. */
const BOOTSTRAP_PRINCIPAL: Principal = { userId: BOOTSTRAP_ADMIN_USER_ID, keyId: "bootstrap", scopes: ["admin"], isAdmin: true };

/** What a stored key may reach. An admin-scoped key counts only while its user is still an admin; a key limited to a project is never an admin's reach, whoever holds it. */
function principalOf(row: { id: string; userId: string; scopes: Scope[]; projectId: string | null; userIsAdmin: boolean }): Principal {
  const isAdmin = row.scopes.includes("admin") && row.userIsAdmin && !row.projectId;
  return { userId: row.userId, keyId: row.id, scopes: row.scopes, isAdmin, ...(row.projectId ? { projectId: row.projectId } : {}) };
}

const keyFields = { id: apiKeys.id, userId: apiKeys.userId, scopes: apiKeys.scopes, projectId: apiKeys.projectId, userIsAdmin: users.isAdmin };
const keyIsLive = () => and(eq(users.id, apiKeys.userId), isNull(apiKeys.revokedAt), or(isNull(apiKeys.expiresAt), gt(apiKeys.expiresAt, sql`now()`)));

/**
 * The principal of a key by its id, as long as the key still works (not revoked, not expired): what
 * a session opened with that key (a chat link) acts as, checked again each time it acts.
 */
export async function principalOfKeyId(db: AppEnv["Variables"]["db"], keyId: string): Promise<Principal | null> {
  if (keyId === BOOTSTRAP_PRINCIPAL.keyId) return BOOTSTRAP_PRINCIPAL;
  const [row] = await db.select(keyFields).from(apiKeys).innerJoin(users, eq(users.id, apiKeys.userId)).where(and(eq(apiKeys.id, keyId), keyIsLive()));
  return row ? principalOf(row) : null;
}

/** The key id a Telegram person acts under: they hold no API key; the bot's webhook vouches for them. */
export const TELEGRAM_KEY_ID = "telegram";

/** What a Telegram person may do: what their user row says (an admin, or a user of their own projects). */
export function personPrincipal(user: { userId: string; isAdmin: boolean }): Principal {
  return { userId: user.userId, keyId: TELEGRAM_KEY_ID, scopes: user.isAdmin ? ["admin", "user"] : ["user"], isAdmin: user.isAdmin };
}

/** Who started a pipeline, kept in its parameters so that what it starts later acts as them. */
export interface Caller {
  keyId: string;
  userId: string | null;
}

export const callerOf = (principal: Principal): Caller => ({ keyId: principal.keyId, userId: principal.userId });

/**
 * The principal a pipeline's follow-up (a deploy after its build) acts as, looked up again when it
 * acts: the key's, with its limits, as long as it still works; a Telegram person's, from their user
 * row. Null when the key was revoked or expired meanwhile, or the person is gone.
 */
export async function principalOfCaller(db: AppEnv["Variables"]["db"], caller: Caller): Promise<Principal | null> {
  if (caller.keyId === TELEGRAM_KEY_ID) {
    if (!caller.userId) return null;
    const [row] = await db.select({ id: users.id, isAdmin: users.isAdmin }).from(users).where(eq(users.id, caller.userId));
    return row ? personPrincipal({ userId: row.id, isAdmin: row.isAdmin }) : null;
  }
  const principal = await principalOfKeyId(db, caller.keyId);
  return principal && principal.userId === caller.userId ? principal : null;
}

export async function resolvePrincipal(env: Env, presented: string, db: AppEnv["Variables"]["db"]): Promise<Principal | null> {
  // The operator's own key: 160 random bits, so a rate limit adds nothing, and integrations that
  // stream task events through it need far more than 300 requests a minute.
  if (env.ADMIN_API_KEY && (await constantTimeEqual(presented, env.ADMIN_API_KEY))) return BOOTSTRAP_PRINCIPAL;
  const hash = await sha256Hex(presented);
  // Limited before the lookup, so unknown keys cost no database work either.
  const { success } = await env.API_RATE_LIMITER.limit({ key: hash });
  if (!success) throw new AppError("rate_limited", "Too many requests for this API key; retry in a minute");
  // One round trip both finds the key and records its use.
  const [row] = await db
    .update(apiKeys)
    .set({ lastUsedAt: sql`now()` })
    .from(users)
    .where(and(eq(apiKeys.keyHash, hash), keyIsLive()))
    .returning(keyFields);
  return row ? principalOf(row) : null;
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
