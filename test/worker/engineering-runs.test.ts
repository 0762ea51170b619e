/**
 * Which engineering runs of one project may run at once, as the database holds it
 * (tasks_one_active_build, migration 0016): changes beside each other (each on its own branch), a build
 * alone. Two changes built at once, and one catching up after the other shipped, run end to end in
 * test/node/engineering.test.ts.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { withDb } from "../../src/db/client.ts";
import { isUniqueViolation } from "../../src/db/errors.ts";
import { createTask } from "../../src/tasks/tasks.ts";
import { call, createUserWithKey, uniqueName } from "./helpers.ts";

describe("engineering runs of one project", () => {
  it("lets changes run beside each other, and one build at a time", async () => {
    const { key, userId } = await createUserWithKey();
    const res = await call("/api/projects", { method: "POST", key, json: { name: uniqueName("runs"), description: "a service" } });
    expect(res.status).toBe(201);
    const { id: projectId } = (await res.json<{ project: { id: string } }>()).project;
    const run = async (input: Record<string, unknown>) => {
      try {
        return (await withDb(env, (db) => createTask(db, { type: "engineering", projectId, callerId: userId, input: { server: "box", ...input } }))).status;
      } catch (error) {
        if (isUniqueViolation(error)) return "refused";
        throw error;
      }
    };
    expect(await run({ change: "say bye at /bye" })).toBe("queued");
    expect(await run({ change: "say hola at /hola" })).toBe("queued");
    // A build beside changes is refused before its row is made (startEngineering); two builds at once, here.
    expect(await run({})).toBe("queued");
    expect(await run({})).toBe("refused");
    expect(await run({ deploy: true })).toBe("refused");
  });
});
