/**
 * The knowledge index through the real path: POST /api/rag/documents → the rag-ingest queue
 * (wrangler dev's local queue) → its consumer → chunking, embeddings from the model stand-in
 * (hashed bag-of-words vectors, so cosine follows shared words) → the VectorStore Durable Object and
 * Postgres full text; then GET /api/rag/search, the `orchestrator search` CLI and the Product Owner's
 * search_knowledge tool over the chat socket. A database of its own, so counts are this file's.
 */
import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { ChatSession } from "../../cli/chat.ts";
import type { LocalDatabase } from "../../scripts/lib/local-db.ts";
import { waitFor } from "../../scripts/lib/processes.ts";
import { ROOT, type Stack, startStack } from "../../scripts/lib/local-stack.ts";
import { createDb } from "../../src/db/client.ts";
import type { DocumentView, SearchResponse } from "../../src/rag/contract.ts";
import { GitHubServer } from "../../standins/github-server.ts";
import { ownDatabase } from "../support/shared.ts";
import { type ChatRequest, messageText, ModelServer } from "../../standins/model-server.ts";

const MODEL_KEY = `sk-rag-${randomBytes(8).toString("hex")}`;
let stack: Stack;
let model: ModelServer;
let github: GitHubServer;
let database: LocalDatabase;

interface Person {
  userId: string;
  key: string;
  project: { id: string; name: string };
}
let alice: Person;
let bob: Person;

async function person(name: string): Promise<Person> {
  const user = await stack.api<{ user: { id: string } }>("/api/users", { json: { name } });
  const key = await stack.api<{ key: string }>("/api/keys", { json: { userId: user.body.user.id, name: "rag", scopes: ["user"] } });
  const project = await stack.api<{ project: { id: string; name: string } }>("/api/projects", { json: { name: `${name}-${randomBytes(3).toString("hex")}`, description: `${name}'s project` }, key: key.body.key });
  expect(project.status).toBe(201);
  return { userId: user.body.user.id, key: key.body.key, project: project.body.project };
}

interface Doc {
  project?: string;
  scope: "docs" | "code" | "history" | "logs";
  source: string;
  title?: string;
  content: string;
  kind?: "markdown" | "code" | "text";
}

async function ingest(who: Person, documents: Doc[]): Promise<void> {
  const res = await stack.api("/api/rag/documents", { json: { documents }, key: who.key });
  expect(res.status, JSON.stringify(res.body)).toBe(202);
}

async function documents(who: Person, query = ""): Promise<DocumentView[]> {
  const res = await stack.api<{ documents: DocumentView[] }>(`/api/rag/documents?limit=500${query}`, { key: who.key });
  expect(res.status).toBe(200);
  return res.body.documents;
}

/** Waits until the document `source` is indexed with a hash other than `notHash`. */
async function indexed(who: Person, source: string, notHash = ""): Promise<DocumentView> {
  let seen: DocumentView[] = [];
  return waitFor(
    async () => {
      seen = await documents(who);
      return seen.find((doc) => doc.source === source && doc.contentHash !== notHash);
    },
    60_000,
    () => `${source} not indexed: ${JSON.stringify(seen.map((doc) => [doc.source, doc.contentHash.slice(0, 8)]))}\n${stack.process.output().slice(-3000)}`,
  );
}

async function chunksOf(who: Person, documentId: string) {
  const res = await stack.api<{ chunks: { id: string; ordinal: number; heading: string; text: string; tokens: number }[] }>(`/api/rag/documents/${documentId}`, { key: who.key });
  expect(res.status).toBe(200);
  return res.body.chunks;
}

async function search(who: Person | null, params: Record<string, string | number>): Promise<{ status: number; body: SearchResponse }> {
  const query = new URLSearchParams(Object.entries(params).map(([key, value]) => [key, String(value)]));
  return stack.api<SearchResponse>(`/api/rag/search?${query.toString()}`, who ? { key: who.key } : {});
}

const embeddingInputs = (since: number) =>
  model.requests
    .slice(since)
    .filter((request) => request.path === "/v1/embeddings")
    .flatMap((request) => {
      const input = (request.body as { input?: unknown }).input;
      return Array.isArray(input) ? input.map(String) : [String(input)];
    });

const stats = async () => (await stack.api<{ index: string; vectors: number; chunks: number; documents: number; failures: number }>("/api/rag/stats")).body;

