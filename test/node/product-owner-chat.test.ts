/**
 * The Product Owner's chat through the real path, where no build or deploy is involved: the Telegram
 * stand-in delivers updates to the worker's webhook (wrangler dev), grammY hands them to the chat's
 * ProductOwner agent, which calls the scripted model (intent parser, then the agentic loop with tools)
 * and answers through the telegram-outbox queue. What a chat starts on a runner (a build, a deploy, the
 * health checks of a live app) is in test/node/deploy.test.ts, behind the heavy gate; this file runs
 * beside the heavy files, on a stack of its own (its Telegram bot, model and budget).
 */
import { randomBytes } from "node:crypto";
import { Api } from "grammy";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { waitFor } from "../../scripts/lib/processes.ts";
import { type Stack, startStack } from "../../scripts/lib/local-stack.ts";
import { type ChatRequest, messageText, ModelServer } from "../../standins/model-server.ts";
import { TelegramServer } from "../../standins/telegram-server.ts";
import { from, nextMessageId, nextUpdateId, press, replies, replyMatching, requestsWith, script, send, sentTo, textUpdate, toolNames, usePoChat } from "../support/po-chat.ts";

const SECRET = `whsec_${randomBytes(12).toString("hex")}`;
const MODEL_KEY = `sk-po-${randomBytes(12).toString("hex")}`;

let stack: Stack;
let telegram: TelegramServer;
let model: ModelServer;
let token = "";

beforeAll(async () => {
  telegram = new TelegramServer();
  await telegram.start();
  model = new ModelServer({ apiKey: MODEL_KEY });
  await model.start();
  token = telegram.addBot({ username: `po_${randomBytes(3).toString("hex")}_bot` });
  stack = await startStack({
    databaseUrl: inject("databaseUrl"),
    dbWsProxy: inject("dbWsProxy"),
    adminKey: inject("adminApiKey"),
    vars: {
      OPENAI_BASE_URL: model.baseUrl,
      OPENAI_API_KEY: MODEL_KEY,
      TELEGRAM_API_URL: telegram.url,
      TELEGRAM_BOT_TOKEN: token,
      TELEGRAM_WEBHOOK_SECRET: SECRET,
      TELEGRAM_SIGNUP: "open",
      USER_BUDGET_USD: "5",
    },
  });
  usePoChat({ stack, telegram, model, token });
  await new Api(token, { apiRoot: telegram.url }).setWebhook(`${stack.url}/telegram/webhook`, { secret_token: SECRET });
  script([]);
}, 120_000);

afterAll(async () => {
  await stack?.stop();
  await telegram?.stop();
  await model?.stop();
});

