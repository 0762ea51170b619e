import type { Context, ErrorHandler, NotFoundHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import { isDbUnavailable } from "../db/client.ts";
import { AppError } from "../lib/app-error.ts";
import type { AppEnv } from "../lib/context.ts";
import { createLogger } from "../lib/log.ts";
import { RATE_LIMIT_PERIOD_SECONDS } from "./rate-limit.ts";
import { type ErrorBody, type ErrorCode, errorStatus } from "../shared/errors.ts";

function respond(c: Context<AppEnv>, code: ErrorCode, message: string, details?: unknown) {
  const body: ErrorBody = { error: { code, message, requestId: c.get("requestId") ?? "unknown" } };
  if (details !== undefined) body.error.details = details;
  // Every limit here counts over a minute: that is the longest a client has to wait.
  if (code === "rate_limited") c.header("Retry-After", String(RATE_LIMIT_PERIOD_SECONDS));
  return c.json(body, errorStatus[code]);
}

/** Statuses that Hono's own middleware raises, mapped onto our codes. */
const codeForStatus: Partial<Record<number, ErrorCode>> = {
  400: "invalid_request",
  401: "unauthorized",
  403: "forbidden",
  404: "not_found",
  413: "payload_too_large",
  415: "unsupported_media_type",
  429: "rate_limited",
};

/** The only thing a 500 says: what went wrong is in the logs, under the request id. */
export const INTERNAL_ERROR_MESSAGE = "Internal error; the request id identifies it in the logs";

/**
 * The one error handler: AppErrors answer with their code, a lost database with 503
 * `db_unavailable`, anything unknown (an `internal_error` AppError too) is logged in full and answered
 * with a generic 500 whose message says nothing of the cause.
 */
export const onError: ErrorHandler<AppEnv> = (err, c) => {
  if (err instanceof AppError && err.code !== "internal_error") return respond(c, err.code, err.message, err.details);
  if (isDbUnavailable(err)) {
    (c.var.log ?? createLogger("warn")).warn("database unavailable", { error: err });
    return respond(c, "db_unavailable", "The database is unavailable; nothing was changed. Retry shortly.");
  }
  if (err instanceof HTTPException) {
    const code = codeForStatus[err.status];
    if (code) return respond(c, code, err.message || code);
  }
  (c.var.log ?? createLogger("error")).error("unhandled error", {
    error: err,
    path: c.req.path,
  });
  return respond(c, "internal_error", INTERNAL_ERROR_MESSAGE);
};

export const onNotFound: NotFoundHandler<AppEnv> = (c) =>
  respond(c, "not_found", `No route for ${c.req.method} ${c.req.path}`);
