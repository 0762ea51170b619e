/**
 * `npm run bench -- po`: the Product Owner through the local stack (wrangler dev, embedded Postgres,
 * the Telegram stand-in, the scripted model). One JSON line per case:
 *   webhook_latency  POST /telegram/webhook to its 200, `--chats` chats each sending `--messages`
 *                    messages (a wave is one message of every chat, all in flight together), beside
 *                    GET /healthz/live (no database) at the same concurrency, in alternating waves of
 *                    the same run; then every message's answer is waited for and counted per chat
 *                    (and the database's connections sampled: each turn holds its own). Goal:
 *                    p99(webhook) ≤ 1.5 × p99(no-op), and every message answered.
 *   prompt_tokens    the same scripted 10-message conversation (a greeting, a product idea, deploy,
 *                    why did it fail, what did I spend…) on a stack with PO_CAPABILITIES=selected
 *                    (the intent parser's own requests counted) and on one with PO_CAPABILITIES=all;
 *                    tokens as the model stand-in counts them, ceil(JSON length / 4) of messages and
 *                    tools. The scripted Product Owner makes the same calls in both modes (it goes by
 *                    the message, never by the tools offered). Goal: ≥ 50% fewer per turn with
 *                    selection.
 *   agent_storage    the agent's storage (`GET /api/chat/agents/tg:<chat>`) after 10, 100 and 1,000
 *                    turns of one chat (`--turns`), a few turns in flight at a time.
 * Each case line carries a warning when wrangler dev reloaded the worker during it (a source file
 * was saved meanwhile).
 */
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Api } from "grammy";
import { sql } from "drizzle-orm";
import { type LocalDatabase, startLocalDatabase } from "../scripts/lib/local-db.ts";
import { type Stack, startStack } from "../scripts/lib/local-stack.ts";
import { type ChatRequest, messageText, ModelServer, type RecordedRequest, type Reply, type Turn } from "../standins/model-server.ts";
import { productOwnerSide } from "../standins/po-scenario.ts";
import { createDb } from "../src/db/client.ts";
import { TelegramServer } from "../standins/telegram-server.ts";
import { nowMs, percentile, round } from "./stats.ts";

const SECRET = `whsec_${randomBytes(12).toString("hex")}`;
const MODEL_KEY = `sk-bench-${randomBytes(12).toString("hex")}`;
const LATENCY_GOAL_RATIO = 1.5;
const TOKENS_GOAL_REDUCTION_PCT = 50;
/** Turns of the storage case in flight at once: the agent takes them one at a time anyway. */
const STORAGE_IN_FLIGHT = 4;
/** Case 1 stops waiting for answers after this long without a reply. */
const STALL_MS = 30_000;

interface Options {
  chats: number;
  messages: number;
  turns: number[];
}

interface AgentStats {
  bytes: number;
  turns: number;
  entries: number;
  state: string;
  summary: boolean;
}

/** One stack with its own database and bot, on the shared stand-ins. */
interface Env {
  stack: Stack;
  token: string;
  db: LocalDatabase;
  stop(): Promise<void>;
}

async function startEnv(name: string, telegram: TelegramServer, model: ModelServer, capabilities: "selected" | "all"): Promise<Env> {
  const db = await startLocalDatabase(name);
  const token = telegram.addBot({ username: `${name.replace(/\W/g, "_")}_bot` });
  const stack = await startStack({
    databaseUrl: db.databaseUrl,
    dbWsProxy: db.wsProxy,
    adminKey: `ork_bench${randomBytes(16).toString("hex")}`,
    logLevel: "error",
    vars: {
      OPENAI_BASE_URL: model.baseUrl,
      OPENAI_API_KEY: MODEL_KEY,
      TELEGRAM_API_URL: telegram.url,
      TELEGRAM_BOT_TOKEN: token,
      TELEGRAM_WEBHOOK_SECRET: SECRET,
      TELEGRAM_SIGNUP: "open",
      PO_CAPABILITIES: capabilities,
    },
  }).catch(async (error: unknown) => {
    await db.stop();
    throw error;
  });
  await new Api(token, { apiRoot: telegram.url }).setWebhook(`${stack.url}/telegram/webhook`, { secret_token: SECRET });
  return {
    stack,
    token,
    db,
    async stop() {
      await stack.stop();
      await db.stop();
    },
  };
}

