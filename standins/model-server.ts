/**
 * An OpenAI-compatible model server for tests, `npm run dev` and the demo: `/v1/chat/completions`
 * (streamed and not, with tool calls), `/v1/embeddings` and `/v1/models`, answering from a scenario
 * script and recording every request. Production code reaches it as it would reach OpenAI, through
 * the `openai` SDK or any OpenAI-compatible client, with only the base URL changed.
 *
 * A scenario is a list of turns, taken in order: each request is answered by the next turn if that
 * turn matches it (tools offered, the last message's text). Requests that do not match the next turn
 * but match a `side` turn (a coding agent's title generation, say) are answered without using up a
 * turn. Anything else is a 500 that says which turn was expected, so a script that goes wrong says so.
 */
import { randomUUID } from "node:crypto";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { close, listen, readBody, sendJson } from "./http.ts";

export interface ChatMessage {
  role: string;
  content?: string | { type: string; text?: string }[] | null;
  tool_calls?: { id: string; function: { name: string; arguments: string } }[];
  tool_call_id?: string;
}

export interface ChatRequest {
  model: string;
  messages: ChatMessage[];
  tools?: { type: string; function: { name: string } }[];
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
  response_format?: { type: string };
  [key: string]: unknown;
}

export interface TurnMatch {
  /** true: the request offers tools; false: it offers none; a list: it offers at least these tools. */
  tools?: boolean | string[];
  /** The text of the last message contains this. */
  lastMessage?: string | RegExp;
  /** The text of any message contains this. */
  anyMessage?: string | RegExp;
  /** The role of the last message (`user`, `tool`…). */
  lastRole?: string;
}

export interface Reply {
  content?: string;
  toolCalls?: { name: string; arguments: Record<string, unknown> | string }[];
  usage?: { promptTokens?: number; completionTokens?: number };
  /** Answer with this HTTP status and message instead (an outage, a rate limit). */
  error?: { status: number; message: string };
  /** Wait this long before answering: a slow or hung model. */
  delayMs?: number;
}

export interface Turn {
  /** Shown in recordings and in the error when the script goes wrong. */
  name: string;
  match?: TurnMatch;
  reply: Reply | ((request: ChatRequest) => Reply);
  /** How many requests this turn answers before the next one is due (default 1). */
  times?: number;
}

export interface Scenario {
  turns: Turn[];
  /** Answer matching requests at any time without using up a turn. */
  side?: Turn[];
}

export interface RecordedRequest {
  at: string;
  path: string;
  /** The bearer key the request carried, so tests can check it was sent (and where it must not appear). */
  apiKey: string | null;
  body: ChatRequest | Record<string, unknown>;
  /** The turn that answered it, `side:<name>`, or null when none did. */
  answeredBy: string | null;
}

export class ModelServer {
  readonly requests: RecordedRequest[] = [];
  private scenario: Scenario;
  private position = 0;
  private usedOfCurrent = 0;
  private server: Server | null = null;
  private readonly apiKey: string | null;
  url = "";

  constructor(options: { scenario?: Scenario; apiKey?: string } = {}) {
    this.scenario = options.scenario ?? { turns: [] };
    this.apiKey = options.apiKey ?? null;
  }

  /** The base URL an OpenAI client takes (`…/v1`). */
  get baseUrl(): string {
    return `${this.url}/v1`;
  }

  /** Replaces the scenario and starts it from its first turn. */
  load(scenario: Scenario): void {
    this.scenario = scenario;
    this.position = 0;
    this.usedOfCurrent = 0;
  }

  /** Turns not yet used up, by name: what a test expects to be empty at the end. */
  remaining(): string[] {
    return this.scenario.turns.slice(this.position).map((turn) => turn.name);
  }

  /** Chat requests answered by scenario turns (not side ones). */
  turnRequests(): RecordedRequest[] {
    return this.requests.filter((request) => request.answeredBy && !request.answeredBy.startsWith("side:"));
  }

