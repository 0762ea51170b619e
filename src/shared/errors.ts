import * as z from "zod";

/** Every error code the HTTP API can answer with; the set is closed so clients can switch on it. */
export const ErrorCode = z.enum([
  "invalid_request",
  "invalid_json",
  "unauthorized",
  "forbidden",
  "not_found",
  "conflict",
  "payload_too_large",
  "unsupported_media_type",
  "rate_limited",
  "internal_error",
  "db_unavailable",
  "upstream_unavailable",
  "budget_exceeded",
]);
export type ErrorCode = z.infer<typeof ErrorCode>;

/** HTTP status for each code: one place, so routes never pick statuses by hand. */
export const errorStatus = {
  invalid_request: 400,
  invalid_json: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  rate_limited: 429,
  internal_error: 500,
  db_unavailable: 503,
  /** An outside service we depend on (Telegram, say) could not be reached or answered with an error of its own. */
  upstream_unavailable: 502,
  budget_exceeded: 402,
} as const satisfies Record<ErrorCode, number>;

/** The body of every HTTP error: `{ error: { code, message, requestId } }`. */
export const ErrorBody = z.object({
  error: z.object({
    code: ErrorCode,
    message: z.string(),
    requestId: z.string(),
    details: z.unknown().optional(),
  }),
});
export type ErrorBody = z.infer<typeof ErrorBody>;