const RUNBOOK = `# Billing runbook

## Restarting

To restart the billing daemon safely, drain its queue first, then run systemctl restart billing.

## Quotas

When a customer goes over their plan the API answers with ERR_QUOTA_4471 and a link to the plans page; support can lift the limit for a day from the admin console.`;

beforeAll(async () => {
  database = await ownDatabase("rag");
  model = new ModelServer({ apiKey: MODEL_KEY });
  await model.start();
  github = new GitHubServer();
  await github.start();
  stack = await startStack({
    databaseUrl: database.databaseUrl,
    dbWsProxy: database.wsProxy,
    adminKey: inject("adminApiKey"),
    vars: {
      OPENAI_BASE_URL: model.baseUrl,
      OPENAI_API_KEY: MODEL_KEY,
      // Three deliveries (waiting 2 s, then 4 s) before a message is recorded as failed.
      RAG_INGEST_MAX_ATTEMPTS: "3",
      GITHUB_API_URL: github.url,
      GITHUB_APP_ID: String(github.appId),
      GITHUB_INSTALLATION_ID: String(github.installationId),
      GITHUB_APP_PRIVATE_KEY: github.appPrivateKeyPem,
    },
  });
  alice = await person("alice");
  bob = await person("bob");
  await ingest(alice, [{ project: alice.project.name, scope: "docs", source: "runbook.md", content: RUNBOOK }]);
  await indexed(alice, "runbook.md");
}, 180_000);

afterAll(async () => {
  await stack?.stop();
  await model?.stop();
  await github?.stop();
  await database?.stop();
});

describe("ingestion", () => {
  it("chunks on headings, with each chunk's headings, and records the embeddings' usage", async () => {
    const [doc] = (await documents(alice)).filter((d) => d.source === "runbook.md");
    if (!doc) throw new Error("runbook.md is not indexed");
    const chunks = await chunksOf(alice, doc.id);
    expect(chunks.map((chunk) => chunk.heading)).toEqual(["Billing runbook › Restarting", "Billing runbook › Quotas"]);
    expect(chunks[1]?.text).toContain("ERR_QUOTA_4471");
    const usage = await stack.api<{ usage: { key: string; promptTokens: number }[] }>("/api/usage?by=agent");
    expect(usage.body.usage.find((row) => row.key === "embeddings")?.promptTokens).toBeGreaterThan(0);
  });

  it("does not embed an unchanged document again", async () => {
    const before = await indexed(alice, "runbook.md");
    const mark = model.requests.length;
    // The marker comes in the same batch, after it: once the marker is indexed, the runbook has been seen.
    await ingest(alice, [
      { project: alice.project.name, scope: "docs", source: "runbook.md", content: RUNBOOK },
      { project: alice.project.name, scope: "docs", source: "marker-1.md", content: "A marker document about lighthouses." },
    ]);
    await indexed(alice, "marker-1.md");
    const inputs = embeddingInputs(mark);
    expect(inputs.some((input) => input.includes("lighthouses"))).toBe(true);
    expect(inputs.some((input) => input.includes("billing"))).toBe(false);
    expect((await indexed(alice, "runbook.md")).contentHash).toBe(before.contentHash);
  });

  it("replaces exactly the chunks of an edited document, in both indexes", async () => {
    const sections = (topic: string, n: number) => Array.from({ length: n }, (_, i) => `## Part ${i + 1}\n\nThe ${topic} part ${i + 1} explains ${topic} step ${i + 1} in some detail.`).join("\n\n");
    await ingest(alice, [
      { project: alice.project.name, scope: "docs", source: "guide.md", content: `# Guide\n\n${sections("harbour", 3)}` },
      { project: alice.project.name, scope: "docs", source: "other.md", content: `# Other\n\n${sections("orchard", 2)}` },
    ]);
    const guide = await indexed(alice, "guide.md");
    const other = await indexed(alice, "other.md");
    const guideBefore = await chunksOf(alice, guide.id);
    const otherBefore = await chunksOf(alice, other.id);
    expect(guideBefore).toHaveLength(3);

    await ingest(alice, [{ project: alice.project.name, scope: "docs", source: "guide.md", content: `# Guide\n\n${sections("harbour", 2)}\n\n## Part 3\n\nThe glacier part replaces the third one.` }]);
    const edited = await indexed(alice, "guide.md", guide.contentHash);
    const guideAfter = await chunksOf(alice, edited.id);
    expect(guideAfter).toHaveLength(3);
    expect(guideAfter.map((chunk) => chunk.id).filter((id) => guideBefore.some((old) => old.id === id))).toEqual([]);
    // The other document is untouched: same version, same chunks.
    expect((await indexed(alice, "other.md")).contentHash).toBe(other.contentHash);
    expect(await chunksOf(alice, other.id)).toEqual(otherBefore);
    // The old third part is gone from full text and from the vectors; the new one is in both.
    for (const mode of ["fts", "vector"]) {
      const old = await search(alice, { q: "harbour part 3 explains harbour step 3", mode, min_similarity: 0.5 });
      expect(old.body.results.map((r) => r.chunkId).filter((id) => guideBefore.some((c) => c.id === id))).toEqual([]);
      const fresh = await search(alice, { q: "glacier part replaces third", mode, min_similarity: 0.3 });
      expect(fresh.body.results[0]?.chunkId, mode).toBe(guideAfter[2]?.id);
    }
    // Every chunk has exactly one vector: nothing stale was left in the vector index.
    const counts = await stats();
    expect(counts.vectors).toBe(counts.chunks);
  });

  it("removes a deleted document from both indexes", async () => {
    await ingest(alice, [{ project: alice.project.name, scope: "docs", source: "doomed.md", content: "# Doomed\n\nThe zeppelin hangar closes at dusk." }]);
    await indexed(alice, "doomed.md");
    expect((await search(alice, { q: "zeppelin hangar", mode: "fts" })).body.results).toHaveLength(1);
    const res = await stack.api(`/api/rag/documents?project=${alice.project.name}&scope=docs&source=doomed.md`, { method: "DELETE", key: alice.key });
    expect(res.status).toBe(202);
    await waitFor(async () => ((await documents(alice)).some((doc) => doc.source === "doomed.md") ? undefined : true), 30_000, () => "doomed.md is still indexed");
    for (const mode of ["fts", "vector"]) expect((await search(alice, { q: "zeppelin hangar closes dusk", mode, min_similarity: 0.2 })).body.results, mode).toEqual([]);
    const counts = await stats();
    expect(counts.vectors).toBe(counts.chunks);
  });
});

