// Live task view: follows one task's event stream over WebSocket, resuming after drops without
// repeating or missing an event. Protocol: src/shared/events.ts (event:appended, stream:live, event:ack).
// Bundled into public/task-view.js by scripts/build-web.ts.

import { ErrorBody } from "../src/shared/errors.ts";
import {
  isTerminal,
  type TaskEvent,
  type TaskEventType,
  type TaskSocketClientMessage,
  TaskSocketServerMessage,
  WATCHER_TOO_SLOW,
} from "../src/shared/events.ts";
import { parseJson } from "../src/shared/json.ts";
import { byId as $, find } from "./dom.ts";

const ICON: Record<TaskEventType, string> = {
  "task.started": "⏳", "step.started": "▶️", "step.progress": "…", "step.completed": "✅", log: "·",
  "task.needs_input": "❓", "task.completed": "✅", "task.failed": "❌", "task.cancelled": "⏹",
};
const ACK_EVERY = 64;

const taskId = decodeURIComponent(location.pathname.split("/").filter(Boolean).at(-1) ?? "");
const token = new URLSearchParams(location.search).get("token") ?? "";

interface TaskView {
  lastSeq: number;
  reconnects: number;
  finished: boolean;
  socket: WebSocket | null;
  /** For tests and the "reconnect" affordance: drop the connection as a network failure would. */
  dropConnection(): void;
}

declare global {
  interface Window {
    __taskView: TaskView;
  }
}

const view: TaskView = {
  lastSeq: 0,
  reconnects: 0,
  finished: false,
  socket: null,
  dropConnection() { this.socket?.close(4000, "dropped by client"); },
};
window.__taskView = view;

function setConnection(state: string, text: string): void {
  const el = $("connection");
  el.dataset.state = state;
  el.textContent = text;
}

function setStatus(status: string): void {
  const el = $("status");
  el.dataset.status = status;
  el.textContent = status.replace("_", " ");
}

function stepItem(name: string): HTMLLIElement {
  const found = $("steps").querySelector(`li[data-step="${CSS.escape(name)}"]`);
  if (found instanceof HTMLLIElement) return found;
  const item = document.createElement("li");
  item.dataset.step = name;
  item.innerHTML = '<strong class="name"></strong><span class="detail"></span>';
  find(item, ".name", HTMLElement).textContent = name;
  $("steps").append(item);
  return item;
}

function render(event: TaskEvent): void {
  const line = document.createElement("li");
  line.dataset.seq = String(event.seq);
  line.dataset.type = event.type;
  const time = new Date(event.at).toLocaleTimeString();
  line.innerHTML = '<span class="seq"></span><span class="time"></span><span class="text"></span>';
  find(line, ".seq", HTMLElement).textContent = `#${event.seq}`;
  find(line, ".time", HTMLElement).textContent = time;
  find(line, ".text", HTMLElement).textContent = `${ICON[event.type]} ${event.step ? `${event.step}: ` : ""}${event.message}`;
  const log = $("log");
  const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
  log.append(line);
  if (atBottom) log.scrollTop = log.scrollHeight;

  if (event.step) {
    const item = stepItem(event.step);
    if (event.type === "step.started" || event.type === "step.progress") item.dataset.state = "running";
    if (event.type === "step.completed") item.dataset.state = "completed";
    if (event.type === "task.failed") item.dataset.state = "failed";
    find(item, ".detail", HTMLElement).textContent = event.message;
  }
  if (event.type === "task.started" || event.type === "step.started") setStatus("running");
  if (event.type === "task.needs_input") setStatus("needs_input");
  if (isTerminal(event.type)) showResult(event);
}

function showResult(event: TaskEvent): void {
  view.finished = true;
  const outcome = event.type.slice("task.".length);
  setStatus(outcome);
  const box = $("result");
  box.hidden = false;
  box.dataset.outcome = outcome;
  box.innerHTML = "<h2></h2><p></p>";
  find(box, "h2", HTMLElement).textContent = outcome === "completed" ? "✅ Completed" : outcome === "failed" ? "❌ Failed" : "⏹ Cancelled";
  find(box, "p", HTMLElement).textContent = event.message;
  const links = linksOf(event.data ?? {});
  if (links.length) {
    const list = document.createElement("ul");
    list.className = "links";
    for (const link of links) {
      const item = document.createElement("li");
      item.dataset.link = link.kind;
      item.append(`${link.label}: `);
      if (link.href) {
        const anchor = document.createElement("a");
        anchor.href = link.href;
        anchor.textContent = link.text;
        anchor.rel = "noopener";
        item.append(anchor);
      } else item.append(link.text);
      list.append(item);
    }
    box.append(list);
  }
  if (event.data && Object.keys(event.data).length) {
    const pre = document.createElement("pre");
    pre.textContent = JSON.stringify(event.data, null, 2);
    box.append(pre);
  }
  setConnection("done", "finished");
}

