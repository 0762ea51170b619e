import { desc } from "drizzle-orm";
import { Hono } from "hono";
import { users } from "../db/schema.ts";
import { AppError } from "../lib/app-error.ts";
import type { AppEnv } from "../lib/context.ts";
import { newId } from "../lib/crypto.ts";
import { isUniqueViolation } from "../db/errors.ts";
import { validate } from "../lib/validate.ts";
import { CreateUser, Page } from "../shared/api.ts";
import { requireAdmin } from "../middleware/auth.ts";

/** `/api/users`: admins create and list users. */
export const usersRoute = new Hono<AppEnv>()
  .use(requireAdmin)
  .post("/", validate("json", CreateUser), async (c) => {
    const body = c.req.valid("json");
    try {
      const [user] = await c.var.db
        .insert(users)
        .values({ id: newId("usr"), name: body.name, telegramId: body.telegramId, isAdmin: body.isAdmin ?? false })
        .returning();
      return c.json({ user }, 201);
    } catch (error) {
      if (isUniqueViolation(error)) throw new AppError("conflict", "A user with this Telegram id already exists");
      throw error;
    }
  })
  .get("/", validate("query", Page), async (c) => {
    const { limit, offset } = c.req.valid("query");
    const rows = await c.var.db.select().from(users).orderBy(desc(users.createdAt)).limit(limit).offset(offset);
    return c.json({ users: rows });
  });