describe("hybrid search", () => {
  it("finds an exact identifier that the vectors alone miss", async () => {
    const vectorOnly = await search(alice, { q: "ERR_QUOTA_4471", mode: "vector" });
    expect(vectorOnly.status).toBe(200);
    expect(vectorOnly.body.results.some((r) => r.text.includes("ERR_QUOTA_4471"))).toBe(false);
    const hybrid = await search(alice, { q: "ERR_QUOTA_4471" });
    expect(hybrid.body.results[0]).toMatchObject({ source: "runbook.md", heading: "Billing runbook › Quotas", scope: "docs", project: { name: alice.project.name } });
    expect(hybrid.body.results[0]?.matchedBy).toBe("fts");
    expect(hybrid.body.results[0]?.score).toBeGreaterThan(0);
    expect(hybrid.body.budget).toEqual({ topK: 5, maxTokens: 2000, minSimilarity: 0.7 });
  });

  it("finds a paraphrase that full text alone misses", async () => {
    // "reboot" is in no document: full text (every word must match) finds nothing; the vectors share billing, daemon, safely.
    // The stand-in's bag-of-words cosine for four words against a chunk of twenty is about 0.5, under the 0.7 default.
    const q = "reboot the billing daemon safely";
    const ftsOnly = await search(alice, { q, mode: "fts" });
    expect(ftsOnly.body.results).toEqual([]);
    const hybrid = await search(alice, { q, min_similarity: 0.4 });
    expect(hybrid.body.results[0]).toMatchObject({ heading: "Billing runbook › Restarting", matchedBy: "vector" });
    expect(hybrid.body.results[0]?.similarity).toBeGreaterThanOrEqual(0.4);
    expect(hybrid.body.results[0]?.ftsRank).toBeNull();
  });

  it("says both when both retrievers found a result", async () => {
    const hybrid = await search(alice, { q: "restart billing daemon", min_similarity: 0.3 });
    expect(hybrid.body.results[0]).toMatchObject({ heading: "Billing runbook › Restarting", matchedBy: "both" });
  });

  it("never shows another owner's documents", async () => {
    await ingest(bob, [{ project: bob.project.name, scope: "docs", source: "secret-plan.md", content: "# Plan\n\nThe zanzibar expansion ships in spring with ERR_QUOTA_4471 handling." }]);
    await indexed(bob, "secret-plan.md");
    for (const mode of ["hybrid", "fts", "vector"]) {
      const mine = await search(alice, { q: "zanzibar expansion spring", mode, min_similarity: 0 });
      expect(mine.body.results.filter((r) => r.source === "secret-plan.md"), mode).toEqual([]);
    }
    const identifier = await search(alice, { q: "ERR_QUOTA_4471", top_k: 50, min_similarity: -1 });
    expect(identifier.body.results.every((r) => r.project?.id === alice.project.id)).toBe(true);
    expect((await search(alice, { q: "zanzibar", project: bob.project.name })).status).toBe(404);
    expect((await documents(alice)).some((doc) => doc.source === "secret-plan.md")).toBe(false);
    // Its owner and an admin find it.
    expect((await search(bob, { q: "zanzibar expansion" })).body.results[0]?.source).toBe("secret-plan.md");
    expect((await search(null, { q: "zanzibar expansion" })).body.results[0]?.source).toBe("secret-plan.md");
  });

  it("keeps a user's own project-less documents (conversation summaries) to them", async () => {
    await ingest(alice, [{ scope: "history", source: "chat:web", content: "We agreed the walrus dashboard ships after the audit." }]);
    await indexed(alice, "chat:web");
    expect((await search(alice, { q: "walrus dashboard", scope: "history" })).body.results[0]?.scope).toBe("history");
    expect((await search(bob, { q: "walrus dashboard", min_similarity: -1, top_k: 50 })).body.results.filter((r) => r.source === "chat:web")).toEqual([]);
    expect((await search(alice, { q: "walrus dashboard", scope: "docs" })).body.results).toEqual([]);
  });

  it("respects the token budget and top_k", async () => {
    const paragraph = (i: number) => `Section ${i} of the kestrel manual: the kestrel nests, feeds and hunts in section ${i}. ${"It hovers over fields while it watches for voles. ".repeat(12)}`;
    await ingest(alice, [{ project: alice.project.name, scope: "docs", source: "kestrel.md", content: Array.from({ length: 8 }, (_, i) => `## Part ${i}\n\n${paragraph(i)}`).join("\n\n") }]);
    await indexed(alice, "kestrel.md");
    const wide = await search(alice, { q: "kestrel manual", top_k: 8, max_tokens: 32000 });
    expect(wide.body.results.length).toBe(8);
    const each = wide.body.results[0]?.tokens ?? 0;
    expect(each).toBeGreaterThan(50);
    const budget = Math.floor(each * 2.5);
    const tight = await search(alice, { q: "kestrel manual", top_k: 8, max_tokens: budget });
    expect(tight.body.tokens).toBeLessThanOrEqual(budget);
    expect(tight.body.results.reduce((sum, r) => sum + r.tokens, 0)).toBe(tight.body.tokens);
    expect(tight.body.results.length).toBe(2);
    expect(tight.body.overBudget).toBeGreaterThan(0);
    expect((await search(alice, { q: "kestrel manual" })).body.results).toHaveLength(5);
    expect((await search(alice, { q: "kestrel manual", top_k: 1 })).body.results).toHaveLength(1);
  });

  it("refuses bad parameters with the API's error body, and callers without a key", async () => {
    for (const query of ["", "q=", "q=x&top_k=0", "q=x&top_k=51", "q=x&max_tokens=abc", "q=x&min_similarity=2", "q=x&scope=everything", "q=x&mode=magic", "q=x&extra=1"]) {
      const res = await stack.api<{ error: { code: string; message: string; requestId: string } }>(`/api/rag/search?${query}`, { key: alice.key });
      expect(res.status, query).toBe(400);
      expect(res.body.error.code).toBe("invalid_request");
      expect(res.body.error.requestId).toBeTruthy();
    }
    const anonymous = await fetch(`${stack.url}/api/rag/search?q=x`);
    expect(anonymous.status).toBe(401);
    const bad = await stack.api<{ error: { code: string } }>("/api/rag/documents", { json: { documents: [{ scope: "docs", source: "big.md", content: "x".repeat(100 * 1024) }] }, key: alice.key });
    expect(bad.status).toBe(400);
    const reserved = await stack.api("/api/rag/documents", { json: { documents: [{ project: alice.project.name, scope: "docs", source: "repo:README.md", content: "mine" }] }, key: alice.key });
    expect(reserved.status).toBe(400);
    const foreign = await stack.api("/api/rag/documents", { json: { documents: [{ project: bob.project.name, scope: "docs", source: "x.md", content: "into bob's project" }] }, key: alice.key });
    expect(foreign.status).toBe(404);
  });
});

