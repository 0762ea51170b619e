/**
 * The local stand-ins for outside services, through the clients production code uses: the `openai`
 * SDK against the scripted model server, and src/services/github.ts (octokit, a WebCrypto-signed App
 * JWT) plus the real git CLI against the GitHub stand-in.
 */
import { execFile } from "node:child_process";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT } from "../../scripts/lib/local-stack.ts";
import { commitExists, ensureRepository, githubAppConfig, installationAccess } from "../../src/services/github.ts";
import { GitHubServer } from "../../standins/github-server.ts";
import { embed, ModelServer } from "../../standins/model-server.ts";

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
