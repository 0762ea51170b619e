/**
 * health.check through a real Caddy on loopback: routes synced with caddy.sync, upstreams that answer,
 * fail, recover on the third try, or never answer. And acceptance.check, the spec's checks, through the
 * same Caddy and straight to an upstream.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type TestCaddy, type Upstream, startCaddy, startUpstream } from "../../scripts/lib/caddy.ts";
import { freePort, freePortIn, TEST_RELEASE_PORTS } from "../../scripts/lib/ports.ts";
import { AcceptanceCheckPayload, CaddySyncPayload, HealthCheckPayload } from "../../src/shared/job-payloads.ts";
import { acceptanceCheck } from "../src/executors/acceptance-check.ts";
import { caddySync } from "../src/executors/caddy-sync.ts";
import { healthCheck } from "../src/executors/health-check.ts";
import { adminConfig, adminRequest } from "../src/caddy-admin.ts";
import { recordingContext, testConfig } from "./context.ts";

let caddy: TestCaddy;
let app: Upstream;
let flaky: Upstream;
let hanging: Upstream;
/** An app to hold acceptance checks against: JSON that names the Host it was asked for, an echo, a 404, plain text. */
let checked: Upstream;

beforeAll(async () => {
  caddy = await startCaddy();
  app = await startUpstream("app-ok");
  // 503 twice, then healthy: a deployment that takes a moment to come up.
  flaky = await startUpstream("flaky", (_req, res, hit) => {
    if (hit < 3) res.writeHead(503).end("starting");
    else res.writeHead(200).end("ready");
  });
  hanging = await startUpstream("hanging", () => undefined); // accepts, never answers
  checked = await startUpstream("checked", (req, res) => {
    const path = req.url ?? "/";
    let body = "";
    req.on("data", (chunk: Buffer) => (body += chunk.toString()));
    req.on("end", () => {
      if (path === "/") res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ domain: req.headers.host, "a/b": { list: [1, { deep: true }] } }));
      else if (path === "/echo") res.writeHead(201, { "content-type": "application/json" }).end(JSON.stringify({ method: req.method, type: req.headers["content-type"], body }));
      else if (path === "/text") res.writeHead(200, { "content-type": "text/plain" }).end("plain words");
      else res.writeHead(404).end("no such page");
    });
  });
  const closedPort = await freePortIn(TEST_RELEASE_PORTS); // nothing listens: Caddy answers 502

  const synced = await caddySync(
    CaddySyncPayload.parse({
      routes: [
        { domain: "ok.test", upstreamPort: app.port },
        { domain: "flaky.test", upstreamPort: flaky.port },
        { domain: "hang.test", upstreamPort: hanging.port },
        { domain: "down.test", upstreamPort: closedPort },
        { domain: "checked.test", upstreamPort: checked.port },
      ],
    }),
    context(),
  );
  expect(synced.ok, synced.message).toBe(true);
});

afterAll(async () => {
  await caddy?.stop();
  await Promise.all([app?.close(), flaky?.close(), hanging?.close(), checked?.close()]);
});

function context(httpUrl = caddy.httpUrl) {
  return recordingContext(
    testConfig({
      caddy: {
        adminSocket: caddy.adminSocket,
        httpUrl,
        configPath: caddy.configPath,
        listen: [`127.0.0.1:${caddy.httpPort}`],
        disableTls: true,
        binary: caddy.binary,
      },
    }),
  );
}

function check(input: Record<string, unknown>, ctx = context()) {
  return { ctx, result: healthCheck(HealthCheckPayload.parse({ intervalMs: 50, ...input }), ctx) };
}

const attemptLines = (ctx: ReturnType<typeof context>) => ctx.lines.map((line) => line.line).filter((line) => line.startsWith("attempt "));

