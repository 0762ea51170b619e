// Web console chat: a conversation with the Product Owner agent over the chat WebSocket.
// Contract: src/shared/chat.ts (chat:history / chat:entry / chat:state / chat:error from the server,
// chat:message / chat:choice from us). Sign-in trades an API key for a signed chat token
// (POST /api/chat/link); only the token is kept, in sessionStorage.
// Bundled into public/chat.js by scripts/build-web.ts.

import * as z from "zod";
import {
  CHAT_TEXT_LIMIT,
  type ChatButton,
  type ChatEntry,
  ChatLink,
  type ClientMessage,
  SERVER_MESSAGE_TYPES,
  ServerMessage,
  type SessionState,
} from "../src/shared/chat.ts";
import { ErrorBody } from "../src/shared/errors.ts";
import { issuesText } from "../src/shared/json.ts";
import { byId as $, find } from "./dom.ts";

const TOKEN_KEY = "orchestrator.chatToken";
const COUNTER_FROM = CHAT_TEXT_LIMIT - 500;
const BACKOFF_MS = [1000, 2000, 5000, 10000];
/** Close codes a server uses to say "this token is not (or no longer) good". */
const AUTH_CLOSE_CODES = new Set([1008, 4001, 4003, 4401, 4403]);
const STATE_TEXT: Record<SessionState, string> = { IDLE: "", PROCESSING: "thinking…", AWAITING: "waiting for your answer" };
/** Messages from the same side this close together read as one group. */
const GROUP_GAP_MS = 3 * 60 * 1000;
const NOTICE_MS = 12000;
const MAX_NOTICES = 3;

type ConnectionStatus = "live" | "connecting" | "reconnecting" | "offline";
const CONNECTION_TEXT: Record<ConnectionStatus, string> = { live: "connected", connecting: "connecting…", reconnecting: "reconnecting…", offline: "offline" };

/** What the chat token says of itself (the server's format: src/lib/view-token.ts); only its expiry matters here. */
const TokenClaims = z.object({ exp: z.number() });

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const dayFormat = new Intl.DateTimeFormat(undefined, { weekday: "long", month: "long", day: "numeric" });
const yearDayFormat = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "long", day: "numeric" });

interface Chat {
  token: string | null;
  socket: WebSocket | null;
  connected: boolean;
  state: SessionState;
  /** Bumped whenever the current connection is given up (sign-out, expiry), so late callbacks do nothing. */
  generation: number;
  attempt: number;
  retryTimer: number | undefined;
  historyReceived: boolean;
  /** id → { key, el } for what is on screen; key is the entry's JSON, to skip re-rendering unchanged entries. */
  rendered: Map<string, { key: string; el: HTMLElement }>;
  /** actionId → the choice sent, so a re-rendered question keeps its row disabled. */
  answered: Map<string, string>;
  /** For tests: drop the connection as a network failure would (it reconnects). */
  dropConnection(): void;
}

declare global {
  interface Window {
    __chat: Chat;
  }
}

const chat: Chat = {
  token: null,
  socket: null,
  connected: false,
  state: "IDLE",
  generation: 0,
  attempt: 0,
  retryTimer: undefined,
  historyReceived: false,
  rendered: new Map(),
  answered: new Map(),
  dropConnection() {
    this.socket?.close(4000, "dropped by client");
  },
};
window.__chat = chat;

// ---------------------------------------------------------------------------------------------
// Token storage

function readToken(): string | null {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

function storeToken(token: string): void {
  try {
    sessionStorage.setItem(TOKEN_KEY, token);
  } catch {
    // Storage disabled: the token lives in memory for this page only.
  }
}

function clearToken(): void {
  try {
    sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // Nothing stored.
  }
}

/** The token's own expiry when it is the usual `base64url(JSON {exp}).signature`; null when unknown. */
function tokenExpiry(token: string): number | null {
  try {
    const payload = token.split(".")[0] ?? "";
    const json = atob(payload.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(payload.length / 4) * 4, "="));
    const claims = TokenClaims.safeParse(JSON.parse(json));
    return claims.success ? claims.data.exp * 1000 : null;
  } catch {
    return null;
  }
}

function isExpired(token: string): boolean {
  const exp = tokenExpiry(token);
  return exp !== null && exp <= Date.now();
}

