/**
 * The Telegram bot pool through the real worker (`wrangler dev`) against the Telegram stand-in on
 * loopback: registration checked with getMe, tokens sealed at rest and in no answer or log line,
 * allocation that hands the last free bot to exactly one of many racing callers, and release. The
 * deploy pipeline's side (allocateBot with any free bot, botTokenFor, releaseBots) is called here
 * from Node against the same database, as the workflow calls it.
 *
 * The pool is global, so this file has a database of its own (in the test run's Postgres): "the last
 * free bot" must not depend on what other test files register or allocate at the same time.
 */
import { createDecipheriv, hkdfSync, randomBytes } from "node:crypto";
import { and, count, eq, isNull, like } from "drizzle-orm";
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from "vitest";
import type { LocalDatabase } from "../../scripts/lib/local-db.ts";
import { freePort } from "../../scripts/lib/ports.ts";
import { type Stack, STACK_SECRETS_KEY, startStack } from "../../scripts/lib/local-stack.ts";
import { createDb, type Db, type DbHandle } from "../../src/db/client.ts";
import { projects, projectSecrets, telegramBots } from "../../src/db/schema.ts";
import { AppError } from "../../src/lib/app-error.ts";
import type { TelegramBotView } from "../../src/shared/telegram-bots.ts";
import { TelegramServer } from "../../standins/telegram-server.ts";
import { ownDatabase } from "../support/shared.ts";

type ErrorJson = { error: { code: string; message: string } };
type BotRow = typeof telegramBots.$inferSelect;

/**
 * The pool's service, as the deploy pipeline calls it. Loaded by a path tsc does not follow: it seals
 * with src/lib/secrets.ts, which is typed against the Workers runtime types that this Node project
 * (tsconfig.node.json) does not load. The code runs unchanged on Node 22's WebCrypto.
 */
interface PoolService {
  registerBot: (env: { TELEGRAM_API_URL?: string; SECRETS_ENCRYPTION_KEY: string }, db: Db, token: string) => Promise<BotRow>;
  allocateBot: (db: Db, botId: string | null, projectId: string) => Promise<BotRow>;
  botTokenFor: (env: { SECRETS_ENCRYPTION_KEY: string }, db: Db, projectId: string) => Promise<string | null>;
  releaseBots: (db: Db, projectId: string) => Promise<BotRow[]>;
}
const SERVICE: string = "../../src/telegram/telegram-bots.ts";
const { allocateBot, botTokenFor, registerBot, releaseBots } = (await import(SERVICE)) as PoolService;

/**
 * Opens a sealed token as DESIGN says it is sealed, with node:crypto rather than the worker's own
 * module: AES-256-GCM under HKDF-SHA256(SECRETS_ENCRYPTION_KEY, info "orchestrator/telegram-bots/v1"),
 * the bot's row id as additional data.
 */
function openSealed(secret: string, row: { tokenCiphertext: string; tokenIv: string }, context: string): string {
  const key = Buffer.from(hkdfSync("sha256", Buffer.from(secret), Buffer.alloc(0), "orchestrator/telegram-bots/v1", 32));
  const sealed = Buffer.from(row.tokenCiphertext, "base64url");
  const decipher = createDecipheriv("aes-256-gcm", key, Buffer.from(row.tokenIv, "base64url"));
  decipher.setAAD(Buffer.from(context));
  decipher.setAuthTag(sealed.subarray(-16));
  return Buffer.concat([decipher.update(sealed.subarray(0, -16)), decipher.final()]).toString("utf8");
}
type BotJson = { bot: TelegramBotView };

const telegram = new TelegramServer();
let stack: Stack;
let handle: DbHandle;
let db: Db;
let database: LocalDatabase;
/** Every token made in this file: none may show up in an answer or in the worker's output. */
const tokens: string[] = [];
const env = () => ({ TELEGRAM_API_URL: telegram.apiRoot, SECRETS_ENCRYPTION_KEY: STACK_SECRETS_KEY });

beforeAll(async () => {
  database = await ownDatabase("telegram_bots");
  handle = createDb({ databaseUrl: database.databaseUrl, wsProxy: database.wsProxy });
  db = handle.db;
  await telegram.start();
  stack = await startStack({ databaseUrl: database.databaseUrl, dbWsProxy: database.wsProxy, adminKey: inject("adminApiKey"), logLevel: "info", vars: { TELEGRAM_API_URL: telegram.apiRoot } });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
  await telegram.stop();
  await handle?.close();
  await database?.stop();
});

// ---- Helpers ----

const suffix = () => randomBytes(4).toString("hex");

