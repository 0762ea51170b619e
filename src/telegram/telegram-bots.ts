/**
 * The Telegram bot pool: bots an admin registered ahead of time (a bot can only be made by a person
 * talking to @BotFather), each given to at most one project when it is deployed and freed when it is
 * undeployed. Tokens are checked with getMe before they are stored, and stored sealed
 * (AES-GCM, src/lib/secrets.ts, bound to the bot's row id); no view and no error carries one.
 */
import { and, asc, eq, isNull, sql } from "drizzle-orm";
import { type Api, GrammyError } from "grammy";
import type { Db } from "../db/client.ts";
import { isForeignKeyViolation, isUniqueViolation } from "../db/errors.ts";
import { projects, projectSecrets, telegramBots } from "../db/schema.ts";
import { AppError, notFound } from "../lib/app-error.ts";
import { newId } from "../lib/crypto.ts";
import { openText, sealText } from "../lib/secrets.ts";
import type { TelegramBotView } from "../shared/telegram-bots.ts";
import { putSecrets } from "../projects/project-secrets.ts";
import { telegramApi, telegramApiRoot } from "./client.ts";

export type TelegramBotRow = typeof telegramBots.$inferSelect;

/** The project variable a pool bot's token is given as: it comes from the pool, whatever a model says it is. */
export const BOT_TOKEN_VAR = "TELEGRAM_BOT_TOKEN";

/** What the pool needs of the environment (a plain object in Node tests and scripts). */
export interface TelegramEnv {
  TELEGRAM_API_URL?: string;
  SECRETS_ENCRYPTION_KEY: string;
}

export function botView(row: TelegramBotRow): TelegramBotView {
  return {
    id: row.id,
    username: row.username,
    projectId: row.projectId,
    allocatedAt: row.allocatedAt?.toISOString() ?? null,
    needsRotation: row.needsRotation,
    createdAt: row.createdAt.toISOString(),
  };
}

/**
 * Turns a failed getMe into what the admin should do. Telegram's descriptions never contain the
 * token; grammY's network errors may (inside their cause), so none is passed on.
 */
function telegramFailure(error: unknown, apiRoot: string): AppError {
  if (error instanceof GrammyError) {
    const said = `${error.error_code}: ${error.description}`;
    if (error.error_code === 401 || error.error_code === 404) {
      return new AppError("invalid_request", `Telegram refused this bot token (${said}): it is wrong or was revoked; check it with @BotFather. Nothing was stored`);
    }
    if (error.error_code === 429 || error.error_code >= 500) {
      return new AppError("upstream_unavailable", `Telegram could not check the token right now (${said}); nothing was stored, retry shortly`);
    }
    return new AppError("invalid_request", `Telegram refused the token check (${said}); nothing was stored`);
  }
  return new AppError("upstream_unavailable", `Telegram (${apiRoot}) could not be reached or gave no Bot API answer; nothing was stored, retry shortly`);
}

/** Telegram's getMe for a token: the bot it belongs to, or the AppError telegramFailure makes of a refusal. */
async function whoIs(env: TelegramEnv, token: string): Promise<Awaited<ReturnType<Api["getMe"]>>> {
  const apiRoot = telegramApiRoot(env);
  try {
    return await telegramApi(env, token, "none").getMe();
  } catch (error) {
    throw telegramFailure(error, apiRoot);
  }
}

/**
 * Adds a bot to the pool: asks Telegram who the token belongs to (getMe), then stores the bot's
 * username and its token sealed. 400 for a token Telegram refuses, 409 for a bot already in the
 * pool, 502 when Telegram cannot be asked; in each case nothing is stored.
 */
export async function registerBot(env: TelegramEnv, db: Db, token: string): Promise<TelegramBotRow> {
  const me = await whoIs(env, token);
  if (!me.is_bot || !me.username) throw new AppError("invalid_request", "This token does not belong to a bot with a username; nothing was stored");
  const id = newId("tgb");
  const sealed = await sealText(env.SECRETS_ENCRYPTION_KEY, "telegram-bots", token, id);
  const [row] = await db
    .insert(telegramBots)
    .values({ id, username: me.username, tokenCiphertext: sealed.ciphertext, tokenIv: sealed.iv })
    .onConflictDoNothing({ target: telegramBots.username })
    .returning();
  if (!row) throw new AppError("conflict", `The bot @${me.username} is already in the pool`);
  return row;
}