let updateId = 100_000;
let messageId = 5_000_000;

/** Posts a text message to the webhook as Telegram would; the time to the 200 (body read), in ms. */
async function post(stack: Stack, chatId: number, text: string): Promise<number> {
  const update = {
    update_id: ++updateId,
    message: { message_id: ++messageId, date: Math.floor(Date.now() / 1000), chat: { id: chatId, type: "private", first_name: "Bench" }, from: { id: chatId, is_bot: false, first_name: "Bench" }, text },
  };
  const started = nowMs();
  const res = await fetch(`${stack.url}/telegram/webhook`, { method: "POST", headers: { "content-type": "application/json", "x-telegram-bot-api-secret-token": SECRET }, body: JSON.stringify(update) });
  await res.arrayBuffer();
  const ms = nowMs() - started;
  if (res.status !== 200) throw new Error(`webhook answered ${res.status} for chat ${chatId}`);
  return ms;
}

async function noop(stack: Stack): Promise<number> {
  const started = nowMs();
  const res = await fetch(`${stack.url}/healthz/live`);
  const body = (await res.json()) as { ok?: boolean };
  const ms = nowMs() - started;
  if (res.status !== 200 || body.ok !== true) throw new Error(`/healthz/live answered ${res.status} ${JSON.stringify(body)}`);
  return ms;
}

/** wrangler dev rebuilds and restarts the worker when a source file changes (someone editing the tree): a run across one is suspect. */
const reloads = (env: Env) => env.stack.process.output().split("Local server updated").length - 1;
const reloadWarning = (count: number) => (count > 0 ? { warning: `wrangler dev reloaded the worker ${count}× during this case (a source file changed): the figures are suspect` } : {});

/** The stack's whole output in a file (a failure's evidence is often far above its tail); returns its path. */
function dumpOutput(env: Env): string {
  const path = join(tmpdir(), `bench-po-wrangler-${env.stack.port}.log`);
  writeFileSync(path, env.stack.process.output());
  return path;
}

/** Samples the client connections Postgres holds to this bench's database (the worker's, through the proxy), for the peak and the limit. */
async function watchConnections(env: Env) {
  // The machine is busy by design here (the bench loads it): a sampler that cannot connect at once waits.
  const handle = createDb({ databaseUrl: env.db.databaseUrl, wsProxy: env.db.wsProxy, connectionTimeoutMillis: 30_000 });
  const limit = Number(((await handle.db.execute(sql`show max_connections`)).rows[0] as { max_connections: string }).max_connections);
  let peak = 0;
  let failed = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      const row = (await handle.db.execute(sql`select count(*)::int as n from pg_stat_activity where backend_type = 'client backend' and datname = current_database()`).catch(() => ({ rows: [] }))).rows[0] as { n: number } | undefined;
      if (row) peak = Math.max(peak, row.n);
      else failed++;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      await handle.close();
      return { db_connections_peak: peak, db_max_connections: limit, ...(failed ? { db_samples_failed: failed } : {}) };
    },
  };
}

/** The worker's logged errors, by message, most frequent first. */
function errorsIn(env: Env): Record<string, number> {
  const counts = new Map<string, number>();
  // eslint-disable-next-line no-control-regex
  for (const line of env.stack.process.output().replace(/\x1b\[[0-9;]*m/g, "").split("\n")) {
    const error = /"msg":"([^"]+)"[^\n]*?"error":"(.{0,80})/.exec(line) ?? /\[ERROR\] (.{0,100})/.exec(line);
    if (!error) continue;
    const key = (error[2] ? `${error[1]}: ${error[2]}` : (error[1] ?? "")).replace(/\d{3,}/g, "N").trim();
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return Object.fromEntries([...counts].sort((x, y) => y[1] - x[1]).slice(0, 5));
}

