/**
 * The deploy pipeline through the real path: worker (wrangler dev) → DeployWorkflow → RunnerHub → a
 * real runner → Ansible (deploy_project.yml) → docker compose v2 → a real Caddy, with the scripted
 * model (EnvAnalyzer), the GitHub stand-in holding the fixture project (test/fixtures/deploy-app) and
 * the Telegram stand-in behind the bot pool.
 *
 * One project goes through a life: v1 (waiting for a user secret), v2 under steady load (zero
 * failed requests), a broken release under load (turned away, v2 keeps serving), v3, a rollback to
 * v2 with no build, and an undeploy. Then two projects side by side: concurrent deploys, a bot from
 * the pool, a runner killed mid-release, and the bot given back on undeploy.
 *
 * Then the Product Owner, where a chat starts work on this runner: the Telegram stand-in delivers
 * updates to the worker's webhook, the chat's ProductOwner agent calls the scripted model and runs its
 * tools over the real services; a build started from the chat comes back to it, and the scheduler's
 * health checks watch a live release and tell its owner. (The chat alone, with no runner: the webhook,
 * a conversation, budgets, delivery, is test/node/product-owner-chat.test.ts, beside the heavy files.)
 */
import { execFile } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { promisify } from "node:util";
import Docker from "dockerode";
import { sql } from "drizzle-orm";
import { Api } from "grammy";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { DeployHarness, type Fixture, listing, versionOf } from "../../scripts/lib/deploy-harness.ts";
import { removeDataVolumes } from "../../scripts/lib/docker-engine.ts";
import { waitFor } from "../../scripts/lib/processes.ts";
import { createDb } from "../../src/db/client.ts";
import type { TaskEvent } from "../../src/shared/events.ts";
import { oneHeavyFileAtATime } from "../support/heavy-gate.ts";
import { ensureStandinsNetwork, STANDINS_NETWORK } from "../../scripts/lib/standins-network.ts";
import { press, replies, replyMatching, script, send, sentTo, usePoChat } from "../support/po-chat.ts";
import type { Stack } from "../../scripts/lib/local-stack.ts";

const run = promisify(execFile);
const HANDLE = "deploy-box";
const WEATHER_KEY = `wk-${randomBytes(10).toString("hex")}`;
const WEBHOOK_SECRET = `whsec_${randomBytes(12).toString("hex")}`;
/** The fixture project's acceptance checks: they hold for every version but one ("-nonotes"). */
const acceptance = (domain: string) => [
  { name: "the service knows its domain", path: "/", expect: { json: { pointer: "/domain", equals: domain } } },
  { name: "the notes are listed", path: "/notes", expect: { status: 200, bodyContains: '"notes"' } },
];

let h: DeployHarness;
let docker: Docker;
let first: Fixture;
let projectId: string;
let projectName: string;
let domain: string;
let poToken = "";

const events = (taskId: string) => h.events(taskId);
const ended = (taskId: string, ms?: number) => h.ended(taskId, ms);
const pushVersion = (version: string, fixture: Fixture = first) => h.pushVersion(fixture, version);
const deploy = (json: Record<string, unknown> = {}, fixture: Fixture = first) => h.start(fixture, "deploy", json);
const visit = (path = "/", host = domain) => h.visit(host, path);
const steadyLoad = () => h.steadyLoad(domain);
const history = (fixture: Fixture = first) => h.history(fixture);

oneHeavyFileAtATime();

beforeAll(async () => {
  docker = new Docker({ socketPath: inject("dockerSocket") });
  h = await DeployHarness.start({
    releasePorts: { from: 21_000, to: 21_499 },
    databaseUrl: inject("databaseUrl"),
    dbWsProxy: inject("dbWsProxy"),
    adminKey: inject("adminApiKey"),
    dockerSocket: inject("dockerSocket"),
    image: inject("codingWorkerImage"),
    handle: HANDLE,
    // Long enough for a test to cancel a deploy during it.
    drainSeconds: 4,
    // The Product Owner's bot, for the chat's cases.
    vars: (telegram) => {
      poToken = telegram.addBot({ username: `po_${randomBytes(3).toString("hex")}_bot` });
      return { TELEGRAM_BOT_TOKEN: poToken, TELEGRAM_WEBHOOK_SECRET: WEBHOOK_SECRET, TELEGRAM_SIGNUP: "open", USER_BUDGET_USD: "5" };
    },
  });
  usePoChat({ stack: h.env.stack, telegram: h.telegram, model: h.env.model, token: poToken });
  await new Api(poToken, { apiRoot: h.telegram.url }).setWebhook(`${h.env.stack.url}/telegram/webhook`, { secret_token: WEBHOOK_SECRET });
  first = await h.newFixture("fixture");
  ({ projectId, projectName, domain } = first);
  // As its owner would set them (the Architect writes them for a project it specs): the deploys check these on every release.
  const checks = await h.env.stack.api(`/api/projects/${projectId}`, { method: "PATCH", json: { acceptance: acceptance(domain) } });
  expect(checks.status, JSON.stringify(checks.body)).toBe(200);
}, 240_000);

