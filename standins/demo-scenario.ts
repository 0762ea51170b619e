/**
 * The scripted model `npm run dev` (and the demo) answer with: any number of engineering runs, each
 * ending with passing tests. Every answer is a side turn, so the script is never used up:
 *
 * - the Architect gets a spec made from the project's name and description: a route the description
 *   names ("says hello at /hello" → GET /hello answering "hello"), else GET /about telling what the
 *   service is for; a key it names (…_KEY, …_TOKEN) is an env variable the owner gives;
 * - the coding agent reads TASK.md and app/main.py, edits main.py to add the spec's first route,
 *   adds a test for it, and says so; for a TypeScript service ("a TypeScript service that says hello
 *   at /hello"), it reads src/app.ts and runs `npm install` first, then adds the route there and a
 *   vitest test; for a Telegram bot ('a Telegram bot that answers /ping with "pong"'), the command in
 *   src/bot.ts and its test; for a static site, it adds the headline to the page;
 * - the EnvAnalyzer gets each variable of the .env.example it is shown classified by its name (a
 *   password or secret is generated, a port, domain or URL computed, any other key asked of the owner);
 * - anything else without tools (a title request) gets a short title.
 *
 * What it writes for people (the agent's summary, titles) is labelled SCRIPTED_LABEL.
 */
import type { ChatRequest, Scenario } from "./model-server.ts";
import { messageText } from "./model-server.ts";
import { z } from "zod";
import { productOwnerSide, SCRIPTED_LABEL } from "./po-scenario.ts";

function projectOf(request: ChatRequest): { name: string; description: string } {
  const text = messageText(request.messages.find((message) => message.role === "user"));
  const name = /Project name: (.+)/.exec(text)?.[1]?.trim() ?? "service";
  const description = text.split("Description:\n")[1]?.trim() ?? "";
  return { name, description };
}

/** The route a description names: "says hello at /hello" → GET /hello answering "hello". */
export function namedRoute(description: string): { path: string; says: string } | null {
  const match = /\bsays? "?([^"]+?)"? at (\/[a-z0-9/_-]*)/i.exec(description) ?? /\bat (\/[a-z0-9/_-]+)[^.]*?\bsays? "?([^".]+)"?/i.exec(description);
  if (!match) return null;
  const [path, says] = match[1]?.startsWith("/") ? [match[1], match[2] ?? ""] : [match[2] ?? "/", match[1] ?? ""];
  return { path, says: says.trim() };
}

/** The static site a description asks for: 'a static site that shows "Welcome aboard"' → its headline. */
export function namedSite(description: string): { headline: string } | null {
  if (!/\b(static (web ?)?site|landing page|web ?page|home ?page)\b/i.test(description)) return null;
  const headline = /\bshows? "([^"]+)"/i.exec(description)?.[1] ?? /\bshows? ([^.,"]+)/i.exec(description)?.[1]?.trim();
  return { headline: headline || "Welcome" };
}

/** The command a bot's description names: 'a Telegram bot that answers /ping with "pong"' → /ping answering pong. */
export function namedCommand(description: string): { command: string; says: string } | null {
  if (!/\bbot\b/i.test(description)) return null;
  const match = /\banswers? \/([a-z0-9_]+) with "?([^".]+)"?/i.exec(description);
  return { command: match?.[1]?.toLowerCase() ?? "about", says: match?.[2]?.trim() ?? "" };
}

/** Whether a description asks for the TypeScript kind: "a TypeScript service", "on Node.js", "with Hono". */
export const namesTypeScript = (description: string) => /\b(typescript|node\.?js|hono)\b/i.test(description);

