import { createRoute } from "@hono/zod-openapi";
import { streamSSE } from "hono/streaming";
import { z } from "zod";
import { getTaskStream } from "../tasks/stream-client.ts";
import { AppError } from "../lib/app-error.ts";
import { apiDoc, apiRouter, errors, jsonBody, jsonResponse, views } from "../platform/openapi.ts";
import { settings } from "../lib/settings.ts";
import { signViewToken } from "../lib/view-token.ts";
import { requireAdmin, requireScope } from "../platform/auth.ts";
import { answerTask, cancelTask } from "../task-control/task-control.ts";
import { appendTaskEventOnce, createTask, listTasks, loadTask } from "../tasks/tasks.ts";
import { Page, TaskStatus, TaskStreamPosition, TaskType } from "../shared/api.ts";
import { createAcker, isTerminal, TaskEventInput, type TaskSocketClientMessage, TaskSocketServerMessage } from "../shared/events.ts";
import { parseJson } from "../shared/json.ts";

const IdParam = z.object({ id: z.string().min(1).max(64) });
const ListQuery = Page.extend({ type: TaskType.optional(), status: TaskStatus.optional(), projectId: z.string().optional() });
const CreateTask = z.strictObject({
  type: TaskType,
  projectId: z.string().min(1).optional(),
  ownerId: z.string().min(1).optional(),
  input: z.record(z.string(), z.unknown()).optional(),
});
const AfterQuery = z.object({
  after: z.coerce.number().int().min(0).optional(),
  limit: z.coerce.number().int().min(1).max(1000).optional(),
  token: z.string().optional(),
});
const ViewLinkQuery = z.object({ ttl: z.coerce.number().int().min(60).max(7 * 24 * 3600).optional() });

/** Where to resume: `?after=` wins, else the SSE `Last-Event-ID` header, else from the start. */
function resumePoint(after: number | undefined, lastEventId: string | undefined): number {
  if (after !== undefined) return after;
  if (lastEventId === undefined || lastEventId === "") return 0;
  const parsed = Number(lastEventId);
  if (!Number.isInteger(parsed) || parsed < 0) throw new AppError("invalid_request", "Last-Event-ID must be an event seq");
  return parsed;
}

/** Opens a watcher socket on the task's stream (the same fan-out the browser and CLI use). */
async function openStreamSocket(env: Env, taskId: string, after: number): Promise<WebSocket> {
  const res = await getTaskStream(env, taskId).fetch(
    new Request(`https://task-stream/ws?after=${after}`, { headers: { upgrade: "websocket" } }),
  );
  if (!res.webSocket) throw new Error(`task stream refused the watcher: ${res.status}`);
  res.webSocket.accept();
  return res.webSocket;
}

const doc = apiDoc("tasks");
const TaskResponse = z.object({ task: views.Task });
const EventResponse = z.object({ event: views.TaskEvent, duplicate: z.literal(true).optional() });

