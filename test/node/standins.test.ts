/**
 * The local stand-ins for outside services, through the clients production code uses: the `openai`
 * SDK against the scripted model server, and src/projects/github.ts (octokit, a WebCrypto-signed App
 * JWT) plus the real git CLI against the GitHub stand-in.
 */
import { execFile } from "node:child_process";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { mkdtemp, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Api, Bot, GrammyError } from "grammy";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT } from "../../scripts/lib/local-stack.ts";
import { waitFor } from "../../scripts/lib/processes.ts";
import { commitExists, ensureRepository, githubAppConfig, installationAccess, mergeBranch } from "../../src/projects/github.ts";
import { closePullRequest, getPullRequest, mergePullRequest, openPullRequest } from "../../src/projects/pull-requests.ts";
import { GitHubServer } from "../../standins/github-server.ts";
import { embed, ModelServer } from "../../standins/model-server.ts";
import { TelegramServer } from "../../standins/telegram-server.ts";
import { demoScenario } from "../../standins/demo-scenario.ts";
import { classifyEnv, parseEnvExample } from "../../src/deploy/env-analyzer.ts";
import { isMessageCheck, ProjectSpec } from "../../src/shared/spec.ts";

const run = promisify(execFile);

describe("the scripted model server", () => {
  const model = new ModelServer({ apiKey: "sk-standin-test" });
  let client: OpenAI;
  beforeAll(async () => {
    await model.start();
    client = new OpenAI({ apiKey: "sk-standin-test", baseURL: model.baseUrl });
  });
  afterAll(() => model.stop());

  it("answers agent turns in order, tool calls included, streamed or not, and side requests without using a turn", async () => {
    model.load({
      turns: [
        { name: "write the handler", match: { tools: ["write"] }, reply: { toolCalls: [{ name: "write", arguments: { filePath: "app.py", content: "print(1)" } }] } },
        { name: "say done", match: { tools: true, lastRole: "tool" }, reply: { content: "Done: the handler is written and its tests pass." } },
      ],
      side: [{ name: "title", match: { tools: false }, reply: { content: "Write the handler" } }],
    });
    const tools = [{ type: "function" as const, function: { name: "write", parameters: { type: "object", properties: {} } } }];
    const title = await client.chat.completions.create({ model: "scripted-model", messages: [{ role: "user", content: "Generate a title" }] });
    expect(title.choices[0]?.message.content).toBe("Write the handler");

    const first = await client.chat.completions.create({ model: "scripted-model", tools, messages: [{ role: "user", content: "Implement GET /hello" }] });
    const call = first.choices[0]?.message.tool_calls?.[0];
    expect(first.choices[0]?.finish_reason).toBe("tool_calls");
    expect(call?.type === "function" && call.function.name).toBe("write");
    expect(JSON.parse(call?.type === "function" ? call.function.arguments : "{}")).toEqual({ filePath: "app.py", content: "print(1)" });

    const stream = await client.chat.completions.create({
      model: "scripted-model",
      tools,
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: "user", content: "Implement GET /hello" }, { role: "tool", tool_call_id: call?.id ?? "", content: "ok" }],
    });
    let text = "";
    let usage = 0;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      usage = chunk.usage?.total_tokens ?? usage;
    }
    expect(text).toBe("Done: the handler is written and its tests pass.");
    expect(usage).toBeGreaterThan(0);
    expect(model.remaining()).toEqual([]);
    expect(model.requests.map((r) => r.answeredBy)).toEqual(["side:title", "write the handler", "say done"]);
    expect(model.requests.every((r) => r.apiKey === "sk-standin-test")).toBe(true);
  });

  it("says which turn it expected when the script goes wrong, and refuses a wrong key", async () => {
    model.load({ turns: [{ name: "needs tools", match: { tools: true }, reply: { content: "x" } }] });
    const refused = await client.chat.completions.create({ model: "m", messages: [{ role: "user", content: "no tools here" }] }).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(OpenAI.APIError);
    expect((refused as InstanceType<typeof OpenAI.APIError>).message).toContain('the next turn "needs tools" does not match');
    const stranger = new OpenAI({ apiKey: "sk-wrong", baseURL: model.baseUrl, maxRetries: 0 });
    const denied = await stranger.models.list().catch((error: unknown) => error);
    expect((denied as InstanceType<typeof OpenAI.APIError>).status).toBe(401);
  });

  it("embeds deterministically, so that similarity follows shared words", async () => {
    const { data } = await client.embeddings.create({ model: "text-embedding-3-small", input: ["deploy the weather bot", "the weather bot deploys", "invoice totals by month"], dimensions: 512 });
    const [a, b, c] = data.map((d) => d.embedding);
    const cosine = (x: number[] = [], y: number[] = []) => x.reduce((sum, value, i) => sum + value * (y[i] ?? 0), 0);
    expect(a).toHaveLength(512);
    expect(cosine(a, b)).toBeGreaterThan(cosine(a, c));
    expect(embed("deploy the weather bot")).toEqual(a);
  });
});