describe("health.check", () => {
  it("is healthy when the site answers an expected status with the expected body", async () => {
    const { ctx, result } = check({ domain: "ok.test", expectBody: "app-ok", attempts: 3 });
    expect(await result).toMatchObject({ ok: true, message: "healthy after 1 attempt (status 200)", data: { attempts: 1, status: 200, url: `${caddy.httpUrl}/` } });
    expect(attemptLines(ctx)).toEqual(["attempt 1/3: 200 OK"]);
  });

  it("is unhealthy when the body lacks the expected text", async () => {
    const { result } = check({ domain: "ok.test", expectBody: "version 2", attempts: 2 });
    const outcome = await result;
    expect(outcome.ok).toBe(false);
    expect(outcome.message).toBe('unhealthy after 2 attempts: last 200 OK, body lacks "version 2"');
  });

  it("is unhealthy after every attempt when the upstream is down (502 from Caddy)", async () => {
    const { ctx, result } = check({ domain: "down.test", attempts: 3 });
    expect(await result).toMatchObject({
      ok: false,
      message: "unhealthy after 3 attempts: last 502 Bad Gateway",
      data: { attempts: 3, status: 502 },
    });
    expect(attemptLines(ctx)).toEqual(["attempt 1/3: 502 Bad Gateway", "attempt 2/3: 502 Bad Gateway", "attempt 3/3: 502 Bad Gateway"]);
  });

  it("is unhealthy for a domain Caddy has no route for", async () => {
    const { result } = check({ domain: "nowhere.test", attempts: 2 });
    expect(await result).toMatchObject({ ok: false, message: "unhealthy after 2 attempts: last 404 Not Found", data: { attempts: 2, status: 404 } });
  });

  it("says so when nothing listens at Caddy's address", async () => {
    const { result } = check({ domain: "ok.test", attempts: 2 }, context(`http://127.0.0.1:${await freePort()}`));
    const outcome = await result;
    expect(outcome.ok).toBe(false);
    expect(outcome.message).toMatch(/^unhealthy after 2 attempts: last connect ECONNREFUSED 127\.0\.0\.1:\d+$/);
    expect(outcome.data).toMatchObject({ attempts: 2, status: null });
  });

  it("succeeds on the attempt where the site becomes healthy", async () => {
    const { ctx, result } = check({ domain: "flaky.test", expectBody: "ready", attempts: 10 });
    expect(await result).toMatchObject({ ok: true, message: "healthy after 3 attempts (status 200)", data: { attempts: 3, status: 200 } });
    expect(attemptLines(ctx)).toEqual([
      "attempt 1/10: 503 Service Unavailable",
      "attempt 2/10: 503 Service Unavailable",
      "attempt 3/10: 200 OK",
    ]);
    expect(flaky.hits()).toBe(3);
  });

  it("stops promptly when aborted while waiting between attempts", async () => {
    const { ctx, result } = check({ domain: "down.test", attempts: 1000, intervalMs: 60_000 });
    const started = Date.now();
    setTimeout(() => ctx.abort("cancelled"), 200);
    const outcome = await result;
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(outcome).toEqual({ ok: false, message: "stopped after 1 attempt (cancelled)", data: { attempts: 1, status: 502 } });
  });

  it("stops promptly when aborted during a request that never gets an answer", async () => {
    const { ctx, result } = check({ domain: "hang.test", attempts: 5 });
    const started = Date.now();
    setTimeout(() => ctx.abort("timeout"), 300);
    const outcome = await result;
    expect(Date.now() - started).toBeLessThan(1_500);
    expect(outcome).toEqual({ ok: false, message: "stopped after 1 attempt (timeout)", data: { attempts: 1, status: null } });
    expect(attemptLines(ctx)).toEqual([]);
  });
});

describe("health.check with Caddy's TLS on", () => {
  let tls: TestCaddy;
  let httpPort: number;
  let httpsPort: number;

  beforeAll(async () => {
    tls = await startCaddy();
    httpPort = await freePort();
    httpsPort = await freePort();
    // As on a server: HTTPS for the site (here from Caddy's own CA, as for any *.localhost name), and
    // plain HTTP that only redirects to it. The local CA is not installed into this machine's trust store.
    const config = {
      admin: adminConfig(tls.adminSocket),
      apps: {
        http: {
          http_port: httpPort,
          https_port: httpsPort,
          servers: { site: { listen: [`127.0.0.1:${httpsPort}`], routes: [{ match: [{ host: ["ok.localhost"] }], handle: [{ handler: "reverse_proxy", upstreams: [{ dial: `127.0.0.1:${app.port}` }] }], terminal: true }] } },
        },
        pki: { certificate_authorities: { local: { install_trust: false } } },
      },
    };
    const loaded = await adminRequest(tls.adminSocket, "POST", "/load", JSON.stringify(config));
    expect(loaded.status, loaded.body).toBe(200);
  }, 60_000);

  afterAll(async () => {
    await tls?.stop();
  });

  const tlsContext = (httpUrl: string | undefined, disableTls: boolean) => recordingContext(testConfig({ caddy: { adminSocket: tls.adminSocket, ...(httpUrl ? { httpUrl } : {}), configPath: tls.configPath, listen: [`127.0.0.1:${httpsPort}`], disableTls, binary: tls.binary } }));

  it("reaches the site over HTTPS with the domain as SNI, where plain HTTP only redirects", async () => {
    const secure = await healthCheck(HealthCheckPayload.parse({ domain: "ok.localhost", path: "/", expectBody: "app-ok", attempts: 20, intervalMs: 250 }), tlsContext(`https://127.0.0.1:${httpsPort}`, false));
    expect(secure, JSON.stringify(secure)).toMatchObject({ ok: true, data: { status: 200 } });
    const plain = await healthCheck(HealthCheckPayload.parse({ domain: "ok.localhost", path: "/", attempts: 1 }), tlsContext(`http://127.0.0.1:${httpPort}`, false));
    expect(plain.ok).toBe(false);
    expect(plain.message).toMatch(/30[178]/);
  }, 60_000);

  it("defaults to HTTPS on 443 when TLS is on, and to HTTP on 80 with disableTls", async () => {
    const onTls = tlsContext(undefined, false);
    await healthCheck(HealthCheckPayload.parse({ domain: "nothing.localhost", attempts: 1 }), onTls);
    expect(onTls.steps[0]?.message).toContain("GET https://127.0.0.1/ with Host nothing.localhost");
    const plain = tlsContext(undefined, true);
    await healthCheck(HealthCheckPayload.parse({ domain: "nothing.localhost", attempts: 1 }), plain);
    expect(plain.steps[0]?.message).toContain("GET http://127.0.0.1/ with Host nothing.localhost");
  });
});

