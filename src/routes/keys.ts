import { eq } from "drizzle-orm";
import { Hono } from "hono";
import { apiKeys, users } from "../db/schema.ts";
import { AppError } from "../lib/app-error.ts";
import { generateApiKey } from "../lib/api-keys.ts";
import type { AppEnv } from "../lib/context.ts";
import { newId } from "../lib/crypto.ts";
import { validate } from "../lib/validate.ts";
import { requireAdmin } from "../middleware/auth.ts";
import { CreateApiKey } from "../shared/api.ts";

/** `/api/keys`: an admin issues a key for a user; the plain key is in this one response only. */
export const keysRoute = new Hono<AppEnv>().use(requireAdmin).post("/", validate("json", CreateApiKey), async (c) => {
  const body = c.req.valid("json");
  const [owner] = await c.var.db.select().from(users).where(eq(users.id, body.userId));
  if (!owner) throw new AppError("invalid_request", `No user with id ${body.userId}`);
  if (body.scopes.includes("admin") && !owner.isAdmin) {
    throw new AppError("invalid_request", "Only a user with isAdmin can hold an admin-scoped key");
  }
  if (body.expiresAt && Date.parse(body.expiresAt) <= Date.now()) {
    throw new AppError("invalid_request", "expiresAt must be in the future");
  }
  const { key, hash, prefix } = await generateApiKey();
  const [row] = await c.var.db
    .insert(apiKeys)
    .values({
      id: newId("key"),
      userId: owner.id,
      name: body.name,
      keyHash: hash,
      prefix,
      scopes: [...new Set(body.scopes)],
      expiresAt: body.expiresAt ? new Date(body.expiresAt) : null,
    })
    .returning({
      id: apiKeys.id,
      userId: apiKeys.userId,
      name: apiKeys.name,
      prefix: apiKeys.prefix,
      scopes: apiKeys.scopes,
      expiresAt: apiKeys.expiresAt,
      createdAt: apiKeys.createdAt,
    });
  return c.json({ apiKey: row, key }, 201);
});
