/**
 * caddy.sync against a real Caddy on loopback: the routes it serves, what happens when Caddy refuses a
 * config (nothing changes, anywhere), and that a restarted Caddy comes back with the last synced routes.
 */
import { readdirSync, readFileSync } from "node:fs";
import { request } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type TestCaddy, type Upstream, startCaddy, startUpstream } from "../../scripts/lib/caddy.ts";
import { CaddySyncPayload } from "../../src/shared/job-payloads.ts";
import { adminRequest } from "../src/caddy-admin.ts";
import { caddySync } from "../src/executors/caddy-sync.ts";
import { MIGRATE_REQ_SYSCTL } from "../src/reload-handover.ts";
import { recordingContext, testConfig } from "./context.ts";

let caddy: TestCaddy;
let appA: Upstream;
let appB: Upstream;

beforeAll(async () => {
  caddy = await startCaddy();
  appA = await startUpstream("app-a");
  appB = await startUpstream("app-b");
});

afterAll(async () => {
  await caddy?.stop();
  await appA?.close();
  await appB?.close();
});

function context(caddyOverrides: { listen?: string[] } = {}) {
  return recordingContext(
    testConfig({
      caddy: {
        adminSocket: caddy.adminSocket,
        httpUrl: caddy.httpUrl,
        configPath: caddy.configPath,
        listen: [`127.0.0.1:${caddy.httpPort}`],
        disableTls: true,
        binary: caddy.binary,
        ...caddyOverrides,
      },
    }),
  );
}

async function sync(routes: { domain: string; upstreamPort: number }[], ctx = context()) {
  const outcome = await caddySync(CaddySyncPayload.parse({ routes }), ctx);
  return { outcome, ctx, steps: ctx.steps.map((step) => step.step) };
}

