/**
 * The Bot API gateway with a grammY bot long-polling through it to the Telegram stand-in: what the bot
 * does for its real users is unchanged, and a check's message reaches it and its replies come back
 * without reaching Telegram. Then the acceptance.check job's message checks on top of it.
 */
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Bot } from "grammy";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TelegramServer } from "../../standins/telegram-server.ts";
import { waitFor } from "../../scripts/lib/processes.ts";
import { BotGateway } from "../src/bot-gateway.ts";
import { acceptanceCheck } from "../src/executors/acceptance-check.ts";
import { recordingContext } from "./context.ts";

const telegram = new TelegramServer();
const gateway = new BotGateway({ host: "127.0.0.1", port: 0 }, "B".repeat(43));
const bots: Bot[] = [];

beforeAll(async () => {
  await telegram.start();
  await gateway.start();
});
afterAll(async () => {
  await Promise.all(bots.map((bot) => bot.stop()));
  await gateway.close();
  await telegram.stop();
});

/** A bot like the template's, polling through the gateway as release `release`. */
function pollingBot(release: string, username: string): { token: string; bot: Bot } {
  const token = telegram.addBot({ username });
  const bot = new Bot(token, { client: { apiRoot: gateway.apiRoot(release, telegram.apiRoot) } });
  bot.command("start", (ctx) => ctx.reply(`hello ${ctx.from?.first_name ?? ""}`));
  bot.command("weather", (ctx) => ctx.reply(`${ctx.match}: sunny`));
  bots.push(bot);
  void bot.start({ drop_pending_updates: false, timeout: 20 });
  return { token, bot };
}

function say(token: string, from: { id: number; first_name: string }, text: string): Promise<number> {
  const command = text.split(" ")[0] ?? "";
  return telegram.deliverUpdate(token, { message: { message_id: 1, date: 0, chat: { id: from.id, type: "private" }, from: { ...from, is_bot: false }, text, entities: [{ type: "bot_command", offset: 0, length: command.length }] } });
}

const sentBy = (username: string) => telegram.messages.filter((m) => m.username === username).map((m) => [m.chatId, m.text]);

