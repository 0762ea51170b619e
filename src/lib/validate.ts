import { zValidator } from "@hono/zod-validator";
import type { ValidationTargets } from "hono";
import type { z } from "zod";
import { AppError } from "./app-error.ts";

/** What a zod validator hands its hook: the target it checked and zod's result. */
export type ValidationResult = { target: keyof ValidationTargets } & ({ success: true } | { success: false; error: { issues: readonly z.core.$ZodIssue[] } });

/**
 * Throws the API's one validation error for a failed result: a 400 `invalid_request` whose message
 * names each offending field (`Invalid <target>: <field>: <message>; …`) and whose details list them.
 * Shared by `validate` below and the OpenAPI routes' default hook (src/platform/openapi.ts).
 */
export function validationHook(result: ValidationResult): void {
  if (!result.success) {
    const issues = result.error.issues.map((issue) => ({
      path: issue.path.map(String).join("."),
      message: issue.message,
    }));
    const summary = issues.map((issue) => (issue.path ? `${issue.path}: ${issue.message}` : issue.message)).join("; ");
    throw new AppError("invalid_request", `Invalid ${result.target}: ${summary}`, { details: issues });
  }
}

/**
 * zod validation for a request part. A failure is a 400 `invalid_request` that names each
 * offending field; malformed JSON is a 400 `invalid_json` (raised by src/platform/json-body.ts).
 */
export function validate<T extends z.ZodType, Target extends keyof ValidationTargets>(target: Target, schema: T) {
  return zValidator(target, schema, (result) => validationHook({ ...result, target }));
}