describe("a poison message", () => {
  it("is retried with backoff, then recorded with its reason, and can be sent again", async () => {
    const port = Number(new URL(model.url).port);
    await model.stop();
    const started = Date.now();
    try {
      await ingest(alice, [{ project: alice.project.name, scope: "docs", source: "poison.md", content: "# Poison\n\nWritten while the model was down: an albatross." }]);
      const { body } = await waitFor(
        async () => {
          const res = await stack.api<{ failures: { id: string; subject: string; error: string; attempts: number; projectId: string | null; message: { type: string } }[] }>("/api/rag/failures");
          const failure = res.body.failures.find((f) => f.subject.includes("poison.md"));
          return failure ? { body: failure } : undefined;
        },
        60_000,
        () => stack.process.output().slice(-3000),
      );
      // Three deliveries, 2 s and then 4 s apart.
      expect(body.attempts).toBe(3);
      expect(Date.now() - started).toBeGreaterThanOrEqual(6000);
      expect(body.error).toMatch(/embeddings: .*(could not be reached|Connection error)/i);
      expect(body.projectId).toBe(alice.project.id);
      expect(body.message.type).toBe("document:upsert");
      expect((await documents(alice)).some((doc) => doc.source === "poison.md")).toBe(false);
      // The model's key is in no log line, however many times the call failed.
      expect(stack.process.output()).not.toContain(MODEL_KEY);
      expect((await stack.api("/api/rag/failures", { key: alice.key })).status).toBe(403);
      await model.start(port);
      const retried = await stack.api(`/api/rag/failures/${body.id}/retry`, { method: "POST" });
      expect(retried.status).toBe(202);
      await indexed(alice, "poison.md");
      expect((await stack.api<{ failures: { id: string }[] }>("/api/rag/failures")).body.failures.some((f) => f.id === body.id)).toBe(false);
    } finally {
      if (!model.url || !(await fetch(`${model.url}/v1/models`).then(() => true, () => false))) await model.start(port);
    }
  });
});

