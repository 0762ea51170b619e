import type { z } from "zod";
import { ErrorBody } from "../src/shared/errors.ts";
import { CliError, type CliConfig } from "./config.ts";

/** Describes why a request never got an answer, in words a user can act on. */
export function describeNetworkError(config: CliConfig, error: unknown): string {
  const cause = error instanceof Error && error.cause instanceof Error ? error.cause : error;
  const code = cause && typeof cause === "object" && "code" in cause ? String(cause.code) : "";
  const reason = code === "ECONNREFUSED" ? "connection refused" : code || (cause instanceof Error ? cause.message : String(cause));
  return `cannot reach Orchestrator at ${config.url}: ${reason}`;
}

/**
 * Calls the API and returns its JSON body as `schema` reads it (the contract in src/shared); any
 * failure, an answer of the wrong shape included, becomes a one-line CliError.
 */
export async function apiGet<S extends z.ZodType>(config: CliConfig, path: string, what: string, schema: S): Promise<z.infer<S>> {
  return apiCall(config, path, {}, what, schema);
}

async function apiCall<S extends z.ZodType>(config: CliConfig, path: string, init: RequestInit, what: string, schema: S): Promise<z.infer<S>> {
  let res: Response;
  try {
    res = await fetch(`${config.url}${path}`, { ...init, headers: { ...(init.headers as Record<string, string> | undefined), authorization: `Bearer ${config.apiKey}` } });
  } catch (error) {
    throw new CliError(describeNetworkError(config, error));
  }
  if (!res.ok) throw await responseError(res, what);
  const parsed = schema.safeParse(await res.json().catch(() => undefined));
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  throw new CliError(`${what}: the server's answer is not what this CLI expects (${issue ? `${issue.path.join(".")}: ${issue.message}` : "unreadable"}); is the CLI older than the server?`);
}

/** POSTs a JSON body and returns the answer as `schema` reads it; failures as for apiGet. */
export async function apiPost<S extends z.ZodType>(config: CliConfig, path: string, body: unknown, what: string, schema: S): Promise<z.infer<S>> {
  return apiCall(config, path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) }, what, schema);
}

export async function apiPut<S extends z.ZodType>(config: CliConfig, path: string, body: unknown, what: string, schema: S): Promise<z.infer<S>> {
  return apiCall(config, path, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify(body) }, what, schema);
}

/** Turns an error response into a CliError with the server's message. */
export async function responseError(res: Response, what: string): Promise<CliError> {
  const text = await res.text();
  let message = text.slice(0, 200);
  try {
    message = ErrorBody.parse(JSON.parse(text)).error.message;
  } catch {
    // Not our error format (a proxy in between?): show the start of the body.
  }
  if (res.status === 401) return new CliError(`API key rejected: ${message}`);
  if (res.status === 404) return new CliError(`${what} not found`);
  return new CliError(`${what}: HTTP ${res.status}: ${message}`);
}
