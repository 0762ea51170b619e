/**
 * The Bot API gateway: where the bots of this server's releases reach Telegram, so that the deploy can
 * check a bot the way its users reach it. The Bot API lets nobody but a Telegram user send a bot a
 * message (a bot never sees another bot's), so a check that works against the real Telegram has to sit
 * between the bot and the API: a release's TELEGRAM_API_URL is this gateway (the ansible executor sets
 * it when it writes a bot release's env), and the gateway passes every call through to the Bot API the
 * release was given, except:
 * - a message a check sends (`converse`) is the answer to the release's next getUpdates (a long poll
 *   in flight upstream is cut short for it; Telegram confirms nothing until the next offset, so no
 *   real update is lost), in a private chat of its own that no Telegram user has;
 * - what the bot sends to that chat comes back here and never leaves the server.
 *
 * A release's gateway URL names the release and its upstream, and carries a MAC of both under a key
 * from the runner's own private key: no release can point the gateway at another address (the runner
 * would fetch it), nor take another release's checks; and the URL still holds after a runner restart.
 */
import { createHmac, randomInt, timingSafeEqual } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream as NodeReadableStream } from "node:stream/web";
import { z } from "zod";

/** Synthetic updates are numbered from here, above any real update id, so their offsets can be told apart. */
const SYNTHETIC_UPDATE_BASE = 2 ** 45;
/** Synthetic chats: Telegram's ids have at most 52 significant bits, and real ones are far below this. */
const SYNTHETIC_CHAT_FROM = 2 ** 50;
/** The Bot API takes uploads of up to 50 MB. */
const MAX_BODY_BYTES = 50 * 1024 * 1024;
/**
 * A call is read into memory up to this much (a getUpdates, a message, anything a check needs is far
 * smaller); a bigger one, an upload, streams on to the Bot API as it comes, untouched.
 */
const MAX_READ_BYTES = 1024 * 1024;
/** After the bot's first reply, more replies are waited for this long (a bot may answer in several messages). */
const QUIET_MS = 400;
/** Calls of one release at once (a long poll among them); more are answered 429, as Telegram's flood control does. */
const MAX_CALLS_PER_RELEASE = 32;

export interface BotGatewaySettings {
  /** An address of this server that releases' containers can reach (the firewall lets them to it). */
  host: string;
  /** 0: any free port (tests). */
  port: number;
}

/** What a bot sent a check's chat: the text of a message, or a caption, or the method's name. */
export interface Conversation {
  replies: string[];
  /** Whether the release asked for its updates (through this gateway) while the check waited. */
  polled: boolean;
}

interface Release {
  /** Updates for the release's next getUpdates, each with its check's chat. */
  pending: { chat: number; update: unknown }[];
  /** getUpdates calls waiting upstream, woken when a check has something for them. */
  wake: Set<() => void>;
  /** The check chats open on this release, and what the bot sent each. */
  chats: Map<number, { replies: string[]; heard: () => void }>;
  polls: number;
}

const Params = z.record(z.string(), z.unknown());

export class BotGateway {
  private readonly key: Buffer;
  private readonly settings: BotGatewaySettings;
  private server: Server | null = null;
  private origin = "";
  private readonly releases = new Map<string, Release>();
  private readonly calls = new Map<string, number>();
  /**
   * The last offset each release's bot asked for (a real one): what stands in for the offset after a
   * check's update. Kept while the runner runs (a number per release); after a restart the first such
   * offset is left out, and Telegram answers from its last confirmed update.
   */
  private readonly offsets = new Map<string, number>();
  private updates = 0;

  private readonly portFile: string | undefined;

  /**
   * `secret`: the runner's private key (the MACs' key is derived from it). `portFile`: with port 0, where
   * the port taken is kept, so that a restarted runner listens where its releases' bots call it.
   */
  constructor(settings: BotGatewaySettings, secret: string, portFile?: string) {
    this.settings = settings;
    this.portFile = portFile;
    this.key = createHmac("sha256", secret).update("orchestrator-runner bot gateway").digest();
  }

