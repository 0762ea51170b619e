/**
 * A Telegram Bot API server for tests, `npm run dev` and the demo: `GET|POST /bot<token>/<method>`
 * with parameters in the query string, a JSON body or a form body (urlencoded or multipart), and
 * answers shaped as Telegram's: `{ok: true, result}` or `{ok: false, error_code, description}`, an
 * unknown token being a 401 `Unauthorized`. Production code reaches it as it reaches
 * api.telegram.org, through grammY's `Api` (its `apiRoot` option) or plain fetch, with only the
 * base URL changed.
 *
 * Methods: getMe, sendMessage, editMessageText, deleteMessage, answerCallbackQuery, sendChatAction,
 * setMyCommands, setWebhook, deleteWebhook, getWebhookInfo, getUpdates (long polling: it holds the
 * request up to `timeout` seconds until an update comes; a newer poll ends an older one with 409, as
 * Telegram does when two instances of a bot poll). Bots are made with `addBot` (a token of
 * the real form `<bot id>:<35 characters>`); every request is recorded, and so is every message sent
 * (with its edits and deletion), chat action and command list (`GET /_standin/requests`). `deliverUpdate`
 * (`POST /_standin/updates {token, update}` from another process) posts an update to a
 * bot's webhook as Telegram does, or queues it for the bot's getUpdates when it has no webhook; `floodControl(n, s)` answers the next n calls 429 with
 * `retry_after: s`, as Telegram's flood control does.
 *
 * Where it is kinder than Telegram: webhooks may be plain `http://` URLs (local tests have no TLS)
 * on any port. Everything else it refuses the way Telegram does.
 */
import { randomBytes } from "node:crypto";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { close, listen, readBody, sendJson } from "./http.ts";

/** A bot as getMe describes it (Telegram's `User` with the bot-only fields). */
export interface BotUser {
  id: number;
  is_bot: true;
  first_name: string;
  username: string;
  can_join_groups: boolean;
  can_read_all_group_messages: boolean;
  supports_inline_queries: boolean;
  can_connect_to_business: boolean;
  has_main_web_app: boolean;
}

export interface Webhook {
  url: string;
  secretToken: string | null;
  maxConnections: number;
  allowedUpdates: string[] | null;
  setAt: number;
}

interface Bot {
  token: string;
  user: BotUser;
  webhook: Webhook | null;
  nextMessageId: number;
  /** Updates not yet confirmed by a getUpdates offset past them. */
  pending: (Record<string, unknown> & { update_id: number })[];
  nextUpdateId: number;
  /** The getUpdates request waiting for an update: told to answer when one comes, or to give way to a newer poll. */
  poll: { wake: (outcome: "update" | "conflict") => void } | null;
}

export interface Chat {
  id: number | string;
  type: "private" | "group" | "supergroup" | "channel";
}

/** What sendMessage answers with (Telegram's `Message`, the fields a text message has). */
export interface Message {
  message_id: number;
  from: BotUser;
  chat: Record<string, unknown> & Chat;
  date: number;
  text: string;
  [key: string]: unknown;
}

export interface RecordedRequest {
  at: string;
  httpMethod: string;
  /** As in the path, with its original case (Telegram matches method names case-insensitively). */
  method: string;
  /** The token in the path, so tests can check which one was sent (and where it must not appear). */
  token: string;
  /** The bot the token belongs to, or null for a token the server does not know. */
  username: string | null;
  params: Record<string, unknown>;
  status: number;
}

export interface SentMessage {
  at: string;
  username: string;
  chatId: number | string;
  text: string;
  params: Record<string, unknown>;
  message: Message;
  /** How often the bot edited it (editMessageText), and whether it deleted it. */
  edits?: number;
  deleted?: boolean;
}

export interface AddBotOptions {
  username: string;
  firstName?: string;
  canJoinGroups?: boolean;
  canReadAllGroupMessages?: boolean;
  supportsInlineQueries?: boolean;
}

type Params = Record<string, unknown>;
type Answer = { status: number; body: unknown };

class BadRequest extends Error {}

const ok = (result: unknown): Answer => ({ status: 200, body: { ok: true, result } });
const fail = (status: number, description: string): Answer => ({ status, body: { ok: false, error_code: status, description } });

