import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../lib/context.ts";
import { createLogger } from "../lib/log.ts";

/** Gives each request a logger carrying its request id, and logs one line when it ends. */
export const requestLog = createMiddleware<AppEnv>(async (c, next) => {
  const requestId = c.get("requestId");
  const log = createLogger(c.env.LOG_LEVEL, { requestId });
  c.set("log", log);
  const started = Date.now();
  await next();
  c.var.log.info("request", {
    method: c.req.method,
    path: c.req.path,
    status: c.res.status,
    ms: Date.now() - started,
  });
});
