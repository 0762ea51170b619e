/**
 * The Product Owner through the real path, where a chat starts work on a runner: the Telegram stand-in
 * delivers updates to the worker's webhook (wrangler dev), the chat's ProductOwner agent calls the
 * scripted model and runs its tools over the real services. Engineering and deploys started from the
 * chat run on a real runner in Docker (the deploy harness), and their ends come back to the chat; the
 * scheduler's health checks watch a live release. The chat alone (the webhook, a conversation, budgets,
 * delivery) is test/node/product-owner-chat.test.ts, which runs beside the heavy files.
 */
import { randomBytes } from "node:crypto";
import Docker from "dockerode";
import { Api } from "grammy";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { DeployHarness } from "../../scripts/lib/deploy-harness.ts";
import { waitFor } from "../../scripts/lib/processes.ts";
import type { Stack } from "../../scripts/lib/local-stack.ts";
import type { ModelServer } from "../../standins/model-server.ts";
import type { TelegramServer } from "../../standins/telegram-server.ts";
import { oneHeavyFileAtATime } from "../support/heavy-gate.ts";
import { press, replies, replyMatching, script, send, sentTo, usePoChat } from "../support/po-chat.ts";

const SECRET = `whsec_${randomBytes(12).toString("hex")}`;

let h: DeployHarness;
let docker: Docker;
let stack: Stack;
let telegram: TelegramServer;
let model: ModelServer;
let token = "";

oneHeavyFileAtATime();

beforeAll(async () => {
  docker = new Docker({ socketPath: inject("dockerSocket") });
  h = await DeployHarness.start({
    // Apart from deploy.test.ts's, which may run at the same time.
    releasePorts: { from: 21_500, to: 21_999 },
    databaseUrl: inject("databaseUrl"),
    dbWsProxy: inject("dbWsProxy"),
    adminKey: inject("adminApiKey"),
    dockerSocket: inject("dockerSocket"),
    image: inject("codingWorkerImage"),
    handle: "po-box",
    vars: (server) => {
      token = server.addBot({ username: `po_${randomBytes(3).toString("hex")}_bot` });
      return { TELEGRAM_BOT_TOKEN: token, TELEGRAM_WEBHOOK_SECRET: SECRET, TELEGRAM_SIGNUP: "open", USER_BUDGET_USD: "5" };
    },
  });
  ({ stack, model } = h.env);
  telegram = h.telegram;
  usePoChat({ stack, telegram, model, token });
  await new Api(token, { apiRoot: telegram.url }).setWebhook(`${stack.url}/telegram/webhook`, { secret_token: SECRET });
  script([]);
}, 240_000);

afterAll(async () => {
  await h?.stop();
  // Whatever a failed test left running.
  const left = await docker.listContainers({ all: true, filters: { label: ["orchestrator.release"] } });
  for (const container of left.filter((c) => /^chat-/.test(c.Labels["orchestrator.project"] ?? ""))) await docker.getContainer(container.Id).remove({ force: true }).catch(() => undefined);
  const networks = await docker.listNetworks({ filters: { label: ["orchestrator.project"] } });
  for (const network of networks.filter((n) => /^chat-/.test(n.Labels?.["orchestrator.project"] ?? ""))) await docker.getNetwork(network.Id).remove().catch(() => undefined);
});

