/**
 * The engineering pipeline's API, where it refuses: settings that are out of range, a pipeline with no
 * model or GitHub App configured (this worker has neither), answers to a task that asks nothing, and
 * cancels of tasks that have ended or are someone else's. Nothing is changed by a refusal.
 */
import { describe, expect, it } from "vitest";
import { adminKey, call, createUserWithKey, uniqueName } from "./helpers.ts";

async function project(key: string) {
  const res = await call("/api/projects", { method: "POST", key, json: { name: uniqueName("eng"), description: "a service" } });
  expect(res.status).toBe(201);
  return (await res.json<{ project: { id: string; config: Record<string, unknown> } }>()).project;
}

async function task(ownerId: string, projectId?: string) {
  const res = await call("/api/tasks", { method: "POST", key: adminKey(), json: { type: "engineering", ownerId, ...(projectId ? { projectId } : {}) } });
  expect(res.status).toBe(201);
  return (await res.json<{ task: { id: string } }>()).task.id;
}

describe("engineering settings on a project", () => {
  it("merges the test command, coverage threshold and rounds into config.engineering, and refuses bad values", async () => {
    const { key } = await createUserWithKey();
    const created = await project(key);
    const set = await call(`/api/projects/${created.id}`, { method: "PATCH", key, json: { testCommand: "pytest -q", maxIterations: 5 } });
    expect(set.status).toBe(200);
    const again = await call(`/api/projects/${created.id}`, { method: "PATCH", key, json: { coverageThreshold: 80 } });
    const { project: updated } = await again.json<{ project: { config: { engineering: Record<string, unknown> } } }>();
    expect(updated.config.engineering).toEqual({ testCommand: "pytest -q", maxIterations: 5, coverageThreshold: 80 });
    const cleared = await call(`/api/projects/${created.id}`, { method: "PATCH", key, json: { coverageThreshold: null } });
    expect((await cleared.json<{ project: { config: { engineering: Record<string, unknown> } } }>()).project.config.engineering.coverageThreshold).toBeNull();

    for (const bad of [{ maxIterations: 0 }, { maxIterations: 100 }, { coverageThreshold: 101 }, { testCommand: "" }, { agentTimeoutSeconds: 1 }]) {
      const res = await call(`/api/projects/${created.id}`, { method: "PATCH", key, json: bad });
      expect(res.status, JSON.stringify(bad)).toBe(400);
      expect((await res.json<{ error: { code: string } }>()).error.code).toBe("invalid_request");
    }
    const shown = await call(`/api/projects/${created.id}`, { key });
    expect((await shown.json<{ project: { config: { engineering: Record<string, unknown> } } }>()).project.config.engineering).toEqual({ testCommand: "pytest -q", maxIterations: 5, coverageThreshold: null });
  });
});

describe("starting the engineering pipeline", () => {
  it("answers 409 naming the missing model key, and creates no task", async () => {
    const { key } = await createUserWithKey();
    const created = await project(key);
    const res = await call(`/api/projects/${created.id}/engineering`, { method: "POST", key });
    expect(res.status).toBe(409);
    expect((await res.json<{ error: { message: string } }>()).error.message).toContain("OPENAI_API_KEY");
    const tasks = await call(`/api/tasks?projectId=${created.id}`, { key });
    expect((await tasks.json<{ tasks: unknown[] }>()).tasks).toEqual([]);
  });

  it("is a 404 for another user's project, and refuses a server choice from a non-admin", async () => {
    const owner = await createUserWithKey();
    const other = await createUserWithKey();
    const created = await project(owner.key);
    expect((await call(`/api/projects/${created.id}/engineering`, { method: "POST", key: other.key })).status).toBe(404);
    const chosen = await call(`/api/projects/${created.id}/engineering`, { method: "POST", key: owner.key, json: { server: "box-one" } });
    expect(chosen.status).toBe(403);
    const bad = await call(`/api/projects/${created.id}/engineering`, { method: "POST", key: owner.key, json: { server: "Not A Handle" } });
    expect(bad.status).toBe(400);
  });
});

describe("answering and cancelling tasks", () => {
  it("refuses an answer to a task that asks nothing", async () => {
    const { userId, key } = await createUserWithKey();
    const id = await task(userId);
    const res = await call(`/api/tasks/${id}/input`, { method: "POST", key, json: { decision: "stop" } });
    expect(res.status).toBe(409);
    expect((await res.json<{ error: { message: string } }>()).error.message).toContain("is not waiting for input");
    const notJson = await call(`/api/tasks/${id}/input`, { method: "POST", key, body: "stop", headers: { "content-type": "application/json" } });
    expect(notJson.status).toBe(400);
  });

  it("keeps the question open when the answer does not fit it", async () => {
    const { userId, key } = await createUserWithKey();
    const id = await task(userId);
    const question = { kind: "decision", inputId: "after-3", question: "Continue?", options: ["continue", "stop"], expiresAt: new Date(Date.now() + 60_000).toISOString() };
    await call(`/api/tasks/${id}/events`, { method: "POST", key: adminKey(), json: { type: "task.needs_input", message: "Continue?", data: question } });
    const shown = await call(`/api/tasks/${id}`, { key });
    expect((await shown.json<{ task: { status: string; pendingInput: unknown } }>()).task).toMatchObject({ status: "needs_input", pendingInput: question });
    for (const bad of [{ decision: "maybe" }, { decision: "continue", rounds: 0 }, { decision: "stop", extra: 1 }]) {
      const res = await call(`/api/tasks/${id}/input`, { method: "POST", key, json: bad });
      expect(res.status, JSON.stringify(bad)).toBe(400);
      expect((await res.json<{ error: { message: string } }>()).error.message).toContain('Not an answer to "Continue?"');
    }
    const after = await call(`/api/tasks/${id}`, { key });
    expect((await after.json<{ task: { pendingInput: unknown } }>()).task.pendingInput).toEqual(question);
    // Once the task goes on, what it asked is no longer kept.
    await call(`/api/tasks/${id}/events`, { method: "POST", key: adminKey(), json: { type: "step.progress", message: "going on" } });
    const moved = await call(`/api/tasks/${id}`, { key });
    expect((await moved.json<{ task: { pendingInput: unknown } }>()).task.pendingInput).toBeNull();
  });

  it("cancels a task once, and another user's not at all", async () => {
    const owner = await createUserWithKey();
    const other = await createUserWithKey();
    const id = await task(owner.userId);
    expect((await call(`/api/tasks/${id}/cancel`, { method: "POST", key: other.key })).status).toBe(404);
    const res = await call(`/api/tasks/${id}/cancel`, { method: "POST", key: owner.key });
    expect(res.status).toBe(200);
    expect((await res.json<{ task: { status: string } }>()).task.status).toBe("cancelled");
    const again = await call(`/api/tasks/${id}/cancel`, { method: "POST", key: owner.key });
    expect(again.status).toBe(409);
    expect((await again.json<{ error: { message: string } }>()).error.message).toContain("has already ended (cancelled)");
  });
});