function spec(request: ChatRequest) {
  const { name, description } = projectOf(request);
  const summary = (description || `The ${name} service`).split("\n")[0]?.slice(0, 300) ?? name;
  const site = namedSite(description);
  if (site) {
    return {
      summary,
      template: "static-site",
      modules: [{ name: "page", purpose: `shows the headline ${JSON.stringify(site.headline)}` }],
      acceptance: [{ name: `the page shows ${site.headline}`, method: "GET", path: "/", expect: { status: 200, bodyContains: site.headline } }],
    };
  }
  if (/\bweather\b/i.test(description) && /\bbot\b/i.test(description)) {
    return {
      summary,
      template: "telegram-bot",
      modules: [
        { name: "weather", purpose: "answers /weather <city> with today's forecast, from a fixed table of cities (no outside API)" },
        { name: "subscriptions", purpose: "/subscribe <city>, /unsubscribe <city> and /subscriptions; every subscriber gets their cities' forecast each morning" },
      ],
      // Over HTTP it shows whether it is up; its answers are checked in Telegram, with a message each.
      acceptance: [
        { name: "the bot is up", method: "GET", path: "/healthz", expect: { status: 200, json: { pointer: "/ok", equals: true } } },
        { name: "/weather Lisbon answers from the table", send: "/weather Lisbon", expect: { replyContains: "Lisbon: Sunny" } },
      ],
    };
  }
  const command = namedCommand(description);
  if (command) {
    return {
      summary,
      template: "telegram-bot",
      modules: [{ name: "commands", purpose: `answers /${command.command} with ${JSON.stringify(command.says || summary)}` }],
      // Over HTTP it shows whether it is up; its answer is checked in Telegram.
      acceptance: [
        { name: "the bot is up", method: "GET", path: "/healthz", expect: { status: 200, json: { pointer: "/ok", equals: true } } },
        { name: `/${command.command} answers`, send: `/${command.command}`, expect: { replyContains: command.says || summary } },
      ],
    };
  }
  const route = namedRoute(description);
  return {
    summary,
    template: namesTypeScript(description) ? "typescript-http" : "python-http",
    modules: [{ name: route ? "greeting" : "about", purpose: route ? `answers ${route.path}` : `tells what ${name} is for` }],
    routes: [route ? { method: "GET", path: route.path, purpose: `answers ${JSON.stringify({ message: route.says })}` } : { method: "GET", path: "/about", purpose: "the service's name and purpose" }],
    // A key the person names ("…using my GREETING_API_KEY") is theirs to give at deploy time.
    env: [...new Set(description.match(/\b[A-Z][A-Z0-9_]*_(?:KEY|TOKEN)\b/g) ?? [])].map((name) => ({ name, kind: "user", description: "the owner's own credential" })),
    // What the live service must answer, from the person's words: the deploy checks it before and after the route moves.
    acceptance: [route ? { name: `GET ${route.path} says ${route.says}`, method: "GET", path: route.path, expect: { status: 200, json: { pointer: "/message", equals: route.says } } } : { name: "GET /about answers", method: "GET", path: "/about", expect: { status: 200 } }],
  };
}

/** The route the agent adds: the spec's first GET route as TASK.md lists it, or /about with the summary. */
interface RouteToAdd {
  path: string;
  handler: string;
  body: string;
}

function routeFrom(request: ChatRequest): RouteToAdd {
  const brief = briefLines(request);
  const listed = brief.map((line) => /^- GET (\/\S*): answers (\{.*\})$/.exec(line)).find(Boolean);
  if (listed?.[1] && listed[2]) return { path: listed[1], handler: handlerName(listed[1]), body: listed[2] };
  const heading = brief.findIndex((line) => line === "# The spec");
  const summary = (heading >= 0 ? brief.slice(heading + 1).find((line) => line !== "") : undefined) ?? "A service built by Orchestrator.";
  return { path: "/about", handler: "about", body: JSON.stringify({ about: summary }) };
}

const handlerName = (path: string) => `route_${path.replace(/[^a-z0-9]+/gi, "_").replace(/^_+|_+$/g, "") || "root"}`;

/**
 * The agent's edits to the template's app/main.py (runner/templates/python-http), as a model makes
 * them: exact snippets of the file it read, replaced with the same plus the route. The body is a JSON
 * object of strings, which is also a Python dict literal.
 */
const ROUTE_EDITS = (route: RouteToAdd) => [
  {
    oldString: 'def health(_handler):\n    return 200, {"ok": True}\n',
    newString: `def health(_handler):\n    return 200, {"ok": True}\n\n\ndef ${route.handler}(_handler):\n    return 200, ${route.body}\n`,
  },
  { oldString: '    ("GET", "/healthz"): health,\n', newString: `    ("GET", "/healthz"): health,\n    ("GET", ${JSON.stringify(route.path)}): ${route.handler},\n` },
];