/** Takes `?token=` off the address bar (keeping any other parameters) once it is stored. */
function takeTokenFromUrl(): string | null {
  const url = new URL(location.href);
  const token = url.searchParams.get("token");
  if (token === null) return null;
  url.searchParams.delete("token");
  history.replaceState(history.state, "", `${url.pathname}${url.search}${url.hash}`);
  return token || null;
}

// ---------------------------------------------------------------------------------------------
// Views

function showView(view: "signin" | "chat"): void {
  document.body.dataset.view = view;
  $("signin-view").hidden = view !== "signin";
  $("chat-view").hidden = view !== "chat";
  $("signout").hidden = view !== "chat";
  $("connection").hidden = view !== "chat";
}

function showSignIn(notice: string | null): void {
  showView("signin");
  setConnection("offline");
  const box = $("signin-notice");
  box.hidden = !notice;
  box.textContent = notice ?? "";
  setSignInError(null);
  $("api-key").focus();
}

function setSignInError(message: string | null, requestId?: string | null): void {
  const box = $("signin-error");
  box.hidden = !message;
  box.replaceChildren();
  if (!message) {
    $("api-key").removeAttribute("aria-invalid");
    return;
  }
  $("api-key").setAttribute("aria-invalid", "true");
  box.append(message);
  if (requestId) {
    const id = document.createElement("span");
    id.className = "request-id";
    id.textContent = `Request ${requestId}`;
    box.append(id);
  }
}

function setSignInBusy(busy: boolean): void {
  const button = $("signin-submit", HTMLButtonElement);
  button.disabled = busy;
  button.textContent = busy ? "Signing in…" : "Continue";
  $("signin").setAttribute("aria-busy", String(busy));
}

async function onSignIn(event: Event): Promise<void> {
  event.preventDefault();
  const input = $("api-key", HTMLInputElement);
  const apiKey = input.value.trim();
  if (!apiKey) {
    setSignInError("Enter your API key.");
    input.focus();
    return;
  }
  setSignInError(null);
  setSignInBusy(true);
  try {
    let response: Response;
    try {
      response = await fetch("/api/chat/link", {
        method: "POST",
        headers: { Authorization: `Bearer ${apiKey}`, "Content-Type": "application/json", Accept: "application/json" },
        body: "{}",
        cache: "no-store",
        credentials: "omit",
      });
    } catch {
      setSignInError("Could not reach the Orchestrator. Check your connection and try again.");
      return;
    }
    let body: unknown = null;
    try {
      body = await response.json();
    } catch {
      // Not JSON: fall through to the status.
    }
    const link = ChatLink.safeParse(body);
    if (!response.ok || !link.success || !link.data.token) {
      const error = ErrorBody.safeParse(body);
      const message = error.success && error.data.error.message ? error.data.error.message : `Sign-in failed (HTTP ${response.status}).`;
      setSignInError(message, error.success ? error.data.error.requestId : null);
      input.select();
      return;
    }
    input.value = "";
    storeToken(link.data.token);
    openChat(link.data.token);
  } finally {
    setSignInBusy(false);
  }
}

function openChat(token: string): void {
  chat.token = token;
  chat.generation += 1;
  chat.attempt = 0;
  resetConversation();
  showView("chat");
  connect();
  $("composer").focus();
}

/** The chat token no longer works: forget it and ask for the key again. */
function endSession(notice: string | null): void {
  chat.generation += 1;
  chat.token = null;
  clearToken();
  clearTimeout(chat.retryTimer);
  chat.retryTimer = undefined;
  const socket = chat.socket;
  chat.socket = null;
  if (socket && socket.readyState <= WebSocket.OPEN) socket.close(1000, "signed out");
  resetConversation();
  showSignIn(notice);
}

function resetConversation(): void {
  chat.rendered.clear();
  chat.historyReceived = false;
  $("messages").replaceChildren();
  $("notices").replaceChildren();
  $("empty").hidden = true;
  $("jump").hidden = true;
  setState("IDLE");
}

// ---------------------------------------------------------------------------------------------
// Connection

function setConnection(status: ConnectionStatus): void {
  const el = $("connection");
  chat.connected = status === "live";
  el.dataset.connected = String(chat.connected);
  el.dataset.status = status;
  find(el, ".connection-text", HTMLElement).textContent = CONNECTION_TEXT[status];
  updateSendButton();
}