describe("the GitHub stand-in", () => {
  const github = new GitHubServer({ org: "acme" });
  beforeAll(() => github.start());
  afterAll(() => github.stop());

  const config = () =>
    githubAppConfig({ GITHUB_APP_ID: String(github.appId), GITHUB_INSTALLATION_ID: String(github.installationId), GITHUB_APP_PRIVATE_KEY: github.appPrivateKeyPem, GITHUB_API_URL: github.url });

  it("takes the App's JWT for an installation token, creates a repository once, and serves it over git with that token", async () => {
    const access = await installationAccess(config());
    expect(access.org).toBe("acme");
    expect(access.token).toMatch(/^ghs_/);
    const first = await ensureRepository(config(), access, "weather-bot", "Weather bot with notifications");
    expect(first).toMatchObject({ created: true, repository: { owner: "acme", name: "weather-bot", defaultBranch: "main" } });
    const again = await ensureRepository(config(), access, "weather-bot", "Weather bot with notifications");
    expect(again).toMatchObject({ created: false, repository: { fullName: "acme/weather-bot" } });

    // The real git CLI, with the token as GitHub takes it (x-access-token), never on the command line.
    const work = await mkdtemp(join(tmpdir(), "standin-git-"));
    const auth = { GIT_CONFIG_COUNT: "1", GIT_CONFIG_KEY_0: "http.extraHeader", GIT_CONFIG_VALUE_0: `Authorization: Basic ${Buffer.from(`x-access-token:${access.token}`).toString("base64")}` };
    const git = (args: string[], extra: Record<string, string> = auth) => run("git", args, { cwd: work, env: { ...process.env, ...extra, GIT_TERMINAL_PROMPT: "0" } });
    await git(["init", "-q", "-b", "main"]);
    await writeFile(join(work, "README.md"), "# weather-bot\n");
    await git(["-c", "user.name=t", "-c", "user.email=t@example.test", "commit", "-q", "--allow-empty", "-m", "first"]);
    await git(["add", "README.md"]);
    await git(["-c", "user.name=t", "-c", "user.email=t@example.test", "commit", "-q", "-m", "add readme"]);
    await git(["push", "-q", first.repository.cloneUrl, "main"]);
    const { stdout: sha } = await git(["rev-parse", "HEAD"]);
    expect(await commitExists(config(), access, first.repository, sha.trim())).toBe(true);
    expect(await commitExists(config(), access, first.repository, "0".repeat(40))).toBe(false);
    const { stdout: log } = await run("git", ["--git-dir", github.repoPath("weather-bot"), "log", "--format=%s", "main"]);
    expect(log.trim().split("\n")).toEqual(["add readme", "first"]);

    // Without the token, git is turned away.
    const denied = await git(["ls-remote", first.repository.cloneUrl], {}).catch((error: unknown) => error as { stderr: string });
    expect((denied).stderr).toMatch(/Authentication failed|could not read Username/);
  });

  it("opens, lists, merges (a real merge commit) and closes pull requests through the client; a conflict or a moved head is not merged; a token for another repository sees none; merges a branch into another (the merges API): cleanly, already in, or in conflict with nothing moved", async () => {
    const access = await installationAccess(config());
    const { repository } = await ensureRepository(config(), access, "pulls-app", "Pull requests");
    const work = await mkdtemp(join(tmpdir(), "standin-pulls-"));
    const auth = { GIT_CONFIG_COUNT: "1", GIT_CONFIG_KEY_0: "http.extraHeader", GIT_CONFIG_VALUE_0: `Authorization: Basic ${Buffer.from(`x-access-token:${access.token}`).toString("base64")}` };
    const git = async (...args: string[]) => (await run("git", ["-c", "user.name=t", "-c", "user.email=t@example.test", ...args], { cwd: work, env: { ...process.env, ...auth, GIT_TERMINAL_PROMPT: "0" } })).stdout.trim();
    const commitFile = async (branch: string, file: string, text: string) => {
      await git("checkout", "-q", "-B", branch, ...(branch === "main" ? [] : ["main"]));
      await writeFile(join(work, file), text);
      await git("add", file);
      await git("commit", "-q", "-m", `${branch}: ${file}`);
      await git("push", "-q", "--force", repository.cloneUrl, branch);
      return git("rev-parse", "HEAD");
    };
    await git("init", "-q", "-b", "main");
    await commitFile("main", "app.txt", "hello\n");
    const head = await commitFile("change/1-forecast", "forecast.txt", "sunny\n");
    const where = { owner: repository.owner, name: repository.name };

    const pull = await openPullRequest(config(), access.token, where, { title: "Add /forecast", head: "change/1-forecast", base: "main", body: "The brief" });
    expect(pull).toMatchObject({ number: 1, state: "open", merged: false, mergeable: true, head: { ref: "change/1-forecast", sha: head }, base: { ref: "main" } });
    // Opened again (a retried step): the same one.
    expect((await openPullRequest(config(), access.token, where, { title: "Add /forecast", head: "change/1-forecast", base: "main", body: "" })).number).toBe(1);
    // Not as it was checked: not merged.
    expect(await mergePullRequest(config(), access.token, where, 1, { sha: "0".repeat(40) })).toMatchObject({ merged: false, reason: "moved" });
    const merged = await mergePullRequest(config(), access.token, where, 1, { sha: head });
    expect(merged).toMatchObject({ merged: true });
    const parents = (await run("git", ["--git-dir", github.repoPath("pulls-app"), "log", "-1", "--format=%P", "main"])).stdout.trim().split(" ");
    expect(parents).toHaveLength(2);
    expect(parents[1]).toBe(head);
    expect((await run("git", ["--git-dir", github.repoPath("pulls-app"), "show", "main:forecast.txt"])).stdout).toBe("sunny\n");
    expect(await getPullRequest(config(), access.token, where, 1)).toMatchObject({ state: "closed", merged: true, mergeCommitSha: merged.merged ? merged.sha : "" });

    // Two changes to the same line: the second conflicts once the first is in.
    await git("fetch", "-q", repository.cloneUrl, "main");
    await git("checkout", "-q", "-B", "main", "FETCH_HEAD");
    const blue = await commitFile("change/2-blue", "app.txt", "blue\n");
    await commitFile("change/3-green", "app.txt", "green\n");
    await openPullRequest(config(), access.token, where, { title: "Blue", head: "change/2-blue", base: "main", body: "" });
    const green = await openPullRequest(config(), access.token, where, { title: "Green", head: "change/3-green", base: "main", body: "" });
    expect((await mergePullRequest(config(), access.token, where, 2, { sha: blue })).merged).toBe(true);
    expect(await getPullRequest(config(), access.token, where, green.number)).toMatchObject({ state: "open", mergeable: false });
    expect(await mergePullRequest(config(), access.token, where, green.number, { sha: green.head.sha })).toMatchObject({ merged: false, reason: "conflict" });
    expect((await run("git", ["--git-dir", github.repoPath("pulls-app"), "show", "main:app.txt"])).stdout).toBe("blue\n");
    // Discarded: closed, unmerged, and no longer mergeable.
    expect(await closePullRequest(config(), access.token, where, green.number)).toMatchObject({ state: "closed", merged: false });
    expect(await mergePullRequest(config(), access.token, where, green.number, { sha: green.head.sha })).toMatchObject({ merged: false, reason: "conflict" });
    // Nothing to merge: refused.
    await expect(openPullRequest(config(), access.token, where, { title: "Nothing", head: "main", base: "main", body: "" })).rejects.toMatchObject({ status: 422 });

    // The merges API (a change catching up): main into a branch behind it, cleanly; then again, nothing to do; a conflict moves nothing.
    const yellow = await commitFile("change/4-yellow", "colour.txt", "yellow\n");
    await git("fetch", "-q", repository.cloneUrl, "main");
    await git("checkout", "-q", "-B", "main", "FETCH_HEAD");
    await commitFile("main", "news.txt", "new on main\n");
    const mainHead = await git("rev-parse", "HEAD");
    const caught = await mergeBranch(config(), access.token, where, { base: "change/4-yellow", head: "main", message: "Merge main into change/4-yellow" });
    if (typeof caught === "string") throw new Error(`not merged: ${caught}`);
    expect((await run("git", ["--git-dir", github.repoPath("pulls-app"), "log", "-1", "--format=%P%n%s", caught.sha])).stdout.trim().split("\n")).toEqual([`${yellow} ${mainHead}`, "Merge main into change/4-yellow"]);
    expect((await run("git", ["--git-dir", github.repoPath("pulls-app"), "rev-parse", "change/4-yellow"])).stdout.trim()).toBe(caught.sha);
    expect(await mergeBranch(config(), access.token, where, { base: "change/4-yellow", head: "main", message: "again" })).toBe("up to date");
    const greenBefore = (await run("git", ["--git-dir", github.repoPath("pulls-app"), "rev-parse", "change/3-green"])).stdout.trim();
    expect(await mergeBranch(config(), access.token, where, { base: "change/3-green", head: "main", message: "Merge main" })).toBe("conflict");
    expect((await run("git", ["--git-dir", github.repoPath("pulls-app"), "rev-parse", "change/3-green"])).stdout.trim()).toBe(greenBefore);
    await expect(mergeBranch(config(), access.token, where, { base: "no-such-branch", head: "main", message: "x" })).rejects.toMatchObject({ status: 404 });
    const readOnly = github.issueToken(["pulls-app"], { contents: "read", metadata: "read" });
    await expect(mergeBranch(config(), readOnly, where, { base: "change/3-green", head: "main", message: "x" })).rejects.toMatchObject({ status: 403 });
    // Another repository's token sees no pull requests here; a token without pull_requests may not open one.
    const other = github.issueToken(["weather-bot"]);
    expect(await getPullRequest(config(), other, where, 1)).toBeNull();
    const contentsOnly = github.issueToken(["pulls-app"], { contents: "write", metadata: "read" });
    await expect(openPullRequest(config(), contentsOnly, where, { title: "Again", head: "change/3-green", base: "main", body: "" })).rejects.toMatchObject({ status: 403 });
  });

  it("refuses a JWT signed with another key and an unknown token", async () => {
    const other = new GitHubServer({ org: "acme" });
    const forged = { ...config(), privateKeyPem: other.appPrivateKeyPem };
    await expect(installationAccess(forged)).rejects.toMatchObject({ status: 401 });
    const res = await fetch(`${github.url}/repos/acme/weather-bot`, { headers: { authorization: "token ghs_nope" } });
    expect(res.status).toBe(401);
    await other.stop();
  });
});