const TOKEN_TAIL = 35;
const USERNAME = /^[A-Za-z][A-Za-z0-9_]{3,31}$/;
const SECRET_TOKEN = /^[A-Za-z0-9_-]{1,256}$/;
const CHAT_ACTIONS = new Set(["typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice", "upload_document", "choose_sticker", "find_location", "record_video_note", "upload_video_note"]);
const UPDATE_TYPES = new Set(["message", "edited_message", "channel_post", "edited_channel_post", "business_connection", "business_message", "edited_business_message", "deleted_business_messages", "message_reaction", "message_reaction_count", "inline_query", "chosen_inline_result", "callback_query", "shipping_query", "pre_checkout_query", "purchased_paid_media", "poll", "poll_answer", "my_chat_member", "chat_member", "chat_join_request", "chat_boost", "removed_chat_boost"]);

export class TelegramServer {
  readonly requests: RecordedRequest[] = [];
  readonly messages: SentMessage[] = [];
  private readonly bots = new Map<string, Bot>();
  private nextBotId = 7_000_000_000 + Math.floor(Math.random() * 1_000_000_000);
  private server: Server | null = null;
  /** More listeners on other addresses (listenAlso), serving the same bots. */
  private readonly others: Server[] = [];
  /** getUpdates requests waiting, woken when the server stops. */
  private readonly polls = new Set<{ wake: (outcome: "update" | "conflict") => void }>();
  private outage = false;
  /** Answers left to give as 429 Too Many Requests, and the retry_after they carry. */
  private floodLeft = 0;
  private floodRetryAfter = 1;
  /** Only calls of this method are limited (null: every call). */
  private floodMethod: string | null = null;
  /** Chat actions ("typing"…) and command lists the bots set, for tests to read. */
  readonly chatActions: { username: string; chatId: number | string; action: string }[] = [];
  readonly commands = new Map<string, { command: string; description: string }[]>();
  /** Chats whose user has blocked the bot: sending there answers 403, as Telegram does. */
  private readonly blocked = new Set<string>();
  /** Messages of users (not the bot's own) the bot deleted. */
  readonly deletedUserMessages: { username: string; chatId: number | string; messageId: number }[] = [];
  url = "";

  /** The base URL grammY's `apiRoot` and TELEGRAM_API_URL take (no trailing slash). */
  get apiRoot(): string {
    return this.url;
  }

  /** Registers a bot (as @BotFather would) and returns its token, `<bot id>:<35 characters>`. */
  addBot(options: AddBotOptions): string {
    if (!USERNAME.test(options.username) || !/bot$/i.test(options.username)) {
      throw new Error(`a bot username is 5-32 characters of a-z, 0-9 and _, ending in "bot": ${options.username}`);
    }
    if ([...this.bots.values()].some((bot) => bot.user.username.toLowerCase() === options.username.toLowerCase())) {
      throw new Error(`the username ${options.username} is taken`);
    }
    const id = this.nextBotId++;
    const token = `${id}:${randomBytes(32).toString("base64url").slice(0, TOKEN_TAIL)}`;
    this.bots.set(token, {
      token,
      user: {
        id,
        is_bot: true,
        first_name: options.firstName ?? (options.username.replace(/_?bot$/i, "") || options.username),
        username: options.username,
        can_join_groups: options.canJoinGroups ?? true,
        can_read_all_group_messages: options.canReadAllGroupMessages ?? false,
        supports_inline_queries: options.supportsInlineQueries ?? false,
        can_connect_to_business: false,
        has_main_web_app: false,
      },
      webhook: null,
      nextMessageId: 1,
      pending: [],
      nextUpdateId: 1,
      poll: null,
    });
    return token;
  }

  /** Revokes a token (as /revoke in @BotFather): calls with it answer 401 from now on. */
  revokeBot(token: string): void {
    this.bots.delete(token);
  }

  /** A new token for the same bot (@BotFather's /revoke, then the token it gives): the old one answers 401 from now on. */
  rotateToken(token: string): string {
    const bot = this.bots.get(token);
    if (!bot) throw new Error("no bot has this token");
    const fresh = `${bot.user.id}:${randomBytes(32).toString("base64url").slice(0, TOKEN_TAIL)}`;
    this.bots.delete(token);
    this.bots.set(fresh, { ...bot, token: fresh });
    return fresh;
  }

