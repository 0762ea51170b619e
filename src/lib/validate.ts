import { zValidator } from "@hono/zod-validator";
import type { ValidationTargets } from "hono";
import type { z } from "zod";
import { AppError } from "./app-error.ts";

/**
 * zod validation for a request part. A failure is a 400 `invalid_request` that names each
 * offending field; malformed JSON is a 400 `invalid_json` (raised in `json` below).
 */
export function validate<T extends z.ZodType, Target extends keyof ValidationTargets>(target: Target, schema: T) {
  return zValidator(target, schema, (result) => {
    if (!result.success) {
      const issues = result.error.issues.map((issue) => ({
        path: issue.path.map(String).join("."),
        message: issue.message,
      }));
      const summary = issues.map((issue) => (issue.path ? `${issue.path}: ${issue.message}` : issue.message)).join("; ");
      throw new AppError("invalid_request", `Invalid ${target}: ${summary}`, { details: issues });
    }
  });
}