describe("production code and the stand-ins", () => {
  it("never imports them: only tests, scripts and benchmarks do", () => {
    const offenders: string[] = [];
    const walk = (dir: string) => {
      for (const entry of readdirSync(dir)) {
        const path = join(dir, entry);
        if (entry === "node_modules" || entry === "test") continue;
        if (statSync(path).isDirectory()) walk(path);
        else if (/\.tsx?$/.test(entry) && /from\s+["'][^"']*standins\//.test(readFileSync(path, "utf8"))) offenders.push(path);
      }
    };
    for (const dir of ["src", "runner", "cli", "public"]) walk(join(ROOT, dir));
    expect(offenders).toEqual([]);
  });
});

describe("the Telegram stand-in", () => {
  const telegram = new TelegramServer();
  beforeAll(() => telegram.start());
  afterAll(() => telegram.stop());

  it("answers grammY as Telegram does: getMe for the token's bot, sendMessage recorded, webhooks set, read and deleted", async () => {
    const token = telegram.addBot({ username: "weather_standin_bot", firstName: "Weather" });
    expect(token).toMatch(/^\d+:[A-Za-z0-9_-]{35}$/);
    const api = new Api(token, { apiRoot: telegram.apiRoot });
    const me = await api.getMe();
    expect(me).toMatchObject({ id: Number(token.split(":")[0]), is_bot: true, first_name: "Weather", username: "weather_standin_bot", can_join_groups: true });

    const sent = await api.sendMessage(4242, "Your bot is live");
    expect(sent).toMatchObject({ message_id: 1, from: { username: "weather_standin_bot" }, chat: { id: 4242, type: "private" }, text: "Your bot is live" });
    expect((await api.sendMessage(-100123, "hi all")).chat).toMatchObject({ type: "supergroup" });
    expect(telegram.messages.map((m) => [m.chatId, m.text])).toEqual([[4242, "Your bot is live"], [-100123, "hi all"]]);

    expect(await api.setWebhook("https://weather.example.test/telegram", { secret_token: "s3cret", allowed_updates: ["message"] })).toBe(true);
    expect(await api.getWebhookInfo()).toMatchObject({ url: "https://weather.example.test/telegram", pending_update_count: 0, allowed_updates: ["message"] });
    expect(await api.deleteWebhook()).toBe(true);
    expect(await api.getWebhookInfo()).toEqual({ url: "", has_custom_certificate: false, pending_update_count: 0 });
    expect(telegram.calls("getMe").map((r) => [r.token, r.username])).toEqual([[token, "weather_standin_bot"]]);
  });

  it("edits, deletes, answers callbacks, records chat actions and commands, and applies flood control with retry_after", async () => {
    const token = telegram.addBot({ username: "po_standin_bot" });
    const api = new Api(token, { apiRoot: telegram.apiRoot });
    const sent = await api.sendMessage(777, "Working on it…");
    const edited = await api.editMessageText(777, sent.message_id, "Done: https://weather.localhost");
    expect(edited).toMatchObject({ message_id: sent.message_id, text: "Done: https://weather.localhost" });
    const unchanged = await api.editMessageText(777, sent.message_id, "Done: https://weather.localhost").catch((error: unknown) => error);
    expect(unchanged).toBeInstanceOf(GrammyError);
    expect((unchanged as GrammyError).description).toContain("message is not modified");
    expect(await api.deleteMessage(777, 99)).toBe(true); // a user's message, e.g. one holding a secret
    expect(telegram.deletedUserMessages).toEqual([{ username: "po_standin_bot", chatId: 777, messageId: 99 }]);
    expect(await api.deleteMessage(777, sent.message_id)).toBe(true);
    expect(telegram.messages.find((m) => m.message.message_id === sent.message_id && m.username === "po_standin_bot")).toMatchObject({ deleted: true, edits: 1 });
    expect(await api.answerCallbackQuery("cbq-1", { text: "Confirmed" })).toBe(true);
    expect(await api.sendChatAction(777, "typing")).toBe(true);
    expect(telegram.chatActions).toContainEqual({ username: "po_standin_bot", chatId: 777, action: "typing" });
    expect(await api.setMyCommands([{ command: "status", description: "What is running" }])).toBe(true);
    expect(telegram.commands.get("po_standin_bot")).toEqual([{ command: "status", description: "What is running" }]);

    telegram.floodControl(1, 2);
    const flooded = await api.sendMessage(777, "too fast").catch((error: unknown) => error);
    expect(flooded).toBeInstanceOf(GrammyError);
    expect((flooded as GrammyError).error_code).toBe(429);
    expect((flooded as GrammyError).parameters.retry_after).toBe(2);
    expect((await api.sendMessage(777, "after waiting")).text).toBe("after waiting");
  });

  it("speaks the wire format: 401 Unauthorized for an unknown token, form and query parameters, 400 and 404 descriptions", async () => {
    const token = telegram.addBot({ username: "wire_standin_bot" });
    const unknown = await fetch(`${telegram.url}/bot123456:${"x".repeat(35)}/getMe`);
    expect(unknown.status).toBe(401);
    expect(await unknown.json()).toEqual({ ok: false, error_code: 401, description: "Unauthorized" });
    const stranger = new Api(`123456:${"y".repeat(35)}`, { apiRoot: telegram.apiRoot });
    const refused = await stranger.getMe().catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(GrammyError);
    expect(refused).toMatchObject({ error_code: 401, description: "Unauthorized" });

    const form = await fetch(`${telegram.url}/bot${token}/sendMessage`, { method: "POST", body: new URLSearchParams({ chat_id: "77", text: "from a form" }) });
    expect(await form.json()).toMatchObject({ ok: true, result: { chat: { id: 77 }, text: "from a form" } });
    const query = await fetch(`${telegram.url}/bot${token}/sendMessage?chat_id=78&text=from%20the%20query`);
    expect(await query.json()).toMatchObject({ ok: true, result: { chat: { id: 78 }, text: "from the query" } });
    const multipart = new FormData();
    multipart.set("chat_id", "@some_channel");
    multipart.set("text", "multipart");
    expect(await (await fetch(`${telegram.url}/bot${token}/sendMessage`, { method: "POST", body: multipart })).json()).toMatchObject({ ok: true, result: { chat: { type: "channel" } } });

    const empty = await fetch(`${telegram.url}/bot${token}/sendMessage`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ chat_id: 1 }) });
    expect([empty.status, await empty.json()]).toEqual([400, { ok: false, error_code: 400, description: "Bad Request: message text is empty" }]);
    const noChat = await fetch(`${telegram.url}/bot${token}/sendMessage`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ text: "x" }) });
    expect(await noChat.json()).toMatchObject({ error_code: 400, description: "Bad Request: chat_id is empty" });
    const method = await fetch(`${telegram.url}/bot${token}/noSuchMethod`);
    expect([method.status, await method.json()]).toEqual([404, { ok: false, error_code: 404, description: "Not Found" }]);
    // Method names are case-insensitive, as Telegram's are.
    expect(await (await fetch(`${telegram.url}/bot${token}/getme`)).json()).toMatchObject({ ok: true, result: { username: "wire_standin_bot" } });

    telegram.revokeBot(token);
    expect((await fetch(`${telegram.url}/bot${token}/getMe`)).status).toBe(401);
  });

  it("delivers an update to the webhook with its secret token, and can play an outage", async () => {
    const token = telegram.addBot({ username: "hook_standin_bot" });
    const received: { secret: string | undefined; body: string }[] = [];
    const hook = createServer((req, res) => {
      let body = "";
      req.on("data", (chunk: Buffer) => (body += chunk.toString()));
      req.on("end", () => {
        received.push({ secret: req.headers["x-telegram-bot-api-secret-token"] as string | undefined, body });
        res.end("ok");
      });
    });
    await new Promise<void>((resolve) => hook.listen(0, "127.0.0.1", resolve));
    const address = hook.address();
    const port = typeof address === "object" && address ? address.port : 0;
    const api = new Api(token, { apiRoot: telegram.apiRoot });
    await api.setWebhook(`http://127.0.0.1:${port}/hook`, { secret_token: "hook-secret" });
    expect(await telegram.deliverUpdate(token, { update_id: 1, message: { text: "/start" } })).toBe(200);
    expect(received).toEqual([{ secret: "hook-secret", body: JSON.stringify({ update_id: 1, message: { text: "/start" } }) }]);
    await new Promise<void>((resolve) => hook.close(() => resolve()));

    telegram.setOutage(true);
    const down = await fetch(`${telegram.url}/bot${token}/getMe`);
    expect(down.status).toBe(502);
    expect(down.headers.get("content-type")).toBe("text/html");
    telegram.setOutage(false);
    expect((await fetch(`${telegram.url}/bot${token}/getMe`)).status).toBe(200);
  });

  it("serves a grammY bot that long-polls: updates queued for it come at once or wake a waiting poll, and a second poller ends the first with 409", async () => {
    const token = telegram.addBot({ username: "poll_standin_bot" });
    const bot = new Bot(token, { client: { apiRoot: telegram.apiRoot } });
    bot.command("start", (ctx) => ctx.reply(`hello ${ctx.from?.first_name ?? ""}`));
    const person = { id: 5150, is_bot: false, first_name: "Ada" };
    const say = (text: string) => telegram.deliverUpdate(token, { message: { message_id: 1, date: 0, chat: { id: 5150, type: "private" }, from: person, text, entities: text.startsWith("/") ? [{ type: "bot_command", offset: 0, length: text.split(" ")[0]?.length ?? 0 }] : [] } });
    // Queued before the bot starts: its first poll takes it.
    expect(await say("/start")).toBe(200);
    const running = bot.start({ drop_pending_updates: false, timeout: 2 });
    await waitFor(() => telegram.messages.find((m) => m.username === "poll_standin_bot" && m.text === "hello Ada"), 10_000, () => JSON.stringify(telegram.messages));
    // Sent while the bot waits in a poll: the poll answers with it.
    await waitFor(() => (telegram.calls("getUpdates").filter((r) => r.token === token).length >= 2 ? true : undefined), 10_000, () => "no second poll");
    await say("/start again");
    await waitFor(() => (telegram.messages.filter((m) => m.username === "poll_standin_bot").length === 2 ? true : undefined), 10_000, () => JSON.stringify(telegram.messages));
    // Another instance polling the same token: the older poll is ended with 409, as Telegram ends it.
    const other = fetch(`${telegram.apiRoot}/bot${token}/getUpdates?timeout=1`);
    await bot.stop();
    await running.catch(() => undefined);
    expect((await other).status).toBe(200);
    expect(telegram.calls("getUpdates").some((r) => r.token === token && r.status === 409)).toBe(true);
  });
});