function connect(): void {
  clearTimeout(chat.retryTimer);
  chat.retryTimer = undefined;
  if (!chat.token) return;
  if (isExpired(chat.token)) {
    endSession("Your chat link has expired. Sign in again to continue.");
    return;
  }
  const generation = chat.generation;
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(`${scheme}//${location.host}/chat/ws?token=${encodeURIComponent(chat.token)}`);
  chat.socket = socket;
  let opened = false;
  setConnection(chat.attempt === 0 ? "connecting" : "reconnecting");

  socket.addEventListener("open", () => {
    if (chat.socket !== socket) return;
    opened = true;
    setConnection("live");
  });
  socket.addEventListener("message", (message) => {
    if (chat.socket !== socket) return;
    onFrame(message.data);
  });
  socket.addEventListener("close", (event) => {
    if (chat.socket !== socket || generation !== chat.generation) return;
    chat.socket = null;
    void onClosed(event, opened, generation);
  });
}

async function onClosed(event: CloseEvent, opened: boolean, generation: number): Promise<void> {
  setConnection("reconnecting");
  if (AUTH_CLOSE_CODES.has(event.code)) {
    endSession(closeNotice(event.reason));
    return;
  }
  if (!opened) {
    // A refused upgrade hides its status from scripts: ask the same URL without upgrading.
    const problem = await diagnose();
    if (generation !== chat.generation || chat.socket) return;
    if (problem) {
      endSession(problem);
      return;
    }
  }
  scheduleReconnect();
}

function closeNotice(reason: string): string {
  const detail = reason && !/^(unauthori[sz]ed|forbidden)$/i.test(reason) ? ` (${reason})` : "";
  return `Your chat session has ended${detail}. Sign in again to continue.`;
}

/** Whether the token is why the socket would not open: the message to show, or null (keep retrying). */
async function diagnose(): Promise<string | null> {
  if (!chat.token) return null;
  if (isExpired(chat.token)) return "Your chat link has expired. Sign in again to continue.";
  try {
    const response = await fetch(`/chat/ws?token=${encodeURIComponent(chat.token)}`, { cache: "no-store", credentials: "omit" });
    if (response.status === 401 || response.status === 403) {
      let message: string | null = null;
      try {
        const body = ErrorBody.safeParse(await response.json());
        message = body.success ? body.data.error.message : null;
      } catch {
        // Not JSON.
      }
      return message ? `${message.replace(/\.$/, "")}. Sign in again to continue.` : "Your chat link has expired. Sign in again to continue.";
    }
  } catch {
    // Offline: keep retrying.
  }
  return null;
}

function scheduleReconnect(): void {
  const delay = BACKOFF_MS[Math.min(chat.attempt, BACKOFF_MS.length - 1)] ?? 10000;
  chat.attempt += 1;
  setConnection("reconnecting");
  clearTimeout(chat.retryTimer);
  chat.retryTimer = setTimeout(connect, delay);
}

window.addEventListener("online", () => {
  if (chat.token && !chat.socket && chat.retryTimer) connect();
});

// ---------------------------------------------------------------------------------------------
// Frames from the server

function onFrame(data: unknown): void {
  if (typeof data !== "string") return;
  let json: unknown;
  try {
    json = JSON.parse(data);
  } catch {
    console.warn("chat: ignored a frame that is not JSON");
    return;
  }
  // Other frames (the agents SDK's own, e.g. cf_agent_state) are not for us.
  const type = json && typeof json === "object" && "type" in json ? String(json.type) : "";
  if (!SERVER_MESSAGE_TYPES.has(type)) return;
  const parsed = ServerMessage.safeParse(json);
  if (!parsed.success) {
    console.warn(`chat: ignored a ${type} frame this page cannot read (${issuesText(parsed.error, type)})`);
    return;
  }
  const frame = parsed.data;
  switch (frame.type) {
    case "chat:history":
      chat.attempt = 0;
      renderHistory(frame.entries);
      setState(frame.state);
      break;
    case "chat:entry":
      renderEntries([frame.entry], { history: false });
      break;
    case "chat:state":
      setState(frame.state);
      break;
    case "chat:error":
      showNotice(frame.message || "Something went wrong.", frame.code);
      break;
  }
}