/** A bot another project may have: free, and its token never held by a project since it was last rotated. */
const claimable = () => and(isNull(telegramBots.projectId), eq(telegramBots.needsRotation, false));

/** The pool, oldest first; `available` keeps only the bots a project may be given. */
export async function listBots(db: Db, options: { available?: boolean; limit?: number; offset?: number } = {}): Promise<TelegramBotRow[]> {
  return db
    .select()
    .from(telegramBots)
    .where(options.available ? claimable() : undefined)
    .orderBy(asc(telegramBots.createdAt), asc(telegramBots.id))
    .limit(options.limit ?? 200)
    .offset(options.offset ?? 0);
}

async function botOfProject(db: Db, projectId: string): Promise<TelegramBotRow | undefined> {
  const [row] = await db.select().from(telegramBots).where(eq(telegramBots.projectId, projectId));
  return row;
}

/**
 * Gives a bot to a project: the bot `botId`, or any free one when it is null. A project that has a
 * bot already gets that one back, so the deploy pipeline may call this on every run.
 *
 * The claim is one UPDATE that only matches a free row (`project_id IS NULL`), so of two racing
 * claims on the last free bot exactly one wins; the loser answers 409. The unique project_id column
 * stops one project from taking two bots: the second claim fails and finds the first one's bot.
 */
export async function allocateBot(db: Db, botId: string | null, projectId: string): Promise<TelegramBotRow> {
  const [project] = await db.select({ id: projects.id }).from(projects).where(eq(projects.id, projectId));
  if (!project) notFound("Project");
  const held = await botOfProject(db, projectId);
  if (held) return heldOrConflict(held, botId);

  // Any free bot: first skipping the rows other claims have locked, so concurrent claims take
  // different bots instead of queueing on one. A locked row may still come free (its claim can fail
  // when that project got a bot meanwhile), so finding none, ask once more, waiting on those rows.
  const modes = botId === null ? (["skip-locked", "wait"] as const) : (["wait"] as const);
  for (const mode of modes) {
    const claimed = await claim(db, botId, projectId, mode);
    if (claimed) return claimed;
    const won = await botOfProject(db, projectId);
    if (won) return heldOrConflict(won, botId);
  }

  if (botId === null) throw new AppError("conflict", "No free bot: every bot in the pool is allocated or waits for its token to be rotated; register another (POST /api/telegram-bots) or rotate one (POST /api/telegram-bots/:id/rotate)");
  const [bot] = await db.select().from(telegramBots).where(eq(telegramBots.id, botId));
  if (!bot) notFound("Telegram bot");
  if (bot.needsRotation && !bot.projectId) throw new AppError("conflict", `The bot @${bot.username} served another project, which held its token: rotate the token first (POST /api/telegram-bots/${bot.id}/rotate)`);
  throw new AppError("conflict", `The bot @${bot.username} is allocated to another project`);
}

/**
 * Claims a bot in one transaction: the bot named, or the oldest free one (its row locked, rows other
 * claims hold skipped or waited for), then an UPDATE that only matches it while it is still free. The
 * row claimed, or undefined when there was none to claim or the project took another bot meanwhile
 * (the unique project_id refused this one). The two steps are separate statements on purpose: as one
 * (`UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED LIMIT 1)`) the planner may run the locking
 * subquery once per candidate row, and concurrent claims then miss free bots.
 */
async function claim(db: Db, botId: string | null, projectId: string, mode: "skip-locked" | "wait"): Promise<TelegramBotRow | undefined> {
  try {
    return await db.transaction(async (tx) => {
      let id = botId;
      if (id === null) {
        const oldestFree = tx.select({ id: telegramBots.id }).from(telegramBots).where(claimable()).orderBy(asc(telegramBots.createdAt), asc(telegramBots.id)).limit(1);
        const [picked] = await (mode === "skip-locked" ? oldestFree.for("update", { skipLocked: true }) : oldestFree.for("update"));
        if (!picked) return undefined;
        id = picked.id;
      }
      const [row] = await tx
        .update(telegramBots)
        .set({ projectId, allocatedAt: sql`now()` })
        .where(and(eq(telegramBots.id, id), claimable()))
        .returning();
      return row;
    });
  } catch (error) {
    if (isUniqueViolation(error)) return undefined;
    if (isForeignKeyViolation(error)) notFound("Project");
    throw error;
  }
}

