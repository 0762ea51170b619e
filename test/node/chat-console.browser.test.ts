/**
 * The web console (`/chat`) in a real headless Chromium: a person signs in with an API key, talks to
 * the Product Owner agent over the chat WebSocket, confirms with a button, and gets a task link that
 * opens the live task view, inline and in its own page. The worker runs under wrangler dev with the
 * demo's scripted model, and the engineering run on a real runner in Docker.
 */
import { existsSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { type Browser, chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type EngineeringStack, startEngineeringStack } from "../../scripts/lib/engineering-stack.ts";
import { demoScenario } from "../../standins/demo-scenario.ts";
import { oneHeavyFileAtATime } from "../support/heavy-gate.ts";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
// SCREENSHOTS_DIR=docs/screenshots makes the README's pictures.
const SCREENSHOTS = process.env.SCREENSHOTS_DIR ? resolve(process.env.SCREENSHOTS_DIR) : join(tmpdir(), "orchestrator-screenshots");

let env: EngineeringStack;
let browser: Browser;

oneHeavyFileAtATime();

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run scripts/install-system-deps.sh (Debian's chromium)`);
  mkdirSync(SCREENSHOTS, { recursive: true });
  env = await startEngineeringStack({
    databaseUrl: inject("databaseUrl"),
    dbWsProxy: inject("dbWsProxy"),
    adminKey: inject("adminApiKey"),
    dockerSocket: inject("dockerSocket"),
    image: inject("codingWorkerImage"),
    handle: "console-box",
  });
  env.model.load(demoScenario());
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
}, 240_000);

afterAll(async () => {
  await browser?.close();
  await env?.stop();
});

describe("the web console", () => {
  it("holds a conversation that ends with a task link, which opens the live view", async () => {
    const { stack } = env;
    const user = await stack.api<{ user: { id: string } }>("/api/users", { json: { name: "Ada" } });
    const key = (await stack.api<{ key: string }>("/api/keys", { json: { userId: user.body.user.id, name: "console" } })).body.key;
    const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
    const errors: string[] = [];
    page.on("pageerror", (error) => errors.push(error.message));

    // A wrong key is refused with the server's message; the right one signs in.
    await page.goto(`${stack.url}/chat`);
    await page.fill("#api-key", "ork_not-a-key");
    await page.click("#signin-submit");
    await page.waitForSelector("#signin-error:not([hidden])");
    expect(await page.textContent("#signin-error")).toMatch(/Invalid, revoked or expired API key/);
    await page.fill("#api-key", key);
    await page.click("#signin-submit");
    await page.waitForSelector('#connection[data-connected="true"]');
    expect(await page.evaluate(() => JSON.stringify(sessionStorage))).not.toContain(key);

    await page.fill("#composer", "Weather bot with notifications");
    await page.press("#composer", "Enter");
    await page.waitForSelector('#messages [data-from="user"]');
    const question = page.locator('#messages [data-from="agent"]', { hasText: "Start building weather-bot-notifications?" });
    await question.waitFor({ timeout: 60_000 });
    expect(await page.getAttribute("#state", "data-state")).toBe("AWAITING");
    // Other test files enroll servers in the same database: this project's jobs run on this stack's runner.
    const { body } = await stack.api<{ projects: { id: string; config: Record<string, unknown> }[] }>("/api/projects?name=weather-bot-notifications");
    const project = body.projects[0];
    expect(project).toBeDefined();
    expect((await stack.api(`/api/projects/${project?.id ?? ""}`, { method: "PATCH", json: { config: { ...project?.config, server: "console-box" } } })).status).toBe(200);
    await question.getByRole("button", { name: /Confirm/ }).click();

    const link = page.locator("a[data-task-link]").first();
    await link.waitFor({ timeout: 60_000 });
    const href = (await link.getAttribute("href")) ?? "";
    expect(href).toMatch(new RegExp(`^${stack.url}/tasks/eng_[A-Za-z0-9]+\\?token=`));
    // The live view inline…
    const inline = page.frameLocator("details.task-live iframe").first();
    await inline.locator("#log li").first().waitFor({ timeout: 30_000 });
    // …and in its own page, which follows the task to its end.
    const live = await browser.newPage();
    await live.goto(href);
    await live.waitForSelector("#result[data-outcome]", { timeout: 240_000 });
    expect(await live.getAttribute("#result", "data-outcome")).toBe("completed");
    await live.setViewportSize({ width: 1280, height: 860 });
    await live.screenshot({ path: join(SCREENSHOTS, "task-view-live.png"), fullPage: false });
    // The chat tells the outcome when the task ends.
    await page.locator('#messages [data-from="agent"]', { hasText: "✅ weather-bot-notifications" }).waitFor({ timeout: 60_000 });
    await page.screenshot({ path: join(SCREENSHOTS, "chat-console.png"), fullPage: false });
    expect(errors).toEqual([]);

    // A reload keeps the conversation: the agent's history comes back over the socket.
    await page.reload();
    await page.waitForSelector('#connection[data-connected="true"]');
    await page.locator('#messages [data-from="agent"]', { hasText: "Start building weather-bot-notifications?" }).waitFor();
    expect(await page.locator('#messages [data-from="agent"]', { hasText: "Start building" }).getByRole("button").count()).toBe(0);
  }, 400_000);
});