afterAll(async () => {
  await h?.stop();
  // Whatever a failed test left running (release containers restart by themselves).
  const left = await docker.listContainers({ all: true, filters: { label: ["orchestrator.release"] } });
  for (const container of left.filter((c) => /^(fixture|pair|bot|chat|greeting)-/.test(c.Labels["orchestrator.project"] ?? ""))) await docker.getContainer(container.Id).remove({ force: true }).catch(() => undefined);
  const networks = await docker.listNetworks({ filters: { label: ["orchestrator.project"] } });
  for (const network of networks.filter((n) => /^(fixture|pair|bot|chat|greeting)-/.test(n.Labels?.["orchestrator.project"] ?? ""))) await docker.getNetwork(network.Id).remove().catch(() => undefined);
  await removeDataVolumes(docker, (project) => /^(fixture|pair|bot|chat|greeting)-/.test(project));
  // And the release images the side-by-side projects, never undeployed whole, keep (~330 MB each run).
  const images = await docker.listImages({ filters: { label: ["orchestrator.project"] } });
  for (const image of images.filter((i) => /^(fixture|pair|bot|chat|greeting)-/.test(i.Labels?.["orchestrator.project"] ?? ""))) await docker.getImage(image.Id).remove({ force: true }).catch(() => undefined);
});