describe("acceptance.check", () => {
  const accept = (input: Record<string, unknown>) => acceptanceCheck(AcceptanceCheckPayload.parse(input), context());

  it("holds every check through Caddy with the project's Host: status, text, JSON values by pointer, a POST's body", async () => {
    const outcome = await accept({
      domain: "checked.test",
      checks: [
        { name: "knows its domain", path: "/", expect: { json: { pointer: "/domain", equals: "checked.test" } } },
        { name: "a key with a slash, an array, an object", path: "/", expect: { json: { pointer: "/a~1b/list/1", equals: { deep: true } } } },
        { name: "takes JSON", method: "POST", path: "/echo", body: '{"x": 1}', expect: { status: 201, bodyContains: '"type":"application/json"' } },
        { name: "takes text", method: "POST", path: "/echo", body: "hello", expect: { status: 201, json: { pointer: "/body", equals: "hello" } } },
      ],
    });
    expect(outcome).toMatchObject({ ok: true, message: "4 of 4 acceptance checks pass on checked.test through Caddy" });
    expect(outcome.data?.results).toEqual([
      { name: "knows its domain", ok: true, status: 200, detail: 'status 200, /domain is "checked.test"' },
      { name: "a key with a slash, an array, an object", ok: true, status: 200, detail: 'status 200, /a~1b/list/1 is {"deep":true}' },
      { name: "takes JSON", ok: true, status: 201, detail: 'status 201, the body contains "\\"type\\":\\"application/json\\""' },
      { name: "takes text", ok: true, status: 201, detail: 'status 201, /body is "hello"' },
    ]);
  });

  it("says which checks fail and why, straight to the release's port, and runs every check", async () => {
    const outcome = await accept({
      domain: "checked.test",
      upstreamPort: checked.port,
      checks: [
        { name: "a page that is not there", path: "/missing", expect: { status: 200 } },
        { name: "the wrong value", path: "/", expect: { json: { pointer: "/domain", equals: "other.test" } } },
        { name: "nothing there", path: "/", expect: { json: { pointer: "/a~1b/list/7", equals: 1 } } },
        { name: "not JSON", path: "/text", expect: { json: { pointer: "", equals: "plain words" } } },
        { name: "missing words", path: "/text", expect: { bodyContains: "other words" } },
        { name: "this one holds", path: "/text", expect: { bodyContains: "plain" } },
      ],
    });
    expect(outcome.ok).toBe(false);
    expect(outcome.message).toBe(`5 of 6 acceptance checks fail on the release on port ${checked.port}; the first, "a page that is not there": expected status 200, got 404`);
    // (toMatchObject: the body a failed check keeps is in each result too, as far as the line shows it.)
    expect(outcome.data?.results).toMatchObject([
      { name: "a page that is not there", ok: false, status: 404, detail: "expected status 200, got 404", body: "no such page" },
      { name: "the wrong value", ok: false, status: 200, detail: 'status 200, but /domain is "checked.test", not "other.test"' },
      { name: "nothing there", ok: false, status: 200, detail: "status 200, but the body has nothing at /a~1b/list/7" },
      { name: "not JSON", ok: false, status: 200, detail: "status 200, but the body is not JSON", body: "plain words" },
      { name: "missing words", ok: false, status: 200, detail: 'status 200, but the body lacks "other words"', body: "plain words" },
      { name: "this one holds", ok: true, status: 200, detail: 'status 200, the body contains "plain"' },
    ]);
  });

  it("refuses a port that is not one of the runner's release ports, and a check that is not one", async () => {
    const refused = await accept({ domain: "checked.test", upstreamPort: 22, checks: [{ name: "ssh", path: "/", expect: {} }] });
    expect(refused.ok).toBe(false);
    expect(refused.message).toContain("port 22 is not one of this runner's release ports");
    for (const checks of [[], [{ name: "no path", expect: {} }], [{ name: "a URL", path: "http://elsewhere.test/", expect: {} }], [{ name: "x", path: "/", expect: { json: { pointer: "domain", equals: 1 } } }]]) {
      expect(AcceptanceCheckPayload.safeParse({ domain: "checked.test", checks }).success, JSON.stringify(checks)).toBe(false);
    }
  });
});
