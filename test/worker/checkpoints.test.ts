/**
 * Checkpoints and undo, where they refuse: before anything reaches the repository or production (this
 * worker has no GitHub App, so an undo that got past its checks would fail differently). Another
 * tenant's project is not found, a key limited to another project sees nothing, and a build or a
 * deploy in progress stops an undo. The undo itself runs end to end in test/node/factory.test.ts.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { withDb } from "../../src/db/client.ts";
import { recordCheckpoint } from "../../src/checkpoints/checkpoints.ts";
import { adminKey, call, createUserWithKey, uniqueName } from "./helpers.ts";

type ErrorJson = { error: { code: string; message: string } };
type Checkpoint = { number: number; kind: string; latest: boolean; summary: string; release: unknown };

async function project(key: string): Promise<{ id: string; name: string }> {
  const res = await call("/api/projects", { method: "POST", key, json: { name: uniqueName("ckp"), description: "a service" } });
  expect(res.status).toBe(201);
  return (await res.json<{ project: { id: string; name: string } }>()).project;
}

const undo = (id: string, key: string, json: unknown = {}) => call(`/api/projects/${id}/undo`, { method: "POST", key, json });
const listed = async (id: string, key: string) => {
  const res = await call(`/api/projects/${id}/checkpoints`, { key });
  expect(res.status).toBe(200);
  return (await res.json<{ checkpoints: Checkpoint[] }>()).checkpoints;
};
const sha = () => crypto.randomUUID().replace(/-/g, "").padEnd(40, "0");

describe("checkpoints and undo", () => {
  it("lists a project's checkpoints newest first and says why an undo cannot start, changing nothing", async () => {
    const { key, userId } = await createUserWithKey();
    const { id, name } = await project(key);
    expect(await listed(id, key)).toEqual([]);
    const none = await undo(id, key);
    expect(none.status).toBe(409);
    expect((await none.json<ErrorJson>()).error.message).toMatch(new RegExp(`${name} has no checkpoints yet`));

    await withDb(env, (db) => recordCheckpoint(db, { projectId: id, kind: "build", summary: "a greeter", commitSha: sha(), taskId: null, tests: "3 passed", acceptance: [] }));
    const one = await undo(id, key);
    expect(one.status).toBe(409);
    expect((await one.json<ErrorJson>()).error.message).toMatch(/one checkpoint only \(#1\): there is nothing before it/);
    const change = sha();
    await withDb(env, async (db) => {
      await recordCheckpoint(db, { projectId: id, kind: "change", summary: "Change #1: say bye", commitSha: change, taskId: null, changeNumber: 1, tests: "4 passed", acceptance: [] });
      // Recorded again (a retried step): the same checkpoint, not a third.
      await recordCheckpoint(db, { projectId: id, kind: "change", summary: "Change #1: say bye", commitSha: change, taskId: null, changeNumber: 1, tests: "4 passed", acceptance: [] });
    });
    expect((await listed(id, key)).map((c) => [c.number, c.kind, c.latest, c.release])).toEqual([
      [2, "change", true, null],
      [1, "build", false, null],
    ]);

    const refusals: [unknown, number, RegExp][] = [
      [{ checkpoint: 7 }, 404, /Checkpoint not found/i],
      [{ asOf: "2020-01-01T00:00:00Z" }, 409, /had no checkpoint yet at 2020-01-01/],
      [{ checkpoint: 1, asOf: "2020-01-01T00:00:00Z" }, 400, /not both/],
      [{ checkpoint: 0 }, 400, /checkpoint/],
      [{ to: 1 }, 400, /to/],
    ];
    for (const [json, status, message] of refusals) {
      const res = await undo(id, key, json);
      expect(res.status, JSON.stringify(json)).toBe(status);
      expect((await res.json<ErrorJson>()).error.message, JSON.stringify(json)).toMatch(message);
    }

    // A deploy in progress: refused before the repository is touched.
    const task = await call("/api/tasks", { method: "POST", key: adminKey(), json: { type: "deploy", ownerId: userId, projectId: id } });
    expect(task.status, await task.clone().text()).toBe(201);
    const busy = await undo(id, key);
    expect(busy.status).toBe(409);
    expect((await busy.json<ErrorJson>()).error.message).toMatch(/has a deploy in progress \(task \w+\): wait for it or cancel it, then undo/);
    expect((await listed(id, key)).map((c) => c.number)).toEqual([2, 1]);
  });

  it("is another tenant's project: not found, on every route of its checkpoints and changes, and for a key limited to another project", async () => {
    const alice = await createUserWithKey("alice");
    const bob = await createUserWithKey("bob");
    const { id } = await project(alice.key);
    await withDb(env, async (db) => {
      await recordCheckpoint(db, { projectId: id, kind: "build", summary: "alice's", commitSha: sha(), taskId: null, tests: null, acceptance: [] });
      await recordCheckpoint(db, { projectId: id, kind: "build", summary: "alice's again", commitSha: sha(), taskId: null, tests: null, acceptance: [] });
    });
    expect((await call(`/api/projects/${id}/checkpoints`, { key: bob.key })).status).toBe(404);
    expect((await undo(id, bob.key)).status).toBe(404);
    // Alice's own key, limited to another project of hers.
    const other = await project(alice.key);
    const limited = await call("/api/keys", { method: "POST", key: alice.key, json: { name: "one project", projectId: other.id } });
    expect(limited.status, await limited.clone().text()).toBe(201);
    const { key: limitedKey } = await limited.json<{ key: string }>();
    expect((await call(`/api/projects/${id}/checkpoints`, { key: limitedKey })).status).toBe(404);
    expect((await undo(id, limitedKey)).status).toBe(404);
    expect((await listed(id, alice.key)).map((c) => c.number)).toEqual([2, 1]);
    // Nor does either reach her changes: change more, ship, discard, or one change.
    for (const key of [bob.key, limitedKey]) {
      for (const [path, json] of [["/changes/1/more", { request: "say hi at /hi" }], ["/changes/1/ship", {}], ["/changes/1/discard", {}]] as const) {
        expect((await call(`/api/projects/${id}${path}`, { method: "POST", key, json })).status, path).toBe(404);
      }
      expect((await call(`/api/projects/${id}/changes/1`, { key })).status).toBe(404);
    }
    // A "change more" with no words, or words it cannot take, is refused before anything is looked up.
    for (const json of [{}, { request: "" }, { request: "x".repeat(5000) }, { request: "ok words", more: true }]) {
      expect((await call(`/api/projects/${id}/changes/1/more`, { method: "POST", key: alice.key, json })).status, JSON.stringify(json).slice(0, 40)).toBe(400);
    }
  });
});