/** A GET through Caddy's listener with the given Host header, as a visitor of that domain. */
function visit(host: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${caddy.httpUrl}/`, { headers: { host }, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

const routesAB = () => [
  { domain: "a.test", upstreamPort: appA.port },
  { domain: "b.test", upstreamPort: appB.port },
];

describe("caddy.sync", () => {
  it("serves each domain from its own upstream, and nothing for other hosts", async () => {
    const { outcome, steps } = await sync(routesAB());
    expect(outcome).toEqual({ ok: true, message: "caddy serves 2 routes", data: { routes: 2, domains: ["a.test", "b.test"] } });
    expect(steps).toEqual(["render", "validate", "write", "reload"]);

    expect(await visit("a.test")).toEqual({ status: 200, body: "app-a" });
    expect(await visit("b.test")).toEqual({ status: 200, body: "app-b" });
    const unknown = await visit("c.test");
    expect(unknown.status).toBe(404);
    expect(unknown.body).not.toMatch(/app-/);

    // The file a restart reads is the config Caddy is running.
    const running: unknown = JSON.parse((await adminRequest(caddy.adminSocket, "GET", "/config/")).body);
    expect(JSON.parse(readFileSync(caddy.configPath, "utf8"))).toEqual(running);
  });

  it("stops serving a domain left out of the list", async () => {
    await sync(routesAB());
    const { outcome } = await sync([{ domain: "b.test", upstreamPort: appB.port }]);
    expect(outcome.ok).toBe(true);
    expect(outcome.data).toEqual({ routes: 1, domains: ["b.test"] });

    expect((await visit("a.test")).status).toBe(404);
    expect(await visit("b.test")).toEqual({ status: 200, body: "app-b" });
  });

  it("refuses duplicate domains (case-insensitively) before touching Caddy", async () => {
    await sync(routesAB());
    const before = readFileSync(caddy.configPath, "utf8");

    const { outcome, steps } = await sync([...routesAB(), { domain: "A.test", upstreamPort: appB.port }]);
    expect(outcome.ok).toBe(false);
    expect(outcome.message).toMatch(/duplicate domain a\.test/);
    expect(steps).toEqual(["render"]);

    expect(readFileSync(caddy.configPath, "utf8")).toBe(before);
    expect(await visit("a.test")).toEqual({ status: 200, body: "app-a" });
  });

  it("returns Caddy's own message when validation fails, and changes nothing", async () => {
    await sync(routesAB());
    const before = readFileSync(caddy.configPath, "utf8");

    // Passes the runner's config schema (any string), but Caddy's validate rejects the port.
    const { outcome, steps, ctx } = await sync(routesAB(), context({ listen: ["127.0.0.1:99999"] }));
    expect(outcome.ok).toBe(false);
    expect(outcome.message).toMatch(/^caddy refused the config: .*invalid listener address '127\.0\.0\.1:99999'/);
    expect(steps).toEqual(["render", "validate"]);
    expect(ctx.lines.some((line) => line.stream === "stderr" && line.line.includes("99999"))).toBe(true);

    expect(readFileSync(caddy.configPath, "utf8")).toBe(before);
    expect(readdirSync(caddy.dir).filter((name) => name.endsWith(".tmp"))).toEqual([]);
    expect(await visit("a.test")).toEqual({ status: 200, body: "app-a" });
    expect(await visit("b.test")).toEqual({ status: 200, body: "app-b" });
  });

  it("puts the previous file back when Caddy validates a config but cannot load it", async () => {
    await sync(routesAB());
    const before = readFileSync(caddy.configPath, "utf8");

    // Valid on paper, but app A already holds this port: only /load finds out.
    const { outcome, steps } = await sync([{ domain: "b.test", upstreamPort: appB.port }], context({ listen: [`127.0.0.1:${appA.port}`] }));
    expect(outcome.ok).toBe(false);
    expect(outcome.message).toMatch(/^caddy refused the config \(400\): .*address already in use/);
    expect(steps).toEqual(["render", "validate", "write", "reload"]);

    expect(readFileSync(caddy.configPath, "utf8")).toBe(before);
    expect(await visit("a.test")).toEqual({ status: 200, body: "app-a" });
    expect(await visit("b.test")).toEqual({ status: 200, body: "app-b" });
  });

  it("runs concurrent syncs one after the other, the later one winning", async () => {
    const [first, second] = await Promise.all([
      sync(routesAB()),
      sync([{ domain: "c.test", upstreamPort: appA.port }]),
    ]);
    expect(first.outcome.ok).toBe(true);
    expect(second.outcome.ok).toBe(true);
    expect((await visit("a.test")).status).toBe(404);
    expect(await visit("c.test")).toEqual({ status: 200, body: "app-a" });
  });

  it("switches routes under a stream of new connections without resetting any of them", async () => {
    // Eight visitors opening a connection per request, as browsers arriving during a deploy do, while
    // the route switches back and forth; each switch is a reload that reopens Caddy's listeners.
    expect((await sync(routesAB())).outcome.ok).toBe(true);
    let switching = true;
    const failed: string[] = [];
    let answered = 0;
    const visitors = Array.from({ length: 8 }, async () => {
      while (switching) {
        const answer = await visit("a.test").catch((error: Error) => ({ status: 0, body: error.message }));
        if (answer.status === 200) answered++;
        else failed.push(`${answer.status} ${answer.body}`);
      }
    });
    for (let i = 0; i < 20; i++) {
      const { outcome, ctx } = await sync(i % 2 ? routesAB() : [{ domain: "a.test", upstreamPort: appB.port }]);
      expect(outcome.ok).toBe(true);
      expect(ctx.lines).toEqual([]);
    }
    switching = false;
    await Promise.all(visitors);
    expect(failed.slice(0, 5)).toEqual([]);
    expect(answered).toBeGreaterThan(100);
    expect(readFileSync(MIGRATE_REQ_SYSCTL, "utf8").trim()).toBe("1");
  });

  it("comes back with the last synced routes after Caddy restarts", async () => {
    const { outcome } = await sync([
      { domain: "b.test", upstreamPort: appB.port },
      { domain: "c.test", upstreamPort: appA.port },
    ]);
    expect(outcome.ok).toBe(true);
    // A refused sync afterwards must not be what the restart picks up.
    expect((await sync(routesAB(), context({ listen: ["127.0.0.1:99999"] }))).outcome.ok).toBe(false);

    await caddy.restart();

    expect(await visit("b.test")).toEqual({ status: 200, body: "app-b" });
    expect(await visit("c.test")).toEqual({ status: 200, body: "app-a" });
    expect((await visit("a.test")).status).toBe(404);
    // The admin endpoint came back where the runner expects it, so the next sync works.
    expect((await sync(routesAB())).outcome.ok).toBe(true);
    expect(await visit("a.test")).toEqual({ status: 200, body: "app-a" });
  });
});
