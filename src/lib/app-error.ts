import { HTTPException } from "hono/http-exception";
import { errorStatus, type ErrorCode } from "../shared/errors.ts";

/**
 * The one error type routes throw. `message` is public (it reaches the client);
 * `details` is optional structured help such as zod issues, also public.
 */
export class AppError extends HTTPException {
  readonly code: ErrorCode;
  readonly details: unknown;

  constructor(code: ErrorCode, message: string, options: { details?: unknown; cause?: unknown } = {}) {
    super(errorStatus[code], { message, cause: options.cause });
    this.code = code;
    this.details = options.details;
  }
}

/** Throws a 404 for a missing or foreign resource: the two must look the same to a caller. */
export function notFound(what: string): never {
  throw new AppError("not_found", `${what} not found`);
}