describe("deploying a project", () => {
  const secretsSeen: string[] = [WEATHER_KEY];

  it("v1: waits for the user's secret, then answers through Caddy with the generated and given secrets in its environment", async () => {
    await pushVersion("v1");
    const taskId = await deploy();
    let seen: TaskEvent[] = [];
    const asked = await waitFor(
      async () => (seen = await events(taskId)).find((e) => e.type === "task.needs_input"),
      180_000,
      () => `no question:\n${listing(seen)}`,
    );
    expect(asked.message).toContain("WEATHER_API_KEY");
    expect((asked.data as { fields: { name: string }[] }).fields.map((f) => f.name)).toEqual(["WEATHER_API_KEY"]);

    const put = await h.env.stack.api<{ secrets: { name: string; set: boolean }[]; resumedTask?: string }>(`/api/projects/${projectId}/secrets`, { method: "PUT", json: { secrets: { WEATHER_API_KEY: WEATHER_KEY } } });
    expect(put.status).toBe(200);
    expect(put.body.resumedTask).toBe(taskId);
    expect(JSON.stringify(put.body)).not.toContain(WEATHER_KEY);

    const all = await ended(taskId);
    expect(all.at(-1)?.type, listing(all)).toBe("task.completed");
    expect(all.at(-1)?.data?.url).toBe(`https://${domain}`);
    // The spec's acceptance checks held on the new release, then through Caddy, and the owner is told so.
    const checked = all.filter((e) => e.step === "acceptance");
    expect(checked.map((e) => `${String(e.data?.via)}:${String(e.data?.ok)}`)).toEqual(["direct:true", "caddy:true"]);
    expect(checked[1]?.message).toContain("✓ the service knows its domain");
    expect(all.at(-1)?.message).toContain("(all 2 acceptance checks pass)");
    const answer = await visit("/");
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body)).toEqual({ version: "v1", domain });

    const [container] = await docker.listContainers({ filters: { label: [`orchestrator.project=${projectName}`] } });
    expect(container).toBeDefined();
    const environment = (await docker.getContainer(container?.Id ?? "").inspect()).Config.Env;
    expect(environment).toContain(`WEATHER_API_KEY=${WEATHER_KEY}`);
    expect(environment).toContain(`DOMAIN=${domain}`);
    const session = environment.find((line) => line.startsWith("SESSION_SECRET="))?.slice("SESSION_SECRET=".length) ?? "";
    expect(session).toMatch(/^[0-9a-f]{64}$/);
    secretsSeen.push(session);

    // The project's data directory: what v1 stores there, later releases find (below).
    const stored = await h.visit(domain, "/notes", "stored by v1");
    expect(stored.status, stored.body).toBe(200);
    expect(JSON.parse(stored.body)).toEqual({ count: 1, version: "v1" });
    expect((await docker.getContainer(container?.Id ?? "").inspect()).Mounts).toMatchObject([{ Type: "volume", Name: `or-data-${projectName}`, Destination: "/data", RW: true }]);

    const names = await h.env.stack.api<{ secrets: { name: string; kind: string }[] }>(`/api/projects/${projectId}/secrets`);
    expect(names.body.secrets.map((s) => `${s.name}:${s.kind}`).sort()).toEqual(["SESSION_SECRET:infra", "WEATHER_API_KEY:user"]);
    const [release] = await history();
    expect(release?.status).toBe("active");

    // No secret in any event, log line, job or API response of the run.
    const jobs = await h.env.stack.api(`/api/servers/${HANDLE}/jobs?limit=200`);
    const text = JSON.stringify([all, names.body, await history(), jobs.body]);
    for (const secret of secretsSeen) expect(text).not.toContain(secret);
  }, 300_000);

  it("reads v1's logs for its owner, from the API, the CLI and the chat (\"why is it down?\"): its requests, with every secret the release holds masked (in a URL too); another tenant's key, and the owner's key limited to another project, see no project", async () => {
    // A request whose URL carries both secrets, as a careless client might send them: the app logs its request line.
    const [weather, session] = secretsSeen;
    expect((await visit(`/?api_key=${weather ?? ""}&session=${encodeURIComponent(session ?? "")}`)).status).toBe(200);
    const read = await h.env.stack.api<{ project: string; release: string; state: string; lines: string[]; omitted: number }>(`/api/projects/${projectId}/logs?tail=50`);
    expect(read.status, JSON.stringify(read.body)).toBe(200);
    const [release] = await history();
    expect(read.body).toMatchObject({ project: projectName, release: release?.id, state: "running", omitted: 0 });
    expect(read.body.lines.some((line) => line.includes("fixture v1 listening on"))).toBe(true);
    const asked = read.body.lines.find((line) => line.includes('"GET /?api_key='));
    expect(asked, read.body.lines.join("\n")).toContain('"GET /?api_key=[masked]&session=[masked] HTTP/1.1" 200');
    for (const secret of secretsSeen) expect(JSON.stringify(read.body)).not.toContain(secret);
    // Docker's timestamp first, oldest line first.
    expect(read.body.lines[0]).toMatch(/^\d{4}-\d{2}-\d{2}T\S+Z /);

    // The owner's CLI: `orchestrator logs <project>`.
    const owner = (await h.env.stack.api<{ project: { ownerId: string } }>(`/api/projects/${projectId}`)).body.project.ownerId;
    const ownerKey = (await h.env.stack.api<{ key: string }>("/api/keys", { json: { userId: owner, name: "logs" } })).body.key;
    const cli = await run(process.execPath, [inject("cliBundle"), "logs", projectName, "--tail", "5"], { env: { ...process.env, ORCHESTRATOR_CONFIG: "/nonexistent/config.json", ORCHESTRATOR_URL: h.env.stack.url, ORCHESTRATOR_API_KEY: ownerKey } });
    expect(cli.stdout).toMatch(new RegExp(`^# ${projectName}, release ${release?.id ?? ""} on ${HANDLE} \\(running\\): 5 lines$`, "m"));
    expect(cli.stdout).toContain("[masked]");
    for (const secret of secretsSeen) expect(cli.stdout).not.toContain(secret);

    // The owner asks the Product Owner why it is down: the answer quotes its last lines, masked.
    script([]);
    // A Telegram id no other file's chat uses (they share the database, and a Telegram id is one user's).
    const chatId = 800_000_000 + Math.floor(Math.random() * 100_000_000);
    const handle = createDb({ databaseUrl: inject("databaseUrl"), wsProxy: inject("dbWsProxy") });
    try {
      await handle.db.execute(sql`update users set telegram_id = ${chatId} where id = ${owner}`);
    } finally {
      await handle.close();
    }
    await send(chatId, `why is ${projectName} down?`);
    const quoted = await replyMatching(chatId, new RegExp(`${projectName}'s release is running\\. What it logged last:`));
    expect(quoted.text).toContain('"GET /?api_key=[masked]&session=[masked] HTTP/1.1" 200');
    for (const secret of secretsSeen) expect(quoted.text).not.toContain(secret);

    // Another tenant: no such project. A bad tail: 400.
    const stranger = (await h.env.stack.api<{ user: { id: string } }>("/api/users", { json: { name: "stranger" } })).body.user.id;
    const strangerKey = (await h.env.stack.api<{ key: string }>("/api/keys", { json: { userId: stranger, name: "s" } })).body.key;
    expect((await h.env.stack.api(`/api/projects/${projectId}/logs`, { key: strangerKey })).status).toBe(404);
    // The owner's own key, limited to another of their projects: no such project either.
    const other = await h.env.stack.api<{ project: { id: string } }>("/api/projects", { json: { name: `${projectName}-other`.slice(0, 40), description: "another one" }, key: ownerKey });
    expect(other.status, JSON.stringify(other.body)).toBe(201);
    const limited = await h.env.stack.api<{ key: string }>("/api/keys", { json: { name: "other only", projectId: other.body.project.id }, key: ownerKey });
    expect(limited.status).toBe(201);
    expect((await h.env.stack.api(`/api/projects/${projectId}/logs`, { key: limited.body.key })).status).toBe(404);
    expect((await h.env.stack.api(`/api/projects/${projectId}/logs?tail=0`)).status).toBe(400);
  });

  it("keeps v1's release in its box: limits, a read-only root, and no way to the server's ports or private networks", async () => {
    const [listed] = await docker.listContainers({ filters: { label: [`orchestrator.project=${projectName}`] } });
    const container = docker.getContainer(listed?.Id ?? "");
    const info = await container.inspect();
    expect(info.HostConfig).toMatchObject({ ReadonlyRootfs: true, NanoCpus: 1e9, PidsLimit: 512, CapDrop: ["ALL"], Privileged: false });
    expect(info.HostConfig.LogConfig).toMatchObject({ Type: "json-file", Config: { "max-size": "10m", "max-file": "3" } });
    const exec = (code: string) => run("docker", ["exec", listed?.Id ?? "", "python3", "-c", code]).then((r) => r.stdout.trim());
    expect(await exec(`
import os
try:
    open("/app/written", "w")
    print("root writable")
except OSError:
    print("root read-only")
open("/tmp/scratch", "w").write("x")
print("tmp writable")`)).toBe("root read-only\ntmp writable");

    // A port on the server (the project bridge's gateway: the host's own address there), and a
    // service on another private network of this machine.
    const networkName = Object.keys(info.NetworkSettings.Networks)[0] ?? "";
    const network = (await docker.getNetwork(networkName).inspect()) as { IPAM: { Config: { Gateway?: string }[] } };
    const gateway = network.IPAM.Config[0]?.Gateway ?? "";
    expect(gateway).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    const { createServer } = await import("node:net");
    const server = createServer((socket) => socket.end("host port answered\n"));
    await new Promise<void>((resolve) => server.listen(0, gateway, resolve));
    const hostPort = (server.address() as { port: number }).port;
    const neighbour = `neighbour-${randomBytes(4).toString("hex")}`;
    await docker.createNetwork({ Name: neighbour, Driver: "bridge" });
    const other = await docker.createContainer({ Image: "orchestrator-test/busybox:1", Cmd: ["busybox", "nc", "-ll", "-p", "9000", "-e", "busybox", "echo", "neighbour answered"], HostConfig: { NetworkMode: neighbour } });
    try {
      await other.start();
      const neighbourIp = (await other.inspect()).NetworkSettings.Networks[neighbour]?.IPAddress ?? "";
      const reach = (host: string, port: number) =>
        exec(`
import socket
try:
    s = socket.create_connection((${JSON.stringify(host)}, ${port}), timeout=2)
    print(s.recv(100).decode().strip() or "connected")
except OSError as error:
    print("unreachable")`);
      // The runner itself can reach both: what stops the release is its firewall, not the network.
      expect(await reach(gateway, hostPort)).toBe("unreachable");
      expect(await reach(neighbourIp, 9000)).toBe("unreachable");
      expect(await reach("169.254.169.254", 80)).toBe("unreachable");
      // The one way in this machine's runners allow: the stand-ins' address, where bots reach the Telegram stand-in.
      await ensureStandinsNetwork(docker);
      const standin = createServer((socket) => socket.end("stand-in answered\n"));
      await new Promise<void>((resolve) => standin.listen(0, STANDINS_NETWORK.gateway, resolve));
      try {
        expect(await reach(STANDINS_NETWORK.gateway, (standin.address() as { port: number }).port)).toBe("stand-in answered");
      } finally {
        standin.close();
      }
      expect((await run("docker", ["run", "--rm", "--network", neighbour, "orchestrator-test/busybox:1", "busybox", "nc", "-w", "2", neighbourIp, "9000"])).stdout).toContain("neighbour answered");
    } finally {
      server.close();
      await other.remove({ force: true }).catch(() => undefined);
      await docker.getNetwork(neighbour).remove().catch(() => undefined);
    }
  }, 120_000);

  it("v2 goes out under steady load with no failed request, and the answers switch from v1 to v2; both write to the project's data at once during the cutover", async () => {
    await pushVersion("v2");
    const v1Port = (await history())[0]?.port ?? 0;
    const load = steadyLoad();
    // Notes written through Caddy (to v1, then v2), and straight to v1 until its drain is nearly over:
    // from the route switch on, two containers write to one SQLite database.
    const writes = h.steadyLoad(domain, { perSecond: 5, path: "/notes", post: (n) => `through caddy ${n}` });
    const direct: { status: number; body: string }[] = [];
    let writingToV1 = true;
    const toV1 = (async () => {
      for (let n = 0; writingToV1; n++) {
        const res = await fetch(`http://127.0.0.1:${v1Port}/notes`, { method: "POST", body: `straight to v1 ${n}` });
        direct.push({ status: res.status, body: await res.text() });
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    })();
    const taskId = await deploy();
    // v1 keeps running 4 s after the switch (its drain): the direct writes stop 1 s into it.
    await waitFor(async () => ((await events(taskId)).some((e) => e.step === "drain") ? true : undefined), 180_000, () => "no drain");
    await new Promise((resolve) => setTimeout(resolve, 1000));
    writingToV1 = false;
    await toV1;
    const all = await ended(taskId);
    // The load runs on until v1's container has stopped after its drain, so the stop is under load too.
    const v1 = (await history())[1];
    await waitFor(async () => ((await docker.listContainers({ filters: { label: [`orchestrator.release=${v1?.id ?? ""}`] } })).length === 0 ? true : undefined), 60_000, () => "v1 is still running after its drain");
    const answers = await load.stop();
    const written = await writes.stop();
    expect(written.filter((w) => w.status !== 200), JSON.stringify(written.filter((w) => w.status !== 200).slice(0, 3))).toEqual([]);
    expect(direct.filter((w) => w.status !== 200), JSON.stringify(direct.filter((w) => w.status !== 200).slice(0, 3))).toEqual([]);
    const notes = (JSON.parse((await visit("/notes")).body) as { notes: { text: string; version: string }[] }).notes;
    // Every write is there once, v1's note from before included, and v2 wrote beside v1.
    expect(notes).toHaveLength(1 + written.length + direct.length);
    expect(notes[0]).toEqual({ text: "stored by v1", version: "v1" });
    expect(new Set(notes.filter((note) => note.text.startsWith("through caddy")).map((note) => note.version))).toEqual(new Set(["v1", "v2"]));
    expect(notes.filter((note) => note.text.startsWith("straight to v1")).every((note) => note.version === "v1")).toBe(true);
    expect(all.at(-1)?.type, listing(all)).toBe("task.completed");
    // The drain this file asks for (DEPLOY_DRAIN_SECONDS) is the one the deploy kept.
    expect(all.find((e) => e.step === "drain")?.message).toContain("keeps running 4 s");
    const failed = answers.filter((a) => a.status !== 200);
    expect(failed, JSON.stringify(failed.slice(0, 5))).toEqual([]);
    const versions = answers.map(versionOf);
    expect(versions[0]).toBe("v1");
    expect(versions.at(-1)).toBe("v2");
    // Once v2 answered, v1 never did again.
    expect(versions.slice(versions.indexOf("v2"))).not.toContain("v1");
    const releases = await history();
    expect(releases.map((r) => r.status)).toEqual(["active", "superseded"]);
    expect(releases[1]?.port).toBeNull();
  }, 300_000);

  it("a release that fails its health check never gets traffic: v2 keeps answering and the task fails with the evidence", async () => {
    await pushVersion("v2-broken");
    const load = steadyLoad();
    const taskId = await deploy();
    const all = await ended(taskId);
    const answers = await load.stop();
    const end = all.at(-1);
    expect(end?.type).toBe("task.failed");
    expect(end?.message).toContain("unhealthy");
    expect(end?.message).toContain("503");
    // The harness gives a release 8 s (DEPLOY_HEALTH_SECONDS), a check every 500 ms.
    expect(end?.message).toContain("unhealthy after 16 attempts");
    expect(end?.message).toContain("this release is broken");
    expect(answers.filter((a) => a.status !== 200)).toEqual([]);
    expect(new Set(answers.map(versionOf))).toEqual(new Set(["v2"]));
    const [broken, active] = await history();
    expect(broken?.status).toBe("unhealthy");
    expect(broken?.port).toBeNull();
    expect(JSON.stringify(broken?.health)).toContain("this release is broken");
    expect(active?.status).toBe("active");
    const running = await docker.listContainers({ filters: { label: [`orchestrator.release=${broken?.id ?? ""}`] } });
    expect(running).toEqual([]);
  }, 300_000);

  it("a release that fails an acceptance check never gets traffic: v2 keeps answering, and the task says which check failed", async () => {
    await pushVersion("v2-nonotes");
    const all = await ended(await deploy());
    const end = all.at(-1);
    expect(end?.type, listing(all)).toBe("task.failed");
    expect(end?.message).toContain("failed its acceptance checks, so it got no traffic");
    expect(end?.message).toContain('"the notes are listed": expected status 200, got 404');
    expect(all.filter((e) => e.step === "acceptance").map((e) => String(e.data?.via))).toEqual(["direct"]);
    expect(versionOf(await visit("/"))).toBe("v2");
    const [turnedAway, ...before] = await history();
    expect(turnedAway).toMatchObject({ status: "unhealthy", port: null });
    expect(JSON.stringify(turnedAway?.health)).toContain("expected status 200, got 404");
    expect(before.filter((release) => release.status === "active")).toHaveLength(1);
    expect(await docker.listContainers({ filters: { label: [`orchestrator.release=${turnedAway?.id ?? ""}`] } })).toEqual([]);
  }, 300_000);

  it("v3, then a rollback to v2 with no build; the project's data is as it was", async () => {
    const notesBefore = (await visit("/notes")).body;
    await pushVersion("v3");
    const deployed = await ended(await deploy());
    expect(deployed.at(-1)?.type).toBe("task.completed");
    expect(versionOf(await visit("/"))).toBe("v3");

    const since = Math.floor(Date.now() / 1000);
    const imagesBefore = (await docker.listImages({ filters: { reference: [`orchestrator-release/${projectName}`] } })).map((image) => image.Id).sort();
    const rolled = await h.env.stack.api<{ task: { id: string } }>(`/api/projects/${projectId}/rollback`, { json: {} });
    expect(rolled.status, JSON.stringify(rolled.body)).toBe(202);
    const all = await ended(rolled.body.task.id);
    expect(all.at(-1)?.type, listing(all)).toBe("task.completed");
    expect(versionOf(await visit("/"))).toBe("v2");
    expect((await visit("/notes")).body).toBe(notesBefore);
    // Other test files build and tag images meanwhile: only this project's images count.
    const imageEvents = (await run("docker", ["events", "--since", String(since), "--until", String(Math.floor(Date.now() / 1000) + 1), "--filter", "type=image", "--format", "{{.Action}} {{.Actor.ID}} {{index .Actor.Attributes \"name\"}}"])).stdout.trim();
    expect(imageEvents.split("\n").filter((line) => line.includes(`orchestrator-release/${projectName}`) && /^(tag|build|import|pull) /.test(line))).toEqual([]);
    expect((await docker.listImages({ filters: { reference: [`orchestrator-release/${projectName}`] } })).map((image) => image.Id).sort()).toEqual(imagesBefore);
    const releases = await history();
    expect(releases[0]?.kind).toBe("rollback");
    expect(releases[0]?.status).toBe("active");
    expect(releases.find((r) => r.id === releases[0]?.previousDeploymentId)?.status).toBe("rolled_back");
  }, 300_000);

  it.each([
    ["just after its release job was accepted", (e: TaskEvent) => e.type === "step.started" && e.message.includes("ansible.playbook job")],
    ["at the route switch", (e: TaskEvent) => e.step === "health" && e.message.includes("moving the route")],
    ["during the drain", (e: TaskEvent) => e.step === "drain"],
  ])("a deploy cancelled %s leaves v2 the one release serving, and nothing of its own behind", async (_when, at) => {
    await pushVersion("v4");
    const serving = (await history()).filter((release) => release.status === "active");
    expect(serving.map((release) => release.kind)).toEqual(["rollback"]);
    const taskId = await deploy();
    let seen: TaskEvent[] = [];
    await waitFor(async () => ((seen = await events(taskId)).some(at) ? true : undefined), 180_000, () => listing(seen));
    const cancelled = await h.env.stack.api<{ task: { status: string } }>(`/api/tasks/${taskId}/cancel`, { json: {} });
    expect(cancelled.status, JSON.stringify(cancelled.body)).toBe(200);
    const all = await ended(taskId);
    expect(all.at(-1)?.type, listing(all)).toBe("task.cancelled");

    expect(versionOf(await visit("/"))).toBe("v2");
    const releases = await history();
    const mine = releases.find((release) => release.taskId === taskId);
    if (mine) {
      expect(mine).toMatchObject({ status: "failed", port: null });
      const left = await docker.listContainers({ all: true, filters: { label: [`orchestrator.release=${mine.id}`] } });
      expect(left).toEqual([]);
    }
    expect(releases.filter((release) => release.status === "active").map((release) => release.id)).toEqual(serving.map((release) => release.id));
    expect(releases.filter((release) => release.port !== null).map((release) => release.id)).toEqual(serving.map((release) => release.id));
    const running = await docker.listContainers({ filters: { label: [`orchestrator.project=${projectName}`] } });
    expect(running).toHaveLength(1);
  }, 300_000);

  it("undeploy removes the route, the containers, the images and the ports, and keeps the data until asked to delete it", async () => {
    const started = await h.env.stack.api<{ task: { id: string } }>(`/api/projects/${projectId}/undeploy`, { json: {} });
    expect(started.status).toBe(202);
    const all = await ended(started.body.task.id);
    expect(all.at(-1)?.type, listing(all)).toBe("task.completed");
    expect(all.at(-1)?.message).toContain("its data (/data) kept for its next deploy");
    const volume = docker.getVolume(`or-data-${projectName}`);
    const dataDir = (await volume.inspect()).Options?.device ?? "";
    expect(readdirSync(dataDir)).toContain("notes.db");
    expect((await visit("/")).status).toBe(404);
    expect(await docker.listContainers({ all: true, filters: { label: [`orchestrator.project=${projectName}`] } })).toEqual([]);
    expect(await docker.listNetworks({ filters: { label: [`orchestrator.project=${projectName}`] } })).toEqual([]);
    const images = await docker.listImages({ filters: { reference: [`orchestrator-release/${projectName}`] } });
    expect(images).toEqual([]);
    const releases = await history();
    expect(releases.every((r) => r.port === null && r.status === "removed")).toBe(true);
    const services = await h.env.stack.api<{ services: unknown[] }>(`/api/servers/${HANDLE}/services`);
    expect(services.body.services).toEqual([]);

    // Deleting the data kept: allowed on the undeployed project; the volume and its directory go.
    const deleting = await h.env.stack.api<{ task: { id: string } }>(`/api/projects/${projectId}/undeploy`, { json: { deleteData: true } });
    expect(deleting.status, JSON.stringify(deleting.body)).toBe(202);
    const deleted = await ended(deleting.body.task.id);
    expect(deleted.at(-1)?.type, listing(deleted)).toBe("task.completed");
    expect(deleted.at(-1)?.message).toContain("its data (/data) deleted");
    expect(await volume.inspect().then(() => "there", () => "gone")).toBe("gone");
    expect(existsSync(dataDir)).toBe(false);
    // A project never deployed has no data to delete.
    const never = await h.newFixture("fixture");
    const refused = await h.env.stack.api<{ error: { code: string; message: string } }>(`/api/projects/${never.projectId}/undeploy`, { json: { deleteData: true } });
    expect(refused.status).toBe(409);
    expect(refused.body.error.message).toContain("never was, so it has no data to delete");
  }, 300_000);
});

