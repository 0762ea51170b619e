/**
 * `npm run demo`: the factory's happy path for a newcomer. It uses the factory `npm run dev` runs
 * (or starts one the same way), signs in to the chat as the local user, asks the Product Owner
 *
 *     Build me a service that says hello at /hello
 *
 * confirms, prints the conversation, the live task view's URL and, at the end, the project's URL
 * and what it answered. `npm run demo -- bot` asks for the seed's headline product instead,
 *
 *     Build me a weather bot with notifications
 *
 * with a bot of the pool (with the Telegram stand-in, one is made and registered when the pool has
 * none free), and at the end writes /start and /subscribe Lisbon to the project's bot as a person
 * would and prints its answers. `npm run demo -- change` goes on from the live service around the change
 * loop: it asks for a change ("also say bye at /bye"), shows the change's preview answering /bye while
 * production does not, presses Ship it, shows production answering, then asks to undo the last change
 * and shows production as it was (a revert commit, the old release back with no rebuild), and lists
 * the project's checkpoints. Without OPENAI_API_KEY the scripted model plays every part, and each of its
 * messages says so ([scripted model]); with it, the real model does.
 * A factory it started keeps running for you to look around until Ctrl-C (`--exit`: stop at the end).
 */
import { existsSync, readFileSync } from "node:fs";
import { request } from "node:http";
import { join } from "node:path";
import { ChatSession, EntryPrinter } from "../cli/chat.ts";
import type { ChatEntry } from "../src/shared/chat.ts";
import { devOptions, fireCrons, stopOnSignals } from "./dev.ts";
import { consoleLink, consoleUser } from "./lib/console-user.ts";
import { readDevVars } from "./lib/dev-vars.ts";
import { apiClient, type Factory, startFactory } from "./lib/factory.ts";

export const DEMO_REQUEST = "Build me a service that says hello at /hello";
const DEMO_PATH = "/hello";
export const BOT_DEMO_REQUEST = "Build me a weather bot with notifications";
const BOT_MESSAGES = ["/start", "/subscribe Lisbon"];
const DEADLINE_MS = 20 * 60_000;
const say = (line: string) => console.log(`[demo] ${line}`);

type Local = Pick<Factory, "api" | "url" | "caddyUrl" | "scriptedModel">;

/** The factory `npm run dev` runs on PORT, if one answers. */
async function running(options: ReturnType<typeof devOptions>): Promise<Local | null> {
  const url = `http://127.0.0.1:${options.port}`;
  const healthy = await fetch(`${url}/healthz`).then((res) => res.ok, () => false);
  if (!healthy) return null;
  const adminKey = readDevVars(options.varsFile).ADMIN_API_KEY ?? "";
  const api = apiClient(url, adminKey);
  if ((await api("/api/servers")).status === 401) throw new Error(`something answers on ${url} but refuses the admin key in ${options.varsFile}: is it this checkout's npm run dev?`);
  return { url, api, caddyUrl: `http://127.0.0.1:${options.caddyPort}`, scriptedModel: !process.env.OPENAI_API_KEY && !readDevVars(options.varsFile).OPENAI_API_KEY };
}

