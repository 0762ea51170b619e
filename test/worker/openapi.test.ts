/**
 * The API's OpenAPI document (GET /api/openapi.json) and docs page (GET /api/docs): the document
 * describes every /api route the app has, from the routes' own zod schemas, and describing them did
 * not change how a bad request is answered.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
// Before the app on purpose: the shared views are then made before @hono/zod-openapi has loaded,
// and naming them in the document must not depend on that order.
import { TaskView } from "../../src/shared/api.ts";
import { app } from "../../src/worker.ts";
import { adminKey, call, createUserWithKey } from "./helpers.ts";

type Schema = { type?: string | string[]; properties?: Record<string, Schema>; required?: string[]; $ref?: string; enum?: unknown[]; pattern?: string };
type Parameter = { name: string; in: string; required?: boolean; schema?: Schema };
type Operation = {
  tags?: string[];
  summary?: string;
  security?: Record<string, string[]>[];
  parameters?: Parameter[];
  requestBody?: { required?: boolean; content: Record<string, { schema: Schema }> };
  responses: Record<string, { description: string; content?: Record<string, { schema: Schema }> }>;
};
type Document = {
  openapi: string;
  info: { title: string; version: string };
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, Schema>; securitySchemes: Record<string, { type: string; scheme?: string }> };
};
type ErrorJson = { error: { code: string; message: string; requestId: string; details?: { path: string; message: string }[] } };

const TAGS = ["projects", "changes", "tasks", "servers", "deploys", "keys", "users", "usage", "telegram", "incidents", "chat", "rag"];
/** The documentation's own routes: they describe the API, they are not part of it. */
const DOC_ROUTES = new Set(["GET /api/openapi.json", "GET /api/docs"]);

async function fetchDocument(): Promise<Document> {
  const res = await call("/api/openapi.json");
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/^application\/json/);
  return res.json<Document>();
}

/** Every method + path the app routes under /api (one entry per handler, so deduplicated), in OpenAPI's `{param}` form. */
function apiRoutes(): { method: string; path: string }[] {
  const seen = new Map<string, { method: string; path: string }>();
  for (const route of app.routes) {
    if (route.method === "ALL" || !route.path.startsWith("/api/")) continue;
    if (DOC_ROUTES.has(`${route.method} ${route.path}`)) continue;
    const path = route.path.replace(/:([A-Za-z0-9_]+)/g, "{$1}");
    seen.set(`${route.method} ${path}`, { method: route.method.toLowerCase(), path });
  }
  return [...seen.values()];
}

const body = (op: Operation | undefined) => op?.requestBody?.content["application/json"]?.schema;
const param = (op: Operation | undefined, name: string, where: string) => op?.parameters?.find((p) => p.name === name && p.in === where);