describe("the Telegram webhook", () => {
  it("answers 401 to a wrong or missing secret token and processes nothing", async () => {
    const before = model.requests.length;
    const update = JSON.stringify(textUpdate(9001, "build me a thing"));
    for (const headers of [{ "x-telegram-bot-api-secret-token": "wrong" }, {}] as Record<string, string>[]) {
      const res = await fetch(`${stack.url}/telegram/webhook`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: update });
      expect(res.status).toBe(401);
    }
    // A barrier, not a pause: an update the webhook had handed over would be answered before this one.
    await send(9001, "hello");
    const [reply] = await replies(9001, 1);
    expect(reply?.text).toMatch(/Describe the product/);
    expect(sentTo(9001)).toHaveLength(1);
    expect(requestsWith("build me a thing")).toHaveLength(0);
    expect(model.requests.length).toBeGreaterThan(before);
  });

  it("gives malformed bodies and updates it does not handle a 200, a log line and no crash", async () => {
    const post = (body: string) => fetch(`${stack.url}/telegram/webhook`, { method: "POST", headers: { "content-type": "application/json", "x-telegram-bot-api-secret-token": SECRET }, body });
    const shapes = [
      "this is not json",
      JSON.stringify({ update_id: nextUpdateId(), edited_message: { message_id: 5, date: 0, edit_date: 1, chat: { id: 9002, type: "private" }, from: from(9002), text: "edited" } }),
      JSON.stringify({ update_id: nextUpdateId(), channel_post: { message_id: 6, date: 0, chat: { id: -1001234, type: "channel", title: "news" }, text: "a post with no from" } }),
      JSON.stringify({ update_id: nextUpdateId(), my_chat_member: { chat: { id: 9002, type: "private" }, from: from(9002), date: 0, old_chat_member: { status: "member", user: from(1) }, new_chat_member: { status: "kicked", user: from(1), until_date: 0 } } }),
      JSON.stringify({ update_id: nextUpdateId(), message: { message_id: 7, date: 0, chat: { id: 9002, type: "private" }, from: from(9002), photo: [{ file_id: "x", file_unique_id: "y", width: 1, height: 1 }] } }),
    ];
    for (const body of shapes) expect((await post(body)).status).toBe(200);
    await waitFor(() => (stack.process.output().includes("telegram update not handled") ? true : undefined), 10_000, () => stack.process.output().slice(-2000));
    expect(stack.process.output()).toContain("malformed telegram update ignored");
    // Still answering.
    await send(9002, "hello");
    const [reply] = await replies(9002, 1);
    expect(reply?.text).toMatch(/Describe the product/);
  });

  it("talks only in private chats: a group's members are told so, and nothing reaches a conversation or the model", async () => {
    const group = -1_007_770;
    const before = model.requests.length;
    for (const member of [9101, 9102]) {
      const update = { update_id: nextUpdateId(), message: { message_id: nextMessageId(), date: Math.floor(Date.now() / 1000), chat: { id: group, type: "group", title: "the team" }, from: from(member), text: "build me a weather bot" } };
      expect(await telegram.deliverUpdate(token, update)).toBe(200);
    }
    const refusals = await replies(group, 2);
    for (const refusal of refusals) expect(refusal.text).toMatch(/^I only talk in private chats, one person at a time: write to me directly/);
    expect(model.requests.length).toBe(before);
    const agent = await stack.api<{ turns: number; entries: number }>(`/api/chat/agents/tg:${group}`);
    expect(agent.body).toMatchObject({ turns: 0, entries: 0 });
    const { body } = await stack.api<{ users: { telegramId: number | null }[] }>("/api/users?limit=200");
    expect(body.users.some((user) => user.telegramId === 9101 || user.telegramId === 9102)).toBe(false);
  });

  it("processes a redelivered update once", async () => {
    const update = textUpdate(9003, "hi");
    expect(await telegram.deliverUpdate(token, update)).toBe(200);
    expect(await telegram.deliverUpdate(token, update)).toBe(200);
    await replies(9003, 1);
    // A barrier: the chat's messages are handled in order, so a second "hi" would be answered before this.
    await send(9003, "hello");
    await replies(9003, 2);
    expect(sentTo(9003)).toHaveLength(2);
    expect(requestsWith("Message: hi").length).toBe(1);
  });
});