describe("projects side by side on one server", () => {
  let pair: Fixture;
  let bot: Fixture;
  let botToken: string;

  it("two deploys at once both end routed, and a project that needs a Telegram bot gets one from the pool", async () => {
    botToken = h.telegram.addBot({ username: `pool_${randomBytes(3).toString("hex")}_bot` });
    const registered = await h.env.stack.api<{ bot: { id: string; username: string } }>("/api/telegram-bots", { json: { token: botToken } });
    expect(registered.status, JSON.stringify(registered.body)).toBe(201);
    pair = await h.newFixture("pair");
    bot = await h.newFixture("bot", ["# The bot this service runs as.", "TELEGRAM_BOT_TOKEN="]);
    for (const fixture of [pair, bot]) {
      await pushVersion("p1", fixture);
      const put = await h.env.stack.api(`/api/projects/${fixture.projectId}/secrets`, { method: "PUT", json: { secrets: { WEATHER_API_KEY: WEATHER_KEY } } });
      expect(put.status).toBe(200);
    }
    // One through the project's route, the other through the seed's service API.
    const viaServices = async () => {
      const res = await h.env.stack.api<{ task: { id: string } }>(`/api/servers/${HANDLE}/services`, { json: { projectId: bot.projectId } });
      expect(res.status, JSON.stringify(res.body)).toBe(202);
      return res.body.task.id;
    };
    const [a, b] = await Promise.all([deploy({}, pair), viaServices()]);
    const [endA, endB] = await Promise.all([ended(a), ended(b)]);
    expect(endA.at(-1)?.type, listing(endA)).toBe("task.completed");
    expect(endB.at(-1)?.type, listing(endB)).toBe("task.completed");
    // Both routes survived each other's sync, and the first project's too.
    for (const host of [pair.domain, bot.domain]) expect(versionOf(await visit("/", host)), host).toBe("p1");
    const services = await h.env.stack.api<{ services: { project: { name: string } }[] }>(`/api/servers/${HANDLE}/services`);
    expect(services.body.services.map((service) => service.project.name).sort()).toEqual([bot.projectName, pair.projectName].sort());

    const [container] = await docker.listContainers({ filters: { label: [`orchestrator.project=${bot.projectName}`] } });
    expect((await docker.getContainer(container?.Id ?? "").inspect()).Config.Env).toContain(`TELEGRAM_BOT_TOKEN=${botToken}`);
    const bots = await h.env.stack.api<{ bots: { id: string; projectId: string | null }[] }>("/api/telegram-bots");
    expect(bots.body.bots.find((entry) => entry.id === registered.body.bot.id)?.projectId).toBe(bot.projectId);
    const secrets = await h.env.stack.api<{ secrets: { name: string; kind: string }[] }>(`/api/projects/${bot.projectId}/secrets`);
    expect(secrets.body.secrets.find((secret) => secret.name === "TELEGRAM_BOT_TOKEN")?.kind).toBe("bot");
    expect(JSON.stringify([endB, bots.body, secrets.body])).not.toContain(botToken);
  }, 300_000);

  // A runner killed mid-release is the end-to-end test's (test/node/factory.test.ts): it asserts more
  // (the deploy finishes, its playbook queued once more, one release running).

  it("undeploy (DELETE on the service API) gives the bot back to the pool", async () => {
    const services = await h.env.stack.api<{ services: { id: string; project: { id: string } }[] }>(`/api/servers/${HANDLE}/services`);
    const service = services.body.services.find((entry) => entry.project.id === bot.projectId);
    expect(service).toBeDefined();
    const started = await h.env.stack.api<{ task: { id: string } }>(`/api/servers/${HANDLE}/services/${service?.id ?? ""}`, { method: "DELETE" });
    expect(started.status, JSON.stringify(started.body)).toBe(202);
    const all = await ended(started.body.task.id);
    expect(all.at(-1)?.type, listing(all)).toBe("task.completed");
    expect(all.at(-1)?.message).toContain("bot @");
    expect((await visit("/", bot.domain)).status).toBe(404);
    expect(versionOf(await visit("/", pair.domain))).not.toBeNull();

    // The project's code had the bot's token: the bot waits for a new one, and the project has it no more.
    const pool = await h.env.stack.api<{ bots: { id: string; username: string; projectId: string | null; needsRotation: boolean }[] }>("/api/telegram-bots?limit=200");
    const old = pool.body.bots.find((entry) => entry.projectId === null && entry.needsRotation && entry.username.startsWith("pool_"));
    expect(old).toBeDefined();
    const available = await h.env.stack.api<{ bots: { id: string }[] }>("/api/telegram-bots/available?limit=200");
    expect(available.body.bots.map((entry) => entry.id)).not.toContain(old?.id);
    const secrets = await h.env.stack.api<{ secrets: { name: string }[] }>(`/api/projects/${bot.projectId}/secrets`);
    expect(secrets.body.secrets.map((secret) => secret.name)).not.toContain("TELEGRAM_BOT_TOKEN");
    const toOther = await h.env.stack.api<{ error: { message: string } }>(`/api/telegram-bots/${old?.id ?? ""}/allocate`, { json: { projectId: pair.projectId } });
    expect([toOther.status, toOther.body.error.message]).toEqual([409, expect.stringContaining("rotate the token first") as string]);

    // Deployed again, the project gets another bot (or none, when the pool has no other).
    const nextToken = h.telegram.addBot({ username: `next_${randomBytes(3).toString("hex")}_bot` });
    expect((await h.env.stack.api("/api/telegram-bots", { json: { token: nextToken } })).status).toBe(201);
    const again = await h.start(bot, "deploy", {});
    const redeployed = await ended(again);
    expect(redeployed.at(-1)?.type, listing(redeployed)).toBe("task.completed");
    const [container] = await docker.listContainers({ filters: { label: [`orchestrator.project=${bot.projectName}`] } });
    const env = (await docker.getContainer(container?.Id ?? "").inspect()).Config.Env;
    expect(env.find((line) => line.startsWith("TELEGRAM_BOT_TOKEN="))).toBeDefined();
    expect(env).not.toContain(`TELEGRAM_BOT_TOKEN=${botToken}`);
  }, 300_000);

  it("refuses to build from a repository that is not the project's own, however its URL got there", async () => {
    const handle = createDb({ databaseUrl: inject("databaseUrl"), wsProxy: inject("dbWsProxy") });
    const [row] = (await handle.db.execute<{ repository_url: string }>(sql`select repository_url from projects where id = ${pair.projectId}`)).rows;
    const own = row?.repository_url ?? "";
    const foreign = own.replace(pair.projectName, first.projectName);
    try {
      await handle.db.execute(sql`update projects set repository_url = ${foreign} where id = ${pair.projectId}`);
      const releases = (await history(pair)).length;
      const serving = versionOf(await visit("/", pair.domain));
      const taskId = await deploy({}, pair);
      const all = await ended(taskId);
      expect(all.at(-1)?.type, listing(all)).toBe("task.failed");
      expect(all.at(-1)?.message).toMatch(/names a repository that is not its own/);
      expect(await history(pair)).toHaveLength(releases);
      expect(versionOf(await visit("/", pair.domain))).toBe(serving);
    } finally {
      await handle.db.execute(sql`update projects set repository_url = ${own} where id = ${pair.projectId}`);
      await handle.close();
    }
  }, 120_000);
});