describe("a conversation that builds", () => {
  it("creates a project, asks before building, starts engineering with a live link, and tells the outcome", async () => {
    script([]);
    const chatId = 9006;
    await send(chatId, "A greeting service saying hello to people");
    const question = await replyMatching(chatId, /Start building greeting-service-saying-hello\?/);
    expect(question.params.reply_markup).toBeTruthy();
    // Other test files enroll servers in the same database: this project's jobs run on this stack's runner.
    await pinToServer(stack, "greeting-service-saying-hello", "po-box");
    // Someone else in the chat cannot answer it.
    expect(await press(question, /Confirm/, 4242)).toBe(200);
    // The refusal is the answer to that press: once it is there, the press has been handled.
    await waitFor(() => (telegram.calls("answerCallbackQuery").some((c) => /Only the person who asked/.test(String(c.params.text))) ? true : undefined), 30_000, () => "the stranger's press was never answered");
    expect(sentTo(chatId).some((m) => /has started/.test(m.text))).toBe(false);
    expect(await press(question, /Confirm/)).toBe(200);
    const started = await replyMatching(chatId, /has started \(task (eng_[A-Za-z0-9]+)\)/);
    const taskId = /task (eng_[A-Za-z0-9]+)/.exec(started.text)?.[1] ?? "";
    const link = /Watch it live: (\S+)/.exec(started.text)?.[1] ?? "";
    expect(link).toContain(`/tasks/${taskId}?token=`);
    const view = await fetch(link);
    expect(view.status).toBe(200);
    expect(await view.text()).toContain("task-view.js");
    // The question's buttons are gone and its answer is shown; a second press is stale.
    await waitFor(() => (question.edits ? true : undefined), 10_000, () => "the question was not edited");
    expect(question.text).toMatch(/Confirmed/);
    expect(await press(question, /Confirm/)).toBe(200);
    await waitFor(() => (telegram.calls("answerCallbackQuery").some((c) => /no longer valid/.test(String(c.params.text))) ? true : undefined), 10_000, () => "no stale answer");
    const done = await replyMatching(chatId, /^(✅|❌)/, 240_000);
    expect(done.text).toMatch(/^✅ greeting-service-saying-hello: the tests pass/);
    expect(done.text).toContain("deploy greeting-service-saying-hello");
  }, 300_000);
});

describe("the scheduler's health checks", () => {
  const tick = async () => {
    const res = await fetch(`${stack.url}/cdn-cgi/local/scheduled?cron=${encodeURIComponent("* * * * *")}`);
    await res.body?.cancel();
    expect(res.status).toBe(200);
  };
  const openIncident = async (projectId: string) =>
    (await stack.api<{ incidents: { id: string; projectId: string; data: { failures: number } }[] }>("/api/incidents?kind=deployment_unhealthy")).body.incidents.find((row) => row.projectId === projectId);

  it("checks live deployments under a lock, opens an incident when one fails, tells its owner after 3 failures, and closes it on recovery", async () => {
    script([]);
    const chatId = 9012;
    await send(chatId, "hello");
    await replies(chatId, 1);
    const { body } = await stack.api<{ users: { id: string; telegramId: number | null }[] }>("/api/users?limit=200");
    const fixture = await h.newFixture("chat", [], body.users.find((u) => u.telegramId === chatId)?.id);
    await h.pushVersion(fixture, "v1");
    await h.putSecrets(fixture, { WEATHER_API_KEY: "wk-health" });
    expect((await h.ended(await h.start(fixture, "deploy"))).at(-1)?.type).toBe("task.completed");

    // Two runs at once: one checks, the other is refused the lock and says so.
    await Promise.all([tick(), tick()]);
    await waitFor(() => (stack.process.output().includes("scheduler job skipped: another run holds its lock") ? true : undefined), 10_000, () => stack.process.output().slice(-2000));
    expect(await openIncident(fixture.projectId)).toBeUndefined();

    const [container] = await docker.listContainers({ filters: { label: [`orchestrator.project=${fixture.projectName}`] } });
    await docker.getContainer(container?.Id ?? "").stop();
    try {
      for (let failures = 1; failures <= 3; failures++) {
        await tick();
        expect((await openIncident(fixture.projectId))?.data.failures).toBe(failures);
      }
      const told = await replyMatching(chatId, /has failed its last 3 health checks/);
      expect(told.text).toContain(fixture.projectName);
    } finally {
      await docker.getContainer(container?.Id ?? "").start();
    }
    await waitFor(async () => ((await h.visit(fixture.domain, "/")).status === 200 ? true : undefined), 30_000, () => "the release did not come back");
    await tick();
    expect(await openIncident(fixture.projectId)).toBeUndefined();
    await h.ended(await h.start(fixture, "undeploy"));
  }, 300_000);
});

async function pinToServer(on: Stack, projectName: string, handle: string): Promise<void> {
  const { body } = await on.api<{ projects: { id: string; config: Record<string, unknown> }[] }>(`/api/projects?name=${projectName}`);
  const project = body.projects[0];
  if (!project) throw new Error(`no project ${projectName}`);
  const patched = await on.api(`/api/projects/${project.id}`, { method: "PATCH", json: { config: { ...project.config, server: handle } } });
  if (patched.status !== 200) throw new Error(`PATCH ${projectName}: ${patched.status} ${JSON.stringify(patched.body)}`);
}