  /** The bot a token belongs to, for tests that look at its state (its webhook, say). */
  bot(token: string): { user: BotUser; webhook: Webhook | null } | undefined {
    const bot = this.bots.get(token);
    return bot ? { user: bot.user, webhook: bot.webhook } : undefined;
  }

  /**
   * While on, every request is answered as a Telegram outage looks from outside: a 502 HTML page
   * from the front proxy, not the API's JSON.
   */
  setOutage(on: boolean): void {
    this.outage = on;
  }

  /**
   * The next `times` Bot API calls answer 429 `Too Many Requests: retry after N` with
   * `parameters.retry_after`, as Telegram's flood control does.
   */
  floodControl(times: number, retryAfterSeconds = 1, method?: string): void {
    this.floodLeft = times;
    this.floodRetryAfter = retryAfterSeconds;
    this.floodMethod = method?.toLowerCase() ?? null;
  }

  /** The user of a private chat blocks the bot: messages to it are refused (403) from now on. */
  blockBot(chatId: number): void {
    this.blocked.add(String(chatId));
  }

  /** Requests for one method (case-insensitive), in order. */
  calls(method: string): RecordedRequest[] {
    return this.requests.filter((request) => request.method.toLowerCase() === method.toLowerCase());
  }

  /**
   * Posts an update to the bot's webhook as Telegram does (JSON, with the secret token header when
   * one was set) and returns the status the webhook answered with.
   */
  async deliverUpdate(token: string, update: Record<string, unknown>): Promise<number> {
    const bot = this.bots.get(token);
    if (!bot) throw new Error("no such bot");
    const webhook = bot.webhook;
    if (!webhook) {
      // Kept for the bot's getUpdates, numbered on from the last, as Telegram numbers them.
      const id = typeof update.update_id === "number" ? Math.max(update.update_id, bot.nextUpdateId) : bot.nextUpdateId;
      bot.nextUpdateId = id + 1;
      bot.pending.push({ ...update, update_id: id });
      bot.poll?.wake("update");
      return 200;
    }
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (webhook.secretToken) headers["x-telegram-bot-api-secret-token"] = webhook.secretToken;
    const res = await fetch(webhook.url, { method: "POST", headers, body: JSON.stringify(update) });
    await res.body?.cancel();
    return res.status;
  }

  async start(port = 0, host = "127.0.0.1"): Promise<void> {
    const { server, url } = await listen((req, res) => this.handle(req, res), (error) => ({ ok: false, error_code: 500, description: `Internal Server Error: ${String(error)}` }), port, host);
    this.server = server;
    this.url = url;
  }

  /**
   * The same server on another address too (e.g. one the projects' releases may reach, where the
   * first one listens on loopback); resolves with its base URL.
   */
  async listenAlso(port: number, host: string): Promise<string> {
    const { server, url } = await listen((req, res) => this.handle(req, res), (error) => ({ ok: false, error_code: 500, description: `Internal Server Error: ${String(error)}` }), port, host);
    this.others.push(server);
    return url;
  }