describe("a conversation that builds", () => {
  it("creates a project, asks before building, starts engineering with a live link, and tells the outcome", async () => {
    script([]);
    const chatId = 9006;
    await send(chatId, "A greeting service saying hello to people");
    const question = await replyMatching(chatId, /Start building greeting-service-saying-hello\?/);
    expect(question.params.reply_markup).toBeTruthy();
    // Other test files enroll servers in the same database: this project's jobs run on this stack's runner.
    await pinToServer(h.env.stack, "greeting-service-saying-hello", HANDLE);
    // Someone else in the chat cannot answer it.
    expect(await press(question, /Confirm/, 4242)).toBe(200);
    // The refusal is the answer to that press: once it is there, the press has been handled.
    await waitFor(() => (h.telegram.calls("answerCallbackQuery").some((c) => /Only the person who asked/.test(String(c.params.text))) ? true : undefined), 30_000, () => "the stranger's press was never answered");
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
    await waitFor(() => (h.telegram.calls("answerCallbackQuery").some((c) => /no longer valid/.test(String(c.params.text))) ? true : undefined), 10_000, () => "no stale answer");
    const done = await replyMatching(chatId, /^(✅|❌)/, 240_000);
    expect(done.text).toMatch(/^✅ greeting-service-saying-hello: the tests pass/);
    expect(done.text).toContain("deploy greeting-service-saying-hello");
  }, 300_000);
});