  async start(): Promise<void> {
    const server = createServer((req, res) => {
      this.handle(req, res).catch((error: unknown) => {
        if (!res.headersSent) reply(res, 502, { ok: false, error_code: 502, description: `Bad Gateway: ${error instanceof Error ? error.message : String(error)}` });
        else res.destroy();
      });
    });
    // Releases of every tenant reach it: a bound on what they can hold open together.
    server.maxConnections = 2048;
    const listen = (port: number) =>
      new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, this.settings.host, () => {
          server.off("error", reject);
          resolve();
        });
      });
    const kept = this.settings.port === 0 && this.portFile ? Number(await readFile(this.portFile, "utf8").catch(() => "0")) || 0 : 0;
    // The port a run before took, if it is free still; else any.
    await (kept ? listen(kept).catch(() => listen(0)) : listen(this.settings.port));
    const port = (server.address() as AddressInfo).port;
    if (this.settings.port === 0 && this.portFile && port !== kept) await writeFile(this.portFile, String(port));
    this.server = server;
    this.origin = `http://${this.settings.host}:${port}`;
  }

  async close(): Promise<void> {
    for (const release of this.releases.values()) for (const wake of release.wake) wake();
    await new Promise<void>((resolve) => {
      if (!this.server) return resolve();
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  /** The API root a release's bot uses (grammY's `apiRoot`): the gateway, for `release`, passing through to `upstream`. */
  apiRoot(release: string, upstream: string): string {
    if (!this.origin) throw new Error("the Bot API gateway is not listening");
    const target = Buffer.from(upstream.replace(/\/+$/, "")).toString("base64url");
    return `${this.origin}/r/${release}/${target}/${this.mac(release, target)}`;
  }

  /**
   * Sends `text` to the release's bot as a person in a private chat would, and returns what the bot
   * sent back: every message until it has been quiet a moment after the first, or nothing by `timeoutMs`.
   */
  async converse(release: string, text: string, timeoutMs: number, signal: AbortSignal): Promise<Conversation> {
    const state = this.release(release);
    const chat = SYNTHETIC_CHAT_FROM + randomInt(2 ** 40);
    const replies: string[] = [];
    let heard = (): void => undefined;
    const firstReply = new Promise<void>((resolve) => (heard = resolve));
    state.chats.set(chat, { replies, heard: () => heard() });
    const polls = state.polls;
    try {
      state.pending.push({ chat, update: syntheticUpdate(++this.updates, chat, text) });
      for (const wake of state.wake) wake();
      const stop = AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]);
      await Promise.race([firstReply, aborted(stop)]);
      if (replies.length) {
        // Quiet: no new reply within QUIET_MS.
        for (let seen = 0; seen !== replies.length && !stop.aborted; ) {
          seen = replies.length;
          await Promise.race([new Promise((resolve) => setTimeout(resolve, QUIET_MS)), aborted(stop)]);
        }
      }
      return { replies: [...replies], polled: state.polls > polls };
    } finally {
      state.chats.delete(chat);
      // An update the bot never took is not left for a later poll.
      state.pending = state.pending.filter((pending) => pending.chat !== chat);
      this.prune(release, state);
    }
  }

  /** A release with nothing going on is forgotten (but for its last offset). */
  private prune(id: string, state: Release): void {
    if (!state.chats.size && !state.pending.length && !state.wake.size) this.releases.delete(id);
  }

  private release(id: string): Release {
    let state = this.releases.get(id);
    if (!state) {
      state = { pending: [], wake: new Set(), chats: new Map(), polls: 0 };
      this.releases.set(id, state);
    }
    return state;
  }

  private mac(release: string, target: string): string {
    return createHmac("sha256", this.key).update(`${release}\n${target}`).digest("base64url").slice(0, 32);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://gateway");
    const match = /^\/r\/([a-z0-9_]{3,41})\/([A-Za-z0-9_-]{1,2000})\/([A-Za-z0-9_-]{32})(\/.*)$/.exec(url.pathname);
    const [, release = "", target = "", mac = "", rest = ""] = match ?? [];
    if (!match || !timingSafeEqual(Buffer.from(mac), Buffer.from(this.mac(release, target)))) {
      return reply(res, 404, { ok: false, error_code: 404, description: "Not Found: not a release's Bot API address on this server" });
    }
    const calls = this.calls.get(release) ?? 0;
    if (calls >= MAX_CALLS_PER_RELEASE) return reply(res, 429, { ok: false, error_code: 429, description: "Too Many Requests: retry after 1", parameters: { retry_after: 1 } });
    this.calls.set(release, calls + 1);
    try {
      await this.call(req, res, release, `${Buffer.from(target, "base64url").toString()}${rest}`, rest, url.searchParams);
    } finally {
      const left = (this.calls.get(release) ?? 1) - 1;
      if (left > 0) this.calls.set(release, left);
      else this.calls.delete(release);
    }
  }

  private async call(req: IncomingMessage, res: ServerResponse, release: string, upstream: string, rest: string, query: URLSearchParams): Promise<void> {
    const { head: body, rest: more } = await readHead(req);
    if (more) return stream(res, `${upstream}${query.size ? `?${query.toString()}` : ""}`, req, body, more);
    const call = await Call.read(req.method ?? "GET", req.headers["content-type"], query, body);
    const method = /^\/bot[^/]+\/([A-Za-z]+)$/.exec(rest)?.[1]?.toLowerCase();
    if (method === "getupdates") {
      const state = this.release(release);
      try {
        return await this.getUpdates(res, release, state, upstream, call);
      } finally {
        this.prune(release, state);
      }
    }
    const chatId = call.params.chat_id;
    const chat = method && chatId !== undefined ? this.releases.get(release)?.chats.get(Number(chatId)) : undefined;
    if (method && chat) return reply(res, 200, { ok: true, result: answerForCheck(method, rest, Number(chatId), call.params, chat) });
    return forward(res, upstream, call);
  }

  /** A check's updates at once if there are any; else the poll upstream, cut short when a check sends one. */
  private async getUpdates(res: ServerResponse, release: string, state: Release, upstream: string, call: Call): Promise<void> {
    state.polls++;
    const offset = Number(call.params.offset);
    // A check's update's offset is not Telegram's: the bot's last real one stands in for it, so
    // Telegram neither drops what the bot has not seen nor sends again what it has.
    if (Number.isFinite(offset) && offset > SYNTHETIC_UPDATE_BASE) call.setOffset(this.offsets.get(release));
    else if (Number.isFinite(offset) && call.params.offset !== undefined) this.offsets.set(release, offset);
    if (state.pending.length) return reply(res, 200, { ok: true, result: takePending(state) });
    const controller = new AbortController();
    const woken = new Promise<"woken">((resolve) => {
      const wake = () => resolve("woken");
      state.wake.add(wake);
      controller.signal.addEventListener("abort", () => state.wake.delete(wake));
    });
    res.on("close", () => controller.abort());
    try {
      const answer = fetch(call.url(upstream), { ...call.init(), signal: controller.signal, redirect: "manual" });
      const first = await Promise.race([answer, woken]);
      if (first === "woken") {
        controller.abort();
        // The bot went away meanwhile: the check's update stays for its next poll.
        if (res.destroyed) return;
        return reply(res, 200, { ok: true, result: takePending(state) });
      }
      await relay(first, res);
    } catch (error) {
      if (controller.signal.aborted) return;
      throw error;
    } finally {
      controller.abort();
    }
  }
}