const ROUTE_TEST = (route: RouteToAdd) => `def test_${route.handler}(get):
    status, body = get(${JSON.stringify(route.path)})
    assert status == 200
    assert body == ${route.body}
`;

/** The agent's edit to the typescript-http template's src/app.ts, and its vitest test. */
const TS_ROUTE_EDIT = (route: RouteToAdd) => {
  const health = 'app.get("/healthz", (c) => c.json({ ok: true }));\n';
  return { oldString: health, newString: `${health}\napp.get(${JSON.stringify(route.path)}, (c) => c.json(${route.body}));\n` };
};
const TS_ROUTE_TEST = (route: RouteToAdd) => `import { expect, test } from "vitest";
import { app } from "../src/app.ts";

test(${JSON.stringify(`GET ${route.path}`)}, async () => {
  const response = await app.request(${JSON.stringify(route.path)});
  expect(response.status).toBe(200);
  expect(await response.json()).toEqual(${route.body});
});
`;

/** The command a bot's TASK.md asks for (the scripted Architect's module line). */
function commandFrom(request: ChatRequest): { command: string; says: string } | null {
  const brief = briefLines(request);
  if (!brief.some((line) => line.startsWith("Template: telegram-bot"))) return null;
  const listed = brief.map((line) => /^- commands: answers \/([a-z0-9_]+) with (".*")$/.exec(line)).find(Boolean);
  return { command: listed?.[1] ?? "about", says: listed?.[2] ? z.string().parse(JSON.parse(listed[2])) : "A bot built by Orchestrator." };
}

/** The agent's edit to the telegram-bot template's src/bot.ts, and its test through the template's helpers. */
const BOT_EDIT = (wanted: { command: string; says: string }) => ({
  oldString: "  return bot;\n}\n",
  newString: `  bot.command(${JSON.stringify(wanted.command)}, (ctx) => ctx.reply(${JSON.stringify(wanted.says)}));\n\n  return bot;\n}\n`,
});
const BOT_TEST = (wanted: { command: string; says: string }) => `import { expect, test } from "vitest";
import { botForTest } from "./helpers.ts";

test(${JSON.stringify(`/${wanted.command} answers`)}, async () => {
  const { say, replies } = botForTest();
  await say(${JSON.stringify(`/${wanted.command}`)});
  expect(replies()).toEqual([${JSON.stringify(wanted.says)}]);
});
`;

/** A Node kind's first step after TASK.md: the files it will edit read, and its packages installed (npm install writes package-lock.json, which the round commits). */
const readAndInstall = (...files: string[]) => ({
  toolCalls: [
    ...files.map((file) => ({ name: "read", arguments: { filePath: file } })),
    { name: "bash", arguments: { command: "cd /work/repo && npm install --loglevel=error", description: "Install the packages" } },
  ],
});

/** The scripted Developer's resolution of a merge: the conflict markers dropped, both sides' lines kept. */
const MERGE_RESOLVED = "conflicts resolved, both sides kept";
const KEEP_BOTH_SIDES = `cd /work/repo && files=$(git diff --name-only --diff-filter=U) && sed -i -e '/^<<<<<<< /d' -e '/^=======$/d' -e '/^>>>>>>> /d' $files && echo "${MERGE_RESOLVED}: $files"`;

/** Whether TASK.md asks for the weather bot (the scripted Architect's module line). */
const asksWeatherBot = (request: ChatRequest) => briefLines(request).some((line) => line.startsWith("- weather: answers /weather"));