const list = createRoute({
  ...doc,
  method: "get",
  path: "/",
  summary: "List the tasks the key may see, newest first",
  middleware: [requireScope("user")],
  request: { query: ListQuery },
  responses: { 200: jsonResponse(z.object({ tasks: z.array(views.Task) }), "The tasks"), ...errors(400, 403) },
});
const create = createRoute({
  ...doc,
  method: "post",
  path: "/",
  summary: "Create a queued task (admin)",
  middleware: [requireAdmin],
  request: { body: jsonBody(CreateTask) },
  responses: { 201: jsonResponse(TaskResponse, "The new task"), ...errors(400, 403, 413, 415) },
});
const get = createRoute({
  ...doc,
  method: "get",
  path: "/{id}",
  summary: "Get a task and where its event stream is",
  middleware: [requireScope("user")],
  request: { params: IdParam },
  responses: { 200: jsonResponse(TaskResponse.extend({ stream: TaskStreamPosition }), "The task"), ...errors(400, 403, 404) },
});
const appendEvent = createRoute({
  ...doc,
  method: "post",
  path: "/{id}/events",
  summary: "Append an event to a task's stream (admin: producers)",
  description: "The body is checked by the stream itself (the stream assigns `seq` and `taskId`; `at` defaults to now). A repeat of an `eventId` already stored answers 200 with the stored event, so producers may retry.",
  middleware: [requireAdmin],
  request: {
    params: IdParam,
    // Described, not validated here: the stream normalises and checks the event (src/tasks/tasks.ts).
    body: { required: true, content: { "application/json": { schema: { $ref: "#/components/schemas/TaskEventInput" } } } },
  },
  responses: {
    201: jsonResponse(EventResponse, "The event, appended"),
    200: jsonResponse(EventResponse, "A repeat of an `eventId` already stored: the stored event, with `duplicate: true`"),
    ...errors(400, 403, 404, 409, 413, 415),
  },
});
const readEvents = createRoute({
  ...doc,
  method: "get",
  path: "/{id}/events",
  summary: "Read a task's events, or follow them live over SSE",
  description:
    "As JSON: the events after `after` (at most `limit`). With `Accept: text/event-stream`: Server-Sent Events, one per task event (`id` is its seq, `event` its type), from `after` or the `Last-Event-ID` header, until the task ends. A view token (`?token=`) works here too.",
  request: { params: IdParam, query: AfterQuery },
  responses: {
    200: {
      description: "The events",
      content: {
        "application/json": { schema: z.object({ events: z.array(views.TaskEvent), lastSeq: z.number().int(), closed: z.boolean() }) },
        "text/event-stream": { schema: { type: "string", description: "`stream:open`, then one event per task event" } },
      },
    },
    ...errors(400, 403, 404),
  },
});
const websocket = createRoute({
  ...doc,
  method: "get",
  path: "/{id}/ws",
  summary: "Follow a task's events over a WebSocket",
  description: "Takes `Upgrade: websocket`. The server sends `event:appended`, `stream:live` and `stream:error` frames; the client acknowledges with `event:ack`.",
  request: { params: IdParam, query: AfterQuery },
  responses: { 101: { description: "Switching to the WebSocket" }, ...errors(400, 403, 404) },
});
const input = createRoute({
  ...doc,
  method: "post",
  path: "/{id}/input",
  summary: "Answer what a task waits for",
  description: "The answer to the task's pending question: `{decision: \"continue\", rounds?}` / `{decision: \"stop\", reason?}` for a decision, `{secrets: {NAME: value}}` for secrets.",
  middleware: [requireScope("user")],
  request: { params: IdParam, body: jsonBody(z.record(z.string(), z.unknown())) },
  responses: { 202: jsonResponse(TaskResponse.extend({ answer: z.unknown() }), "The answer, taken"), ...errors(400, 403, 404, 409, 413, 415) },
});
const cancel = createRoute({
  ...doc,
  method: "post",
  path: "/{id}/cancel",
  summary: "Cancel a task and stop its jobs",
  middleware: [requireScope("user")],
  request: { params: IdParam },
  responses: { 200: jsonResponse(TaskResponse.extend({ stoppedJobs: z.array(z.string()) }), "The cancelled task"), ...errors(400, 403, 404, 409) },
});
const viewLink = createRoute({
  ...doc,
  method: "get",
  path: "/{id}/view-link",
  summary: "A signed link to the task's live view",
  middleware: [requireScope("user")],
  request: { params: IdParam, query: ViewLinkQuery },
  responses: { 200: jsonResponse(z.object({ url: z.string(), token: z.string(), expiresAt: z.string() }), "The link"), ...errors(400, 403, 404) },
});