function newBot(prefix = "pool"): { token: string; username: string } {
  const username = `${prefix}_${suffix()}_bot`;
  const token = telegram.addBot({ username });
  tokens.push(token);
  return { token, username };
}

async function register(token: string, key?: string) {
  return stack.api<BotJson & ErrorJson>("/api/telegram-bots", { json: { token }, ...(key ? { key } : {}) });
}

async function registered(prefix?: string): Promise<TelegramBotView & { token: string }> {
  const { token } = newBot(prefix);
  const res = await register(token);
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return { ...res.body.bot, token };
}

async function newProject(): Promise<string> {
  const res = await stack.api<{ project: { id: string } }>("/api/projects", { json: { name: `tg-${suffix()}` } });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body.project.id;
}

const allocate = (botId: string, projectId: string, key?: string) =>
  stack.api<BotJson & ErrorJson>(`/api/telegram-bots/${botId}/allocate`, { json: { projectId }, ...(key ? { key } : {}) });

async function userKey(): Promise<string> {
  const user = await stack.api<{ user: { id: string } }>("/api/users", { json: { name: `tg-user-${suffix()}` } });
  const key = await stack.api<{ key: string }>("/api/keys", { json: { userId: user.body.user.id, name: "tg" } });
  return key.body.key;
}

/** Gives every free bot to a project of its own, so that the next bot registered is the only free one. */
async function exhaustPool(): Promise<void> {
  for (const bot of await db.select().from(telegramBots).where(and(isNull(telegramBots.projectId), eq(telegramBots.needsRotation, false)))) {
    await allocateBot(db, bot.id, await newProject());
  }
}

const storedBots = async () => (await db.select({ n: count() }).from(telegramBots))[0]?.n ?? 0;

/** No token, nor its secret half, anywhere in `text`. */
function expectNoToken(text: string): void {
  for (const token of tokens) {
    expect(text).not.toContain(token);
    expect(text).not.toContain(token.split(":")[1] ?? token);
  }
}

beforeEach(() => {
  telegram.setOutage(false);
});

// ---- Tests ----

describe("registering a bot", () => {
  it("checks the token with getMe, stores the username and the token sealed, and answers without it", async () => {
    const { token, username } = newBot("weather");
    const before = telegram.calls("getMe").length;
    const res = await register(token);
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    expect(res.body.bot).toMatchObject({ username, projectId: null, allocatedAt: null });
    expect(res.body.bot.id).toMatch(/^tgb_/);
    expectNoToken(JSON.stringify(res.body));

    const asked = telegram.calls("getMe").slice(before);
    expect(asked.map((call) => [call.token, call.username, call.status])).toEqual([[token, username, 200]]);

    const [row] = await db.select().from(telegramBots).where(eq(telegramBots.id, res.body.bot.id));
    expect(row).toBeDefined();
    if (!row) return;
    expect(row.username).toBe(username);
    expectNoToken(JSON.stringify(row));
    // The sealed token opens with the worker's key, bound to this row: moved to another row it does not.
    expect(openSealed(STACK_SECRETS_KEY, row, row.id)).toBe(token);
    expect(() => openSealed(STACK_SECRETS_KEY, row, "tgb_other")).toThrow();
    expect(() => openSealed("another-key", row, row.id)).toThrow();
  });

  it("refuses a token Telegram does not know with a 400 that does not echo it, and stores nothing", async () => {
    const token = `${Date.now()}:${randomBytes(32).toString("base64url").slice(0, 35)}`;
    tokens.push(token);
    const stored = await storedBots();
    const res = await register(token);
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe("invalid_request");
    expect(res.body.error.message).toMatch(/Telegram refused this bot token \(401: Unauthorized\)/);
    expectNoToken(JSON.stringify(res.body));
    expect(telegram.calls("getMe").at(-1)).toMatchObject({ token, status: 401 });
    expect(await storedBots()).toBe(stored);
  });

  it("refuses a malformed token before asking Telegram, without echoing it", async () => {
    const before = telegram.requests.length;
    for (const token of ["not-a-token", "123:short", `123456:${"a".repeat(35)}/../getMe`, ""]) {
      const res = await register(token);
      expect(res.status, token).toBe(400);
      expect(res.body.error.code).toBe("invalid_request");
      if (token) expect(JSON.stringify(res.body)).not.toContain(token);
    }
    expect((await stack.api<ErrorJson>("/api/telegram-bots", { json: { token: 12345 } })).status).toBe(400);
    expect((await stack.api<ErrorJson>("/api/telegram-bots", { json: {} })).status).toBe(400);
    expect(telegram.requests.length).toBe(before);
  });

  it("answers 409 for a bot already in the pool", async () => {
    const bot = await registered("twice");
    const again = await register(bot.token);
    expect(again.status).toBe(409);
    expect(again.body.error).toMatchObject({ code: "conflict", message: `The bot @${bot.username} is already in the pool` });
    expect(await db.select().from(telegramBots).where(eq(telegramBots.username, bot.username))).toHaveLength(1);
  });

  it("answers 502 upstream_unavailable while Telegram is down, and stores nothing", async () => {
    const { token } = newBot("outage");
    const stored = await storedBots();
    telegram.setOutage(true);
    const res = await register(token);
    telegram.setOutage(false);
    expect(res.status).toBe(502);
    expect(res.body.error.code).toBe("upstream_unavailable");
    expect(res.body.error.message).toContain(telegram.apiRoot);
    expectNoToken(JSON.stringify(res.body));
    expect(await storedBots()).toBe(stored);
    // Once Telegram is back, the same token registers.
    expect((await register(token)).status).toBe(201);
  });

  it("answers 502 when Telegram cannot be reached at all (connection refused)", async () => {
    const { token } = newBot("refused");
    const closed = `http://127.0.0.1:${await freePort()}`;
    const error = await registerBot({ TELEGRAM_API_URL: closed, SECRETS_ENCRYPTION_KEY: STACK_SECRETS_KEY }, db, token).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AppError);
    expect(error).toMatchObject({ code: "upstream_unavailable", status: 502 });
    expectNoToken(String((error as Error).message));
    expect(await db.select().from(telegramBots).where(like(telegramBots.username, "refused_%"))).toEqual([]);
  });
});