/** The weather bot the agent writes on the telegram-bot template: a fixed table, subscriptions in the template's store, a morning forecast. */
const WEATHER_MODULE = `// The weather: today's forecast per city from a fixed table (no outside API), and the subscriptions'
// morning forecast.
import type { Bot } from "grammy";
import type { Store } from "./store.ts";

export const FORECASTS: Record<string, string> = {
  berlin: "Cloudy, 17 °C",
  lisbon: "Sunny, 24 °C",
  london: "Light rain, 14 °C",
  tokyo: "Clear, 21 °C",
};

const title = (city: string) => city.charAt(0).toUpperCase() + city.slice(1);

export function forecast(city: string): string | null {
  const today = FORECASTS[city.trim().toLowerCase()];
  return today ? \`\${title(city.trim().toLowerCase())}: \${today}\` : null;
}

const known = () => Object.keys(FORECASTS).map(title).join(", ");

export function addWeather(bot: Bot, store: Store): void {
  bot.command("weather", (ctx) => ctx.reply(forecast(ctx.match) ?? \`I know the weather in \${known()}.\`));
  bot.command("subscribe", async (ctx) => {
    const city = ctx.match.trim().toLowerCase();
    if (!forecast(city)) return ctx.reply(\`I know the weather in \${known()}.\`);
    store.subscribe(ctx.chat.id, city);
    await ctx.reply(\`Subscribed: you will get the forecast for \${title(city)} every morning.\`);
  });
  bot.command("unsubscribe", (ctx) => ctx.reply(store.unsubscribe(ctx.chat.id, ctx.match.trim().toLowerCase()) ? "Unsubscribed." : "You were not subscribed to that."));
  bot.command("subscriptions", (ctx) => {
    const topics = store.topicsOf(ctx.chat.id);
    return ctx.reply(topics.length ? \`You get the forecast for: \${topics.map(title).join(", ")}\` : "No subscriptions yet: /subscribe <city>");
  });
}

/** The morning notification: each subscriber gets their cities' forecasts. */
export async function sendForecasts(bot: Bot, store: Store): Promise<void> {
  for (const { chatId, topic } of store.subscriptions()) {
    const today = forecast(topic);
    if (today) await bot.api.sendMessage(chatId, \`Good morning! \${today}\`);
  }
}

/** Sends the forecasts at 07:00 UTC every day. */
export function startMorningForecasts(bot: Bot, store: Store): void {
  const next = new Date();
  next.setUTCHours(7, 0, 0, 0);
  if (next.getTime() <= Date.now()) next.setUTCDate(next.getUTCDate() + 1);
  setTimeout(() => {
    void sendForecasts(bot, store).catch((error: unknown) => console.error("forecasts:", error));
    startMorningForecasts(bot, store);
  }, next.getTime() - Date.now());
}
`;

const WEATHER_TEST = `import { expect, test } from "vitest";
import { sendForecasts } from "../src/weather.ts";
import { botForTest } from "./helpers.ts";

test("/weather answers from the table", async () => {
  const { say, replies } = botForTest();
  await say("/weather Lisbon");
  await say("/weather Atlantis");
  expect(replies()).toEqual(["Lisbon: Sunny, 24 °C", "I know the weather in Berlin, Lisbon, London, Tokyo."]);
});

test("/subscribe keeps the subscription, and the morning forecast goes to the subscriber", async () => {
  const { bot, store, say, replies } = botForTest();
  await say("/subscribe lisbon");
  await say("/subscriptions");
  expect(store.topicsOf(42)).toEqual(["lisbon"]);
  await sendForecasts(bot, store);
  expect(replies()).toEqual(["Subscribed: you will get the forecast for Lisbon every morning.", "You get the forecast for: Lisbon", "Good morning! Lisbon: Sunny, 24 °C"]);
});
`;

const WEATHER_EDITS = [
  { filePath: "/work/repo/src/bot.ts", oldString: 'import type { Store } from "./store.ts";\n', newString: 'import type { Store } from "./store.ts";\nimport { addWeather } from "./weather.ts";\n' },
  { filePath: "/work/repo/src/bot.ts", oldString: "  return bot;\n}\n", newString: "  addWeather(bot, store);\n\n  return bot;\n}\n" },
  { filePath: "/work/repo/src/main.ts", oldString: 'import { Store } from "./store.ts";\n', newString: 'import { Store } from "./store.ts";\nimport { startMorningForecasts } from "./weather.ts";\n' },
  { filePath: "/work/repo/src/main.ts", oldString: "await poll();\n", newString: "startMorningForecasts(bot, store);\nawait poll();\n" },
];

/** The headline a static site's TASK.md asks for (the scripted Architect's module line), if it is one. */
function headlineFrom(request: ChatRequest): string | null {
  const brief = briefLines(request);
  if (!brief.some((line) => line.startsWith("Template: static-site"))) return null;
  const listed = brief.map((line) => /^- page: shows the headline (".*")$/.exec(line)?.[1]).find(Boolean);
  return listed ? z.string().parse(JSON.parse(listed)) : "Welcome";
}

