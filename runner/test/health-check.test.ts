/**
 * health.check through a real Caddy on loopback: routes synced with caddy.sync, upstreams that answer,
 * fail, recover on the third try, or never answer.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type TestCaddy, type Upstream, startCaddy, startUpstream } from "../../scripts/lib/caddy.ts";
import { freePort, freePortIn, TEST_RELEASE_PORTS } from "../../scripts/lib/ports.ts";
import { CaddySyncPayload, HealthCheckPayload } from "../../src/shared/job-payloads.ts";
import { caddySync } from "../src/executors/caddy-sync.ts";
import { healthCheck } from "../src/executors/health-check.ts";
import { adminConfig, adminRequest } from "../src/caddy-admin.ts";
import { recordingContext, testConfig } from "./context.ts";

let caddy: TestCaddy;
let app: Upstream;
let flaky: Upstream;
let hanging: Upstream;

beforeAll(async () => {
  caddy = await startCaddy();
  app = await startUpstream("app-ok");
  // 503 twice, then healthy: a deployment that takes a moment to come up.
  flaky = await startUpstream("flaky", (_req, res, hit) => {
    if (hit < 3) res.writeHead(503).end("starting");
    else res.writeHead(200).end("ready");
  });
  hanging = await startUpstream("hanging", () => undefined); // accepts, never answers
  const closedPort = await freePortIn(TEST_RELEASE_PORTS); // nothing listens: Caddy answers 502

  const synced = await caddySync(
    CaddySyncPayload.parse({
      routes: [
        { domain: "ok.test", upstreamPort: app.port },
        { domain: "flaky.test", upstreamPort: flaky.port },
        { domain: "hang.test", upstreamPort: hanging.port },
        { domain: "down.test", upstreamPort: closedPort },
      ],
    }),
    context(),
  );
  expect(synced.ok, synced.message).toBe(true);
});

afterAll(async () => {
  await caddy?.stop();
  await Promise.all([app?.close(), flaky?.close(), hanging?.close()]);
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