function setState(state: SessionState): void {
  const nearBottom = isNearBottom();
  chat.state = state;
  const el = $("state");
  el.dataset.state = state;
  find(el, ".state-text", HTMLElement).textContent = STATE_TEXT[state];
  if (state !== "IDLE" && nearBottom) scrollToBottom();
}

// ---------------------------------------------------------------------------------------------
// Rendering

function renderHistory(entries: ChatEntry[]): void {
  const list = $("messages");
  let shown = [...chat.rendered.keys()];
  const incoming = entries.map((entry) => entry.id);
  // History is the conversation's latest entries: when it starts further on than what is shown,
  // drop the older ones from the top rather than rebuilding everything.
  const start = incoming.length ? shown.indexOf(incoming[0] ?? "") : -1;
  if (start > 0) {
    const kept = shown.slice(start);
    if (kept.length <= incoming.length && kept.every((id, i) => id === incoming[i])) {
      for (const id of shown.slice(0, start)) {
        chat.rendered.get(id)?.el.remove();
        chat.rendered.delete(id);
      }
      shown = kept;
    }
  }
  // Same conversation, maybe longer: update in place, so open live views are not reloaded.
  const continues = shown.length <= incoming.length && shown.every((id, i) => id === incoming[i]);
  if (!continues) {
    chat.rendered.clear();
    list.replaceChildren();
  }
  list.setAttribute("aria-busy", "true");
  const first = !chat.historyReceived;
  chat.historyReceived = true;
  renderEntries(entries, { history: true });
  list.setAttribute("aria-busy", "false");
  if (first || !continues) scrollToBottom("instant");
}

function renderEntries(entries: ChatEntry[], { history }: { history: boolean }): void {
  const list = $("messages");
  const nearBottom = isNearBottom();
  let added = false;
  let ownMessage = false;
  for (const entry of entries) {
    const key = JSON.stringify(entry);
    const existing = chat.rendered.get(entry.id);
    if (existing?.key === key) continue;
    const el = entryElement(entry);
    if (existing) {
      carryOver(existing.el, el);
      existing.el.replaceWith(el);
    } else {
      list.append(el);
      added = true;
      if (entry.from === "user") ownMessage = true;
    }
    chat.rendered.set(entry.id, { key, el });
  }
  chat.historyReceived = true;
  regroup();
  openLatestTask();
  $("empty").hidden = chat.rendered.size > 0;
  if (!added || history) return;
  if (nearBottom || ownMessage) scrollToBottom();
  else $("jump").hidden = false;
}

/** An entry's live view panel, if it has one. */
function livePanel(el: ParentNode): HTMLDetailsElement | null {
  const panel = el.querySelector("details.task-live");
  return panel instanceof HTMLDetailsElement ? panel : null;
}

/** Keeps a replaced entry's live view as the person left it. */
function carryOver(from: HTMLElement, to: HTMLElement): void {
  const before = livePanel(from);
  const after = livePanel(to);
  if (!before || !after || before.dataset.link !== after.dataset.link) return;
  if (before.dataset.touched) after.dataset.touched = before.dataset.touched;
  if (before.dataset.auto) after.dataset.auto = before.dataset.auto;
  if (before.open) setOpen(after, true);
}

function entryElement(entry: ChatEntry): HTMLLIElement {
  const li = document.createElement("li");
  li.className = "entry";
  li.dataset.entryId = entry.id;
  li.dataset.from = entry.from;
  const at = new Date(entry.at);
  const validAt = !Number.isNaN(at.getTime());
  if (validAt) li.dataset.at = String(at.getTime());

  if (entry.from === "agent") {
    const avatar = document.createElement("span");
    avatar.className = "avatar";
    avatar.setAttribute("aria-hidden", "true");
    li.append(avatar);
  }

  const body = document.createElement("div");
  body.className = "entry-body";
  li.append(body);

  const who = document.createElement("span");
  who.className = "visually-hidden";
  who.textContent = entry.from === "agent" ? "Orchestrator: " : "You: ";
  body.append(who);

  if (entry.text) {
    const bubble = document.createElement("div");
    bubble.className = "bubble";
    if (validAt) bubble.title = fullFormat.format(at);
    if (entry.from === "agent") appendLinkified(bubble, entry.text);
    else bubble.textContent = entry.text;
    body.append(bubble);
  }

  if (entry.buttons?.length) body.append(choicesElement(entry, entry.buttons));

  const link = safeLink(entry.taskLink);
  if (link) {
    li.classList.add("has-task");
    body.append(taskElement(entry, link));
  }

  if (validAt) {
    const time = document.createElement("time");
    time.className = "meta";
    time.dateTime = at.toISOString();
    time.textContent = timeFormat.format(at);
    time.title = fullFormat.format(at);
    body.append(time);
  }
  return li;
}