/** The agent's edit to the static-site template's page, and the test it writes for it. */
const asHtml = (text: string) => text.replaceAll("&", "&amp;").replaceAll("<", "&lt;");
const SITE_EDIT = (headline: string) => ({ oldString: "  <main>\n", newString: `  <main>\n    <h2 id="headline">${asHtml(headline)}</h2>\n` });
const SITE_TEST = (headline: string) => `def test_headline(get):
    status, _, body = get("/")
    assert status == 200
    assert ${JSON.stringify(asHtml(headline))} in body
`;

/** TASK.md as the agent read it (its tools' output may number the lines). */
function briefLines(request: ChatRequest): string[] {
  return request.messages
    .filter((message) => message.role === "tool")
    .map(messageText)
    .join("\n")
    .split("\n")
    .map((line) => line.replace(/^\s*\d+\s*[:|]\s?/, "").trim());
}

/** The EnvAnalyzer's answer, by the variables' names (as a model would reason about them). */
export function classifyByName(request: ChatRequest): { variables: { name: string; kind: "infra" | "computed" | "user"; reason: string }[] } {
  const text = messageText(request.messages.find((message) => message.role === "user"));
  const names = [...text.matchAll(/^([A-Za-z_][A-Za-z0-9_]*)=/gm)].map((match) => match[1] ?? "");
  return {
    variables: names.map((name) => {
      if (/(^|_)(PORT|HOST|DOMAIN|URL|HOSTNAME|ENV|ENVIRONMENT)$/.test(name)) return { name, kind: "computed", reason: "comes from the deployment" };
      if (/(SECRET|PASSWORD|SALT|SIGNING)/.test(name)) return { name, kind: "infra", reason: "a secret the platform can generate" };
      return { name, kind: "user", reason: "a credential only the owner has" };
    }),
  };
}

/**
 * The change brief for a change request (src/engineering/change-brief.ts): a route the owner names
 * ("say bye at /bye") becomes a route line TASK.md lists, as the spec's routes are, and its check.
 */
function changeBrief(request: ChatRequest) {
  const text = messageText(request.messages.find((message) => message.role === "user"));
  const asked = text.split("The change the owner asks for:\n")[1]?.trim() ?? "";
  const route = namedRoute(asked);
  if (!route) return { summary: asked.slice(0, 300) || "A change", changes: [asked || "the change asked for"] };
  const body = JSON.stringify({ message: route.says });
  return {
    summary: `Add GET ${route.path}, which says ${route.says}`.slice(0, 300),
    changes: [`GET ${route.path}: answers ${body}`],
    acceptance: [{ name: `GET ${route.path} says ${route.says}`, method: "GET", path: route.path, expect: { status: 200, json: { pointer: "/message", equals: route.says } } }],
  };
}