/** `/api/tasks`: tasks, their event history, and live streams over SSE and WebSocket. */
export const tasksRoute = apiRouter();
// Named for the append route's body, which refers to it (a clone: see `named` in src/platform/openapi.ts).
tasksRoute.openAPIRegistry.register("TaskEventInput", TaskEventInput.clone());
tasksRoute
  .openapi(list, async (c) => {
    return c.json({ tasks: await listTasks(c.var.db, c.var.principal, c.req.valid("query")) }, 200);
  })
  .openapi(create, async (c) => {
    const body = c.req.valid("json");
    const task = await createTask(c.var.db, { ...body, callerId: c.var.principal.userId ?? "" });
    return c.json({ task }, 201);
  })
  .openapi(get, async (c) => {
    const task = await loadTask(c.var.db, c.var.principal, c.req.valid("param").id);
    const stream = await getTaskStream(c.env, task.id).info();
    return c.json({ task, stream: { lastSeq: stream.lastSeq, closed: stream.closed } }, 200);
  })
  // Admin only, so no ownership lookup: the stream itself answers 404 for an unknown task.
  // A repeat of an `eventId` already stored answers 200 with the stored event, so producers may retry.
  .openapi(appendEvent, async (c) => {
    const { event, duplicate } = await appendTaskEventOnce(c.env, c.req.valid("param").id, await c.req.json());
    return c.json({ event, ...(duplicate ? { duplicate } : {}) }, duplicate ? 200 : 201);
  })
  .openapi(readEvents, async (c) => {
    const task = await loadTask(c.var.db, c.var.principal, c.req.valid("param").id);
    const query = c.req.valid("query");
    const after = resumePoint(query.after, c.req.header("last-event-id"));
    if (!(c.req.header("accept") ?? "").includes("text/event-stream")) {
      return c.json(await getTaskStream(c.env, task.id).read({ after, limit: query.limit }), 200);
    }
    const socket = await openStreamSocket(c.env, task.id, after);
    return streamSSE(c, async (sse) => {
      await sse.writeSSE({ event: "stream:open", data: JSON.stringify({ taskId: task.id, after }), retry: 1000 });
      const acker = createAcker((seq) => socket.send(JSON.stringify({ type: "event:ack", seq } satisfies TaskSocketClientMessage)));
      // Writes happen one after another, in arrival order, each acknowledged once the client took it.
      let chain = Promise.resolve();
      await new Promise<void>((done) => {
        const heartbeat = setInterval(() => void sse.write(": keep-alive\n\n").catch(() => undefined), 15_000);
        const finish = () => {
          clearInterval(heartbeat);
          acker.stop();
          done();
        };
        sse.onAbort(() => {
          socket.close(1000, "client went away");
          finish();
        });
        socket.addEventListener("close", () => void chain.then(finish));
        socket.addEventListener("message", (message) => {
          chain = chain.then(async () => {
            const parsed = parseJson(TaskSocketServerMessage, String(message.data));
            if (!parsed.success) return;
            const frame = parsed.data;
            if (frame.type === "event:appended") {
              await sse.writeSSE({ id: String(frame.event.seq), event: frame.event.type, data: JSON.stringify(frame.event) });
              acker.received(frame.event.seq);
              if (isTerminal(frame.event.type)) finish();
            } else if ((frame.type === "stream:live" && frame.closed) || frame.type === "stream:error") {
              // Ended, or dropped for lagging: the client reconnects with Last-Event-ID.
              finish();
            }
          });
        });
      });
      socket.close(1000, "done");
    });
  })
  .openapi(websocket, async (c) => {
    if (c.req.header("upgrade")?.toLowerCase() !== "websocket") {
      throw new AppError("invalid_request", "This endpoint takes a WebSocket upgrade (Upgrade: websocket)");
    }
    const task = await loadTask(c.var.db, c.var.principal, c.req.valid("param").id);
    const after = c.req.valid("query").after ?? 0;
    return getTaskStream(c.env, task.id).fetch(new Request(`https://task-stream/ws?after=${after}`, c.req.raw));
  })
  // The one route for every answer a task waits for (the Product Owner's, the console's, the CLI's).
  .openapi(input, async (c) => {
    const task = await loadTask(c.var.db, c.var.principal, c.req.valid("param").id);
    const { answer } = await answerTask(c.var.db, c.env, task, c.req.valid("json"));
    return c.json({ task: await loadTask(c.var.db, c.var.principal, task.id), answer }, 202);
  })
  .openapi(cancel, async (c) => {
    const task = await loadTask(c.var.db, c.var.principal, c.req.valid("param").id);
    const { stoppedJobs } = await cancelTask(c.env, c.var.db, task, c.var.principal.isAdmin ? "an admin" : `user ${c.var.principal.userId ?? "?"}`);
    return c.json({ task: await loadTask(c.var.db, c.var.principal, task.id), stoppedJobs }, 200);
  })
  .openapi(viewLink, async (c) => {
    const task = await loadTask(c.var.db, c.var.principal, c.req.valid("param").id);
    const ttl = c.req.valid("query").ttl ?? settings(c.env).VIEW_TOKEN_TTL_SECONDS;
    const { token, expiresAt } = await signViewToken(c.env.SECRETS_ENCRYPTION_KEY, task.id, ttl);
    const url = new URL(`/tasks/${encodeURIComponent(task.id)}`, c.req.url);
    url.searchParams.set("token", token);
    return c.json({ url: url.toString(), token, expiresAt: expiresAt.toISOString() }, 200);
  });