  async stop(): Promise<void> {
    // Polls still waiting answer now (with what they have), rather than hold the server open.
    for (const poll of this.polls) poll.wake("update");
    this.polls.clear();
    for (const other of this.others.splice(0)) await close(other);
    const server = this.server;
    this.server = null;
    await close(server);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://telegram");
    if (this.outage) {
      res.writeHead(502, { "content-type": "text/html" }).end("<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>\r\n");
      return;
    }
    if (url.pathname === "/_standin/requests" && req.method === "GET") return sendJson(res, 200, { requests: this.requests, messages: this.messages });
    // A person writes to a bot (the demo, from another process): delivered as deliverUpdate delivers it.
    if (url.pathname === "/_standin/updates" && req.method === "POST") {
      const body = JSON.parse((await readBody(req)) || "{}") as { token?: unknown; update?: unknown };
      if (typeof body.token !== "string" || !this.bots.has(body.token) || typeof body.update !== "object" || body.update === null) return sendJson(res, 400, { error: "token (a bot's) and update (an object) are required" });
      return sendJson(res, 200, { status: await this.deliverUpdate(body.token, body.update as Record<string, unknown>) });
    }
    // The bots and their tokens (this is a stand-in: Telegram itself tells nobody a token).
    if (url.pathname === "/_standin/bots" && req.method === "GET") return sendJson(res, 200, { bots: [...this.bots.values()].map((bot) => ({ username: bot.user.username, token: bot.token })) });
    if (url.pathname === "/_standin/bots" && req.method === "POST") {
      const body = JSON.parse((await readBody(req)) || "{}") as Partial<AddBotOptions>;
      if (typeof body.username !== "string") return sendJson(res, 400, { error: "username is required" });
      try {
        return sendJson(res, 201, { token: this.addBot({ ...body, username: body.username }) });
      } catch (error) {
        return sendJson(res, 409, { error: error instanceof Error ? error.message : String(error) });
      }
    }
    const route = /^\/bot([^/]+)\/([A-Za-z]*)$/.exec(url.pathname);
    if (!route || (req.method !== "GET" && req.method !== "POST")) return send(res, fail(404, "Not Found"));
    const token = decodeURIComponent(route[1] ?? "");
    const method = route[2] ?? "";
    const bot = this.bots.get(token);
    let params: Params = {};
    let answer: Answer;
    try {
      params = await parameters(req, url);
      if (bot && this.floodLeft > 0 && (this.floodMethod === null || this.floodMethod === method.toLowerCase())) {
        this.floodLeft--;
        answer = { status: 429, body: { ok: false, error_code: 429, description: `Too Many Requests: retry after ${this.floodRetryAfter}`, parameters: { retry_after: this.floodRetryAfter } } };
      } else if (bot && method.toLowerCase() === "getupdates") {
        answer = await this.getUpdates(bot, params);
      } else answer = bot ? this.call(bot, method, params) : fail(401, "Unauthorized");
    } catch (error) {
      answer = fail(400, `Bad Request: ${error instanceof BadRequest ? error.message : "can't parse request body"}`);
    }
    this.requests.push({ at: new Date().toISOString(), httpMethod: req.method, method, token, username: bot?.user.username ?? null, params, status: answer.status });
    send(res, answer);
  }

  private call(bot: Bot, method: string, params: Params): Answer {
    switch (method.toLowerCase()) {
      case "getme":
        return ok(bot.user);
      case "sendmessage":
        return this.sendMessage(bot, params);
      case "setwebhook":
        return setWebhook(bot, params);
      case "deletewebhook": {
        const had = bot.webhook !== null;
        bot.webhook = null;
        return { status: 200, body: { ok: true, result: true, description: had ? "Webhook was deleted" : "Webhook is already deleted" } };
      }
      case "getwebhookinfo":
        return ok(webhookInfo(bot.webhook));
      case "editmessagetext":
        return this.editMessageText(bot, params);
      case "deletemessage":
        return this.deleteMessage(bot, params);
      case "answercallbackquery":
        if (textOf(params.callback_query_id) === "") return fail(400, "Bad Request: query is too old and response timeout expired or query ID is invalid");
        return ok(true);
      case "sendchataction": {
        const action = textOf(params.action);
        if (!CHAT_ACTIONS.has(action)) return fail(400, "Bad Request: wrong parameter action in request");
        this.chatActions.push({ username: bot.user.username, chatId: chatIdOf(params.chat_id), action });
        return ok(true);
      }
      case "setmycommands": {
        const list = typeof params.commands === "string" ? safeJson(params.commands) : params.commands;
        if (!Array.isArray(list) || list.some((entry) => typeof (entry as { command?: unknown }).command !== "string" || !/^[a-z0-9_]{1,32}$/.test((entry as { command: string }).command))) {
          return fail(400, "Bad Request: BOT_COMMAND_INVALID");
        }
        this.commands.set(bot.user.username, list as { command: string; description: string }[]);
        return ok(true);
      }
      default:
        return fail(404, "Not Found");
    }
  }

