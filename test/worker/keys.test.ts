/**
 * API keys as their holders manage them: issued once, listed without the key, revoked (and refused at
 * once), and limited to one project.
 */
import { describe, expect, it } from "vitest";
import { adminKey, call, createUserWithKey, uniqueName } from "./helpers.ts";

interface KeyView {
  id: string;
  userId: string;
  prefix: string;
  scopes: string[];
  projectId: string | null;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

async function newProject(key: string, name = uniqueName("k")): Promise<string> {
  const res = await call("/api/projects", { method: "POST", key, json: { name } });
  expect(res.status).toBe(201);
  return (await res.json<{ project: { id: string } }>()).project.id;
}

describe("API keys", () => {
  it("lets a user issue, list and revoke their own keys; a revoked key fails at once", async () => {
    const { key, userId } = await createUserWithKey("keyholder");
    const issued = await call("/api/keys", { method: "POST", key, json: { name: "laptop" } });
    expect(issued.status).toBe(201);
    const { apiKey, key: second } = await issued.json<{ apiKey: KeyView; key: string }>();
    expect(apiKey).toMatchObject({ userId, scopes: ["user"], projectId: null, revokedAt: null });
    expect((await call("/api/projects", { key: second })).status).toBe(200);

    const listed = await (await call("/api/keys", { key })).json<{ keys: KeyView[] }>();
    expect(listed.keys.map((k) => k.id)).toContain(apiKey.id);
    expect(listed.keys.every((k) => k.userId === userId)).toBe(true);
    expect(JSON.stringify(listed)).not.toContain(second);
    expect(JSON.stringify(listed)).not.toMatch(/keyHash|key_hash/);
    expect(listed.keys.find((k) => k.id === apiKey.id)?.lastUsedAt).toBeTruthy();

    const revoked = await call(`/api/keys/${apiKey.id}`, { method: "DELETE", key });
    expect(revoked.status).toBe(200);
    expect((await revoked.json<{ apiKey: KeyView }>()).apiKey.revokedAt).toBeTruthy();
    expect((await call("/api/projects", { key: second })).status).toBe(401);
    expect((await call(`/api/keys/${apiKey.id}`, { method: "DELETE", key })).status).toBe(409);
    // Gone from the list unless asked for.
    expect((await (await call("/api/keys", { key })).json<{ keys: KeyView[] }>()).keys.map((k) => k.id)).not.toContain(apiKey.id);
    expect((await (await call("/api/keys?revoked=true", { key })).json<{ keys: KeyView[] }>()).keys.map((k) => k.id)).toContain(apiKey.id);
  });

  it("keeps users to their own keys, and admin and runner scopes to admins", async () => {
    const alice = await createUserWithKey("alice");
    const bob = await createUserWithKey("bob");
    const bobs = await (await call("/api/keys", { key: bob.key })).json<{ keys: KeyView[] }>();
    const bobKey = bobs.keys[0]?.id ?? "";
    expect((await call(`/api/keys/${bobKey}`, { method: "DELETE", key: alice.key })).status).toBe(404);
    expect((await call("/api/keys", { method: "POST", key: alice.key, json: { userId: bob.userId, name: "theirs" } })).status).toBe(403);
    expect((await call("/api/keys", { method: "POST", key: alice.key, json: { name: "runner", scopes: ["runner"] } })).status).toBe(403);
    // An admin sees everyone's, and filters by user.
    const all = await (await call(`/api/keys?userId=${bob.userId}`, { key: adminKey() })).json<{ keys: KeyView[] }>();
    expect(all.keys.map((k) => k.id)).toContain(bobKey);
    expect((await call(`/api/keys/${bobKey}`, { method: "DELETE", key: adminKey() })).status).toBe(200);
    expect((await call("/api/projects", { key: bob.key })).status).toBe(401);
  });

  it("limits a key to one project: that project and its tasks, nothing else, and no key management", async () => {
    const { key, userId } = await createUserWithKey("scoped");
    const mine = await newProject(key);
    const other = await newProject(key);
    const issued = await call("/api/keys", { method: "POST", key, json: { name: "ci", projectId: mine } });
    expect(issued.status).toBe(201);
    const limited = (await issued.json<{ key: string }>()).key;
    const listed = await (await call("/api/projects", { key: limited })).json<{ projects: { id: string }[] }>();
    expect(listed.projects.map((p) => p.id)).toEqual([mine]);
    expect((await call(`/api/projects/${mine}`, { key: limited })).status).toBe(200);
    expect((await call(`/api/projects/${other}`, { key: limited })).status).toBe(404);
    expect((await call("/api/projects", { method: "POST", key: limited, json: { name: uniqueName("no") } })).status).toBe(403);
    expect((await call("/api/keys", { key: limited })).status).toBe(403);
    // Tasks: only the project's.
    const inMine = await call("/api/tasks", { method: "POST", key: adminKey(), json: { type: "deploy", projectId: mine, ownerId: userId } });
    const inOther = await call("/api/tasks", { method: "POST", key: adminKey(), json: { type: "deploy", projectId: other, ownerId: userId } });
    const mineTask = (await inMine.json<{ task: { id: string } }>()).task.id;
    const otherTask = (await inOther.json<{ task: { id: string } }>()).task.id;
    const tasks = await (await call("/api/tasks", { key: limited })).json<{ tasks: { id: string }[] }>();
    expect(tasks.tasks.map((t) => t.id)).toContain(mineTask);
    expect(tasks.tasks.map((t) => t.id)).not.toContain(otherTask);
    expect((await call(`/api/tasks/${otherTask}`, { key: limited })).status).toBe(404);
    // A project of someone else's cannot be the limit.
    const stranger = await createUserWithKey("stranger");
    expect((await call("/api/keys", { method: "POST", key: stranger.key, json: { name: "x", projectId: mine } })).status).toBe(400);
  });
});