const URL_PATTERN = /\bhttps?:\/\/[^\s<>"'`]+/gi;

/** Text with its http(s) URLs as links, built from DOM nodes (never HTML). */
function appendLinkified(parent: HTMLElement, text: string): void {
  let last = 0;
  for (const match of text.matchAll(URL_PATTERN)) {
    let url = match[0];
    // Sentence punctuation after a URL is not part of it; a closing bracket is, if it has its pair.
    for (;;) {
      const tail = url.at(-1) ?? "";
      if (/[.,;:!?*_~]/.test(tail)) url = url.slice(0, -1);
      else if (tail === ")" && count(url, "(") < count(url, ")")) url = url.slice(0, -1);
      else if (tail === "]" && count(url, "[") < count(url, "]")) url = url.slice(0, -1);
      else break;
    }
    const href = safeLink(url);
    if (!href) continue;
    if (match.index > last) parent.append(text.slice(last, match.index));
    const a = document.createElement("a");
    a.href = href;
    a.textContent = url;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    parent.append(a);
    last = match.index + url.length;
  }
  if (last < text.length) parent.append(text.slice(last));
}

function count(text: string, char: string): number {
  return text.split(char).length - 1;
}

/** An http(s) URL (absolute, or relative to this page) as a string; null for anything else. */
function safeLink(value: string | undefined): string | null {
  if (!value) return null;
  try {
    const url = new URL(value, location.href);
    return url.protocol === "http:" || url.protocol === "https:" ? value : null;
  } catch {
    return null;
  }
}

function choicesElement(entry: ChatEntry, buttons: ChatButton[]): HTMLDivElement {
  const row = document.createElement("div");
  row.className = "choices";
  row.setAttribute("role", "group");
  row.setAttribute("aria-label", "Choose an answer");
  const answered = entry.actionId ? chat.answered.get(entry.actionId) : undefined;
  for (const choice of buttons) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "choice";
    button.textContent = choice.label;
    button.dataset.choice = choice.choice;
    if (answered !== undefined) {
      button.disabled = true;
      if (answered === choice.choice) button.setAttribute("aria-pressed", "true");
    }
    button.addEventListener("click", () => sendChoice(entry, choice.choice, row, button));
    row.append(button);
  }
  if (answered !== undefined) row.dataset.answered = "true";
  return row;
}

function sendChoice(entry: ChatEntry, choice: string, row: HTMLElement, button: HTMLButtonElement): void {
  if (row.dataset.answered) return;
  if (!entry.actionId) {
    showNotice("This question can no longer be answered here.");
    return;
  }
  if (!send({ type: "chat:choice", actionId: entry.actionId, choice })) {
    showNotice("Not connected. Your answer was not sent; try again in a moment.");
    return;
  }
  chat.answered.set(entry.actionId, choice);
  row.dataset.answered = "true";
  for (const other of row.querySelectorAll("button")) other.disabled = true;
  button.setAttribute("aria-pressed", "true");
  $("composer").focus({ preventScroll: true });
}