describe("the Bot API gateway", () => {
  it("passes a bot's calls to its Bot API, gives it a check's message, keeps the replies from Telegram, and loses or doubles no real update", async () => {
    const { token } = pollingBot("dep_gateway_one", "gateway_one_bot");
    await say(token, { id: 5150, first_name: "Ada" }, "/start");
    await waitFor(() => (sentBy("gateway_one_bot").length === 1 ? true : undefined), 10_000, () => JSON.stringify(telegram.messages));
    // The bot polls upstream again at once, for up to 20 s: the check's message cuts that poll short
    // (within the 10 s the check waits).
    const conversation = await gateway.converse("dep_gateway_one", "/weather Lisbon", 10_000, new AbortController().signal);
    expect(conversation).toEqual({ replies: ["Lisbon: sunny"], polled: true });
    // Real users after the check: each update once (the check's offset was never sent to Telegram).
    await say(token, { id: 6160, first_name: "Bob" }, "/start");
    await say(token, { id: 5150, first_name: "Ada" }, "/weather Porto");
    await waitFor(() => (sentBy("gateway_one_bot").length === 3 ? true : undefined), 10_000, () => JSON.stringify(telegram.messages));
    // A last update as a barrier: the bot handles updates in order, so a doubled one would come before its reply.
    await say(token, { id: 6160, first_name: "Bob" }, "/weather Faro");
    await waitFor(() => (sentBy("gateway_one_bot").some(([, text]) => text === "Faro: sunny") ? true : undefined), 10_000, () => JSON.stringify(telegram.messages));
    expect(sentBy("gateway_one_bot")).toEqual([[5150, "hello Ada"], [6160, "hello Bob"], [5150, "Porto: sunny"], [6160, "Faro: sunny"]]);
  });

  it("sends again no update a bot was busy with when a check came (the poll that would have confirmed it is answered with the check's)", async () => {
    const token = telegram.addBot({ username: "slow_bot" });
    const bot = new Bot(token, { client: { apiRoot: gateway.apiRoot("dep_slow", telegram.apiRoot) } });
    let release = () => undefined as void;
    const busy = new Promise<void>((resolve) => (release = resolve));
    let started = false;
    bot.command("slow", async (ctx) => {
      started = true;
      await busy;
      await ctx.reply("slow done");
    });
    bot.command("start", (ctx) => ctx.reply("hello"));
    bots.push(bot);
    void bot.start({ drop_pending_updates: false, timeout: 20 });
    await say(token, { id: 7170, first_name: "Cy" }, "/slow");
    await waitFor(() => (started ? true : undefined), 10_000, () => "the handler never started");
    // The check's message is there before the bot asks again (with the offset that confirms /slow).
    const conversation = gateway.converse("dep_slow", "/start", 10_000, new AbortController().signal);
    release();
    expect((await conversation).replies).toEqual(["hello"]);
    await say(token, { id: 7170, first_name: "Cy" }, "/start");
    await waitFor(() => (sentBy("slow_bot").length === 2 ? true : undefined), 10_000, () => JSON.stringify(sentBy("slow_bot")));
    await say(token, { id: 7170, first_name: "Cy" }, "/start");
    await waitFor(() => (sentBy("slow_bot").length >= 3 ? true : undefined), 10_000, () => JSON.stringify(sentBy("slow_bot")));
    expect(sentBy("slow_bot")).toEqual([[7170, "slow done"], [7170, "hello"], [7170, "hello"]]);
  });

  it("reads and rewrites a poll sent as multipart/form-data, as some libraries send every call", async () => {
    const token = telegram.addBot({ username: "multipart_bot" });
    const root = gateway.apiRoot("dep_multipart", telegram.apiRoot);
    const poll = async (offset?: number) => {
      const form = new FormData();
      form.set("timeout", "1");
      if (offset !== undefined) form.set("offset", String(offset));
      const answer = (await (await fetch(`${root}/bot${token}/getUpdates`, { method: "POST", body: form })).json()) as { ok: boolean; result: { update_id: number; message?: { text?: string } }[] };
      expect(answer.ok).toBe(true);
      return answer.result;
    };
    await say(token, { id: 8180, first_name: "Di" }, "/start one");
    const [first] = await poll();
    const checked = gateway.converse("dep_multipart", "/start", 3_000, new AbortController().signal);
    const [synthetic] = await poll((first?.update_id ?? 0) + 1);
    expect(synthetic?.message?.text).toBe("/start");
    await checked;
    // After the check's update: the real offset stands in, so what came since arrives, once.
    await say(token, { id: 8180, first_name: "Di" }, "/start two");
    const after = await poll((synthetic?.update_id ?? 0) + 1);
    expect(after.map((update) => update.message?.text)).toEqual(["/start two"]);
    expect(telegram.calls("getUpdates").filter((r) => r.token === token).map((r) => r.params.offset)).not.toContain(String((synthetic?.update_id ?? 0) + 1));
  });

  it("refuses an address it did not make: a forged MAC, another release's, an upstream swapped for another", async () => {
    const good = new URL(gateway.apiRoot("dep_gateway_two", telegram.apiRoot));
    const [, , release, target, mac] = good.pathname.split("/");
    const other = new URL(gateway.apiRoot("dep_gateway_three", telegram.apiRoot)).pathname.split("/")[4];
    const elsewhere = Buffer.from("http://127.0.0.1:9").toString("base64url");
    const before = telegram.calls("getMe").length;
    for (const path of [`/r/${release}/${target}/${"A".repeat(32)}`, `/r/${release}/${target}/${other}`, `/r/${release}/${elsewhere}/${mac}`, `/r/${release}/${target}`]) {
      const answer = await fetch(`${good.origin}${path}/bot1:x/getMe`);
      expect(answer.status, path).toBe(404);
      expect(((await answer.json()) as { description: string }).description).toContain("not a release's Bot API address");
    }
    expect(telegram.calls("getMe").length).toBe(before);
    expect((await fetch(`${good.href}/bot1:x/getMe`)).status).toBe(401);
    // A call bigger than the gateway reads (an upload) streams through to the Bot API as it is.
    const token = telegram.addBot({ username: "big_call_bot" });
    const big = await fetch(`${good.href}/bot${token}/getMe`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ pad: "x".repeat(3 * 1024 * 1024) }) });
    expect(((await big.json()) as { result: { username: string } }).result.username).toBe("big_call_bot");
  });

  it("listens, after a restart, on the port it took before, so that running releases still reach it", async () => {
    const portFile = join(await mkdtemp(join(tmpdir(), "bot-gateway-")), "bot-gateway.port");
    const first = new BotGateway({ host: "127.0.0.1", port: 0 }, "C".repeat(43), portFile);
    await first.start();
    const address = first.apiRoot("dep_restarted", telegram.apiRoot);
    await first.close();
    const again = new BotGateway({ host: "127.0.0.1", port: 0 }, "C".repeat(43), portFile);
    await again.start();
    try {
      expect(again.apiRoot("dep_restarted", telegram.apiRoot)).toBe(address);
      const token = telegram.addBot({ username: "restarted_bot" });
      expect(((await (await fetch(`${address}/bot${token}/getMe`)).json()) as { result: { username: string } }).result.username).toBe("restarted_bot");
    } finally {
      await again.close();
    }
  });

  it("says when the release never asked for its updates, and stops waiting when told to", async () => {
    expect(await gateway.converse("dep_nobody_polls", "/start", 300, new AbortController().signal)).toEqual({ replies: [], polled: false });
    const stop = new AbortController();
    setTimeout(() => stop.abort(), 100);
    const started = Date.now();
    await gateway.converse("dep_nobody_polls", "/start", 60_000, stop.signal);
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});

describe("acceptance.check with a bot's message checks", () => {
  it("holds each reply against what the check expects, names the failure, and never sends the check's chat's replies to Telegram", async () => {
    pollingBot("dep_checked", "checked_bot");
    const context = { ...recordingContext(), botGateway: gateway };
    const outcome = await acceptanceCheck(
      {
        domain: "checked.localhost",
        release: "dep_checked",
        timeoutSeconds: 60,
        checks: [
          { name: "greets", send: "/start", expect: { replyContains: "hello Acceptance" } },
          { name: "forecast", send: "/weather Oslo", expect: { replyContains: "rain" } },
        ],
      },
      context,
    );
    expect(outcome.ok).toBe(false);
    expect(outcome.data?.results).toEqual([
      { name: "greets", ok: true, status: null, detail: 'the bot replied "hello Acceptance"' },
      { name: "forecast", ok: false, status: null, detail: 'the bot replied "Oslo: sunny", none of which contains "rain"', body: "Oslo: sunny" },
    ]);
    expect(outcome.message).toContain('1 of 2 acceptance checks fail');
    expect(sentBy("checked_bot")).toEqual([]);
    // Without a gateway the check cannot be made, and says so.
    const without = await acceptanceCheck({ domain: "checked.localhost", release: "dep_checked", timeoutSeconds: 60, checks: [{ name: "greets", send: "/start", expect: { replyContains: "hello" } }] }, recordingContext());
    expect(without.ok).toBe(false);
    expect(without.message).toContain("no Bot API gateway");
  });
});