export function demoScenario(): Scenario {
  return {
    turns: [],
    side: [
      // First: the Product Owner's requests (no tools for the intent parser and the summariser) are its own.
      ...productOwnerSide(),
      // Before the spec's: the Architect's change brief starts the same way.
      { name: "change brief", match: { tools: false, anyMessage: "writing a change brief" }, reply: (request) => ({ content: JSON.stringify(changeBrief(request)) }) },
      { name: "architect", match: { tools: false, anyMessage: "You are the Architect" }, reply: (request) => ({ content: JSON.stringify(spec(request)) }) },
      { name: "env-analyzer", match: { tools: false, anyMessage: "You are the EnvAnalyzer" }, reply: (request) => ({ content: JSON.stringify(classifyByName(request)) }) },
      { name: "title", match: { tools: false }, reply: { content: `${SCRIPTED_LABEL} Build the service` } },
      {
        name: "agent: done",
        match: { tools: true, lastRole: "tool", lastMessage: /Wrote file successfully/i },
        reply: (request) => ({ content: `${SCRIPTED_LABEL} ${asksWeatherBot(request) ? "Added /weather, /subscribe, /unsubscribe, /subscriptions and the morning forecast" : commandFrom(request) ? `Added /${commandFrom(request)?.command ?? ""}` : headlineFrom(request) !== null ? "Added the headline to the page" : `Added GET ${routeFrom(request).path}`} with its test.` }),
      },
      {
        name: "agent: edit and write",
        match: { tools: ["edit", "write"], lastRole: "tool" },
        reply: (request) => {
          // A merge to resolve (TASK.md's "# Merging main"): both sides kept, as a model would where each added its own lines at one place.
          if (briefLines(request).some((line) => /^# Merging \S+$/.test(line))) {
            if (request.messages.some((message) => message.role === "tool" && messageText(message).includes(MERGE_RESOLVED))) return { content: `${SCRIPTED_LABEL} Merged the default branch and kept both sides of each conflict.` };
            return { toolCalls: [{ name: "bash", arguments: { command: KEEP_BOTH_SIDES, description: "Resolve the merge's conflicts" } }] };
          }
          const headline = headlineFrom(request);
          // The page first, as a model reads a file before it edits it (opencode refuses an edit of a file it has not read).
          const pageRead = request.messages.some((message) => message.role === "tool" && messageText(message).includes("<main>"));
          if (asksWeatherBot(request)) {
            const read = request.messages.some((message) => message.role === "tool" && messageText(message).includes("export function createBot"));
            if (!read) return readAndInstall("/work/repo/src/bot.ts", "/work/repo/src/main.ts");
            return {
              toolCalls: [
                ...WEATHER_EDITS.map((edit) => ({ name: "edit", arguments: edit })),
                { name: "write", arguments: { filePath: "/work/repo/src/weather.ts", content: WEATHER_MODULE } },
                { name: "write", arguments: { filePath: "/work/repo/test/weather.test.ts", content: WEATHER_TEST } },
              ],
            };
          }
          const command = commandFrom(request);
          if (command) {
            const botRead = request.messages.some((message) => message.role === "tool" && messageText(message).includes("export function createBot"));
            if (!botRead) return readAndInstall("/work/repo/src/bot.ts");
            return {
              toolCalls: [
                { name: "edit", arguments: { filePath: "/work/repo/src/bot.ts", ...BOT_EDIT(command) } },
                { name: "write", arguments: { filePath: `/work/repo/test/${command.command}.test.ts`, content: BOT_TEST(command) } },
              ],
            };
          }
          if (briefLines(request).some((line) => line.startsWith("Template: typescript-http"))) {
            const appRead = request.messages.some((message) => message.role === "tool" && messageText(message).includes("export const app"));
            if (!appRead) return readAndInstall("/work/repo/src/app.ts");
            const route = routeFrom(request);
            return {
              toolCalls: [
                { name: "edit", arguments: { filePath: "/work/repo/src/app.ts", ...TS_ROUTE_EDIT(route) } },
                { name: "write", arguments: { filePath: `/work/repo/test/${route.handler}.test.ts`, content: TS_ROUTE_TEST(route) } },
              ],
            };
          }
          if (headline !== null && !pageRead) return { toolCalls: [{ name: "read", arguments: { filePath: "/work/repo/site/index.html" } }] };
          if (headline !== null) {
            return {
              toolCalls: [
                { name: "edit", arguments: { filePath: "/work/repo/site/index.html", ...SITE_EDIT(headline) } },
                { name: "write", arguments: { filePath: "/work/repo/tests/test_headline.py", content: SITE_TEST(headline) } },
              ],
            };
          }
          const route = routeFrom(request);
          return {
            toolCalls: [
              ...ROUTE_EDITS(route).map((edit) => ({ name: "edit", arguments: { filePath: "/work/repo/app/main.py", ...edit } })),
              // Last, so that its answer ("Wrote file successfully") is the one the done turn sees.
              { name: "write", arguments: { filePath: `/work/repo/tests/test_${route.handler}.py`, content: ROUTE_TEST(route) } },
            ],
          };
        },
      },
      {
        name: "agent: read",
        match: { tools: ["read"], lastRole: "user" },
        reply: { toolCalls: [{ name: "read", arguments: { filePath: "/work/repo/TASK.md" } }, { name: "read", arguments: { filePath: "/work/repo/app/main.py" } }] },
      },
    ],
  };
}