function taskElement(entry: ChatEntry, link: string): HTMLDivElement {
  const card = document.createElement("div");
  card.className = "task";

  const head = document.createElement("div");
  head.className = "task-head";
  const icon = document.createElement("span");
  icon.className = "task-icon";
  icon.setAttribute("aria-hidden", "true");
  const title = document.createElement("div");
  title.className = "task-title";
  const label = document.createElement("span");
  label.className = "task-label";
  label.textContent = "Live task";
  title.append(label);
  if (entry.taskId) {
    const id = document.createElement("code");
    id.className = "task-id";
    id.textContent = entry.taskId;
    id.title = entry.taskId;
    title.append(id);
  }
  const open = document.createElement("a");
  open.className = "task-open";
  open.href = link;
  open.target = "_blank";
  open.rel = "noopener";
  open.setAttribute("data-task-link", "");
  open.textContent = "Watch live";
  const arrow = document.createElement("span");
  arrow.className = "task-open-arrow";
  arrow.setAttribute("aria-hidden", "true");
  arrow.textContent = "↗";
  open.append(arrow);
  const hint = document.createElement("span");
  hint.className = "visually-hidden";
  hint.textContent = " (opens in a new tab)";
  open.append(hint);
  head.append(icon, title, open);

  const details = document.createElement("details");
  details.className = "task-live";
  details.dataset.link = link;
  details.dataset.title = entry.taskId ? `Live view of task ${entry.taskId}` : "Live task view";
  const summary = document.createElement("summary");
  const summaryText = document.createElement("span");
  summaryText.className = "task-live-label";
  summaryText.textContent = "Live view";
  summary.append(summaryText);
  // Only the person's own toggles count as a choice; auto-open/collapse leaves those alone.
  summary.addEventListener("click", () => {
    details.dataset.touched = "true";
  });
  const frameBox = document.createElement("div");
  frameBox.className = "task-frame";
  details.append(summary, frameBox);
  details.addEventListener("toggle", () => syncFrame(details));

  card.append(head, details);
  return card;
}

/** Loads the live view when its panel opens, and unloads it (closing its socket) when it closes. */
function syncFrame(details: HTMLDetailsElement): void {
  const box = find(details, ".task-frame", HTMLElement);
  const frame = box.querySelector("iframe");
  if (details.open && !frame) {
    const iframe = document.createElement("iframe");
    iframe.src = details.dataset.link ?? "";
    iframe.loading = "lazy";
    iframe.title = details.dataset.title ?? "";
    iframe.referrerPolicy = "no-referrer";
    box.append(iframe);
  } else if (!details.open && frame) {
    frame.remove();
  }
}

function setOpen(details: HTMLDetailsElement, open: boolean): void {
  if (details.open === open) return;
  details.open = open;
  // The toggle event comes later; load the frame now so it exists right away.
  syncFrame(details);
}

/** The newest task's live view starts open; older ones the person did not touch fold away. */
function openLatestTask(): void {
  const panels = [...$("messages").querySelectorAll("details.task-live")].filter((panel) => panel instanceof HTMLDetailsElement);
  const latest = panels.at(-1);
  for (const panel of panels) {
    if (panel === latest) {
      if (!panel.dataset.auto && !panel.dataset.touched) setOpen(panel, true);
      panel.dataset.auto = "true";
    } else if (panel.dataset.auto && !panel.dataset.touched) {
      setOpen(panel, false);
    }
  }
}

/** Groups runs of messages from one side and labels the first message of each day. */
function regroup(): void {
  const items = [...$("messages").children].filter((item) => item instanceof HTMLElement);
  let previous: HTMLElement | null = null;
  let previousDay: string | null = null;
  const today = dayKey(new Date());
  const yesterday = dayKey(new Date(Date.now() - 86400000));
  items.forEach((item, i) => {
    const at = item.dataset.at ? Number(item.dataset.at) : null;
    const date = at !== null ? new Date(at) : null;
    const day = date ? dayKey(date) : previousDay;
    if (date && day !== previousDay) {
      item.dataset.day =
        day === today ? "Today" : day === yesterday ? "Yesterday" : date.getFullYear() === new Date().getFullYear() ? dayFormat.format(date) : yearDayFormat.format(date);
    } else {
      delete item.dataset.day;
    }
    const continues =
      previous !== null &&
      previous.dataset.from === item.dataset.from &&
      !item.dataset.day &&
      !previous.classList.contains("has-task") &&
      (at === null || previous.dataset.at === undefined || at - Number(previous.dataset.at) < GROUP_GAP_MS);
    item.classList.toggle("cont", continues);
    if (previous) previous.classList.toggle("tail", !continues);
    if (i === items.length - 1) item.classList.add("tail");
    previous = item;
    previousDay = day;
  });
}

function dayKey(date: Date): string {
  return `${date.getFullYear()}-${date.getMonth()}-${date.getDate()}`;
}

// ---------------------------------------------------------------------------------------------
// Notices (chat:error and local problems): inline, dismissable, fading on their own.

