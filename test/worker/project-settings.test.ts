/**
 * A project's settings, split: what its owner sets (`config`, merged on every change) and what the
 * factory manages (`managed`: budget, server, labels and domain an admin's; the pipelines' own state
 * nobody's). Each refusal changes nothing.
 */
import { describe, expect, it } from "vitest";
import { adminKey, call, createUserWithKey, uniqueName } from "./helpers.ts";

type Project = { id: string; name: string; repositoryUrl: string | null; config: Record<string, unknown>; managed: Record<string, unknown> };
type ErrorJson = { error: { code: string; message: string } };

async function projectOf(key: string, json: Record<string, unknown> = {}): Promise<Project> {
  const res = await call("/api/projects", { method: "POST", key, json: { name: uniqueName("set"), ...json } });
  expect(res.status, await res.clone().text()).toBe(201);
  return (await res.json<{ project: Project }>()).project;
}
const patch = (id: string, key: string, json: Record<string, unknown>) => call(`/api/projects/${id}`, { method: "PATCH", key, json });
const shown = async (id: string, key: string) => (await (await call(`/api/projects/${id}`, { key })).json<{ project: Project }>()).project;

describe("what a project's owner may set", () => {
  it("refuses the repository, the budget, the server, the labels and the domain, and changes nothing", async () => {
    const alice = await createUserWithKey("alice");
    const project = await projectOf(alice.key);
    const attempts: [Record<string, unknown>, RegExp][] = [
      [{ repositoryUrl: "https://github.com/acme/bob-app" }, /only an admin can link another/],
      [{ config: { budgetUsd: 1_000_000 } }, /budgetUsd is managed by the factory/],
      [{ config: { server: "bobs-box" } }, /server is managed by the factory/],
      [{ config: { serverLabels: { gpu: "yes" } } }, /serverLabels is managed by the factory/],
      [{ config: { domain: "bob.example.com", description: "x" } }, /domain is managed by the factory/],
      [{ config: { env: { SECRET: { kind: "user", reason: "" } } } }, /kept by the factory's pipelines/],
      [{ config: { github: { headSha: "0".repeat(40) } } }, /kept by the factory's pipelines/],
      [{ config: { linkedRepository: "acme/bob-app" } }, /kept by the factory's pipelines/],
    ];
    for (const [json, message] of attempts) {
      const res = await patch(project.id, alice.key, json);
      expect(res.status, JSON.stringify(json)).toBe(403);
      expect((await res.json<ErrorJson>()).error.message).toMatch(message);
    }
    const after = await shown(project.id, alice.key);
    expect(after).toMatchObject({ repositoryUrl: null, config: {}, managed: {} });
    // At creation too.
    const created = await call("/api/projects", { method: "POST", key: alice.key, json: { name: uniqueName("set"), config: { budgetUsd: 0 } } });
    expect(created.status).toBe(403);
    const withRepo = await call("/api/projects", { method: "POST", key: alice.key, json: { name: uniqueName("set"), repositoryUrl: "https://github.com/acme/bob-app" } });
    expect(withRepo.status).toBe(400);
  });

  it("replaces the spec's acceptance checks and keeps the rest of it; a check that is not one is refused and changes nothing; another owner's project is not found", async () => {
    const { key } = await createUserWithKey();
    const project = await projectOf(key, { spec: { summary: "a greeter", acceptance: [] } });
    const checks = [{ name: "says hello", path: "/hello", expect: { json: { pointer: "/message", equals: "hello" } } }];
    expect((await patch(project.id, key, { acceptance: checks })).status).toBe(200);
    type WithSpec = Project & { spec: Record<string, unknown> };
    const shownSpec = async () => ((await (await call(`/api/projects/${project.id}`, { key })).json<{ project: WithSpec }>()).project.spec);
    expect(await shownSpec()).toEqual({ summary: "a greeter", acceptance: [{ ...checks[0], method: "GET", expect: { status: 200, json: { pointer: "/message", equals: "hello" } } }] });
    for (const bad of [
      { acceptance: [{ name: "no path", expect: {} }] },
      { acceptance: [{ name: "elsewhere", path: "http://other.test/", expect: {} }] },
      { spec: { summary: "x", acceptance: [{ name: "x", path: "/", expect: { json: { pointer: "message", equals: 1 } } }] } },
    ]) {
      const res = await patch(project.id, key, bad);
      expect(res.status, JSON.stringify(bad)).toBe(400);
      expect((await res.json<ErrorJson>()).error.message).toContain("acceptance");
    }
    expect((await shownSpec()).acceptance).toHaveLength(1);
    // A message to the bot is a bot's check: refused for this service, taken for a bot.
    const message = { name: "greets", send: "/start", expect: { replyContains: "Hello" } };
    const refused = await patch(project.id, key, { acceptance: [message] });
    expect(refused.status).toBe(400);
    expect((await refused.json<ErrorJson>()).error.message).toContain("is for a Telegram bot");
    expect((await shownSpec()).acceptance).toHaveLength(1);
    const bot = await projectOf(key, { spec: { summary: "a bot", template: "telegram-bot" } });
    expect((await patch(bot.id, key, { acceptance: [message] })).status).toBe(200);
    const stranger = await createUserWithKey();
    expect((await patch(project.id, stranger.key, { acceptance: [] })).status).toBe(404);
    expect((await shownSpec()).acceptance).toHaveLength(1);
  });

  it("merges the owner's settings into what is there, and null takes one back", async () => {
    const { key } = await createUserWithKey();
    const project = await projectOf(key, { config: { healthPath: "/status" } });
    expect((await patch(project.id, key, { testCommand: "pytest -q" })).status).toBe(200);
    expect((await patch(project.id, key, { config: { engineering: { maxIterations: 4 } } })).status).toBe(200);
    expect((await shown(project.id, key)).config).toEqual({ healthPath: "/status", engineering: { testCommand: "pytest -q", maxIterations: 4 } });
    expect((await patch(project.id, key, { config: { healthPath: null } })).status).toBe(200);
    expect((await shown(project.id, key)).config).toEqual({ engineering: { testCommand: "pytest -q", maxIterations: 4 } });
    for (const bad of [{ config: { healthPath: "no-slash" } }, { config: { colour: "blue" } }, { config: { engineering: { maxIterations: 0 } } }]) {
      const res = await patch(project.id, key, bad);
      expect(res.status, JSON.stringify(bad)).toBe(400);
    }
  });
});

describe("what an admin manages", () => {
  it("sets and removes the budget, server and labels, which the owner sees but cannot change", async () => {
    const { key } = await createUserWithKey();
    const project = await projectOf(key);
    expect((await patch(project.id, adminKey(), { config: { budgetUsd: 12.5, server: "box-a", serverLabels: { region: "eu" } } })).status).toBe(200);
    expect((await shown(project.id, key)).managed).toEqual({ budgetUsd: 12.5, server: "box-a", serverLabels: { region: "eu" } });
    expect((await patch(project.id, adminKey(), { config: { server: null } })).status).toBe(200);
    expect((await shown(project.id, key)).managed).toEqual({ budgetUsd: 12.5, serverLabels: { region: "eu" } });
    // The pipelines' own state is nobody's to write, an admin's request included.
    expect((await patch(project.id, adminKey(), { config: { github: {} } })).status).toBe(403);
  });

  it("gives no project a domain another answers at, nor one under a base domain", async () => {
    const alice = await createUserWithKey("alice");
    const bob = await createUserWithKey("bob");
    const bobs = await projectOf(bob.key);
    const alices = await projectOf(alice.key);
    const bobDomain = `${uniqueName("shop")}.example.org`;
    expect((await patch(bobs.id, adminKey(), { config: { domain: bobDomain } })).status).toBe(200);
    for (const domain of [bobDomain, bobDomain.toUpperCase(), `${bobs.name}.localhost`, "localhost"]) {
      const res = await patch(alices.id, adminKey(), { config: { domain } });
      expect(res.status, domain).toBe(400);
    }
    // Under a server's base domain: those names are the projects' of that name.
    const handle = uniqueName("box");
    const base = `${uniqueName("apps")}.example.net`;
    expect((await call("/api/servers", { method: "POST", key: adminKey(), json: { handle, host: "203.0.113.9", baseDomain: base } })).status).toBe(201);
    const under = await patch(alices.id, adminKey(), { config: { domain: `${bobs.name}.${base}` } });
    expect(under.status).toBe(400);
    expect((await under.json<ErrorJson>()).error.message).toMatch(/under the base domain/);
    expect((await shown(bobs.id, bob.key)).managed).toEqual({ domain: bobDomain });
    expect((await shown(alices.id, alice.key)).managed).toEqual({});
    // A domain of its own is fine.
    expect((await patch(alices.id, adminKey(), { config: { domain: `${uniqueName("alice")}.example.com` } })).status).toBe(200);
  });

  it("links a repository, which the owner cannot", async () => {
    const { key } = await createUserWithKey();
    const project = await projectOf(key);
    expect((await patch(project.id, adminKey(), { repositoryUrl: "https://github.com/acme/legacy-app" })).status).toBe(200);
    const after = await shown(project.id, key);
    expect(after.repositoryUrl).toBe("https://github.com/acme/legacy-app");
    expect(after.managed).toEqual({ linkedRepository: "acme/legacy-app" });
  });
});
