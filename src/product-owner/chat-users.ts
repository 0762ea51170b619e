/**
 * The people behind chats. A Telegram user becomes a `users` row on first contact when
 * TELEGRAM_SIGNUP is `open`, or when their id is in TELEGRAM_ADMIN_IDS (they become admins);
 * otherwise (`closed`, the default) they are told to ask an admin, who adds them with
 * `POST /api/users {"name", "telegramId"}`.
 */
import { eq } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { isUniqueViolation } from "../db/errors.ts";
import { users } from "../db/schema.ts";
import { AppError } from "../lib/app-error.ts";
import type { Principal } from "../lib/context.ts";
import { newId } from "../lib/crypto.ts";
import type { ChatUser } from "./conversation-store.ts";

export interface TelegramFrom {
  id: number;
  firstName: string;
  username?: string;
}

function adminIds(env: { TELEGRAM_ADMIN_IDS?: string }): Set<number> {
  return new Set((env.TELEGRAM_ADMIN_IDS ?? "").split(/[\s,]+/).filter(Boolean).map(Number).filter(Number.isSafeInteger));
}

/** The user a Telegram account is, created when the signup setting lets them in; null when it does not. */
export async function telegramUser(db: Db, env: { TELEGRAM_SIGNUP?: string; TELEGRAM_ADMIN_IDS?: string }, from: TelegramFrom): Promise<ChatUser | null> {
  const [known] = await db.select().from(users).where(eq(users.telegramId, from.id));
  if (known) return { userId: known.id, name: known.name, isAdmin: known.isAdmin, telegramId: from.id };
  const admin = adminIds(env).has(from.id);
  if (!admin && env.TELEGRAM_SIGNUP !== "open") return null;
  const name = from.username ? `@${from.username}` : from.firstName || `Telegram ${from.id}`;
  try {
    const [created] = await db.insert(users).values({ id: newId("usr"), name, telegramId: from.id, isAdmin: admin }).returning();
    if (!created) throw new Error("insert returned no row");
    return { userId: created.id, name: created.name, isAdmin: created.isAdmin, telegramId: from.id };
  } catch (error) {
    // Two first messages at once: the other one created the row.
    if (!isUniqueViolation(error)) throw error;
    const [row] = await db.select().from(users).where(eq(users.telegramId, from.id));
    return row ? { userId: row.id, name: row.name, isAdmin: row.isAdmin, telegramId: from.id } : null;
  }
}

/** A user by id (a web console or CLI session), or null when they are gone. */
export async function userById(db: Db, userId: string): Promise<ChatUser | null> {
  const [row] = await db.select().from(users).where(eq(users.id, userId));
  return row ? { userId: row.id, name: row.name, isAdmin: row.isAdmin, ...(row.telegramId ? { telegramId: row.telegramId } : {}) } : null;
}


/**
 * Refuses a key the chat must not take: one of no user, a runner's (no `user` scope), or one limited to
 * a project (the Product Owner's tools reach every project of the person, so such a key would reach
 * past its limit).
 */
export function assertMayChat(principal: Principal): asserts principal is Principal & { userId: string } {
  if (!principal.userId) throw new AppError("forbidden", "This key has no user to chat as");
  if (!principal.isAdmin && !principal.scopes.includes("user")) throw new AppError("forbidden", "The chat needs a person's key (scope user); this key is not one");
  if (principal.projectId) throw new AppError("forbidden", "A key limited to one project cannot open the chat: the Product Owner acts on all of your projects. Use a key that is not limited to a project");
}
