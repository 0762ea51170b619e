import { Hono } from "hono";
import { z } from "zod";
import type { AppEnv } from "../lib/context.ts";
import { validate } from "../lib/validate.ts";
import { requireAdmin, requireScope } from "../middleware/auth.ts";
import { allocateBot, botView, listBots, registerBot, releaseBot } from "../services/telegram-bots.ts";
import { AllocateBot, BotListQuery, RegisterBot } from "../shared/telegram-bots.ts";

const IdParam = z.object({ id: z.string().min(1).max(64) });

/**
 * `/api/telegram-bots`: the pool of Telegram bots that deployed projects are given. Admins fill it
 * and hand bots out; any user may see which bots are free. No answer carries a token.
 */
export const telegramBotsRoute = new Hono<AppEnv>()
  .post("/", requireAdmin, validate("json", RegisterBot), async (c) => {
    const row = await registerBot(c.env, c.var.db, c.req.valid("json").token);
    c.var.log.info("telegram bot registered", { botId: row.id, username: row.username });
    return c.json({ bot: botView(row) }, 201);
  })
  .get("/", requireAdmin, validate("query", BotListQuery), async (c) => {
    const rows = await listBots(c.var.db, c.req.valid("query"));
    return c.json({ bots: rows.map(botView) });
  })
  .get("/available", requireScope("user"), validate("query", BotListQuery), async (c) => {
    const rows = await listBots(c.var.db, { ...c.req.valid("query"), available: true });
    return c.json({ bots: rows.map(botView) });
  })
  .post("/:id/allocate", requireAdmin, validate("param", IdParam), validate("json", AllocateBot), async (c) => {
    const row = await allocateBot(c.var.db, c.req.valid("param").id, c.req.valid("json").projectId);
    return c.json({ bot: botView(row) });
  })
  .post("/:id/release", requireAdmin, validate("param", IdParam), async (c) => {
    const row = await releaseBot(c.var.db, c.req.valid("param").id);
    return c.json({ bot: botView(row) });
  });