function showNotice(message: string, code?: string): void {
  const box = $("notices");
  const notice = document.createElement("div");
  notice.className = "notice";
  if (typeof code === "string") notice.dataset.code = code;
  const icon = document.createElement("span");
  icon.className = "notice-icon";
  icon.setAttribute("aria-hidden", "true");
  icon.textContent = "!";
  const text = document.createElement("span");
  text.className = "notice-text";
  text.textContent = message;
  const close = document.createElement("button");
  close.type = "button";
  close.className = "notice-close";
  close.setAttribute("aria-label", "Dismiss");
  close.textContent = "×";
  close.addEventListener("click", () => notice.remove());
  notice.append(icon, text, close);
  const nearBottom = isNearBottom();
  box.append(notice);
  while (box.children.length > MAX_NOTICES) box.firstElementChild?.remove();
  setTimeout(() => notice.remove(), NOTICE_MS);
  if (nearBottom) scrollToBottom();
}

// ---------------------------------------------------------------------------------------------
// Composer

function send(message: ClientMessage): boolean {
  const socket = chat.socket;
  if (!socket || socket.readyState !== WebSocket.OPEN) return false;
  socket.send(JSON.stringify(message));
  return true;
}

function submitComposer(): void {
  const composer = $("composer", HTMLTextAreaElement);
  const text = composer.value.trim();
  if (!text) return;
  if (text.length > CHAT_TEXT_LIMIT) {
    showNotice(`Messages can be at most ${CHAT_TEXT_LIMIT} characters; this one has ${text.length}.`);
    return;
  }
  if (!send({ type: "chat:message", text })) {
    showNotice("Not connected. Your message is still in the box; send it again once connected.");
    return;
  }
  composer.value = "";
  onComposerInput();
  scrollToBottom();
}

function onComposerInput(): void {
  const composer = $("composer", HTMLTextAreaElement);
  composer.style.height = "auto";
  composer.style.height = `${Math.min(composer.scrollHeight, 200)}px`;
  const length = composer.value.length;
  const counter = $("counter");
  counter.hidden = length < COUNTER_FROM;
  counter.textContent = `${length} / ${CHAT_TEXT_LIMIT}`;
  counter.dataset.over = String(composer.value.trim().length > CHAT_TEXT_LIMIT);
  updateSendButton();
}

function updateSendButton(): void {
  const composer = $("composer", HTMLTextAreaElement);
  const text = composer.value.trim();
  $("send", HTMLButtonElement).disabled = !chat.connected || !text || text.length > CHAT_TEXT_LIMIT;
  $("composer-form").dataset.connected = String(chat.connected);
}

// ---------------------------------------------------------------------------------------------
// Scrolling (the document scrolls; header and composer stick)

function isNearBottom(): boolean {
  const root = document.documentElement;
  return window.innerHeight + window.scrollY >= root.scrollHeight - 120;
}

function scrollToBottom(behavior: ScrollBehavior = "smooth"): void {
  const reduce = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  requestAnimationFrame(() => {
    window.scrollTo({ top: document.documentElement.scrollHeight, behavior: reduce ? "instant" : behavior });
    $("jump").hidden = true;
  });
}

window.addEventListener(
  "scroll",
  () => {
    if (!$("jump").hidden && isNearBottom()) $("jump").hidden = true;
  },
  { passive: true },
);

// ---------------------------------------------------------------------------------------------
// Start

function start(): void {
  $("signin").addEventListener("submit", (event) => void onSignIn(event));
  $("signout").addEventListener("click", () => endSession(null));
  $("jump").addEventListener("click", () => scrollToBottom());
  $("composer-form").addEventListener("submit", (event) => {
    event.preventDefault();
    submitComposer();
  });
  const composer = $("composer");
  composer.addEventListener("input", onComposerInput);
  composer.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) return;
    event.preventDefault();
    submitComposer();
  });

  const fromUrl = takeTokenFromUrl();
  if (fromUrl) storeToken(fromUrl);
  const token = readToken();
  if (!token) {
    showSignIn(null);
    return;
  }
  if (isExpired(token)) {
    clearToken();
    showSignIn("Your chat link has expired. Sign in again to continue.");
    return;
  }
  openChat(token);
}

start();
