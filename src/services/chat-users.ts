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
import type { Principal } from "../lib/context.ts";
import { newId } from "../lib/crypto.ts";
import type { ChatUser } from "../durable/po-store.ts";

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

/** Tools act as the person: their own projects, their own tasks; an admin's reach when they are one. */
export function chatPrincipal(user: ChatUser): Principal {
  return { userId: user.userId, keyId: "chat", scopes: user.isAdmin ? ["admin", "user"] : ["user"], isAdmin: user.isAdmin };
}