describe("the demo scenario's EnvAnalyzer", () => {
  it("classifies the deploy fixture's variables through the real client, in the shape the pipeline checks", async () => {
    const model = new ModelServer({ apiKey: "sk-demo", scenario: demoScenario() });
    await model.start();
    try {
      const client = new OpenAI({ baseURL: model.baseUrl, apiKey: "sk-demo" });
      const vars = parseEnvExample(readFileSync(join(ROOT, "test", "fixtures", "deploy-app", ".env.example"), "utf8"));
      const { kinds } = await classifyEnv(client, "gpt-4.1-mini", vars);
      expect(Object.fromEntries(Object.entries(kinds).map(([name, { kind }]) => [name, kind]))).toEqual({ PORT: "computed", DOMAIN: "computed", SESSION_SECRET: "infra", WEATHER_API_KEY: "user" });
    } finally {
      await model.stop();
    }
  });
});

describe("the demo scenario's Architect", () => {
  it("writes a spec the Architect's schema takes for every kind it picks, with checks that fit the kind", async () => {
    const model = new ModelServer({ apiKey: "sk-demo", scenario: demoScenario() });
    await model.start();
    try {
      const client = new OpenAI({ baseURL: model.baseUrl, apiKey: "sk-demo" });
      // As src/engineering/architect.ts asks (not imported: it needs the Workers' runtime), read with the schema it reads with.
      const draft = async (name: string, description: string) => {
        const completion = await client.chat.completions.create({
          model: "gpt-4.1-mini",
          messages: [
            { role: "system", content: "You are the Architect of a software factory." },
            { role: "user", content: `Project name: ${name}\nDescription:\n${description}` },
          ],
        });
        return { spec: ProjectSpec.parse(JSON.parse(completion.choices[0]?.message.content ?? "")) };
      };
      const service = await draft("hello-service", "A service that says hello at /hello");
      expect(service.spec).toMatchObject({ template: "python-http", acceptance: [{ method: "GET", path: "/hello", expect: { status: 200, json: { pointer: "/message", equals: "hello" } } }] });
      expect((await draft("hi-service", "A TypeScript service that says hi at /hi")).spec.template).toBe("typescript-http");
      expect((await draft("hello-site", 'A static site that shows "Hello there"')).spec).toMatchObject({ template: "static-site", acceptance: [{ path: "/", expect: { bodyContains: "Hello there" } }] });
      // A bot is checked over HTTP for being up, and in Telegram for what it answers.
      const ping = await draft("ping-bot", 'A bot that answers /ping with "pong"');
      expect(ping.spec).toMatchObject({ template: "telegram-bot", acceptance: [{ path: "/healthz" }, { send: "/ping", expect: { replyContains: "pong" } }] });
      const weather = await draft("weather-bot", "Weather bot with notifications");
      expect(weather.spec.acceptance.find(isMessageCheck)).toEqual({ name: "/weather Lisbon answers from the table", send: "/weather Lisbon", expect: { replyContains: "Lisbon: Sunny" } });
    } finally {
      await model.stop();
    }
  });
});