  /** Long polling: the updates from `offset` on, at once if there are any, else the first to come within `timeout` seconds. */
  private async getUpdates(bot: Bot, params: Params): Promise<Answer> {
    if (bot.webhook) return fail(409, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first");
    const offset = Number(params.offset ?? 0);
    if (offset > 0) bot.pending = bot.pending.filter((update) => update.update_id >= offset);
    const limit = Math.min(Math.max(Number(params.limit ?? 100) || 100, 1), 100);
    const timeout = Math.min(Math.max(Number(params.timeout ?? 0) || 0, 0), 50);
    bot.poll?.wake("conflict");
    if (bot.pending.length === 0 && timeout > 0) {
      const state: { outcome: "update" | "conflict" | "timeout" } = { outcome: "timeout" };
      let resolveWait = () => {};
      const waited = new Promise<void>((resolve) => (resolveWait = resolve));
      const timer = setTimeout(resolveWait, timeout * 1000);
      const poll = {
        wake: (why: "update" | "conflict") => {
          state.outcome = why;
          clearTimeout(timer);
          resolveWait();
        },
      };
      bot.poll = poll;
      this.polls.add(poll);
      await waited;
      this.polls.delete(poll);
      if (bot.poll === poll) bot.poll = null;
      if (state.outcome === "conflict") return fail(409, "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running");
    }
    return ok(bot.pending.slice(0, limit));
  }

  /** The bot's own message in a chat, as sendMessage recorded it. */
  private sentMessage(bot: Bot, params: Params): SentMessage | undefined {
    const chatId = chatIdOf(params.chat_id);
    const id = Number(params.message_id);
    return this.messages.find((sent) => sent.username === bot.user.username && sent.chatId === chatId && sent.message.message_id === id && !sent.deleted);
  }

  private editMessageText(bot: Bot, params: Params): Answer {
    const sent = this.sentMessage(bot, params);
    if (!sent) return fail(400, "Bad Request: message to edit not found");
    const text = textOf(params.text);
    if (text.trim() === "") return fail(400, "Bad Request: message text is empty");
    if (text === sent.text) return fail(400, "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message");
    sent.text = text;
    sent.message = { ...sent.message, text, edit_date: Math.floor(Date.now() / 1000) };
    sent.edits = (sent.edits ?? 0) + 1;
    return ok(sent.message);
  }

  private deleteMessage(bot: Bot, params: Params): Answer {
    const chatId = chatIdOf(params.chat_id);
    const id = Number(params.message_id);
    const own = this.sentMessage(bot, params);
    if (own) {
      own.deleted = true;
      return ok(true);
    }
    // A user's message in a private chat with the bot can be deleted too (a secret typed into the chat).
    this.deletedUserMessages.push({ username: bot.user.username, chatId, messageId: id });
    return Number.isSafeInteger(id) && id > 0 ? ok(true) : fail(400, "Bad Request: message to delete not found");
  }

  private sendMessage(bot: Bot, params: Params): Answer {
    const chatId = chatIdOf(params.chat_id);
    if (this.blocked.has(String(chatId))) return fail(403, "Forbidden: bot was blocked by the user");
    const text = textOf(params.text);
    if (text.trim() === "") return fail(400, "Bad Request: message text is empty");
    if (text.length > 4096) return fail(400, "Bad Request: message is too long");
    const message: Message = {
      message_id: bot.nextMessageId++,
      from: bot.user,
      chat: chatOf(chatId),
      date: Math.floor(Date.now() / 1000),
      text,
    };
    this.messages.push({ at: new Date().toISOString(), username: bot.user.username, chatId, text, params, message });
    return ok(message);
  }
}

function send(res: ServerResponse, answer: Answer): void {
  sendJson(res, answer.status, answer.body);
}

/** Query parameters, then the body's (JSON, urlencoded or multipart), as the Bot API merges them. */
async function parameters(req: IncomingMessage, url: URL): Promise<Params> {
  const params: Params = Object.fromEntries(url.searchParams);
  const type = req.headers["content-type"] ?? "";
  const body = await readBody(req);
  if (body === "") return params;
  if (/^application\/json/i.test(type)) {
    const parsed = safeJson(body);
    if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) throw new BadRequest("can't parse JSON object");
    return { ...params, ...(parsed as Params) };
  }
  if (/^(application\/x-www-form-urlencoded|multipart\/form-data)/i.test(type)) {
    const form = await new Response(body, { headers: { "content-type": type } }).formData();
    for (const [key, value] of form) params[key] = typeof value === "string" ? value : value.name;
  }
  return params;
}