describe("who may do what", () => {
  it("keeps registering, listing, allocating and releasing to admins; any user sees the free bots", async () => {
    const bot = await registered("acl");
    const project = await newProject();
    const key = await userKey();
    const { token } = newBot("acl");
    const stored = await storedBots();
    const attempts = [
      await register(token, key),
      await stack.api<ErrorJson>("/api/telegram-bots", { key }),
      await allocate(bot.id, project, key),
      await stack.api<ErrorJson>(`/api/telegram-bots/${bot.id}/release`, { method: "POST", key }),
    ];
    expect(attempts.map((res) => [res.status, res.body.error.code])).toEqual(Array(4).fill([403, "forbidden"]));
    expect(await storedBots()).toBe(stored);
    expect(telegram.calls("getMe").some((call) => call.token === token)).toBe(false);
    const [row] = await db.select().from(telegramBots).where(eq(telegramBots.id, bot.id));
    expect(row?.projectId).toBeNull();

    const available = await stack.api<{ bots: TelegramBotView[] }>("/api/telegram-bots/available", { key });
    expect(available.status).toBe(200);
    expect(available.body.bots.map((b) => b.id)).toContain(bot.id);

    const anonymous = await fetch(`${stack.url}/api/telegram-bots/available`);
    expect(anonymous.status).toBe(401);
  });
});

describe("listing the pool", () => {
  it("lists every bot for an admin and only the free ones as available, with no token anywhere", async () => {
    const free = await registered("list");
    const taken = await registered("list");
    expect((await allocate(taken.id, await newProject())).status).toBe(200);

    const all = await stack.api<{ bots: TelegramBotView[] }>("/api/telegram-bots?limit=200");
    expect(all.status).toBe(200);
    expect(all.body.bots.map((b) => b.id)).toEqual(expect.arrayContaining([free.id, taken.id]));
    expect(all.body.bots.find((b) => b.id === taken.id)?.projectId).toEqual(expect.any(String) as string);
    for (const bot of all.body.bots) expect(Object.keys(bot).sort()).toEqual(["allocatedAt", "createdAt", "id", "needsRotation", "projectId", "username"]);

    const available = await stack.api<{ bots: TelegramBotView[] }>("/api/telegram-bots/available?limit=200");
    expect(available.body.bots.map((b) => b.id)).toContain(free.id);
    expect(available.body.bots.map((b) => b.id)).not.toContain(taken.id);
    expect(available.body.bots.every((b) => b.projectId === null)).toBe(true);

    expectNoToken(JSON.stringify(all.body) + JSON.stringify(available.body));
    expect((await stack.api<ErrorJson>("/api/telegram-bots?limit=0")).status).toBe(400);
  });
});

