import { createRoute } from "@hono/zod-openapi";
import { desc } from "drizzle-orm";
import { z } from "zod";
import { users } from "../db/schema.ts";
import { AppError } from "../lib/app-error.ts";
import { newId } from "../lib/crypto.ts";
import { isUniqueViolation } from "../db/errors.ts";
import { apiDoc, apiRouter, errors, jsonBody, jsonResponse, named } from "../platform/openapi.ts";
import { CreateUser, Page } from "../shared/api.ts";
import { requireAdmin } from "../platform/auth.ts";

const User = named(z.object({ id: z.string(), name: z.string(), telegramId: z.number().int().nullable(), isAdmin: z.boolean(), createdAt: z.string() }), "User");
const doc = apiDoc("users");
const create = createRoute({
  ...doc,
  method: "post",
  path: "/",
  summary: "Create a user (admin)",
  request: { body: jsonBody(CreateUser) },
  responses: { 201: jsonResponse(z.object({ user: User }), "The new user"), ...errors(400, 403, 409, 413, 415) },
});
const list = createRoute({
  ...doc,
  method: "get",
  path: "/",
  summary: "List users, newest first (admin)",
  request: { query: Page },
  responses: { 200: jsonResponse(z.object({ users: z.array(User) }), "The users"), ...errors(400, 403) },
});

/** `/api/users`: admins create and list users. */
export const usersRoute = apiRouter();
usersRoute.use(requireAdmin);
usersRoute
  .openapi(create, async (c) => {
    const body = c.req.valid("json");
    try {
      const [user] = await c.var.db
        .insert(users)
        .values({ id: newId("usr"), name: body.name, telegramId: body.telegramId, isAdmin: body.isAdmin ?? false })
        .returning();
      // An insert's returning() gives the row it inserted.
      return c.json({ user: user as typeof users.$inferSelect }, 201);
    } catch (error) {
      if (isUniqueViolation(error)) throw new AppError("conflict", "A user with this Telegram id already exists");
      throw error;
    }
  })
  .openapi(list, async (c) => {
    const { limit, offset } = c.req.valid("query");
    const rows = await c.var.db.select().from(users).orderBy(desc(users.createdAt)).limit(limit).offset(offset);
    return c.json({ users: rows }, 200);
  });
