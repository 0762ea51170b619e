/**
 * /api/rag through the worker's fetch handler: who may call what (no key, a runner's key, another
 * owner's project, a key limited to one project, admin-only routes), what bad input gets (a 400 with
 * the API's error body), and a search that still answers from full text when no model is configured
 * (this worker has no model key).
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { withDb } from "../../src/db/client.ts";
import { upsertDocument } from "../../src/rag/documents.ts";
import type { SearchResponse } from "../../src/rag/contract.ts";
import { configuredEmbedder } from "../../src/rag/embeddings.ts";
import { configuredVectorIndex } from "../../src/rag/services.ts";
import { adminKey, call, createUserWithKey, uniqueName } from "./helpers.ts";

async function project(key: string) {
  const res = await call("/api/projects", { method: "POST", key, json: { name: uniqueName("kb"), description: "x" } });
  expect(res.status).toBe(201);
  return (await res.json<{ project: { id: string; name: string } }>()).project;
}

interface ErrorBody {
  error: { code: string; message: string; requestId: string };
}

describe("/api/rag", () => {
  it("needs a user's key: none is a 401, a runner's key a 403", async () => {
    expect((await call("/api/rag/search?q=x")).status).toBe(401);
    const runnerKey = await call("/api/keys", { method: "POST", key: adminKey(), json: { name: "runner", scopes: ["runner"] } });
    expect(runnerKey.status).toBe(201);
    const { key } = await runnerKey.json<{ key: string }>();
    const refused = await call("/api/rag/search?q=x", { key });
    expect(refused.status).toBe(403);
    expect((await refused.json<ErrorBody>()).error.code).toBe("forbidden");
  });

  it("answers bad input with a 400 that names the field", async () => {
    const { key } = await createUserWithKey("bad-input");
    const cases: [string, RequestInit & { json?: unknown }, RegExp][] = [
      ["/api/rag/search?q=%20", {}, /q: the query is empty/],
      ["/api/rag/search?q=x&top_k=0", {}, /top_k/],
      ["/api/rag/search?q=x&scope=docs,nonsense", {}, /scope/],
      ["/api/rag/search?q=x&min_similarity=1.5", {}, /min_similarity/],
      ["/api/rag/documents", { method: "POST", json: { documents: [] } }, /documents/],
      ["/api/rag/documents", { method: "POST", json: { documents: [{ scope: "docs", source: "a.md" }] } }, /content/],
      ["/api/rag/documents", { method: "POST", json: { documents: [{ scope: "notes", source: "a.md", content: "x" }] } }, /scope/],
      ["/api/rag/documents", { method: "POST", json: { documents: [{ scope: "docs", source: "a.md", content: "é".repeat(50_000) }] } }, /at most 98304 bytes/],
      ["/api/rag/documents", { method: "POST", json: { documents: Array.from({ length: 101 }, (_, i) => ({ scope: "docs", source: `${i}.md`, content: "x" })) } }, /documents/],
      ["/api/rag/documents?scope=docs", { method: "DELETE" }, /source/],
      ["/api/rag/sync", { method: "POST", json: {} }, /project/],
    ];
    for (const [path, init, message] of cases) {
      const res = await call(path, { ...init, key });
      expect(res.status, path).toBe(400);
      const body = await res.json<ErrorBody>();
      expect(body.error.code).toBe("invalid_request");
      expect(body.error.message, path).toMatch(message);
      expect(body.error.requestId).toBeTruthy();
    }
    const notJson = await call("/api/rag/documents", { method: "POST", key, headers: { "content-type": "application/json" }, body: "{nope" });
    expect(notJson.status).toBe(400);
    expect((await notJson.json<ErrorBody>()).error.code).toBe("invalid_json");
  });

  it("keeps each user to their own projects, and a key limited to a project to that project", async () => {
    const alice = await createUserWithKey("alice");
    const bob = await createUserWithKey("bob");
    const bobs = await project(bob.key);
    const alices = await project(alice.key);
    expect((await call(`/api/rag/search?q=x&project=${bobs.name}`, { key: alice.key })).status).toBe(404);
    expect((await call(`/api/rag/documents?project=${bobs.id}`, { key: alice.key })).status).toBe(404);
    expect((await call("/api/rag/sync", { method: "POST", key: alice.key, json: { project: bobs.name } })).status).toBe(404);
    expect((await call("/api/rag/documents", { method: "POST", key: alice.key, json: { documents: [{ project: bobs.name, scope: "docs", source: "a.md", content: "x" }] } })).status).toBe(404);
    expect((await call(`/api/rag/documents?project=${bobs.name}&scope=docs&source=a.md`, { method: "DELETE", key: alice.key })).status).toBe(404);
    const limited = await call("/api/keys", { method: "POST", key: alice.key, json: { name: "one project", projectId: alices.id } });
    expect(limited.status).toBe(201);
    const { key } = await limited.json<{ key: string }>();
    expect((await call("/api/rag/documents", { method: "POST", key, json: { documents: [{ scope: "history", source: "chat:x", content: "x" }] } })).status).toBe(403);
    expect((await call(`/api/rag/search?q=x&project=${alices.name}&mode=fts`, { key })).status).toBe(200);
  });

  it("keeps failures, retries and stats to admins", async () => {
    const { key } = await createUserWithKey("not-admin");
    for (const [path, method] of [["/api/rag/failures", "GET"], ["/api/rag/stats", "GET"], ["/api/rag/failures/rif_x/retry", "POST"]] as const) {
      expect((await call(path, { method, key })).status, path).toBe(403);
    }
    expect((await call("/api/rag/failures/rif_nosuch/retry", { method: "POST", key: adminKey() })).status).toBe(404);
    const stats = await call("/api/rag/stats", { key: adminKey() });
    expect(stats.status).toBe(200);
    expect(await stats.json()).toMatchObject({ index: "local" });
  });

  it("searches full text without a model, and says so when a hybrid search had to do without vectors", async () => {
    const { key } = await createUserWithKey("no-model");
    const mine = await project(key);
    const word = `quokka${crypto.randomUUID().slice(0, 6)}`;
    await withDb(env, async (db) => {
      // Indexed here with a stand-in embedder: this worker has no model to embed with.
      const embedder = { model: () => Promise.resolve("test"), flush: () => Promise.resolve(), embed: (texts: readonly string[]) => Promise.resolve(texts.map(() => Array.from({ length: 512 }, (_, i) => (i === 0 ? 1 : 0)))) };
      expect(await configuredEmbedder(db, env).model()).toBe("text-embedding-3-small");
      await upsertDocument({ db, index: configuredVectorIndex(env), embedder }, { projectId: mine.id, ownerId: null, scope: "docs", source: "notes.md", title: "notes", kind: "markdown", content: `# Notes\n\nThe ${word} lives on an island.` });
    });
    const fts = await call(`/api/rag/search?q=${word}&mode=fts`, { key });
    expect(fts.status).toBe(200);
    expect((await fts.json<SearchResponse>()).results.map((r) => [r.source, r.matchedBy])).toEqual([["notes.md", "fts"]]);
    const hybrid = await (await call(`/api/rag/search?q=${word}`, { key })).json<SearchResponse>();
    expect(hybrid.results.map((r) => r.source)).toEqual(["notes.md"]);
    expect(hybrid.warnings[0]).toMatch(/vector search unavailable \(No model is configured/);
    const vector = await call(`/api/rag/search?q=${word}&mode=vector`, { key });
    expect(vector.status).toBe(409);
    const documents = await (await call(`/api/rag/documents?project=${mine.name}`, { key })).json<{ documents: { id: string; source: string; chunkCount: number }[] }>();
    expect(documents.documents.map((d) => [d.source, d.chunkCount])).toEqual([["notes.md", 1]]);
    const shown = await call(`/api/rag/documents/${documents.documents[0]?.id ?? ""}`, { key });
    expect((await shown.json<{ chunks: { heading: string }[] }>()).chunks.map((c) => c.heading)).toEqual(["Notes"]);
    const stranger = await createUserWithKey("stranger");
    expect((await call(`/api/rag/documents/${documents.documents[0]?.id ?? ""}`, { key: stranger.key })).status).toBe(404);
  });
});