function heldOrConflict(held: TelegramBotRow, botId: string | null): TelegramBotRow {
  if (botId === null || held.id === botId) return held;
  throw new AppError("conflict", `This project has the bot @${held.username} already; release it first`);
}

/**
 * Frees one bot by its id (a free bot stays free); 404 for an unknown id. The project it served loses
 * its TELEGRAM_BOT_TOKEN, and the bot waits for a new token before another project may have it.
 */
export async function releaseBot(db: Db, botId: string): Promise<TelegramBotRow> {
  const [held] = await db.select({ projectId: telegramBots.projectId }).from(telegramBots).where(eq(telegramBots.id, botId));
  if (!held) notFound("Telegram bot");
  const [row] = await db.update(telegramBots).set({ projectId: null, allocatedAt: null }).where(eq(telegramBots.id, botId)).returning();
  if (!row) notFound("Telegram bot");
  if (held.projectId) await forgetBotToken(db, held.projectId);
  return row;
}

/** Frees the project's bot, if it has one (undeploy), and takes its token from the project; returns what was freed. */
export async function releaseBots(db: Db, projectId: string): Promise<TelegramBotRow[]> {
  const freed = await db.update(telegramBots).set({ projectId: null, allocatedAt: null }).where(eq(telegramBots.projectId, projectId)).returning();
  await forgetBotToken(db, projectId);
  return freed;
}

/** The project's copy of its pool bot's token (the secret the deploy put there). */
async function forgetBotToken(db: Db, projectId: string): Promise<void> {
  await db.delete(projectSecrets).where(and(eq(projectSecrets.projectId, projectId), eq(projectSecrets.name, BOT_TOKEN_VAR), eq(projectSecrets.kind, "bot")));
}

/**
 * Gives a bot the new token an admin got from @BotFather after /revoke: checked with getMe (it must be
 * the same bot, and not the token it had), stored sealed, and the bot may serve a project again.
 * A bot still serving a project gets its new token there too (its next release uses it).
 */
export async function rotateBot(env: TelegramEnv, db: Db, botId: string, token: string): Promise<TelegramBotRow> {
  const [bot] = await db.select().from(telegramBots).where(eq(telegramBots.id, botId));
  if (!bot) notFound("Telegram bot");
  const old = await openText(env.SECRETS_ENCRYPTION_KEY, "telegram-bots", { ciphertext: bot.tokenCiphertext, iv: bot.tokenIv }, bot.id);
  if (old === token) throw new AppError("invalid_request", `This is the token @${bot.username} has now: revoke it with @BotFather (/revoke) and give the new one`);
  const me = await whoIs(env, token);
  if (me.username?.toLowerCase() !== bot.username.toLowerCase()) throw new AppError("invalid_request", `This token belongs to @${me.username ?? "a bot without a username"}, not @${bot.username}; nothing was changed`);
  const sealed = await sealText(env.SECRETS_ENCRYPTION_KEY, "telegram-bots", token, bot.id);
  const [row] = await db.update(telegramBots).set({ tokenCiphertext: sealed.ciphertext, tokenIv: sealed.iv, needsRotation: false }).where(eq(telegramBots.id, bot.id)).returning();
  if (!row) notFound("Telegram bot");
  if (row.projectId) await putSecrets(env, db, row.projectId, { [BOT_TOKEN_VAR]: token }, "bot");
  return row;
}

/**
 * The token of the project's bot, opened, or null when the project has none: for the deploy
 * pipeline's secret resolver, and nothing that answers a client.
 */
export async function botTokenFor(env: Pick<TelegramEnv, "SECRETS_ENCRYPTION_KEY">, db: Db, projectId: string): Promise<string | null> {
  const bot = await botOfProject(db, projectId);
  if (!bot) return null;
  return openText(env.SECRETS_ENCRYPTION_KEY, "telegram-bots", { ciphertext: bot.tokenCiphertext, iv: bot.tokenIv }, bot.id);
}