/** A parameter as the text Telegram reads: a JSON body may send numbers and booleans where strings go. */
function textOf(value: unknown): string {
  if (value === undefined || value === null) return "";
  return typeof value === "string" ? value : JSON.stringify(value);
}

/** A chat id as Telegram reads it: an integer (also sent as a string) or a channel's `@username`. */
function chatIdOf(value: unknown): number | string {
  if (value === undefined || value === "") throw new BadRequest("chat_id is empty");
  if (typeof value === "number" && Number.isSafeInteger(value)) return value;
  if (typeof value === "string" && /^-?\d{1,16}$/.test(value)) return Number(value);
  if (typeof value === "string" && /^@[A-Za-z][A-Za-z0-9_]{3,31}$/.test(value)) return value;
  throw new BadRequest("chat not found");
}

function chatOf(id: number | string): Message["chat"] {
  if (typeof id === "string") return { id: -1_000_000_000_000 - (hash(id) % 1_000_000_000), type: "channel", title: id.slice(1), username: id.slice(1) };
  if (id > 0) return { id, type: "private", first_name: `User ${id}` };
  if (String(id).startsWith("-100")) return { id, type: "supergroup", title: `Supergroup ${id}` };
  return { id, type: "group", title: `Group ${id}`, all_members_are_administrators: true };
}

function hash(text: string): number {
  let value = 0;
  for (const char of text) value = (value * 31 + char.charCodeAt(0)) >>> 0;
  return value;
}

function setWebhook(bot: Bot, params: Params): Answer {
  const url = textOf(params.url);
  if (url === "") {
    const had = bot.webhook !== null;
    bot.webhook = null;
    return { status: 200, body: { ok: true, result: true, description: had ? "Webhook was deleted" : "Webhook is already deleted" } };
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return fail(400, "Bad Request: bad webhook: Failed to resolve host: Name or service not known");
  }
  if (parsed.protocol !== "https:" && parsed.protocol !== "http:") return fail(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook");
  const secretToken = textOf(params.secret_token) || null;
  if (secretToken !== null && !SECRET_TOKEN.test(secretToken)) return fail(400, "Bad Request: secret token contains unallowed characters");
  const maxConnections = params.max_connections === undefined ? 40 : Number(params.max_connections);
  if (!Number.isInteger(maxConnections) || maxConnections < 1 || maxConnections > 100) return fail(400, "Bad Request: bad webhook: max_connections must be between 1 and 100");
  let allowedUpdates: string[] | null = null;
  if (params.allowed_updates !== undefined) {
    const given: unknown = typeof params.allowed_updates === "string" ? safeJson(params.allowed_updates) : params.allowed_updates;
    if (!Array.isArray(given) || !given.every((item) => typeof item === "string")) return fail(400, "Bad Request: can't parse allowed updates JSON object");
    // Telegram ignores update types it does not know.
    allowedUpdates = given.filter((item) => UPDATE_TYPES.has(item));
  }
  const same = bot.webhook?.url === url;
  bot.webhook = { url, secretToken, maxConnections, allowedUpdates: allowedUpdates ?? bot.webhook?.allowedUpdates ?? null, setAt: Math.floor(Date.now() / 1000) };
  return { status: 200, body: { ok: true, result: true, description: same ? "Webhook is already set" : "Webhook was set" } };
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function webhookInfo(webhook: Webhook | null): Record<string, unknown> {
  if (!webhook) return { url: "", has_custom_certificate: false, pending_update_count: 0 };
  return {
    url: webhook.url,
    has_custom_certificate: false,
    pending_update_count: 0,
    max_connections: webhook.maxConnections,
    ip_address: "127.0.0.1",
    ...(webhook.allowedUpdates ? { allowed_updates: webhook.allowedUpdates } : {}),
  };
}

/** Starts a Telegram stand-in on loopback (a free port unless given) and returns it. */
export async function startTelegramServer(port = 0, host = "127.0.0.1"): Promise<TelegramServer> {
  const server = new TelegramServer();
  await server.start(port, host);
  return server;
}
