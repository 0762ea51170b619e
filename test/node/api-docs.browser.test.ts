/**
 * The API reference page (`GET /api/docs`) in a real headless Chromium, offline: its script is the
 * vendored Scalar bundle the app serves itself (public/scalar/standalone.js), and its document is
 * the app's own `GET /api/openapi.json`. Every request to anywhere but the stack is blocked, and
 * the test fails if one was even attempted.
 */
import { existsSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Browser, chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type StackClient } from "../../scripts/lib/local-stack.ts";
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

/** Requests the page itself makes to the network (not data: or blob: URLs, which never leave it). */
const isNetwork = (url: string) => /^(https?|wss?):/i.test(url);
const isLocal = (url: string) => new URL(url).hostname === "127.0.0.1";

describe("API docs page", () => {
  it("renders the Orchestrator API's reference offline, from the app's own script and document", async () => {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const attempted: string[] = [];
    const errors: string[] = [];
    page.on("request", (request) => {
      if (isNetwork(request.url()) && !isLocal(request.url())) attempted.push(request.url());
    });
    page.on("websocket", (socket) => {
      if (!isLocal(socket.url())) attempted.push(socket.url());
    });
    page.on("pageerror", (error) => errors.push(error.message));
    await page.route("**/*", (route) => (isLocal(route.request().url()) ? route.continue() : route.abort("blockedbyclient")));
    const served: string[] = [];
    page.on("response", (response) => served.push(`${response.status()} ${new URL(response.url()).pathname}`));

    const res = await page.goto(`${stack.url}/api/docs`);
    expect(res?.status()).toBe(200);
    await page.getByRole("heading", { name: "Orchestrator API" }).first().waitFor({ timeout: 30_000 });
    await page.getByText("/api/projects", { exact: true }).first().waitFor({ timeout: 30_000 });
    // The areas are there as sections, with their operations.
    for (const tag of ["projects", "tasks", "servers", "deploys", "keys"]) await page.getByText(tag, { exact: true }).first().waitFor();
    await page.waitForLoadState("networkidle");
    expect(await page.textContent("body")).toContain("Create a project");

    expect(served).toContain("200 /scalar/standalone.js");
    expect(served).toContain("200 /api/openapi.json");
    expect(attempted).toEqual([]);
    expect(errors).toEqual([]);
    await page.screenshot({ path: join(SCREENSHOTS, "api-docs.png") });

    // An operation, with its body described from the zod schema.
    await page.getByRole("link", { name: /^Create a project/ }).first().click();
    const operation = page.locator("section", { has: page.getByRole("heading", { name: /^Create a project/ }) }).last();
    await operation.getByText("ownerId", { exact: true }).first().waitFor();
    await operation.scrollIntoViewIfNeeded();
    await page.screenshot({ path: join(SCREENSHOTS, "api-docs-operation.png") });
    expect(attempted).toEqual([]);
    await page.close();
  });
});