  async start(port = 0, host = "127.0.0.1"): Promise<void> {
    const { server, url } = await listen((req, res) => this.handle(req, res), (error) => ({ error: { message: String(error), type: "server_error" } }), port, host);
    this.server = server;
    this.url = url;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    await close(server);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? "/", "http://model").pathname;
    const apiKey = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? "")?.[1] ?? null;
    if (path === "/_standin/requests" && req.method === "GET") return sendJson(res, 200, { requests: this.requests, remaining: this.remaining() });
    if (this.apiKey && apiKey !== this.apiKey) {
      return sendJson(res, 401, { error: { message: "Incorrect API key provided", type: "invalid_request_error", code: "invalid_api_key" } });
    }
    if (path === "/v1/models" && req.method === "GET") {
      const models = [...new Set(["scripted-model", "text-embedding-3-small", ...this.requests.map((r) => stringOf((r.body as { model?: unknown }).model))])].filter(Boolean);
      return sendJson(res, 200, { object: "list", data: models.map((id) => ({ id, object: "model", created: 0, owned_by: "orchestrator-standin" })) });
    }
    if (req.method !== "POST") return sendJson(res, 404, { error: { message: `no route ${req.method} ${path}`, type: "invalid_request_error" } });
    const body = JSON.parse(await readBody(req)) as Record<string, unknown>;
    if (path === "/v1/embeddings") {
      this.requests.push({ at: new Date().toISOString(), path, apiKey, body, answeredBy: "embeddings" });
      return sendJson(res, 200, embeddingsAnswer(body));
    }
    if (path !== "/v1/chat/completions") return sendJson(res, 404, { error: { message: `no route POST ${path}`, type: "invalid_request_error" } });
    const request = body as ChatRequest;
    const recorded: RecordedRequest = { at: new Date().toISOString(), path, apiKey, body: request, answeredBy: null };
    this.requests.push(recorded);
    const chosen = this.choose(request);
    if (!chosen) {
      const expected = this.scenario.turns[this.position];
      return sendJson(res, 500, {
        error: {
          message: `the scripted model has no answer: ${expected ? `the next turn "${expected.name}" does not match` : "the script is used up"} (last message: ${JSON.stringify(lastText(request).slice(0, 200))}, tools: ${request.tools?.length ?? 0})`,
          type: "server_error",
        },
      });
    }
    recorded.answeredBy = chosen.label;
    const reply = typeof chosen.turn.reply === "function" ? chosen.turn.reply(request) : chosen.turn.reply;
    if (reply.delayMs) await new Promise((resolve) => setTimeout(resolve, reply.delayMs));
    // OpenAI's error types: clients (opencode among them) retry a server_error, not a request error.
    if (reply.error) return sendJson(res, reply.error.status, { error: { message: reply.error.message, type: reply.error.status >= 500 ? "server_error" : "invalid_request_error" } });
    if (request.stream) return streamAnswer(res, request, reply);
    return sendJson(res, 200, completionAnswer(request, reply));
  }

  private choose(request: ChatRequest): { turn: Turn; label: string } | null {
    const next = this.scenario.turns[this.position];
    if (next && matches(next.match, request)) {
      this.usedOfCurrent++;
      if (this.usedOfCurrent >= (next.times ?? 1)) {
        this.position++;
        this.usedOfCurrent = 0;
      }
      return { turn: next, label: next.name };
    }
    const side = this.scenario.side?.find((turn) => matches(turn.match, request));
    return side ? { turn: side, label: `side:${side.name}` } : null;
  }
}

/** The text of a message, whether its content is a string or parts. */
export function messageText(message: ChatMessage | undefined): string {
  const content = message?.content;
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.map((part) => part.text ?? "").join("");
  return "";
}

const lastText = (request: ChatRequest) => messageText(request.messages.at(-1));

function test(pattern: string | RegExp, text: string): boolean {
  return typeof pattern === "string" ? text.includes(pattern) : pattern.test(text);
}

function matches(match: TurnMatch | undefined, request: ChatRequest): boolean {
  if (!match) return true;
  const offered = (request.tools ?? []).map((tool) => tool.function.name);
  if (match.tools === true && offered.length === 0) return false;
  if (match.tools === false && offered.length > 0) return false;
  if (Array.isArray(match.tools) && !match.tools.every((name) => offered.includes(name))) return false;
  if (match.lastRole && request.messages.at(-1)?.role !== match.lastRole) return false;
  if (match.lastMessage && !test(match.lastMessage, lastText(request))) return false;
  if (match.anyMessage && !request.messages.some((message) => test(match.anyMessage as string | RegExp, messageText(message)))) return false;
  return true;
}

/** About four characters a token: enough for usage that tracks the size of what was sent. */
const estimateTokens = (text: string) => Math.max(1, Math.ceil(text.length / 4));