/**
 * A Bot API call as the bot made it: its parameters (the query's, and the body's: JSON, urlencoded,
 * or multipart's text fields, read by the platform's own form parser), and the same call again with
 * another offset, in its own encoding.
 */
class Call {
  readonly params: Record<string, unknown>;
  private body: Buffer | FormData;
  private readonly query: URLSearchParams;
  private readonly type: string;
  private readonly contentType: string | undefined;
  private readonly method: string;

  private constructor(method: string, contentType: string | undefined, query: URLSearchParams, body: Buffer | FormData, params: Record<string, unknown>) {
    this.method = method;
    this.contentType = contentType;
    this.type = typeOf(contentType);
    this.query = new URLSearchParams(query);
    this.body = body;
    this.params = { ...Object.fromEntries(query), ...params };
  }

  static async read(method: string, contentType: string | undefined, query: URLSearchParams, body: Buffer): Promise<Call> {
    const type = typeOf(contentType);
    let params: Record<string, unknown> = {};
    let form: FormData | null = null;
    try {
      if (body.length && type === "application/json") params = Params.safeParse(JSON.parse(body.toString())).data ?? {};
      if (body.length && (type === "application/x-www-form-urlencoded" || type === "multipart/form-data")) {
        form = await new Response(new Uint8Array(body), { headers: { "content-type": contentType ?? "" } }).formData();
        params = Object.fromEntries([...form.entries()].filter(([, value]) => typeof value === "string"));
      }
    } catch {
      // Not ours to judge: the Bot API answers it.
    }
    // A multipart body is sent on as read (a new boundary); any other as it came, until it is rewritten.
    return new Call(method, contentType, query, type === "multipart/form-data" && form ? form : body, params);
  }