/** One GET through Caddy with the project's Host header (what a browser sends for http://<project>.localhost:<port>). */
function visit(caddyUrl: string, host: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${caddyUrl}${path}`, { headers: { host }, timeout: 10_000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("timeout", () => req.destroy(new Error("no answer within 10 s")));
    req.on("error", reject);
    req.end();
  });
}

let factory: Factory | undefined;

/** The Telegram stand-in npm run dev runs (its URL in standins.json), or null with a real Telegram. */
function telegramStandin(stateDir: string): string | null {
  const file = join(stateDir, "standins.json");
  if (!existsSync(file)) return null;
  return (JSON.parse(readFileSync(file, "utf8")) as { telegram?: string }).telegram ?? null;
}

/** Makes sure the pool has a free bot for the demo's project: with the stand-in, one is made and registered when none is free. */
async function ensurePoolBot(local: Local, standin: string | null): Promise<void> {
  const { body } = await local.api<{ bots: { projectId: string | null; needsRotation: boolean }[] }>("/api/telegram-bots");
  if (body.bots.some((bot) => !bot.projectId && !bot.needsRotation)) return;
  if (!standin) throw new Error("the bot pool has no free bot: register one with `npx orchestrator bots add <token>` (a token from @BotFather)");
  const made = await fetch(`${standin}/_standin/bots`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ username: `demo_${Date.now().toString(36)}_bot` }) });
  const { token } = (await made.json()) as { token: string };
  const registered = await local.api<{ bot: { username: string } }>("/api/telegram-bots", { json: { token } });
  if (registered.status !== 201) throw new Error(`could not register a bot for the demo: ${JSON.stringify(registered.body)}`);
  say(`the bot pool had no free bot: registered @${registered.body.bot.username}, a bot of the Telegram stand-in`);
}

/** The token of the project's bot, as the stand-in knows it. */
async function projectBotToken(local: Local, standin: string, projectName: string): Promise<{ username: string; token: string }> {
  const projects = (await local.api<{ projects: { id: string; name: string }[] }>(`/api/projects?name=${projectName}`)).body.projects;
  const projectId = projects.find((project) => project.name === projectName)?.id;
  const bots = (await local.api<{ bots: { username: string; projectId: string | null }[] }>("/api/telegram-bots")).body.bots;
  const username = bots.find((bot) => bot.projectId === projectId)?.username;
  const known = ((await (await fetch(`${standin}/_standin/bots`)).json()) as { bots: { username: string; token: string }[] }).bots;
  const bot = known.find((entry) => entry.username === username);
  if (!bot) throw new Error(`${projectName} has no bot of the Telegram stand-in`);
  return bot;
}

/** Writes `text` to the bot as a person would (through the stand-in) and waits for its answer. */
async function talkToBot(standin: string, bot: { username: string; token: string }, text: string): Promise<string> {
  const { token } = bot;
  const chatId = 424_242;
  const update = { message: { message_id: Date.now() % 1_000_000, date: Math.floor(Date.now() / 1000), chat: { id: chatId, type: "private", first_name: "You" }, from: { id: chatId, is_bot: false, first_name: "You" }, text, entities: [{ type: "bot_command", offset: 0, length: text.split(" ")[0]?.length ?? 0 }] } };
  const answers = async () => {
    const { messages } = (await (await fetch(`${standin}/_standin/requests`)).json()) as { messages: { username: string; chatId: number; text: string }[] };
    return messages.filter((m) => m.username === bot.username && m.chatId === chatId).map((m) => m.text);
  };
  const before = (await answers()).length;
  await fetch(`${standin}/_standin/updates`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ token, update }) });
  const started = Date.now();
  while (Date.now() - started < 60_000) {
    const answer = (await answers())[before];
    if (answer !== undefined) return answer;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`@${bot.username} did not answer ${text} within 60 s`);
}

async function main() {
  const exitAtEnd = process.argv.includes("--exit") || process.env.CI === "true";
  const bot = process.argv.slice(2).includes("bot");
  const wanted = bot ? BOT_DEMO_REQUEST : DEMO_REQUEST;
  const options = { ...devOptions(false), say: (line: string) => say(line) };
  stopOnSignals(() => factory, () => process.exit(130), say);

  let local = await running(options);
  if (local) say(`using the factory npm run dev runs on ${local.url}`);
  else {
    say("no factory answers on this port: starting one as npm run dev does (its output is kept quiet; npm run dev shows it all)…");
    factory = await startFactory(options);
    if (!factory.runner || !factory.caddyUrl) throw new Error(`the demo needs a runner and Caddy on this machine; missing:\n  ${factory.missing.join("\n  ")}`);
    local = factory;
  }
  if (local.scriptedModel) say("the model is the SCRIPTED stand-in: every answer below is canned and labelled [scripted model]. Set OPENAI_API_KEY for a real model.");
  const user = await consoleUser(local, options.stateDir);
  say(`the web console, signed in as you: ${await consoleLink(local, user)}`);

  const standin = bot ? telegramStandin(options.stateDir) : null;
  if (bot) await ensurePoolBot(local, standin);

  const stop = new AbortController();
  const session = await ChatSession.open({ url: local.url, apiKey: user.key }, stop.signal);
  const printer = new EntryPrinter();
  printer.seen(session.history);
  let ended: (entry: ChatEntry) => void = () => undefined;
  const outcome = new Promise<ChatEntry>((resolve) => (ended = resolve));
  const links = new Set<string>();
  // The agent's messages in order, and how far the change loop's steps have read them (each step waits for the first match after the last).
  const seen: ChatEntry[] = [];
  let read = 0;
  let waiting: { pattern: RegExp; resolve: (entry: ChatEntry) => void } | undefined;
  const match = () => {
    if (!waiting) return;
    const at = seen.findIndex((candidate, index) => index >= read && waiting?.pattern.test(candidate.text));
    const found = seen[at];
    if (!found) return;
    read = at + 1;
    const { resolve } = waiting;
    waiting = undefined;
    resolve(found);
  };
  const next = (pattern: RegExp) =>
    new Promise<ChatEntry>((resolve) => {
      waiting = { pattern, resolve };
      match();
    });
  session.onEntry = (entry, previous) => {
    printer.entry(entry);
    if (entry.from !== "agent") return;
    if (!previous) seen.push(entry);
    match();
    if (entry.taskLink && !links.has(entry.taskLink)) {
      links.add(entry.taskLink);
      say(`live task view: ${entry.taskLink}`);
    }
    if (/ is live at /.test(entry.text) || /^❌/.test(entry.text)) ended(entry);
  };

  say(`you> ${wanted}`);
  printer.expectEcho(wanted);
  await session.turn({ type: "chat:message", text: wanted });
  const question = session.openQuestion(() => true);
  const yes = question?.buttons?.find((button) => button.choice === "yes");
  if (!question?.actionId || !yes) throw new Error("the Product Owner asked no confirmation to build: see the conversation above");
  say("you> (pressed Confirm)");
  await session.turn({ type: "chat:choice", actionId: question.actionId, choice: yes.choice });

  const deadline = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no result within ${DEADLINE_MS / 60_000} minutes`)), DEADLINE_MS).unref());
  const last = await Promise.race([outcome, deadline]);
  const live = / is live at (\S+)/.exec(last.text)?.[1];
  if (!live) throw new Error(`it did not go live: ${last.text}`);
  const projectUrl = new URL(live);
  if (!process.argv.slice(2).includes("change")) session.close();
  if (bot) {
    if (standin) {
      const projectBot = await projectBotToken(local, standin, projectUrl.hostname.split(".")[0] ?? "");
      for (const text of BOT_MESSAGES) {
        say(`you> ${text} (to @${projectBot.username}, in the Telegram stand-in)`);
        say(`@${projectBot.username} answered: ${await talkToBot(standin, projectBot, text)}`);
      }
    } else say(`done. Try it: write ${BOT_MESSAGES.join(", then ")} to the project's bot in Telegram`);
  } else await checkService(local, projectUrl);
  if (process.argv.slice(2).includes("change")) {
    const step = <T>(work: Promise<T>) => Promise.race([work, deadline]);
    await changeLoop(local, projectUrl, { session, printer, next: (pattern) => step(next(pattern)) });
    session.close();
  }

  if (!factory || exitAtEnd) {
    await factory?.stop();
    process.exit(0);
  }
  fireCrons(factory.url);
  say(`the factory keeps running so you can look around (console above, API ${factory.url}/api/docs). Ctrl-C stops it.`);
}