describe("allocating and releasing", () => {
  it("allocates a bot to a project, gives the same one back on a repeat, and frees it on release", async () => {
    const bot = await registered("alloc");
    const other = await registered("alloc");
    const project = await newProject();

    const first = await allocate(bot.id, project);
    expect(first.status, JSON.stringify(first.body)).toBe(200);
    expect(first.body.bot).toMatchObject({ id: bot.id, username: bot.username, projectId: project, allocatedAt: expect.any(String) as string });
    expectNoToken(JSON.stringify(first.body));

    const again = await allocate(bot.id, project);
    expect(again.status).toBe(200);
    expect(again.body.bot).toEqual(first.body.bot);
    // Any free bot will do for the pipeline: the project's own comes back.
    expect((await allocateBot(db, null, project)).id).toBe(bot.id);
    expect(await botTokenFor(env(), db, project)).toBe(bot.token);

    const second = await allocate(other.id, project);
    expect([second.status, second.body.error.message]).toEqual([409, `This project has the bot @${bot.username} already; release it first`]);
    const elsewhere = await allocate(bot.id, await newProject());
    expect([elsewhere.status, elsewhere.body.error.message]).toEqual([409, `The bot @${bot.username} is allocated to another project`]);
    expect((await allocate(bot.id, "prj_nonexistent")).body.error.code).toBe("not_found");
    expect((await allocate("tgb_nonexistent", await newProject())).status).toBe(404);
    expect((await stack.api<ErrorJson>(`/api/telegram-bots/${bot.id}/allocate`, { json: {} })).status).toBe(400);

    const released = await stack.api<BotJson>(`/api/telegram-bots/${bot.id}/release`, { method: "POST" });
    expect(released.status).toBe(200);
    expect(released.body.bot).toMatchObject({ id: bot.id, projectId: null, allocatedAt: null, needsRotation: true });
    expect(await botTokenFor(env(), db, project)).toBeNull();
    // The project's code held its token: no other project gets the bot until an admin rotates it.
    const waiting = await stack.api<{ bots: TelegramBotView[] }>("/api/telegram-bots/available?limit=200");
    expect(waiting.body.bots.map((b) => b.id)).not.toContain(bot.id);
    const refused = await allocate(bot.id, await newProject());
    expect([refused.status, refused.body.error.message]).toEqual([409, `The bot @${bot.username} served another project, which held its token: rotate the token first (POST /api/telegram-bots/${bot.id}/rotate)`]);
    // The old token, another bot's, a malformed one, a user's key: refused, nothing changed.
    const rotate = (token: string, key?: string) => stack.api<BotJson & ErrorJson>(`/api/telegram-bots/${bot.id}/rotate`, { json: { token }, ...(key ? { key } : {}) });
    expect((await rotate(bot.token)).body.error.message).toMatch(/is the token @\S+ has now: revoke it with @BotFather/);
    expect((await rotate(other.token)).body.error.message).toMatch(/belongs to @\S+, not @/);
    expect((await rotate("not-a-token")).status).toBe(400);
    expect((await rotate(telegram.rotateToken(other.token), await userKey())).status).toBe(403);
    const fresh = telegram.rotateToken(bot.token);
    tokens.push(fresh);
    const rotated = await rotate(fresh);
    expect(rotated.status, JSON.stringify(rotated.body)).toBe(200);
    expect(rotated.body.bot).toMatchObject({ id: bot.id, needsRotation: false, projectId: null });
    expectNoToken(JSON.stringify(rotated.body));
    const available = await stack.api<{ bots: TelegramBotView[] }>("/api/telegram-bots/available?limit=200");
    expect(available.body.bots.map((b) => b.id)).toContain(bot.id);
    const next = await newProject();
    expect((await allocate(bot.id, next)).status).toBe(200);
    expect(await botTokenFor(env(), db, next)).toBe(fresh);
    expect((await stack.api(`/api/telegram-bots/${bot.id}/release`, { method: "POST" })).status).toBe(200);
    // Releasing a free bot changes nothing; an unknown one is a 404.
    expect((await stack.api(`/api/telegram-bots/${bot.id}/release`, { method: "POST" })).status).toBe(200);
    expect((await stack.api(`/api/telegram-bots/tgb_nonexistent/release`, { method: "POST" })).status).toBe(404);
  });

  it("gives the last free bot to exactly one of ten racing allocations; the others get 409", async () => {
    await exhaustPool();
    const bot = await registered("last");
    const projects = await Promise.all(Array.from({ length: 10 }, () => newProject()));
    const results = await Promise.all(projects.map((project) => allocate(bot.id, project)));
    const statuses = results.map((res) => res.status).sort();
    expect(statuses).toEqual([200, ...Array<number>(9).fill(409)]);
    const winner = results.find((res) => res.status === 200)?.body.bot.projectId;
    const [row] = await db.select().from(telegramBots).where(eq(telegramBots.id, bot.id));
    expect(row?.projectId).toBe(winner);
    for (const lost of results.filter((res) => res.status === 409)) expect(lost.body.error.message).toBe(`The bot @${bot.username} is allocated to another project`);
  });
});