/** Polls often (the storage case waits for a thousand replies, one at a time). */
async function until<T>(probe: () => Promise<T | undefined> | T | undefined, timeoutMs: number, describe: () => string, everyMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${describe()}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

const repliesTo = (telegram: TelegramServer, chatId: number) => telegram.messages.filter((m) => String(m.chatId) === String(chatId));

async function agentStats(stack: Stack, chatId: number): Promise<AgentStats> {
  const res = await stack.api<AgentStats>(`/api/chat/agents/tg:${chatId}`);
  if (res.status !== 200) throw new Error(`agent stats: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

/** Waits until the chat has `count` replies and its agent has finished the turn it was on. */
async function settled(env: Env, telegram: TelegramServer, chatId: number, count: number, timeoutMs: number): Promise<AgentStats> {
  await until(() => (repliesTo(telegram, chatId).length >= count ? true : undefined), timeoutMs, () => `chat ${chatId} has ${repliesTo(telegram, chatId).length} of ${count} replies; wrangler's output: ${dumpOutput(env)}`);
  return until(async () => {
    const stats = await agentStats(env.stack, chatId);
    return stats.state === "PROCESSING" ? undefined : stats;
  }, timeoutMs, () => `chat ${chatId} is still processing`, 50);
}

function latencySummary(samples: number[]) {
  return { requests: samples.length, p50_ms: round(percentile(samples, 50)), p99_ms: round(percentile(samples, 99)), max_ms: round(Math.max(...samples)) };
}

// ---- 1. webhook latency ----

async function webhookLatency(env: Env, telegram: TelegramServer, options: Options): Promise<void> {
  const { stack } = env;
  // Warm up: the bot's getMe, the isolate, the database pool (not measured).
  await post(stack, 1, "hello");
  await settled(env, telegram, 1, 1, 60_000);
  for (let i = 0; i < 10; i++) await noop(stack);

  const reloadsBefore = reloads(env);
  const connections = await watchConnections(env);
  const chats = Array.from({ length: options.chats }, (_, i) => 200_000 + i);
  const webhook: number[] = [];
  const live: number[] = [];
  // A chat's first message also creates its agent.
  const firstWave: number[] = [];
  const laterWaves: number[] = [];
  const started = nowMs();
  const webhookWave = async (wave: number) => {
    const times = await Promise.all(chats.map((chatId) => post(stack, chatId, wave === 1 ? "hello" : `hi ${wave}`)));
    webhook.push(...times);
    (wave === 1 ? firstWave : laterWaves).push(...times);
  };
  const noopWave = async () => void live.push(...(await Promise.all(chats.map(() => noop(stack)))));
  for (let wave = 1; wave <= options.messages; wave++) {
    // Webhook, no-op, no-op, webhook…: each kind as often first as second, since every webhook wave leaves turns running behind it.
    if (wave % 2 === 1) {
      await webhookWave(wave);
      await noopWave();
    } else {
      await noopWave();
      await webhookWave(wave);
    }
  }
  const sentMs = nowMs() - started;
  const expected = options.chats * options.messages;
  // The scripted Product Owner's answer to a greeting; anything else (an escalation) is not the message's answer.
  const isAnswer = (text: string) => /Describe the product/.test(text);
  const answers = (chatId: number) => repliesTo(telegram, chatId).filter((m) => isAnswer(m.text)).length;
  const count = () => chats.reduce((sum, chatId) => sum + Math.min(options.messages, answers(chatId)), 0);
  const received = () => chats.reduce((sum, chatId) => sum + repliesTo(telegram, chatId).length, 0);
  // Until every message has its answer, or nothing has arrived for a while: what is missing then is reported, not waited for.
  let last = { received: -1, at: nowMs() };
  await until(() => {
    if (count() >= expected) return true;
    if (received() !== last.received) last = { received: received(), at: nowMs() };
    return nowMs() - last.at > STALL_MS ? false : undefined;
  }, 600_000, () => `${count()} of ${expected} answers`, 100);
  const drainedMs = nowMs() - started;
  const db = await connections.stop();
  const counts = chats.map((chatId) => repliesTo(telegram, chatId).length);
  const others = chats.flatMap((chatId) => repliesTo(telegram, chatId).filter((m) => !isAnswer(m.text)).map((m) => m.text));
  const allAnswered = count() === expected;
  const w = latencySummary(webhook);
  const n = latencySummary(live);
  const ratio = w.p99_ms / n.p99_ms;
  console.log(
    JSON.stringify({
      bench: "po",
      case: "webhook_latency",
      chats: options.chats,
      messages_per_chat: options.messages,
      concurrency: options.chats,
      webhook: { ...w, first_wave_p99_ms: round(percentile(firstWave, 99)), later_waves_p99_ms: round(percentile(laterWaves, 99)) },
      noop_healthz_live: n,
      ratio_p99: round(ratio),
      goal: `p99 ≤ ${LATENCY_GOAL_RATIO}× the no-op, every message answered`,
      meets_goal: ratio <= LATENCY_GOAL_RATIO && allAnswered,
      replies: {
        expected,
        answers: count(),
        other_replies: others.length,
        // Neither an answer nor anything else: dropped without a word.
        unanswered: chats.reduce((sum, chatId, i) => sum + Math.max(0, options.messages - (counts[i] ?? 0)), 0),
        chats_fully_answered: chats.filter((chatId) => answers(chatId) === options.messages).length,
        // Anything beyond one reply per message would be a turn answered twice.
        chats_over_answered: counts.filter((c) => c > options.messages).length,
        ...(others.length ? { other_texts: [...new Set(others.map((text) => text.replace(/\(incident \w+\)/, "(incident …)").slice(0, 100)))].slice(0, 3) } : {}),
      },
      sent_ms: round(sentMs, 0),
      ...(allAnswered ? { all_answered_ms: round(drainedMs, 0) } : { gave_up_after_ms: round(drainedMs, 0), wrangler_output: dumpOutput(env), worker_errors: errorsIn(env) }),
      ...db,
      ...reloadWarning(reloads(env) - reloadsBefore),
    }),
  );
}

// ---- 2. prompt tokens per turn ----

/** No word in it that the stand-in's keyword intent parser reads as a group ("bot", "app"…). */
const PROJECT = "morning-forecast";
/** The conversation, and what the scripted Product Owner does for each message (the same in both modes). */
const CONVERSATION: { text: string; first: Reply; then?: Reply }[] = [
  { text: "hello", first: call("respond", { text: "Hello! Describe the product you want and I will build and deploy it." }) },
  {
    text: "I want a weather bot that sends me the morning forecast for my city",
    first: call("create_project", { name: PROJECT, description: "A Telegram bot that sends the person the morning weather forecast for their city." }),
    then: call("start_engineering", { project: PROJECT }),
  },
  { text: `show me ${PROJECT}`, first: call("show_project", { project: PROJECT }), then: call("respond", { text: `${PROJECT} is created and waits for your go to be built.` }) },
  { text: `deploy ${PROJECT}`, first: call("deploy_project", { project: PROJECT }) },
  { text: "why did the last one fail?", first: call("recent_failures", { project: PROJECT }), then: call("respond", { text: "Nothing has failed: no build has run yet." }) },
  { text: "what did I spend on models this month?", first: call("usage_report", { by: "project" }), then: call("respond", { text: "Here is your model spend so far, by project." }) },
  { text: `is ${PROJECT} live yet?`, first: call("list_deployments", { project: PROJECT }), then: call("respond", { text: `${PROJECT} has no release yet.` }) },
  { text: "what server is this running on?", first: call("list_servers", {}), then: call("respond", { text: "Only an admin can see the servers." }) },
  { text: `roll back ${PROJECT}`, first: call("rollback_project", { project: PROJECT }) },
  { text: "thanks, that is all for today", first: call("respond", { text: "You're welcome. Talk soon!" }) },
];

function call(name: string, args: Record<string, unknown>): Reply {
  return { toolCalls: [{ name, arguments: args }] };
}

/** The Product Owner side for the conversation: by the person's message and the loop's round, never by the tools offered. */
function conversationSide(): Turn[] {
  const po: Turn = {
    name: "product owner (bench)",
    match: { tools: ["respond", "finish"], anyMessage: "You are the Product Owner" },
    reply: (request: ChatRequest) => {
      const lastUser = messageText([...request.messages].reverse().find((m) => m.role === "user"));
      const step = CONVERSATION.find((s) => s.text === lastUser);
      if (!step) return call("respond", { text: "I can build products and deploy them: describe what you want." });
      const last = request.messages.at(-1);
      if (last?.role !== "tool") return step.first;
      if (/asked to confirm/.test(messageText(last))) return call("finish", {});
      const previous = [...request.messages].reverse().find((m) => m.role === "assistant" && m.tool_calls?.length);
      const own = previous?.tool_calls?.[0]?.function.name;
      // The first call's result: its follow-up; the follow-up's: done.
      if (step.then && own === step.first.toolCalls?.[0]?.name) return step.then;
      return call("finish", {});
    },
  };
  return [...productOwnerSide().filter((turn) => turn.name !== "product owner"), po];
}

/** As the stand-in counts a request's prompt tokens (`usageOf` in standins/model-server.ts). */
const tokensOf = (request: RecordedRequest) => {
  const body = request.body as ChatRequest;
  return Math.max(1, Math.ceil((JSON.stringify(body.messages) + JSON.stringify(body.tools ?? [])).length / 4));
};
/** The tools' share of that. */
const toolTokensOf = (request: RecordedRequest) => Math.ceil(JSON.stringify((request.body as ChatRequest).tools ?? []).length / 4);

async function conversation(env: Env, telegram: TelegramServer, model: ModelServer, chatId: number) {
  model.load({ turns: [], side: conversationSide() });
  const reloadsBefore = reloads(env);
  const perTurn: { total: number; intent: number; po: number; tools: number; requests: number; tools_offered: number }[] = [];
  for (const step of CONVERSATION) {
    const mark = model.requests.length;
    const before = repliesTo(telegram, chatId).length;
    await post(env.stack, chatId, step.text);
    await settled(env, telegram, chatId, before + 1, 60_000);
    const requests = model.requests.slice(mark).filter((r) => r.path === "/v1/chat/completions");
    const unanswered = requests.filter((r) => !r.answeredBy);
    if (unanswered.length) throw new Error(`the scripted model had no answer for ${unanswered.length} request(s) on "${step.text}"`);
    // The same moves in both modes: a tool the intent parser left out would make this turn a different one.
    const refused = requests.flatMap((r) => (r.body as ChatRequest).messages).filter((m) => m.role === "tool" && /^error: there is no tool named/.test(messageText(m)));
    if (refused.length) throw new Error(`"${step.text}": ${messageText(refused[0])}`);
    const intent = requests.filter((r) => r.answeredBy === "side:intent parser");
    const po = requests.filter((r) => r.answeredBy === "side:product owner (bench)");
    const sum = (list: RecordedRequest[]) => list.reduce((total, r) => total + tokensOf(r), 0);
    perTurn.push({ total: sum(requests), intent: sum(intent), po: sum(po), tools: po.reduce((total, r) => total + toolTokensOf(r), 0), requests: requests.length, tools_offered: Math.max(0, ...po.map((r) => ((r.body as ChatRequest).tools ?? []).length)) });
  }
  const mean = (pick: (t: (typeof perTurn)[number]) => number) => round(perTurn.reduce((sum, t) => sum + pick(t), 0) / perTurn.length, 1);
  return {
    turns: perTurn.length,
    prompt_tokens_per_turn: mean((t) => t.total),
    intent_parser_tokens_per_turn: mean((t) => t.intent),
    product_owner_tokens_per_turn: mean((t) => t.po),
    of_which_tool_definitions_per_turn: mean((t) => t.tools),
    model_requests_per_turn: mean((t) => t.requests),
    tools_offered_per_turn: perTurn.map((t) => t.tools_offered),
    prompt_tokens_by_turn: perTurn.map((t) => t.total),
    reloads: reloads(env) - reloadsBefore,
  };
}

// ---- 3. agent storage ----

async function agentStorage(env: Env, telegram: TelegramServer, model: ModelServer, checkpoints: number[]): Promise<void> {
  model.load({ turns: [], side: productOwnerSide() });
  const chatId = 300_000;
  const started = nowMs();
  const reloadsBefore = reloads(env);
  // The agent's progress is its Product Owner requests (one a turn here), not the replies: the outbox
  // queue hands those over in batches of up to a second.
  let seen = model.requests.length;
  let taken = 0;
  const progress = () => {
    for (; seen < model.requests.length; seen++) if (model.requests[seen]?.answeredBy === "side:product owner") taken++;
    return taken;
  };
  let sent = 0;
  for (const checkpoint of [...checkpoints].sort((a, b) => a - b)) {
    while (sent < checkpoint) {
      await until(() => (sent - progress() < STORAGE_IN_FLIGHT ? true : undefined), 60_000, () => `chat ${chatId}: ${progress()} of ${sent} turns taken`, 2);
      sent++;
      await post(env.stack, chatId, `hi number ${sent}`);
    }
    const stats = await settled(env, telegram, chatId, checkpoint, 120_000).catch(async (error: unknown) => {
      const outbox = await env.stack.api("/api/telegram/outbox?limit=20");
      throw new Error(`${error instanceof Error ? error.message : String(error)}\nturns taken by the agent: ${progress()} of ${sent}; reloads: ${reloads(env) - reloadsBefore}\nagent: ${JSON.stringify(await agentStats(env.stack, chatId).catch(String))}\noutbox: ${JSON.stringify(outbox.body).slice(0, 3000)}`);
    });
    const received = repliesTo(telegram, chatId).length;
    console.log(
      JSON.stringify({
        bench: "po",
        case: "agent_storage",
        after_turns: checkpoint,
        ...stats,
        kib: round(stats.bytes / 1024, 1),
        replies: received,
        elapsed_ms: round(nowMs() - started, 0),
        summariser_requests: model.requests.filter((r) => r.answeredBy === "side:summariser").length,
        ...reloadWarning(reloads(env) - reloadsBefore),
      }),
    );
    if (received !== checkpoint) throw new Error(`chat ${chatId} has ${received} replies after ${checkpoint} turns`);
  }
}

export async function po(options: Options): Promise<void> {
  const telegram = new TelegramServer();
  await telegram.start();
  const model = new ModelServer({ apiKey: MODEL_KEY, scenario: { turns: [], side: productOwnerSide() } });
  await model.start();
  const envs: Env[] = [];
  const start = async (name: string, capabilities: "selected" | "all") => {
    const env = await startEnv(name, telegram, model, capabilities);
    envs.push(env);
    return env;
  };
  const stop = async (env: Env) => {
    envs.splice(envs.indexOf(env), 1);
    await env.stop();
  };
  try {
    // Case 1 on a stack of its own: a hundred chats at once can leave a stack in a state the others should not start from.
    const latency = await start("bench_po_latency", "selected");
    await webhookLatency(latency, telegram, options);
    await stop(latency);

    // Both started at once (what they measure is tokens, not time); their conversations one after the
    // other, since each counts the model requests made during it.
    const [selected, all] = await Promise.all([start("bench_po_selected", "selected"), start("bench_po_all", "all")]);
    const withSelection = await conversation(selected, telegram, model, 400_001);
    const everyTool = await conversation(all, telegram, model, 400_002);
    await stop(all);
    const reduction = (1 - withSelection.prompt_tokens_per_turn / everyTool.prompt_tokens_per_turn) * 100;
    // What selection can act on: the tool definitions (the intent parser's requests counted against it).
    const toolsReduction = (1 - (withSelection.of_which_tool_definitions_per_turn + withSelection.intent_parser_tokens_per_turn) / everyTool.of_which_tool_definitions_per_turn) * 100;
    console.log(
      JSON.stringify({
        bench: "po",
        case: "prompt_tokens",
        turns: withSelection.turns,
        selected: (({ reloads: _, ...rest }) => rest)(withSelection),
        all: (({ reloads: _, ...rest }) => rest)(everyTool),
        reduction_pct: round(reduction, 1),
        tool_definitions_plus_intent_parser_reduction_pct: round(toolsReduction, 1),
        goal: `≥ ${TOKENS_GOAL_REDUCTION_PCT}% fewer prompt tokens per turn`,
        meets_goal: reduction >= TOKENS_GOAL_REDUCTION_PCT,
        ...reloadWarning(withSelection.reloads + everyTool.reloads),
      }),
    );

    await agentStorage(selected, telegram, model, options.turns);
  } finally {
    for (const env of envs) await env.stop();
    await model.stop();
    await telegram.stop();
  }
}
