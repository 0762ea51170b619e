import { exports } from "cloudflare:workers";
import type { TaskEvent } from "../../src/shared/events.ts";
import { adminKey, BASE, call, createUserWithKey } from "./helpers.ts";

export interface Watcher {
  ws: WebSocket;
  events: TaskEvent[];
  closed(): { code: number; reason: string } | null;
  /** Resolves once `count` events arrived (or rejects after `ms`). */
  waitForEvents(count: number, ms?: number): Promise<TaskEvent[]>;
  waitForClose(ms?: number): Promise<{ code: number; reason: string }>;
}

async function until(check: () => boolean, ms: number, what: () => string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what()}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Opens the task's WebSocket through the worker; acks every event unless `ack: false`. */
export async function openWatcher(taskId: string, options: { key?: string; after?: number; ack?: boolean; token?: string } = {}): Promise<Watcher> {
  const query = new URLSearchParams();
  if (options.after !== undefined) query.set("after", String(options.after));
  if (options.token) query.set("token", options.token);
  const headers: Record<string, string> = { upgrade: "websocket" };
  if (!options.token) headers.authorization = `Bearer ${options.key ?? adminKey()}`;
  const res = await exports.default.fetch(new Request(`${BASE}/api/tasks/${taskId}/ws?${query.toString()}`, { headers }));
  if (!res.webSocket) throw new Error(`no websocket: ${res.status} ${await res.text()}`);
  const ws = res.webSocket;
  ws.accept();
  const events: TaskEvent[] = [];
  let closed: { code: number; reason: string } | null = null;
  ws.addEventListener("message", (message) => {
    const frame = JSON.parse(String(message.data)) as { type: string; event?: TaskEvent };
    if (frame.type === "event:appended" && frame.event) {
      events.push(frame.event);
      if (options.ack !== false) ws.send(JSON.stringify({ type: "event:ack", seq: frame.event.seq }));
    }
  });
  ws.addEventListener("close", (event) => {
    closed = { code: event.code, reason: event.reason };
  });
  return {
    ws,
    events,
    closed: () => closed,
    async waitForEvents(count, ms = 5000) {
      await until(() => events.length >= count, ms, () => `${events.length}/${count} events`);
      return events;
    },
    async waitForClose(ms = 5000) {
      await until(() => closed !== null, ms, () => "socket still open");
      return closed ?? { code: 0, reason: "" };
    },
  };
}

/** A user, and a task of theirs created by the admin. */
export async function newTask(type = "engineering"): Promise<{ taskId: string; userKey: string; userId: string }> {
  const { key, userId } = await createUserWithKey("owner");
  const res = await call("/api/tasks", { method: "POST", key: adminKey(), json: { type, ownerId: userId } });
  if (res.status !== 201) throw new Error(`create task: ${res.status} ${await res.text()}`);
  const { task } = await res.json<{ task: { id: string } }>();
  return { taskId: task.id, userKey: key, userId };
}

export async function append(taskId: string, event: Record<string, unknown>): Promise<Response> {
  return call(`/api/tasks/${taskId}/events`, { method: "POST", key: adminKey(), json: event });
}

export async function appendOk(taskId: string, event: Record<string, unknown>): Promise<TaskEvent> {
  const res = await append(taskId, event);
  if (res.status !== 201) throw new Error(`append: ${res.status} ${await res.text()}`);
  return (await res.json<{ event: TaskEvent }>()).event;
}

/** Reads an SSE response body into parsed events until it ends (or `ms` passes). */
export async function readSse(res: Response, ms = 5000): Promise<{ id?: string; event?: string; data: string }[]> {
  const reader = res.body?.pipeThrough(new TextDecoderStream()).getReader();
  if (!reader) throw new Error("no body");
  const frames: { id?: string; event?: string; data: string }[] = [];
  let buffer = "";
  const deadline = Date.now() + ms;
  for (;;) {
    const next = await Promise.race([
      reader.read(),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`SSE still open after ${ms} ms: ${JSON.stringify(frames)}`)), Math.max(1, deadline - Date.now()))),
    ]);
    if (next.done) break;
    buffer += next.value;
    let split: number;
    while ((split = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, split);
      buffer = buffer.slice(split + 2);
      const frame: { id?: string; event?: string; data: string } = { data: "" };
      for (const line of block.split("\n")) {
        if (line.startsWith("id: ")) frame.id = line.slice(4);
        else if (line.startsWith("event: ")) frame.event = line.slice(7);
        else if (line.startsWith("data: ")) frame.data += line.slice(6);
      }
      if (frame.data || frame.event) frames.push(frame);
    }
  }
  return frames;
}