describe("a conversation", () => {
  it("answers three messages sent while it is processing, each once, in order", async () => {
    // The first answer takes a while, so the next two arrive while the turn is running.
    script([
      { name: "po: slow first", match: { tools: true, anyMessage: "You are the Product Owner", lastMessage: "first question" }, reply: { delayMs: 2500, toolCalls: [{ name: "respond", arguments: { text: "answer one" } }] } },
      { name: "po: second", match: { tools: true, lastMessage: "second question" }, reply: { toolCalls: [{ name: "respond", arguments: { text: "answer two" } }] } },
      { name: "po: third", match: { tools: true, lastMessage: "third question" }, reply: { toolCalls: [{ name: "respond", arguments: { text: "answer three" } }] } },
    ]);
    await send(9004, "first question");
    // The first turn is under way (the model has its request) when the next two come.
    await waitFor(() => (model.requests.some((request) => JSON.stringify(request.body).includes("first question")) ? true : undefined), 30_000, () => "the first turn never reached the model");
    await send(9004, "second question");
    await send(9004, "third question");
    const got = await replies(9004, 3, 60_000);
    expect(got.map((m) => m.text)).toEqual(["answer one", "answer two", "answer three"]);
    expect(model.remaining()).toEqual([]);
  });

  it("sends the model only the base tools and the groups the intent parser picked; request_capabilities adds more", async () => {
    script([
      { name: "intent", match: { tools: false, anyMessage: "You are the Intent Parser" }, reply: { content: JSON.stringify({ groups: ["deploy"], intent: "deploy" }) } },
      { name: "po: ask for more", match: { tools: true }, reply: { toolCalls: [{ name: "request_capabilities", arguments: { groups: ["diagnose"] } }] } },
      { name: "po: bad call", match: { tools: true, lastRole: "tool" }, reply: { toolCalls: [{ name: "deploy_project", arguments: { projekt: "nope" } }, { name: "no_such_tool", arguments: {} }] } },
      { name: "po: answer", match: { tools: true, lastRole: "tool" }, reply: { toolCalls: [{ name: "respond", arguments: { text: "selection seen" } }] } },
    ]);
    const mark = model.requests.length;
    await send(9005, "what is live right now?");
    await replyMatching(9005, /selection seen/);
    const [first, second, third] = model.requests.slice(mark).filter((r) => r.answeredBy?.startsWith("po:"));
    if (!first || !second || !third) throw new Error("fewer Product Owner requests than scripted");
    expect(toolNames(first)).toEqual(["deploy_project", "finish", "list_deployments", "request_capabilities", "respond", "rollback_project", "undeploy_project"]);
    expect(toolNames(second)).toContain("recent_failures");
    // The invalid calls went back to the model as tool errors, and the loop went on.
    const errors = (third.body as ChatRequest).messages.filter((m) => m.role === "tool").map(messageText);
    expect(errors.some((e) => /invalid arguments for deploy_project/.test(e))).toBe(true);
    expect(errors.some((e) => /no tool named no_such_tool/.test(e))).toBe(true);
  });
});