function usageOf(request: ChatRequest, reply: Reply) {
  const prompt = reply.usage?.promptTokens ?? estimateTokens(JSON.stringify(request.messages) + JSON.stringify(request.tools ?? []));
  const completion = reply.usage?.completionTokens ?? estimateTokens((reply.content ?? "") + JSON.stringify(reply.toolCalls ?? []));
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

function toolCallsOf(reply: Reply) {
  return (reply.toolCalls ?? []).map((call) => ({
    id: `call_${randomUUID().replaceAll("-", "").slice(0, 24)}`,
    type: "function" as const,
    function: { name: call.name, arguments: typeof call.arguments === "string" ? call.arguments : JSON.stringify(call.arguments) },
  }));
}

function completionAnswer(request: ChatRequest, reply: Reply) {
  const toolCalls = toolCallsOf(reply);
  return {
    id: `chatcmpl-${randomUUID()}`,
    object: "chat.completion",
    created: Math.floor(Date.now() / 1000),
    model: request.model,
    choices: [
      {
        index: 0,
        message: { role: "assistant", content: reply.content ?? (toolCalls.length ? null : ""), ...(toolCalls.length ? { tool_calls: toolCalls } : {}) },
        finish_reason: toolCalls.length ? "tool_calls" : "stop",
      },
    ],
    usage: usageOf(request, reply),
  };
}

function streamAnswer(res: ServerResponse, request: ChatRequest, reply: Reply): void {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
  const id = `chatcmpl-${randomUUID()}`;
  const created = Math.floor(Date.now() / 1000);
  const chunk = (delta: Record<string, unknown>, finish: string | null = null) =>
    res.write(`data: ${JSON.stringify({ id, object: "chat.completion.chunk", created, model: request.model, choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`);
  chunk({ role: "assistant", content: "" });
  const content = reply.content ?? "";
  // A few pieces, as a real stream arrives.
  for (let i = 0; i < content.length; i += 40) chunk({ content: content.slice(i, i + 40) });
  const toolCalls = toolCallsOf(reply);
  toolCalls.forEach((call, index) => {
    chunk({ tool_calls: [{ index, id: call.id, type: "function", function: { name: call.function.name, arguments: "" } }] });
    chunk({ tool_calls: [{ index, function: { arguments: call.function.arguments } }] });
  });
  chunk({}, toolCalls.length ? "tool_calls" : "stop");
  if (request.stream_options?.include_usage) {
    res.write(`data: ${JSON.stringify({ id, object: "chat.completion.chunk", created, model: request.model, choices: [], usage: usageOf(request, reply) })}\n\n`);
  }
  res.end("data: [DONE]\n\n");
}

/** Words that say little about what a text is about; leaving them out makes cosine track the words that do. */
const STOP_WORDS = new Set(
  "a an and are as at be been but by can could do does for from had has have how i if in into is it its me my no not of on or our should so than that the their them then there these they this to too us was we were what when where which who why will with would you your".split(" "),
);

/** A crude English stemmer: "deploys", "deployed" and "deploying" land in the same dimension, as "service" and "services" do. */
function stem(word: string): string {
  for (const suffix of ["ingly", "edly", "ing", "ed", "es", "s", "ly"]) {
    if (word.length > suffix.length + 3 && word.endsWith(suffix)) return word.slice(0, -suffix.length).replace(/e$/, "");
  }
  return word.length > 4 ? word.replace(/e$/, "") : word;
}

/**
 * Deterministic embeddings: a hashed bag of content words (stop words dropped, words stemmed),
 * signed and L2-normalised, so that cosine similarity follows the words two texts share: retrieval
 * tests and the RAG benchmark mean something offline. Identifiers (`ERR_QUOTA_4471`) stay one word.
 */
export function embed(text: string, dimensions = 512): number[] {
  const vector = new Array<number>(dimensions).fill(0);
  for (const word of text.toLowerCase().match(/[\p{L}\p{N}_]+/gu) ?? []) {
    if (STOP_WORDS.has(word)) continue;
    const hash = fnv1a(stem(word));
    vector[hash % dimensions] = (vector[hash % dimensions] ?? 0) + ((hash >>> 31) & 1 ? -1 : 1);
  }
  const norm = Math.hypot(...vector) || 1;
  return vector.map((value) => value / norm);
}

function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash;
}

function embeddingsAnswer(body: Record<string, unknown>) {
  const inputs = Array.isArray(body.input) ? (body.input as unknown[]).map(stringOf) : [stringOf(body.input)];
  const dimensions = typeof body.dimensions === "number" ? body.dimensions : 512;
  return {
    object: "list",
    data: inputs.map((input, index) => ({ object: "embedding", index, embedding: embed(input, dimensions) })),
    model: stringOf(body.model) || "text-embedding-3-small",
    usage: { prompt_tokens: inputs.reduce((sum, input) => sum + estimateTokens(input), 0), total_tokens: inputs.reduce((sum, input) => sum + estimateTokens(input), 0) },
  };
}



function stringOf(value: unknown): string {
  return typeof value === "string" ? value : "";
}
