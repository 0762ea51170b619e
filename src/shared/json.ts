/**
 * Reading JSON that came from another process (a socket frame, a header, a stored step result)
 * through its zod schema: the value as the schema makes it, or why not in words. Never a cast.
 */
import type { z } from "zod";

/** zod's issues as one line: `path: message; …` (`root` names a value without a path). */
export function issuesText(error: z.ZodError, root = "value"): string {
  return error.issues.map((issue) => `${issue.path.map(String).join(".") || root}: ${issue.message}`).join("; ");
}

export type JsonParse<T> = { success: true; data: T } | { success: false; error: string; data?: undefined };

/** `text` parsed as JSON and read through `schema`; `error` says why it is neither. */
export function parseJson<S extends z.ZodType>(schema: S, text: string, root = "value"): JsonParse<z.output<S>> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { success: false, error: "not JSON" };
  }
  const parsed = schema.safeParse(json);
  return parsed.success ? { success: true, data: parsed.data } : { success: false, error: issuesText(parsed.error, root) };
}
