/**
 * The HTTP API described as OpenAPI: every `/api` route is an `OpenAPIHono` route built from its zod
 * schemas (validated by those same schemas), and the app serves the document at `GET /api/openapi.json`
 * and a reference page at `GET /api/docs`. The helpers here keep each route's description short.
 */
import { OpenAPIHono, type z } from "@hono/zod-openapi";
import { Scalar } from "@scalar/hono-api-reference";
import { ApiKeyView, HubStatus, JobView, ServerView, TaskView } from "../shared/api.ts";
import { DeploymentView, SecretView } from "../shared/deploys.ts";
import { ErrorBody } from "../shared/errors.ts";
import { TaskEvent } from "../shared/events.ts";
import { TelegramBotView } from "../shared/telegram-bots.ts";
import type { AppEnv } from "../lib/context.ts";
import { validationHook } from "../lib/validate.ts";

/** package.json's version (importing the JSON into workerd is more trouble than it is worth). */
export const API_VERSION = "0.1.0";

/** Where the docs page's script is: a vendored copy of @scalar/api-reference's standalone bundle in public/. */
export const SCALAR_SCRIPT = "/scalar/standalone.js";

/**
 * A router for `/api` routes. Its default hook fails validation exactly as `validate()` does: a 400
 * `invalid_request` naming each field, in the API's one error body.
 */
export function apiRouter() {
  return new OpenAPIHono<AppEnv>({ defaultHook: validationHook });
}

/** What every route's description starts with: its area and the key it needs. */
export function apiDoc<const Tag extends string>(tag: Tag) {
  return { tags: [tag], security: [{ bearer: [] }] };
}

/**
 * `schema` under a name of its own in the document (`#/components/schemas/<name>`). It is cloned
 * first: a zod 4 schema copies `.openapi()` from the prototype when it is made, so one made before
 * @hono/zod-openapi was loaded (the shared views, say, in some import orders) has none.
 */
export function named<T extends z.ZodType>(schema: T, name: string): T {
  return schema.clone().openapi(name);
}

const ErrorSchema = named(ErrorBody, "ErrorBody");

/** The views that several routes answer with, named once so that the document refers to them. */
export const views = {
  Task: named(TaskView, "Task"),
  TaskEvent: named(TaskEvent, "TaskEvent"),
  Server: named(ServerView, "Server"),
  HubStatus: named(HubStatus, "HubStatus"),
  Job: named(JobView, "Job"),
  ApiKey: named(ApiKeyView, "ApiKey"),
  Deployment: named(DeploymentView, "Deployment"),
  Secret: named(SecretView, "Secret"),
  TelegramBot: named(TelegramBotView, "TelegramBot"),
};

const ERROR_DESCRIPTIONS = {
  400: "The request is invalid: `invalid_request` names each field that failed (with `details`), `invalid_json` a body that does not parse",
  401: "No API key, or one that is invalid, revoked or expired (`unauthorized`)",
  402: "The project's or the user's model budget is used up (`budget_exceeded`)",
  403: "The key may not do this (`forbidden`)",
  404: "No such resource, or not one the key may see (`not_found`)",
  409: "The resource is not in a state that allows this (`conflict`)",
  413: "The body is larger than 1 MiB (`payload_too_large`)",
  415: "The body is not sent as JSON (`unsupported_media_type`)",
  429: "Too many requests for this key, or failed sign-ins from this address; retry after `Retry-After` seconds (`rate_limited`)",
  502: "An outside service (Telegram, GitHub…) failed (`upstream_unavailable`)",
  503: "The database is unavailable; nothing was changed (`db_unavailable`)",
} as const;
type ErrorStatus = keyof typeof ERROR_DESCRIPTIONS;
type ErrorResponse = { description: string; content: { "application/json": { schema: typeof ErrorSchema } } };

/** What every `/api` route can answer: the key check (401, 429) and the database (503). */
const EVERY_ROUTE = [401, 429, 503] as const;
type Answers<S extends ErrorStatus[]> = { [K in S[number] | (typeof EVERY_ROUTE)[number]]: ErrorResponse };

/** The error answers a route gives besides those every route can, all in the one error body. */
export function errors<const S extends ErrorStatus[]>(...statuses: S): Answers<S> {
  const all: ErrorStatus[] = [...statuses, ...EVERY_ROUTE].sort((a, b) => a - b);
  return Object.fromEntries(all.map((status) => [status, { description: ERROR_DESCRIPTIONS[status], content: { "application/json": { schema: ErrorSchema } } }])) as Answers<S>;
}

/** A JSON request body, validated by `schema` (always: a bodiless request is validated as `{}`, as before). */
export function jsonBody<T extends z.ZodType>(schema: T, description?: string) {
  return { required: true, content: { "application/json": { schema } }, ...(description ? { description } : {}) };
}

/** A JSON response described by `schema`. */
export function jsonResponse<T extends z.ZodType>(schema: T, description: string) {
  return { description, content: { "application/json": { schema } } };
}

/**
 * Serves the document and the docs page: mounted before the `/api/*` auth middleware, as they are
 * documentation and need no key. The document is built once, on first request, from every route
 * mounted on `app` by then.
 */
export function mountApiDocs(app: OpenAPIHono<AppEnv>): void {
  app.openAPIRegistry.registerComponent("securitySchemes", "bearer", {
    type: "http",
    scheme: "bearer",
    description: "An API key (`ork_…`), as `Authorization: Bearer <key>`. Admins issue them (`POST /api/keys`); the bootstrap admin key is the ADMIN_API_KEY secret.",
  });
  let document: ReturnType<typeof app.getOpenAPI31Document> | undefined;
  app.get("/api/openapi.json", (c) => {
    document ??= app.getOpenAPI31Document({
      openapi: "3.1.0",
      info: {
        title: "Orchestrator API",
        version: API_VERSION,
        description: "Projects, tasks and their live event streams, servers and their runners' jobs, deploys, keys, users, usage, Telegram, incidents and the knowledge index. Every error answers with `{ error: { code, message, requestId, details? } }`.",
      },
      tags: [
        { name: "projects", description: "Owner-scoped projects and their engineering runs" },
        { name: "changes", description: "Change requests on a built project (a branch, a pull request, ship or discard), and its checkpoints with undo" },
        { name: "tasks", description: "Tasks, their event history, and live streams" },
        { name: "servers", description: "Servers, their runners' enrollment and the jobs sent to them (admin)" },
        { name: "deploys", description: "Deploys, rollbacks, releases, secrets and the services a server runs" },
        { name: "keys", description: "API keys" },
        { name: "users", description: "Users (admin)" },
        { name: "usage", description: "Model spend" },
        { name: "telegram", description: "The Telegram bot pool and outbox" },
        { name: "incidents", description: "What needs an admin (admin)" },
        { name: "chat", description: "The Product Owner's web console" },
        { name: "rag", description: "The knowledge index: hybrid search, documents, ingestion" },
      ],
    });
    return c.json(document);
  });
  // Offline by design: our own copy of the script, no web fonts, no telemetry, and none of the
  // hosted extras (AI agent, MCP, the toolbar's share/deploy/SDK links) that talk to scalar.com.
  app.get(
    "/api/docs",
    Scalar({
      url: "/api/openapi.json",
      cdn: SCALAR_SCRIPT,
      pageTitle: "Orchestrator API",
      withDefaultFonts: false,
      telemetry: false,
      agent: { disabled: true },
      mcp: { disabled: true },
      showDeveloperTools: "never",
      authentication: { preferredSecurityScheme: "bearer" },
    }),
  );
}