/** Only http(s) links are made clickable: the data came from a pipeline, and a model wrote some of it. */
const webUrl = (value: unknown): string | undefined => (typeof value === "string" && /^https?:\/\//.test(value) ? value : undefined);

/** What a result points at: the live URL (or a change's preview), the repository, a change's branch and pull request. */
function linksOf(data: Record<string, unknown>): { kind: string; label: string; text: string; href?: string }[] {
  const links: { kind: string; label: string; text: string; href?: string }[] = [];
  const notification = (data.notification ?? {}) as { url?: unknown; preview?: unknown };
  const live = webUrl(data.url) ?? webUrl(notification.url);
  if (live) links.push({ kind: typeof notification.preview === "number" ? "preview" : "live", label: typeof notification.preview === "number" ? `Preview of change #${notification.preview}` : "Live", text: live, href: live });
  const change = data.change as { number?: unknown } | undefined;
  if (typeof data.branch === "string" && change) links.push({ kind: "branch", label: `Change #${String(change.number)}'s branch`, text: data.branch });
  const pull = data.pullRequest as { number?: unknown; url?: unknown } | undefined;
  const pullUrl = webUrl(pull?.url);
  if (pull && pullUrl) links.push({ kind: "pull-request", label: "Pull request", text: `#${String(pull.number)}`, href: pullUrl });
  const repository = webUrl(data.repository);
  if (repository) links.push({ kind: "repository", label: "Repository", text: repository, href: repository });
  return links;
}

function showProblem(text: string): void {
  const el = $("problem");
  el.hidden = false;
  el.textContent = text;
  setConnection("stopped", "not connected");
}

/** When a connection fails, ask the API why (a WebSocket handshake hides the status from scripts). */
async function diagnose(): Promise<string | null> {
  try {
    const res = await fetch(`/api/tasks/${encodeURIComponent(taskId)}/events?after=${view.lastSeq}&limit=1&token=${encodeURIComponent(token)}`);
    if (res.status === 401 || res.status === 404) {
      const body = ErrorBody.safeParse(await res.json());
      return body.success ? body.data.error.message : `Error ${res.status}`;
    }
  } catch {
    // Offline: keep retrying.
  }
  return null;
}

function connect(): void {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const url = `${scheme}://${location.host}/api/tasks/${encodeURIComponent(taskId)}/ws?after=${view.lastSeq}&token=${encodeURIComponent(token)}`;
  const socket = new WebSocket(url);
  view.socket = socket;
  // Set once this socket is given up on, so its (possibly late) close does not reconnect twice.
  let retired = false;
  let ackedSeq = view.lastSeq;
  let ackTimer: number | undefined;
  const ack = () => {
    clearTimeout(ackTimer);
    ackTimer = undefined;
    if (view.lastSeq > ackedSeq && socket.readyState === WebSocket.OPEN) {
      ackedSeq = view.lastSeq;
      socket.send(JSON.stringify({ type: "event:ack", seq: ackedSeq } satisfies TaskSocketClientMessage));
    }
  };

  socket.addEventListener("open", () => setConnection("live", "live"));
  socket.addEventListener("message", (message) => {
    const parsed = parseJson(TaskSocketServerMessage, String(message.data), "frame");
    if (!parsed.success) {
      console.warn(`task view: ignored a frame this page cannot read (${parsed.error})`);
      return;
    }
    const frame = parsed.data;
    if (frame.type === "event:appended") {
      // Exactly once: anything at or below what we have is a replay we already showed.
      if (frame.event.seq <= view.lastSeq) return;
      view.lastSeq = frame.event.seq;
      render(frame.event);
      if (view.lastSeq - ackedSeq >= ACK_EVERY) ack();
      else if (!ackTimer) ackTimer = setTimeout(ack, 100);
    } else if (frame.type === "stream:live") {
      if (frame.closed && !view.finished) setConnection("done", "finished");
    } else if (frame.code === WATCHER_TOO_SLOW) {
      // Dropped for lagging behind: resume on a new socket from what we have.
      retired = true;
      clearTimeout(ackTimer);
      socket.close(1000, "resuming");
      connect();
    } else {
      showProblem(frame.message);
    }
  });
  socket.addEventListener("close", () => {
    clearTimeout(ackTimer);
    if (view.finished || retired) return;
    setConnection("reconnecting", "reconnecting…");
    void diagnose().then((problem) => {
      if (problem) return showProblem(problem);
      view.reconnects += 1;
      const delay = Math.min(5000, 250 * 2 ** Math.min(view.reconnects, 5)) * (0.5 + Math.random() / 2);
      setTimeout(connect, delay);
    });
  });
}

$("task-id").textContent = taskId;
document.title = `Task ${taskId} · Orchestrator`;
connect();