describe("GET /api/openapi.json", () => {
  it("is an OpenAPI 3.x document, served without a key, with a bearer security scheme", async () => {
    expect(TaskView.shape.id).toBeTruthy();
    const doc = await fetchDocument();
    expect(doc.openapi).toMatch(/^3\.\d+\.\d+$/);
    expect(doc.info).toMatchObject({ title: "Orchestrator API", version: "0.1.0" });
    expect(Object.keys(doc.paths).length).toBeGreaterThan(20);
    expect(doc.components.securitySchemes.bearer).toMatchObject({ type: "http", scheme: "bearer" });
    expect(doc.components.schemas.ErrorBody?.properties?.error?.required).toEqual(expect.arrayContaining(["code", "message", "requestId"]));
    // A key is not needed, and a bad one is not even looked at.
    expect((await call("/api/openapi.json", { key: "ork_not_a_real_key" })).status).toBe(200);
  });

  it("describes every /api route the app has, with its method, area, key and error body", async () => {
    const doc = await fetchDocument();
    const routes = apiRoutes();
    expect(routes.length).toBeGreaterThan(40);
    const missing = routes.filter(({ method, path }) => !doc.paths[path]?.[method]).map(({ method, path }) => `${method.toUpperCase()} ${path}`);
    expect(missing).toEqual([]);
    // And nothing is described that the app does not route.
    const described = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((method) => `${method} ${path}`));
    expect(described.sort()).toEqual(routes.map(({ method, path }) => `${method} ${path}`).sort());

    for (const { method, path } of routes) {
      const op = doc.paths[path]?.[method];
      const where = `${method.toUpperCase()} ${path}`;
      expect(op?.security, where).toEqual([{ bearer: [] }]);
      expect(op?.tags?.length, where).toBe(1);
      expect(TAGS, where).toContain(op?.tags?.[0]);
      expect(op?.summary, where).toBeTruthy();
      expect(op?.responses["401"]?.content?.["application/json"]?.schema.$ref, where).toBe("#/components/schemas/ErrorBody");
      expect(Object.keys(op?.responses ?? {}).some((status) => /^[12]\d\d$/.test(status)), where).toBe(true);
      // Every {param} in the path is a declared, required path parameter.
      for (const [, name] of path.matchAll(/\{([^}]+)\}/g)) expect(param(op, name as string, "path")?.required, `${where} {${name}}`).toBe(true);
    }
  });

  it("takes its request schemas from the routes' zod schemas", async () => {
    const doc = await fetchDocument();
    const createProject = body(doc.paths["/api/projects"]?.post);
    expect(createProject?.properties?.name?.pattern).toBeTruthy();
    expect(createProject?.required).toEqual(["name"]);
    expect(Object.keys(createProject?.properties ?? {})).toEqual(expect.arrayContaining(["name", "description", "spec", "config", "ownerId"]));
    expect(doc.paths["/api/projects"]?.post?.requestBody?.required).toBe(true);

    const listProjects = doc.paths["/api/projects"]?.get;
    expect(param(listProjects, "limit", "query")).toBeTruthy();
    expect(param(listProjects, "status", "query")?.schema?.enum).toEqual(expect.arrayContaining(["draft", "deployed"]));

    expect(Object.keys(body(doc.paths["/api/projects/{id}"]?.patch)?.properties ?? {})).toEqual(expect.arrayContaining(["description", "repositoryUrl", "testCommand"]));
    expect(body(doc.paths["/api/servers"]?.post)?.required).toEqual(expect.arrayContaining(["handle", "host"]));
    const createJob = doc.paths["/api/servers/{handle}/jobs"]?.post;
    expect(param(createJob, "wait", "query")).toBeTruthy();
    expect(body(createJob)?.properties?.type?.enum).toEqual(expect.arrayContaining(["noop", "docker.run"]));
    expect(body(doc.paths["/api/keys"]?.post)?.properties?.scopes).toBeTruthy();
    expect(Object.keys(body(doc.paths["/api/projects/{id}/secrets"]?.put)?.properties ?? {})).toEqual(["secrets"]);
    expect(param(doc.paths["/api/usage"]?.get, "by", "query")?.schema?.enum).toEqual(["user", "project", "agent", "model"]);
    expect(body(doc.paths["/api/tasks/{id}/events"]?.post)?.$ref).toBe("#/components/schemas/TaskEventInput");
    expect(doc.components.schemas.TaskEventInput?.required).toEqual(expect.arrayContaining(["type", "message"]));

    // Responses name the shared views.
    const task = doc.paths["/api/tasks/{id}"]?.get?.responses["200"]?.content?.["application/json"]?.schema;
    expect(task?.properties?.task?.$ref).toBe("#/components/schemas/Task");
    expect(doc.paths["/api/servers/{handle}"]?.get?.responses["200"]?.content?.["application/json"]?.schema.properties?.server?.$ref).toBe("#/components/schemas/Server");
    expect(Object.keys(doc.paths["/api/tasks/{id}/events"]?.get?.responses["200"]?.content ?? {})).toEqual(["application/json", "text/event-stream"]);
  });
});

describe("validation through the described routes", () => {
  it("answers a bad body with the same 400 invalid_request, naming each field, with details", async () => {
    const { key } = await createUserWithKey();
    const res = await call("/api/projects", { method: "POST", key, json: { name: "Bad_Name", owner: "x" } });
    expect(res.status).toBe(400);
    const { error } = await res.json<ErrorJson>();
    expect(error.code).toBe("invalid_request");
    expect(error.requestId).toBeTruthy();
    expect(error.details).toEqual(
      expect.arrayContaining([
        { path: "name", message: "must be 3-40 characters of a-z, 0-9 and '-', starting with a letter" },
        { path: "", message: expect.stringContaining("owner") as string },
      ]),
    );
    const summary = (error.details ?? []).map((issue) => (issue.path ? `${issue.path}: ${issue.message}` : issue.message)).join("; ");
    expect(error.message).toBe(`Invalid json: ${summary}`);
  });

  it("names the part that failed: query, param", async () => {
    const query = await call("/api/projects?limit=0", { key: adminKey() });
    expect(query.status).toBe(400);
    const queryError = (await query.json<ErrorJson>()).error;
    expect(queryError.code).toBe("invalid_request");
    expect(queryError.message).toMatch(/^Invalid query: limit: /);
    expect(queryError.details?.[0]?.path).toBe("limit");

    const param = await call("/api/servers/NOT_A_HANDLE", { key: adminKey() });
    expect(param.status).toBe(400);
    expect((await param.json<ErrorJson>()).error.message).toMatch(/^Invalid param: handle: /);
  });

  it("still answers malformed JSON with invalid_json, and checks the key before the body", async () => {
    const res = await call("/api/projects", { method: "POST", key: adminKey(), headers: { "content-type": "application/json" }, body: "{" });
    expect(res.status).toBe(400);
    expect((await res.json<ErrorJson>()).error.code).toBe("invalid_json");
    const anonymous = await call("/api/projects", { method: "POST", json: { name: "Bad_Name" } });
    expect(anonymous.status).toBe(401);
  });
});

describe("GET /api/docs", () => {
  it("is the Scalar reference page, loading its script from our own assets (no CDN)", async () => {
    const res = await call("/api/docs");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/html/);
    const html = await res.text();
    expect(html).toContain('<script src="/scalar/standalone.js"');
    expect(html).toContain('"url": "/api/openapi.json"');
    expect(html).not.toMatch(/https?:\/\//);
    const script = await env.ASSETS.fetch("http://assets/scalar/standalone.js");
    expect(script.status).toBe(200);
    expect(await script.text()).toContain("createApiReference");
  });
});
