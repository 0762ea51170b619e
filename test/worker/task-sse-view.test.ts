import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { signViewToken } from "../../src/lib/view-token.ts";
import type { TaskEvent } from "../../src/shared/events.ts";
import { call } from "./helpers.ts";
import { appendOk, newTask, openWatcher, readSse } from "./stream-helpers.ts";

const sse = (taskId: string, key: string, headers: Record<string, string> = {}, query = "") =>
  call(`/api/tasks/${taskId}/events${query}`, { key, headers: { accept: "text/event-stream", ...headers } });

describe("GET /api/tasks/:id/events as Server-Sent Events", () => {
  it("streams live events with ids and ends after the terminal event", async () => {
    const { taskId, userKey } = await newTask();
    await appendOk(taskId, { type: "task.started", message: "Engineering task started" });
    const res = await sse(taskId, userKey);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const reading = readSse(res);
    await appendOk(taskId, { type: "step.started", step: "Developer", message: "implementing feature X..." });
    await appendOk(taskId, { type: "task.completed", message: "Task completed successfully" });
    const frames = (await reading).filter((f) => f.id);
    expect(frames.map((f) => f.id)).toEqual(["1", "2", "3"]);
    expect(frames.map((f) => f.event)).toEqual(["task.started", "step.started", "task.completed"]);
    expect((JSON.parse(frames[1]?.data ?? "{}") as TaskEvent).step).toBe("Developer");
  });

  it("resumes from Last-Event-ID, and ?after= wins over it", async () => {
    const { taskId, userKey } = await newTask();
    for (let i = 1; i <= 4; i++) await appendOk(taskId, { type: "log", message: `l${i}` });
    await appendOk(taskId, { type: "task.failed", message: "tests failed" });
    const resumed = await readSse(await sse(taskId, userKey, { "last-event-id": "3" }));
    expect(resumed.filter((f) => f.id).map((f) => f.id)).toEqual(["4", "5"]);
    const after = await readSse(await sse(taskId, userKey, { "last-event-id": "3" }, "?after=1"));
    expect(after.filter((f) => f.id).map((f) => f.id)).toEqual(["2", "3", "4", "5"]);
    const bad = await sse(taskId, userKey, { "last-event-id": "abc" });
    expect(bad.status).toBe(400);
  });

  it("ends at once for a finished task when the client already has everything", async () => {
    const { taskId, userKey } = await newTask();
    await appendOk(taskId, { type: "task.completed", message: "done" });
    const frames = await readSse(await sse(taskId, userKey, { "last-event-id": "1" }), 3000);
    expect(frames.filter((f) => f.id)).toEqual([]);
  });
});

describe("view links and the live task view page", () => {
  it("issues a signed link that opens the task's stream and page, and nothing else", async () => {
    const { taskId, userKey } = await newTask();
    const res = await call(`/api/tasks/${taskId}/view-link`, { key: userKey });
    expect(res.status).toBe(200);
    const link = await res.json<{ url: string; token: string; expiresAt: string }>();
    expect(link.url).toContain(`/tasks/${taskId}?token=`);
    expect(Date.parse(link.expiresAt) - Date.now()).toBeGreaterThan(50 * 60 * 1000);

    const page = await call(new URL(link.url).pathname + new URL(link.url).search);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain("task-view.js");

    const watcher = await openWatcher(taskId, { token: link.token });
    await appendOk(taskId, { type: "log", message: "seen through the token" });
    expect((await watcher.waitForEvents(1))[0]?.message).toBe("seen through the token");
    watcher.ws.close();

    // The token opens this task's stream only.
    expect((await call(`/api/projects?token=${link.token}`)).status).toBe(401);
    expect((await call(`/api/tasks/${taskId}?token=${link.token}`)).status).toBe(401);
    const other = await newTask();
    const foreign = await call(`/api/tasks/${other.taskId}/events?token=${link.token}`);
    expect(foreign.status).toBe(401);
    expect((await foreign.json<{ error: { message: string } }>()).error.message).toMatch(/another task/);
  });

  it("refuses expired, forged and missing tokens with a clear page", async () => {
    const { taskId } = await newTask();
    const expired = await signViewToken(env.SECRETS_ENCRYPTION_KEY, taskId, 60, Date.now() - 3600_000);
    const expiredPage = await call(`/tasks/${taskId}?token=${expired.token}`);
    expect(expiredPage.status).toBe(401);
    expect(await expiredPage.text()).toContain("This link has expired");
    const expiredApi = await call(`/api/tasks/${taskId}/events?token=${expired.token}`);
    expect((await expiredApi.json<{ error: { message: string } }>()).error.message).toMatch(/expired/);

    const forged = await signViewToken("another-secret", taskId, 600);
    expect(await (await call(`/tasks/${taskId}?token=${forged.token}`)).text()).toContain("This link is not valid");
    expect(await (await call(`/tasks/${taskId}`)).text()).toContain("This link is incomplete");
    const otherTask = await signViewToken(env.SECRETS_ENCRYPTION_KEY, "eng_other", 600);
    expect(await (await call(`/tasks/${taskId}?token=${otherTask.token}`)).text()).toContain("another task");
  });

  it("ships the page's script and styles as static assets", async () => {
    // In front of the worker in production and `wrangler dev`; read here through the binding. The script
    // is web/task-view.ts bundled (the global setup builds it before this pool reads public/).
    const js = await env.ASSETS.fetch("http://assets/task-view.js");
    expect(js.status).toBe(200);
    expect(await js.text()).toContain("event:ack");
    expect((await env.ASSETS.fetch("http://assets/task-view.css")).status).toBe(200);
  });
});
