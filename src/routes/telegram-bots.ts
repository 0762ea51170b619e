import { createRoute } from "@hono/zod-openapi";
import { z } from "zod";
import { apiDoc, apiRouter, errors, jsonBody, jsonResponse, views } from "../platform/openapi.ts";
import { requireAdmin, requireScope } from "../platform/auth.ts";
import { allocateBot, botView, listBots, registerBot, releaseBot, rotateBot } from "../telegram/telegram-bots.ts";
import { AllocateBot, BotListQuery, RegisterBot, RotateBot } from "../shared/telegram-bots.ts";

const IdParam = z.object({ id: z.string().min(1).max(64) });

const doc = apiDoc("telegram");
const BotResponse = z.object({ bot: views.TelegramBot });
const BotsResponse = z.object({ bots: z.array(views.TelegramBot) });
const register = createRoute({
  ...doc,
  method: "post",
  path: "/",
  summary: "Add a bot to the pool by its token (checked with Telegram; admin)",
  middleware: [requireAdmin],
  request: { body: jsonBody(RegisterBot) },
  responses: { 201: jsonResponse(BotResponse, "The bot"), ...errors(400, 403, 409, 413, 415, 502) },
});
const list = createRoute({
  ...doc,
  method: "get",
  path: "/",
  summary: "List the pool's bots (admin)",
  middleware: [requireAdmin],
  request: { query: BotListQuery },
  responses: { 200: jsonResponse(BotsResponse, "The bots"), ...errors(400, 403) },
});
const available = createRoute({
  ...doc,
  method: "get",
  path: "/available",
  summary: "List the bots that are free",
  middleware: [requireScope("user")],
  request: { query: BotListQuery },
  responses: { 200: jsonResponse(BotsResponse, "The free bots"), ...errors(400, 403) },
});
const allocate = createRoute({
  ...doc,
  method: "post",
  path: "/{id}/allocate",
  summary: "Give a bot to a project (admin)",
  middleware: [requireAdmin],
  request: { params: IdParam, body: jsonBody(AllocateBot) },
  responses: { 200: jsonResponse(BotResponse, "The bot"), ...errors(400, 403, 404, 409, 413, 415) },
});
const release = createRoute({
  ...doc,
  method: "post",
  path: "/{id}/release",
  summary: "Free a bot (admin): its project loses the token, and the bot waits for a new one",
  middleware: [requireAdmin],
  request: { params: IdParam },
  responses: { 200: jsonResponse(BotResponse, "The bot"), ...errors(400, 403, 404) },
});

const rotate = createRoute({
  ...doc,
  method: "post",
  path: "/{id}/rotate",
  summary: "Give a bot its new token after @BotFather's /revoke (checked with Telegram; admin)",
  description: "A bot that served a project (whose code held its token) is given to no other project until this is done.",
  middleware: [requireAdmin],
  request: { params: IdParam, body: jsonBody(RotateBot) },
  responses: { 200: jsonResponse(BotResponse, "The bot, ready to be given out"), ...errors(400, 403, 404, 413, 415, 502) },
});

/**
 * `/api/telegram-bots`: the pool of Telegram bots that deployed projects are given. Admins fill it
 * and hand bots out; any user may see which bots are free. No answer carries a token.
 */
export const telegramBotsRoute = apiRouter();
telegramBotsRoute
  .openapi(register, async (c) => {
    const row = await registerBot(c.env, c.var.db, c.req.valid("json").token);
    c.var.log.info("telegram bot registered", { botId: row.id, username: row.username });
    return c.json({ bot: botView(row) }, 201);
  })
  .openapi(list, async (c) => {
    const rows = await listBots(c.var.db, c.req.valid("query"));
    return c.json({ bots: rows.map(botView) }, 200);
  })
  .openapi(available, async (c) => {
    const rows = await listBots(c.var.db, { ...c.req.valid("query"), available: true });
    return c.json({ bots: rows.map(botView) }, 200);
  })
  .openapi(allocate, async (c) => {
    const row = await allocateBot(c.var.db, c.req.valid("param").id, c.req.valid("json").projectId);
    return c.json({ bot: botView(row) }, 200);
  })
  .openapi(release, async (c) => {
    const row = await releaseBot(c.var.db, c.req.valid("param").id);
    return c.json({ bot: botView(row) }, 200);
  })
  .openapi(rotate, async (c) => {
    const row = await rotateBot(c.env, c.var.db, c.req.valid("param").id, c.req.valid("json").token);
    c.var.log.info("telegram bot token rotated", { botId: row.id, username: row.username });
    return c.json({ bot: botView(row) }, 200);
  });
