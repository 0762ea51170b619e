/**
 * The live task view in a real headless Chromium (Debian's, driven by playwright-core).
 */
import { existsSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Browser, chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signViewToken } from "../../src/lib/view-token.ts";
import { STACK_SECRETS_KEY, type StackClient, userWithTask } from "../../scripts/lib/local-stack.ts";
import { sharedStack } from "../support/shared.ts";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const SCREENSHOTS = join(tmpdir(), "orchestrator-screenshots");

let stack: StackClient;
let browser: Browser;
beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run scripts/install-system-deps.sh (Debian's chromium)`);
  mkdirSync(SCREENSHOTS, { recursive: true });
  stack = sharedStack();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
});
afterAll(async () => {
  await browser?.close();
});

const append = (taskId: string, event: Record<string, unknown>) => stack.api(`/api/tasks/${taskId}/events`, { json: event });

describe("live task view", () => {
  it("shows events in order as they happen, also across a forced reconnect, then the result", async () => {
    const { key, taskId } = await userWithTask(stack);
    await append(taskId, { type: "task.started", message: "Engineering task started" });
    const link = await stack.api<{ url: string }>(`/api/tasks/${taskId}/view-link`, { key });
    const page = await browser.newPage();
    const consoleErrors: string[] = [];
    page.on("pageerror", (error) => consoleErrors.push(error.message));
    await page.goto(link.body.url);

    const seqs = () => page.$$eval("#log li", (items) => items.map((li) => Number((li as HTMLElement).dataset.seq)));
    await page.waitForSelector('#log li[data-seq="1"]');
    await page.waitForSelector('#connection[data-state="live"]');
    await append(taskId, { type: "step.started", step: "Architect", message: "analyzing requirements..." });
    await append(taskId, { type: "step.completed", step: "Architect", message: "spec ready" });
    await page.waitForSelector('#log li[data-seq="3"]');
    expect(await page.textContent('#steps li[data-step="Architect"]')).toContain("spec ready");

    // Forced reconnect: the socket drops, events keep coming, the page resumes after its last seq.
    await page.evaluate(() => (window as unknown as { __taskView: { dropConnection(): void } }).__taskView.dropConnection());
    for (let i = 1; i <= 5; i++) await append(taskId, { type: "log", step: "Developer", message: `commit ${i}` });
    await page.waitForSelector('#log li[data-seq="8"]', { timeout: 15_000 });
    expect(await page.evaluate(() => (window as unknown as { __taskView: { reconnects: number } }).__taskView.reconnects)).toBeGreaterThanOrEqual(1);

    await append(taskId, { type: "task.completed", message: "Deployed at https://weather.example.test", data: { url: "https://weather.example.test" } });
    await page.waitForSelector('#result[data-outcome="completed"]');
    expect(await seqs()).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(await page.textContent("#status")).toBe("completed");
    expect(await page.textContent("#result")).toContain("https://weather.example.test");
    await page.screenshot({ path: join(SCREENSHOTS, "task-view.png"), fullPage: true });
    expect(consoleErrors).toEqual([]);
    await page.close();
  });

  it("shows a change's branch, pull request and preview as links, and makes no link of what is not a web address", async () => {
    const { key, taskId } = await userWithTask(stack);
    const link = await stack.api<{ url: string }>(`/api/tasks/${taskId}/view-link`, { key });
    const page = await browser.newPage();
    await page.goto(link.body.url);
    await page.waitForSelector('#connection[data-state="live"]');
    await append(taskId, {
      type: "task.completed",
      message: "Change #2 to shop: the tests pass; pull request #7 is open",
      data: { branch: "change/2-say-bye", change: { number: 2 }, pullRequest: { number: 7, url: "https://github.example.test/acme/shop/pull/7" }, repository: "javascript:alert(1)", notification: { url: "http://shop--2.localhost:8780", preview: 2 } },
    });
    await page.waitForSelector('#result[data-outcome="completed"]');
    const links = await page.$$eval("#result .links li", (items) => items.map((li) => ({ kind: (li as HTMLElement).dataset.link, text: li.textContent, href: li.querySelector("a")?.getAttribute("href") ?? null })));
    expect(links).toEqual([
      { kind: "preview", text: "Preview of change #2: http://shop--2.localhost:8780", href: "http://shop--2.localhost:8780" },
      { kind: "branch", text: "Change #2's branch: change/2-say-bye", href: null },
      { kind: "pull-request", text: "Pull request: #7", href: "https://github.example.test/acme/shop/pull/7" },
    ]);
    await page.close();
  });

  it("shows a clear error page for an expired or foreign link", async () => {
    const { taskId } = await userWithTask(stack);
    const other = await userWithTask(stack);
    const link = await stack.api<{ token: string }>(`/api/tasks/${other.taskId}/view-link`, { key: other.key });
    const page = await browser.newPage();
    const res = await page.goto(`${stack.url}/tasks/${taskId}?token=${link.body.token}`);
    expect(res?.status()).toBe(401);
    expect(await page.textContent("h1")).toBe("This link is for another task");
    await page.goto(`${stack.url}/tasks/${taskId}?token=garbage.token`);
    expect(await page.textContent("h1")).toBe("This link is damaged");
    const expired = await signViewToken(STACK_SECRETS_KEY, taskId, 60, Date.now() - 3600_000);
    await page.goto(`${stack.url}/tasks/${taskId}?token=${expired.token}`);
    expect(await page.textContent("h1")).toBe("This link has expired");
    await page.screenshot({ path: join(SCREENSHOTS, "task-view-error.png") });
    await page.close();
  });
});