  /** The offset changed (undefined: left out), in the query or the body, wherever the bot put it. */
  setOffset(offset: number | undefined): void {
    const value = offset === undefined ? undefined : String(offset);
    const set = (fields: URLSearchParams | FormData) => (value === undefined ? fields.delete("offset") : fields.set("offset", value));
    if (this.query.has("offset")) set(this.query);
    if (this.body instanceof FormData) {
      if (this.body.has("offset")) set(this.body);
    } else if (this.body.length && this.type === "application/json" && "offset" in this.params) {
      const json = Params.safeParse(JSON.parse(this.body.toString())).data ?? {};
      if (offset === undefined) delete json.offset;
      else json.offset = offset;
      this.body = Buffer.from(JSON.stringify(json));
    } else if (this.body.length && this.type === "application/x-www-form-urlencoded") {
      const form = new URLSearchParams(this.body.toString());
      set(form);
      this.body = Buffer.from(form.toString());
    }
    this.params.offset = offset;
  }

  url(upstream: string): string {
    const search = this.query.toString();
    return `${upstream}${search ? `?${search}` : ""}`;
  }

  init(): RequestInit {
    if (this.method === "GET" || this.method === "HEAD") return { method: this.method };
    // A FormData body gets its content type (and boundary) from fetch.
    if (this.body instanceof FormData) return { method: this.method, body: this.body };
    return { method: this.method, headers: this.contentType ? { "content-type": this.contentType } : {}, body: new Uint8Array(this.body) };
  }
}