describe("the deploy pipeline's side", () => {
  it("hands any free bot to exactly one of ten racing projects when one is left: the rest are told there is no free bot", async () => {
    await exhaustPool();
    const bot = await registered("pipeline");
    const projects = await Promise.all(Array.from({ length: 10 }, () => newProject()));
    const outcomes = await Promise.allSettled(projects.map((project) => allocateBot(db, null, project)));
    const won = outcomes.flatMap((outcome) => (outcome.status === "fulfilled" ? [outcome.value] : []));
    const lost = outcomes.flatMap((outcome) => (outcome.status === "rejected" ? [outcome.reason as unknown] : []));
    expect(won.map((row) => row.id)).toEqual([bot.id]);
    expect(lost).toHaveLength(9);
    for (const error of lost) expect(error).toMatchObject({ code: "conflict", status: 409, message: expect.stringMatching(/^No free bot/) as string });
  });

  it("gives racing projects different bots while there are free ones", async () => {
    await exhaustPool();
    const bots = [await registered("spread"), await registered("spread"), await registered("spread")];
    const projects = await Promise.all(Array.from({ length: 6 }, () => newProject()));
    const outcomes = await Promise.allSettled(projects.map((project) => allocateBot(db, null, project)));
    const won = outcomes.flatMap((outcome) => (outcome.status === "fulfilled" ? [outcome.value] : []));
    expect(won.map((row) => row.id).sort()).toEqual(bots.map((b) => b.id).sort());
    expect(outcomes.filter((outcome) => outcome.status === "rejected")).toHaveLength(3);

  });

  it("gives a project racing itself one bot, and tells none of its callers there is no free bot", async () => {
    await exhaustPool();
    for (let round = 0; round < 5; round++) {
      await registered("self");
      await registered("self");
      const project = await newProject();
      // Two pools: ten claims at once, where one pool would let five through at a time.
      const other = createDb({ databaseUrl: database.databaseUrl, wsProxy: database.wsProxy });
      const same = await Promise.all(Array.from({ length: 10 }, (_, i) => allocateBot(i % 2 ? other.db : db, null, project))).finally(() => other.close());
      expect(new Set(same.map((row) => row.id)).size).toBe(1);
      expect(await db.select().from(telegramBots).where(eq(telegramBots.projectId, project))).toHaveLength(1);
    }
  });

  it("opens the project's token for the secret resolver, and releaseBots frees it on undeploy", async () => {
    await exhaustPool();
    const bot = await registered("resolver");
    const project = await newProject();
    expect(await botTokenFor(env(), db, project)).toBeNull();
    const row = await allocateBot(db, null, project);
    expect(row.id).toBe(bot.id);
    expect(await botTokenFor(env(), db, project)).toBe(bot.token);
    // With another key the token does not open: it is sealed, not encoded.
    await expect(botTokenFor({ SECRETS_ENCRYPTION_KEY: "another-key" }, db, project)).rejects.toThrow();

    // The deploy keeps the token as the project's secret; undeploy takes it away with the bot.
    await db.insert(projectSecrets).values({ id: `sec_${suffix()}`, projectId: project, name: "TELEGRAM_BOT_TOKEN", ciphertext: "x", iv: "y", kind: "bot" });
    const freed = await releaseBots(db, project);
    expect(freed.map((b) => [b.id, b.projectId, b.allocatedAt, b.needsRotation])).toEqual([[bot.id, null, null, true]]);
    expect(await botTokenFor(env(), db, project)).toBeNull();
    expect(await db.select().from(projectSecrets).where(eq(projectSecrets.projectId, project))).toEqual([]);
    expect(await releaseBots(db, project)).toEqual([]);
    // Nor does a deleted project pass its bot on: the row's project goes, and the bot waits for a new token.
    const gone = await registered("deleted");
    const doomed = await newProject();
    await allocateBot(db, gone.id, doomed);
    await db.delete(projects).where(eq(projects.id, doomed));
    const [after] = await db.select().from(telegramBots).where(eq(telegramBots.id, gone.id));
    expect(after).toMatchObject({ projectId: null, needsRotation: true });
  });
});

describe("the worker's output", () => {
  it("holds no token after all of the above", () => {
    expect(tokens.length).toBeGreaterThan(10);
    expect(stack.process.output()).toContain('"msg":"telegram bot registered"');
    expectNoToken(stack.process.output());
  });
});