describe("what the factory builds", () => {
  it("declines a product it cannot build, saying what it can build from its own prompt, and creates nothing", async () => {
    script([]);
    const mark = model.requests.length;
    // By name: other cases of this file create projects of their own meanwhile.
    const named = async () => (await stack.api<{ projects: { name: string }[] }>("/api/projects?limit=200")).body.projects.filter((project) => /iphone|steps/.test(project.name));
    await send(9011, "Build me an iPhone app that counts my steps");
    const declined = await replyMatching(9011, /can't build/);
    expect(declined.text).toContain('can\'t build "iPhone app" here');
    expect(declined.text).toContain("- python-http: a small HTTP service in Python");
    // The Product Owner was told what the factory builds, and called nothing that creates.
    const asked = model.requests.slice(mark).filter((r) => r.answeredBy === "side:product owner");
    expect(asked.length).toBeGreaterThan(0);
    expect(JSON.stringify(asked[0]?.body)).toContain("What the factory can build:");
    expect(asked.flatMap((r) => (r.body as ChatRequest).messages).some((m) => m.tool_calls?.some((c) => c.function.name === "create_project"))).toBe(false);
    expect(await named()).toEqual([]);
  });
});

describe("taking a project offline", () => {
  it("asks before an undeploy, and says plainly whether the project's data goes too", async () => {
    script([]);
    await send(9012, "undeploy some-project");
    const keeping = await replyMatching(9012, /Take some-project offline/);
    expect(keeping.text).toContain("(Its data is kept.)");
    await press(keeping, /Cancel/);
    await send(9013, "undeploy some-project and delete its data");
    const deleting = await replyMatching(9013, /Take some-project offline/);
    expect(deleting.text).toContain("delete its data for good?");
    await press(deleting, /Cancel/);
  });
});

describe("human escalation", () => {
  it("stops after its rounds run out, says so, and records that a person must decide", async () => {
    script([
      { name: "po: going round in circles", match: { tools: true, anyMessage: "You are the Product Owner" }, reply: { toolCalls: [{ name: "list_projects", arguments: {} }] }, times: 6 },
    ]);
    const chatId = 9011;
    await send(chatId, "list my projects over and over");
    const told = await replyMatching(chatId, /I need a person to decide/);
    expect(told.text).toMatch(/no answer after 6 rounds/);
    expect(model.remaining()).toEqual([]);
    const { body } = await stack.api<{ incidents: { kind: string; message: string; data: { chat: string } }[] }>("/api/incidents?kind=needs_human_approval");
    expect(body.incidents.some((incident) => incident.data.chat === `tg:${chatId}` && /no answer after 6 rounds/.test(incident.message))).toBe(true);
  });
});

describe("cost control and delivery", () => {
  it("warns at 80% of the budget, then makes no model call and says so once it is used up", async () => {
    const chatId = 9008;
    // $4.20 of gpt-4.1 (USER_BUDGET_USD is 5): past 80%.
    script([
      { name: "po: expensive", match: { tools: true, lastMessage: "an expensive question" }, reply: { usage: { promptTokens: 2_100_000, completionTokens: 1 }, toolCalls: [{ name: "respond", arguments: { text: "that was expensive" } }] } },
      { name: "po: more", match: { tools: true, lastMessage: "another one" }, reply: { usage: { promptTokens: 500_000, completionTokens: 1 }, toolCalls: [{ name: "respond", arguments: { text: "and that too" } }] } },
    ]);
    await send(chatId, "an expensive question");
    await replyMatching(chatId, /that was expensive/);
    await send(chatId, "another one");
    await replyMatching(chatId, /Heads up: your account has used \$4\.2\d of its \$5\.00 model budget/);
    await replyMatching(chatId, /and that too/);
    const before = model.requests.length;
    await send(chatId, "and now?");
    const refused = await replyMatching(chatId, /model budget of your account is used up/);
    expect(refused.text).toContain("No model call was made");
    expect(model.requests.length).toBe(before);
  });

  it("delivers a reply after Telegram's flood control (429 retry_after)", async () => {
    script([]);
    telegram.floodControl(1, 2, "sendMessage");
    const started = Date.now();
    await send(9009, "hey");
    const [reply] = await replies(9009, 1);
    expect(reply?.text).toMatch(/Describe the product/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(2000);
  });

  it("keeps a 200-turn conversation's storage bounded: old turns are summarised away", async () => {
    script([]);
    const chatId = 9010;
    for (let turn = 1; turn <= 200; turn++) {
      await send(chatId, `hi number ${turn}`);
      if (turn % 20 === 0) await replies(chatId, turn, 120_000);
    }
    await replies(chatId, 200, 180_000);
    const { body } = await stack.api<{ bytes: number; turns: number; entries: number; summary: boolean }>(`/api/chat/agents/tg:${chatId}`);
    expect(body.summary).toBe(true);
    expect(body.turns).toBeLessThanOrEqual(60);
    expect(body.entries).toBeLessThanOrEqual(100);
    // The bound stated in docs/product-owner.md: 256 KiB however long the chat.
    expect(body.bytes).toBeLessThan(256 * 1024);
    process.stdout.write(`200-turn chat: ${JSON.stringify(body)}\n`);
    expect(requestsWith("You are the Summariser").length).toBeGreaterThan(0);
    // Each new summary is indexed (scope history, owned by the chat's user) for search_knowledge.
    const indexed = await waitFor(async () => {
      const { body: listed } = await stack.api<{ documents: { source: string; ownerId: string | null; projectId: string | null; title: string }[] }>("/api/rag/documents?scope=history&limit=100");
      return listed.documents.find((document) => document.source === `chat:tg:${chatId}`);
    }, 60_000, () => "the conversation summary was not indexed");
    expect(indexed.title).toBe("Conversation summary");
    expect(indexed.projectId).toBeNull();
    expect(indexed.ownerId).toMatch(/\S/);
  }, 400_000);
});
