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
import { z } from "zod";

/** Synthetic updates are numbered from here, above any real update id, so their offsets can be told apart. */
const SYNTHETIC_UPDATE_BASE = 2 ** 45;
/** Synthetic chats: Telegram's ids have at most 52 significant bits, and real ones are far below this. */
const SYNTHETIC_CHAT_FROM = 2 ** 50;
/** The Bot API takes uploads of up to 50 MB. */
const MAX_BODY_BYTES = 50 * 1024 * 1024;
/** After the bot's first reply, more replies are waited for this long (a bot may answer in several messages). */
const QUIET_MS = 400;

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
    }
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
    const upstream = `${Buffer.from(target, "base64url").toString()}${rest}${url.search}`;
    const body = await readBody(req);
    if (body === null) return reply(res, 413, { ok: false, error_code: 413, description: "Request Entity Too Large" });
    const method = /^\/bot[^/]+\/([A-Za-z]+)$/.exec(rest)?.[1];
    if (!method) return forward(req, res, upstream, body);
    const state = this.release(release);
    const params = { ...Object.fromEntries(url.searchParams), ...parseParams(req.headers["content-type"], body) };
    if (method.toLowerCase() === "getupdates") return this.getUpdates(req, res, state, upstream, body, params);
    const chat = state.chats.get(Number(params.chat_id));
    if (chat && params.chat_id !== undefined) {
      const text = typeof params.text === "string" ? params.text : typeof params.caption === "string" ? params.caption : `(${method})`;
      if (method.toLowerCase() !== "sendchataction") {
        chat.replies.push(text);
        chat.heard();
      }
      return reply(res, 200, { ok: true, result: method.toLowerCase().startsWith("send") && method.toLowerCase() !== "sendchataction" ? sentMessage(rest, Number(params.chat_id), text) : true });
    }
    return forward(req, res, upstream, body);
  }

  /** A check's updates at once if there are any; else the poll upstream, cut short when a check sends one. */
  private async getUpdates(req: IncomingMessage, res: ServerResponse, state: Release, upstream: string, body: Buffer, params: Record<string, unknown>): Promise<void> {
    state.polls++;
    if (state.pending.length) return reply(res, 200, { ok: true, result: takePending(state) });
    // The offset after a check's update is not Telegram's: without one, Telegram answers with what
    // the bot has not confirmed yet, which is what that offset means.
    let sent = body;
    let target = upstream;
    if (Number(params.offset) > SYNTHETIC_UPDATE_BASE) {
      const { offset: _offset, ...rest } = params;
      sent = Buffer.from(JSON.stringify(rest));
      const url = new URL(upstream);
      url.searchParams.delete("offset");
      target = url.href;
      req.headers["content-type"] = "application/json";
    }
    const controller = new AbortController();
    const woken = new Promise<"woken">((resolve) => {
      const wake = () => resolve("woken");
      state.wake.add(wake);
      controller.signal.addEventListener("abort", () => state.wake.delete(wake));
    });
    res.on("close", () => controller.abort());
    try {
      const answer = fetch(target, { method: "POST", headers: { "content-type": String(req.headers["content-type"] ?? "application/json") }, body: new Uint8Array(sent), signal: controller.signal });
      const first = await Promise.race([answer, woken]);
      if (first === "woken") {
        controller.abort();
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

function parseParams(contentType: string | undefined, body: Buffer): Record<string, unknown> {
  if (!body.length) return {};
  const type = (contentType ?? "").split(";")[0]?.trim().toLowerCase();
  try {
    if (type === "application/json") return Params.safeParse(JSON.parse(body.toString())).data ?? {};
    if (type === "application/x-www-form-urlencoded") return Object.fromEntries(new URLSearchParams(body.toString()));
  } catch {
    // Not ours to judge: the Bot API answers it.
  }
  return {};
}

async function readBody(req: IncomingMessage): Promise<Buffer | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) return null;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

async function forward(req: IncomingMessage, res: ServerResponse, target: string, body: Buffer): Promise<void> {
  const controller = new AbortController();
  res.on("close", () => controller.abort());
  const headers: Record<string, string> = {};
  if (req.headers["content-type"]) headers["content-type"] = req.headers["content-type"];
  const method = req.method ?? "GET";
  const answer = await fetch(target, { method, headers, ...(method === "GET" || method === "HEAD" ? {} : { body: new Uint8Array(body) }), signal: controller.signal });
  await relay(answer, res);
}

async function relay(answer: Response, res: ServerResponse): Promise<void> {
  const type = answer.headers.get("content-type");
  res.writeHead(answer.status, type ? { "content-type": type } : {});
  if (answer.body) for await (const chunk of answer.body) res.write(chunk);
  res.end();
}

function reply(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => (signal.aborted ? resolve() : signal.addEventListener("abort", () => resolve(), { once: true })));
}