describe("the scheduler's health checks", () => {
  const tick = async () => {
    const res = await fetch(`${h.env.stack.url}/cdn-cgi/local/scheduled?cron=${encodeURIComponent("* * * * *")}`);
    await res.body?.cancel();
    expect(res.status).toBe(200);
  };
  const openIncident = async (projectId: string) =>
    (await h.env.stack.api<{ incidents: { id: string; projectId: string; data: { failures: number } }[] }>("/api/incidents?kind=deployment_unhealthy")).body.incidents.find((row) => row.projectId === projectId);

  it("checks live deployments under a lock, opens an incident when one fails, tells its owner after 3 failures, and closes it on recovery", async () => {
    script([]);
    const chatId = 9012;
    await send(chatId, "hello");
    await replies(chatId, 1);
    const { body } = await h.env.stack.api<{ users: { id: string; telegramId: number | null }[] }>("/api/users?limit=200");
    const fixture = await h.newFixture("chat", [], body.users.find((u) => u.telegramId === chatId)?.id);
    await h.pushVersion(fixture, "v1");
    await h.putSecrets(fixture, { WEATHER_API_KEY: "wk-health" });
    expect((await h.ended(await h.start(fixture, "deploy"))).at(-1)?.type).toBe("task.completed");

    // Two runs at once: one checks, the other is refused the lock and says so.
    await Promise.all([tick(), tick()]);
    await waitFor(() => (h.env.stack.process.output().includes("scheduler job skipped: another run holds its lock") ? true : undefined), 10_000, () => h.env.stack.process.output().slice(-2000));
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
