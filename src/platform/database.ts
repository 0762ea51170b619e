import { createMiddleware } from "hono/factory";
import { createDb } from "../db/client.ts";
import type { AppEnv } from "../lib/context.ts";

/**
 * Gives the request its own database pool (Workers may not share sockets across requests)
 * and closes it after the response is sent. The pool connects lazily, on the first query.
 */
export const database = createMiddleware<AppEnv>(async (c, next) => {
  const handle = createDb({ databaseUrl: c.env.DATABASE_URL, wsProxy: c.env.DB_WS_PROXY });
  c.set("db", handle.db);
  try {
    await next();
  } finally {
    c.executionCtx.waitUntil(handle.close().catch(() => undefined));
  }
});
