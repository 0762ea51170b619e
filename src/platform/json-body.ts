import { bodyLimit } from "hono/body-limit";
import { createMiddleware } from "hono/factory";
import { AppError } from "../lib/app-error.ts";
import type { AppEnv } from "../lib/context.ts";

export const MAX_BODY_BYTES = 1024 * 1024;

const limit = bodyLimit({
  maxSize: MAX_BODY_BYTES,
  onError: () => {
    throw new AppError("payload_too_large", `Request body is larger than ${MAX_BODY_BYTES} bytes`);
  },
});

/**
 * For requests with a body: at most 1 MiB, declared as JSON, and parseable. Parsing here
 * (Hono caches the result) turns malformed JSON into a 400 before any handler runs.
 */
export const jsonBody = createMiddleware<AppEnv>(async (c, next) => {
  if (c.req.method === "GET" || c.req.method === "HEAD" || c.req.method === "DELETE") return next();
  // A bodiless POST (e.g. …/cancel) has nothing to check; routes that need a body validate it.
  if (c.req.raw.body === null || c.req.header("content-length") === "0") return next();
  return limit(c, async () => {
    const type = c.req.header("content-type") ?? "";
    if (!/^application\/([\w.+-]+\+)?json\b/i.test(type)) {
      throw new AppError("unsupported_media_type", "Send the body as JSON with `Content-Type: application/json`");
    }
    try {
      await c.req.json();
    } catch {
      throw new AppError("invalid_json", "The request body is not valid JSON");
    }
    await next();
  });
});