describe("a repository", () => {
  it("indexes the project's spec, its repository's README and code through a sync, and removes what is deleted", async () => {
    const token = github.issueToken();
    const created = await fetch(`${github.url}/orgs/${github.org}/repos`, { method: "POST", headers: { authorization: `token ${token}`, "content-type": "application/json" }, body: JSON.stringify({ name: alice.project.name }) });
    expect(created.status).toBe(201);
    const work = mkdtempSync(join(tmpdir(), "rag-repo-"));
    try {
      const git = (...args: string[]) => execFileSync("git", ["-C", work, ...args], { env: { ...process.env, GIT_AUTHOR_NAME: "t", GIT_AUTHOR_EMAIL: "t@example.test", GIT_COMMITTER_NAME: "t", GIT_COMMITTER_EMAIL: "t@example.test" } });
      git("init", "--quiet", "--initial-branch=main");
      writeFileSync(join(work, "README.md"), "# Ferry service\n\n## Timetable\n\nThe ferry to the lighthouse island leaves every hour from pier nine.");
      mkdirSync(join(work, "ferry"));
      writeFileSync(join(work, "ferry", "timetable.py"), "def next_departure(minute):\n    return 60 - minute % 60\n");
      git("add", ".");
      git("commit", "--quiet", "-m", "readme");
      git("push", "--quiet", github.repoPath(alice.project.name), "main");
      const repository = github.repo(alice.project.name)?.html_url;
      // The repository is the factory's to set (the Architect makes it; here, an admin).
      expect((await stack.api(`/api/projects/${alice.project.id}`, { method: "PATCH", json: { repositoryUrl: repository }, key: alice.key })).status).toBe(403);
      expect((await stack.api(`/api/projects/${alice.project.id}`, { method: "PATCH", json: { repositoryUrl: repository, spec: { summary: "a ferry timetable service" } } })).status).toBe(200);
      expect((await stack.api("/api/rag/sync", { json: { project: alice.project.name }, key: alice.key })).status).toBe(202);
      await indexed(alice, "repo:README.md");
      await indexed(alice, "spec");
      // Code is found through the repository's file tree (the Git Trees API), not a list of known names.
      expect((await indexed(alice, "repo:ferry/timetable.py")).scope).toBe("code");
      const found = await search(alice, { q: "ferry lighthouse pier nine", scope: "docs" });
      expect(found.body.results[0]).toMatchObject({ source: "repo:README.md", heading: "Ferry service › Timetable" });
      expect((await search(alice, { q: "ferry timetable service", mode: "fts" })).body.results.map((r) => r.source)).toContain("spec");

      git("rm", "--quiet", "README.md");
      git("commit", "--quiet", "-m", "no readme");
      git("push", "--quiet", github.repoPath(alice.project.name), "main");
      expect((await stack.api("/api/rag/sync", { json: { project: alice.project.name }, key: alice.key })).status).toBe(202);
      await waitFor(async () => ((await documents(alice)).some((doc) => doc.source === "repo:README.md") ? undefined : true), 60_000, () => "repo:README.md is still indexed");
      expect((await search(alice, { q: "ferry lighthouse pier nine", mode: "fts" })).body.results).toEqual([]);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});

describe("another tenant's repository", () => {
  it("is never read for a project whose URL names it, however the URL got there", async () => {
    const token = github.issueToken();
    const created = await fetch(`${github.url}/orgs/${github.org}/repos`, { method: "POST", headers: { authorization: `token ${token}`, "content-type": "application/json" }, body: JSON.stringify({ name: bob.project.name }) });
    expect(created.status).toBe(201);
    const work = mkdtempSync(join(tmpdir(), "rag-bob-"));
    try {
      const git = (...args: string[]) => execFileSync("git", ["-C", work, ...args], { env: { ...process.env, GIT_AUTHOR_NAME: "b", GIT_AUTHOR_EMAIL: "b@example.test", GIT_COMMITTER_NAME: "b", GIT_COMMITTER_EMAIL: "b@example.test" } });
      git("init", "--quiet", "--initial-branch=main");
      writeFileSync(join(work, "README.md"), "# Bob's secret plans\n\nThe launch code is ZEBRA-MARMALADE-42.");
      git("add", ".");
      git("commit", "--quiet", "-m", "plans");
      git("push", "--quiet", github.repoPath(bob.project.name), "main");
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
    // Alice cannot point her project at it...
    const bobs = github.repo(bob.project.name)?.html_url ?? "";
    const refused = await stack.api<{ error: { code: string } }>(`/api/projects/${alice.project.id}`, { method: "PATCH", json: { repositoryUrl: bobs }, key: alice.key });
    expect([refused.status, refused.body.error.code]).toEqual([403, "forbidden"]);
    // ...and written straight into her project's row, the URL is not followed: a sync reads nothing of Bob's.
    const db = createDb({ databaseUrl: database.databaseUrl, wsProxy: database.wsProxy });
    try {
      await db.db.execute(sql`update projects set repository_url = ${bobs} where id = ${alice.project.id}`);
    } finally {
      await db.close();
    }
    const before = github.requests.length;
    expect((await stack.api("/api/rag/sync", { json: { project: alice.project.name }, key: alice.key })).status).toBe(202);
    // The sync has run, refusing the repository (the worker says so), without asking GitHub for it.
    await waitFor(() => (stack.process.output().includes("repository sync refused") ? true : undefined), 60_000, () => "the sync did not run");
    expect(github.requests.slice(before).filter((request) => request.path.includes(bob.project.name))).toEqual([]);
    expect((await search(alice, { q: "launch code ZEBRA MARMALADE", mode: "fts" })).body.results).toEqual([]);
    expect((await documents(alice)).some((doc) => doc.source === "repo:README.md" && doc.title.includes("Bob"))).toBe(false);
  });
});

describe("a task's log", () => {
  it("is indexed as a logs document of the task's project", async () => {
    // Tasks are made by the pipelines (an admin's route here); their logs are their owner's to search.
    const task = await stack.api<{ task: { id: string } }>("/api/tasks", { json: { type: "engineering", projectId: alice.project.id, ownerId: alice.userId } });
    expect(task.status).toBe(201);
    for (const message of ["Tester: 3 failed, test_invoice_rounding among them", "Developer round 2: fixed the rounding of the pelican invoices"]) {
      expect((await stack.api(`/api/tasks/${task.body.task.id}/events`, { json: { type: "log", message } })).status).toBe(201);
    }
    expect((await stack.api(`/api/rag/tasks/${task.body.task.id}/log`, { method: "POST", key: alice.key })).status).toBe(202);
    await indexed(alice, `task:${task.body.task.id}`);
    const found = await search(alice, { q: "test_invoice_rounding", scope: "logs" });
    expect(found.body.results[0]).toMatchObject({ scope: "logs", source: `task:${task.body.task.id}` });
    expect((await stack.api(`/api/rag/tasks/${task.body.task.id}/log`, { method: "POST", key: bob.key })).status).toBe(404);
  });
});

describe("orchestrator search", () => {
  const cli = (args: string[], key: string) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [inject("cliBundle"), "search", ...args], {
        cwd: ROOT,
        env: { ...process.env, ORCHESTRATOR_CONFIG: "/nonexistent/config.json", ORCHESTRATOR_URL: stack.url, ORCHESTRATOR_API_KEY: key, NO_COLOR: "1" },
      });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
      child.on("exit", (code) => resolve({ code, stdout, stderr }));
    });

  it("prints the results with their source, score and why they matched", async () => {
    const run = await cli(["ERR_QUOTA_4471", "--project", alice.project.name], alice.key);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^1\. runbook\.md › Billing runbook › Quotas\s+docs\s+alice-\w+\s+score 0\.\d+\s+fts/m);
    expect(run.stdout).toContain("ERR_QUOTA_4471");
  });

  it("prints JSON with --json, filters by scope, and fails clearly on a project it cannot see", async () => {
    const json = await cli(["walrus dashboard", "--scope", "history", "--json"], alice.key);
    expect(json.code, json.stderr).toBe(0);
    const body = JSON.parse(json.stdout) as SearchResponse;
    expect(body.results[0]?.source).toBe("chat:web");
    const foreign = await cli(["zanzibar", "--project", bob.project.name], alice.key);
    expect(foreign.code).toBe(3);
    expect(foreign.stderr).toMatch(/project .* not found/i);
    const usage = await cli([], alice.key);
    expect(usage.code).toBe(2);
  });
});