function typeOf(contentType: string | undefined): string {
  return (contentType ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
}

/**
 * What a call about a check's chat is answered with (it never reaches Telegram): the bot's messages are
 * its replies (a text, or a caption), a chat action is not; anything else about that chat is answered
 * as Telegram would for a private chat.
 */
function answerForCheck(method: string, rest: string, chatId: number, params: Record<string, unknown>, chat: { replies: string[]; heard: () => void }): unknown {
  if (method === "sendchataction") return true;
  if (method === "getchat") return { id: chatId, type: "private", first_name: "Acceptance", last_name: "check" };
  if (!(method.startsWith("send") || method === "copymessage" || method === "forwardmessage")) return true;
  const text = typeof params.text === "string" ? params.text : typeof params.caption === "string" ? params.caption : `(${method})`;
  chat.replies.push(text);
  chat.heard();
  return method === "sendmediagroup" ? [sentMessage(rest, chatId, text)] : sentMessage(rest, chatId, text);
}

function takePending(state: Release): unknown[] {
  return state.pending.splice(0).map((pending) => pending.update);
}

function syntheticUpdate(n: number, chat: number, text: string): unknown {
  const command = /^\/[A-Za-z0-9_]+(@[A-Za-z0-9_]+)?/.exec(text)?.[0];
  const person = { id: chat, is_bot: false, first_name: "Acceptance", last_name: "check", language_code: "en" };
  return {
    update_id: SYNTHETIC_UPDATE_BASE + n,
    message: {
      message_id: n,
      date: Math.floor(Date.now() / 1000),
      chat: { id: chat, type: "private", first_name: person.first_name, last_name: person.last_name },
      from: person,
      text,
      // grammY (and every framework) knows a command by this entity, as Telegram marks it.
      ...(command ? { entities: [{ type: "bot_command", offset: 0, length: command.length }] } : {}),
    },
  };
}

/** The Message a send method answers with, for a check's chat. The bot's id is its token's first part. */
function sentMessage(rest: string, chat: number, text: string): unknown {
  const botId = Number(/^\/bot(\d+):/.exec(rest)?.[1] ?? 0);
  return {
    message_id: randomInt(1, 2 ** 31),
    date: Math.floor(Date.now() / 1000),
    chat: { id: chat, type: "private", first_name: "Acceptance", last_name: "check" },
    from: { id: botId, is_bot: true, first_name: "bot" },
    text,
  };
}

/** The body, whole if it is small; else its first part and the rest still to come. */
async function readHead(req: IncomingMessage): Promise<{ head: Buffer; rest: AsyncIterator<Buffer> | null }> {
  const chunks: Buffer[] = [];
  let size = 0;
  const iterator = (req as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  for (;;) {
    const next = await iterator.next();
    if (next.done) return { head: Buffer.concat(chunks), rest: null };
    chunks.push(next.value);
    size += next.value.length;
    if (size > MAX_READ_BYTES) return { head: Buffer.concat(chunks), rest: iterator };
  }
}

/** A big call (an upload) on to the Bot API as it comes, up to the Bot API's own limit. */
async function stream(res: ServerResponse, target: string, req: IncomingMessage, head: Buffer, rest: AsyncIterator<Buffer>): Promise<void> {
  const controller = new AbortController();
  res.on("close", () => controller.abort());
  async function* body(): AsyncGenerator<Buffer> {
    let size = head.length;
    yield head;
    for (let next = await rest.next(); !next.done; next = await rest.next()) {
      size += next.value.length;
      if (size > MAX_BODY_BYTES) throw new Error("the call is larger than the Bot API takes (50 MB)");
      yield next.value;
    }
  }
  const headers: Record<string, string> = req.headers["content-type"] ? { "content-type": req.headers["content-type"] } : {};
  const init = { method: req.method ?? "POST", headers, body: Readable.toWeb(Readable.from(body())) as unknown as BodyInit, duplex: "half", signal: controller.signal, redirect: "manual" } as RequestInit;
  await relay(await fetch(target, init), res);
}

async function forward(res: ServerResponse, upstream: string, call: Call): Promise<void> {
  const controller = new AbortController();
  res.on("close", () => controller.abort());
  await relay(await fetch(call.url(upstream), { ...call.init(), signal: controller.signal, redirect: "manual" }), res);
}

/** The Bot API's answer, streamed back (a file download too), with the headers a client reads. */
async function relay(answer: Response, res: ServerResponse): Promise<void> {
  const headers: Record<string, string> = {};
  for (const name of ["content-type", "content-disposition", "retry-after", "location"]) {
    const value = answer.headers.get(name);
    if (value) headers[name] = value;
  }
  res.writeHead(answer.status, headers);
  if (!answer.body) return void res.end();
  await pipeline(Readable.fromWeb(answer.body as NodeReadableStream), res);
}

function reply(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => (signal.aborted ? resolve() : signal.addEventListener("abort", () => resolve(), { once: true })));
}
