/**
 * A project's deploys run one at a time per slot (src/deploy/deploys.ts): production's, and each change
 * preview's. What a running deploy in one slot refuses, and what it leaves alone, before anything is
 * merged or started. Previews built beside production run end to end in test/node/factory.test.ts.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { withDb } from "../../src/db/client.ts";
import { isUniqueViolation } from "../../src/db/errors.ts";
import { eq } from "drizzle-orm";
import { changes, tasks } from "../../src/db/schema.ts";
import { noDeployIn } from "../../src/deploy/deploys.ts";
import { newId } from "../../src/lib/crypto.ts";
import { createTask } from "../../src/tasks/tasks.ts";
import { call, createUserWithKey, uniqueName } from "./helpers.ts";

type ErrorJson = { error: { code: string; message: string } };

describe("deploy slots", () => {
  it("runs a preview's deploy beside production's, one per slot; a ship waits for both, an undo for production's only", async () => {
    const { key, userId } = await createUserWithKey();
    const res = await call("/api/projects", { method: "POST", key, json: { name: uniqueName("slots"), description: "a service" } });
    expect(res.status).toBe(201);
    const project = (await res.json<{ project: { id: string; name: string } }>()).project;
    const deploy = async (input: Record<string, unknown>) => {
      try {
        return (await withDb(env, (db) => createTask(db, { type: "deploy", projectId: project.id, callerId: userId, input: { mode: "deploy", server: "box", ...input } }))).id;
      } catch (error) {
        if (isUniqueViolation(error)) return "refused";
        throw error;
      }
    };
    const preview = await deploy({ preview: 1 });
    expect(preview).toMatch(/^dep_/);
    expect(await deploy({ preview: 1 })).toBe("refused");
    expect(await deploy({ preview: 2 })).toMatch(/^dep_/);
    const refuses = (slots: Parameters<typeof noDeployIn>[2]) => withDb(env, (db) => noDeployIn(db, project, slots)).then(() => "free", (error: Error) => error.message);
    // Production's slot is free while previews deploy: its deploy starts, and is alone in its slot.
    expect(await refuses([null])).toBe("free");
    const production = await deploy({});
    expect(production).toMatch(/^dep_/);
    expect(await deploy({ mode: "rollback" })).toBe("refused");
    expect(await refuses([null])).toMatch(new RegExp(`already has a deploy in progress \\(task ${production}, queued\\)`));
    expect(await refuses([1])).toMatch(new RegExp(`already has a deploy of change #1's preview in progress \\(task ${preview}, queued\\)`));
    expect(await refuses([3])).toBe("free");

    // Change #1, open, with its preview's deploy running: shipping it is refused, nothing merged.
    await withDb(env, (db) => db.insert(changes).values({ id: newId("chg"), projectId: project.id, number: 1, request: "say bye at /bye", branch: "change/1-say-bye-at-bye", status: "open", taskId: "eng_none", pullRequest: { number: 1, url: "https://example.test/pull/1" } }));
    // (production's deploy over: it never had a workflow to cancel)
    await withDb(env, (db) => db.update(tasks).set({ status: "failed" }).where(eq(tasks.id, production)));
    const ship = await call(`/api/projects/${project.id}/changes/1/ship`, { method: "POST", key });
    expect(ship.status).toBe(409);
    expect((await ship.json<ErrorJson>()).error.message).toMatch(new RegExp(`already has a deploy of change #1's preview in progress \\(task ${preview}, queued\\); ship change #1 once it has ended`));
    expect((await call(`/api/projects/${project.id}/changes/1`, { key }).then((r) => r.json<{ change: { status: string } }>())).change.status).toBe("open");
    // An undo is not stopped by previews' deploys (it fails further on: this project has no checkpoints).
    const undo = await call(`/api/projects/${project.id}/undo`, { method: "POST", key, json: {} });
    expect(undo.status).toBe(409);
    expect((await undo.json<ErrorJson>()).error.message).toMatch(/has no checkpoints yet/);
  });
});