describe("the Product Owner's search_knowledge tool", () => {
  it("searches as the person in the chat and hands the model the passages with their source", async () => {
    model.load({
      turns: [
        { name: "intent", match: { tools: false, anyMessage: "You are the Intent Parser" }, reply: { content: JSON.stringify({ groups: ["diagnose"], intent: "look up" }) } },
        { name: "po: search", match: { tools: ["search_knowledge"] }, reply: { toolCalls: [{ name: "search_knowledge", arguments: { query: "ERR_QUOTA_4471" } }] } },
        { name: "po: answer", match: { tools: true, lastRole: "tool" }, reply: { toolCalls: [{ name: "respond", arguments: { text: "It is the quota error: see the runbook." } }] } },
        { name: "po: finish", match: { tools: true, lastRole: "tool" }, reply: { toolCalls: [{ name: "finish", arguments: {} }] } },
      ],
    });
    const session = await ChatSession.open({ url: stack.url, apiKey: alice.key }, new AbortController().signal);
    try {
      await session.turn({ type: "chat:message", text: "What does ERR_QUOTA_4471 mean?" }, 90_000);
      await waitFor(() => ([...session.entries.values()].some((entry) => entry.text.includes("quota error")) ? true : undefined), 60_000, () => JSON.stringify([...session.entries.values()]));
    } finally {
      session.close();
    }
    const answered = model.requests.find((request) => request.answeredBy === "po: answer");
    const toolMessage = ((answered?.body as ChatRequest | undefined)?.messages ?? []).filter((message) => message.role === "tool").map(messageText).join("\n");
    expect(toolMessage).toContain("runbook.md");
    expect(toolMessage).toContain("ERR_QUOTA_4471");
    // Bob's plan mentions the identifier too; the tool searched as Alice.
    expect(toolMessage).not.toContain("zanzibar");
  });
});