/** The change loop on the live service: a change, its preview, Ship it, then undo (`npm run demo -- change`). */
async function changeLoop(local: Local, projectUrl: URL, chat: { session: ChatSession; printer: EntryPrinter; next: (pattern: RegExp) => Promise<ChatEntry> }): Promise<void> {
  const name = projectUrl.hostname.split(".")[0] ?? "";
  const host = (label: string) => `${label}.${projectUrl.hostname.split(".").slice(1).join(".")}`;
  const caddy = local.caddyUrl ?? projectUrl.origin;
  const show = async (label: string, path: string) => {
    const answer = await visit(caddy, host(label), path);
    say(`${projectUrl.protocol}//${host(label)}${projectUrl.port ? `:${projectUrl.port}` : ""}${path} answered ${answer.status}: ${answer.body.trim().slice(0, 200)}`);
    return answer.status;
  };
  const tell = async (text: string) => {
    say(`you> ${text}`);
    chat.printer.expectEcho(text);
    await chat.session.turn({ type: "chat:message", text });
  };
  const press = async (entry: ChatEntry, choice: string, label: string) => {
    if (!entry.actionId || !entry.buttons?.some((button) => button.choice === choice)) throw new Error(`no ${label} button under: ${entry.text}`);
    say(`you> (pressed ${label})`);
    await chat.session.turn({ type: "chat:choice", actionId: entry.actionId, choice });
  };
  const confirm = async (asked: RegExp) => press(await chat.next(asked), "yes", "Confirm");

  await tell(`change ${name}: also say bye at /bye`);
  await confirm(/^Start this change/);
  const preview = await chat.next(new RegExp(`The preview of change #(\\d+) of ${name} is live at`));
  const number = /change #(\d+)/.exec(preview.text)?.[1] ?? "1";
  if ((await show(`${name}--${number}`, "/bye")) !== 200) throw new Error("the preview does not answer /bye");
  await show(name, "/bye");
  await press(preview, "ship", "🚀 Ship it");
  await chat.next(new RegExp(`^🚀 ${name} is live at`));
  if ((await show(name, "/bye")) !== 200) throw new Error("production does not answer /bye after the ship");

  await tell(`undo the last change of ${name}`);
  await confirm(/^Undo /);
  await chat.next(/^↩️ /);
  await chat.next(new RegExp(`^🚀 ${name} is live at`));
  if ((await show(name, "/bye")) !== 404) throw new Error("production still answers /bye after the undo");
  await show(name, "/hello");
  const projects = (await local.api<{ projects: { id: string; name: string }[] }>(`/api/projects?name=${name}`)).body.projects;
  const id = projects.find((project) => project.name === name)?.id ?? "";
  const { checkpoints } = (await local.api<{ checkpoints: { number: number; kind: string; commitSha: string; summary: string; release: { live: boolean } | null }[] }>(`/api/projects/${id}/checkpoints`)).body;
  say(`${name}'s checkpoints (npx orchestrator checkpoints ${name}):`);
  for (const checkpoint of checkpoints) say(`  #${checkpoint.number} ${checkpoint.kind.padEnd(6)} ${checkpoint.commitSha.slice(0, 12)} ${checkpoint.release?.live ? "live " : "     "} ${checkpoint.summary.slice(0, 80)}`);
}

async function checkService(local: Local, projectUrl: URL): Promise<void> {
  const answer = await visit(local.caddyUrl ?? projectUrl.origin, projectUrl.host.replace(/:\d+$/, ""), DEMO_PATH);
  say(`${projectUrl.origin}${DEMO_PATH} answered ${answer.status}: ${answer.body.trim()}`);
  if (answer.status !== 200) throw new Error(`${projectUrl.origin}${DEMO_PATH} did not answer 200`);
  say(`done. Try it: curl ${projectUrl.origin}${DEMO_PATH}`);
}

main().catch(async (error: unknown) => {
  console.error(`[demo] failed: ${error instanceof Error ? error.message : String(error)}`);
  if (factory) {
    console.error(`[demo] the last of wrangler's output:\n${factory.wrangler.output().slice(-3000)}`);
    if (factory.runner) console.error(`[demo] the last of the runner's output:\n${factory.runner.output().slice(-3000)}`);
    await factory.stop();
  }
  process.exit(1);
});
