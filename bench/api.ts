/**
 * `npm run bench -- api`: what the API's own layers cost a request, through the local stack
 * (wrangler dev, embedded Postgres behind the WebSocket proxy). `--clients` closed-loop clients
 * (each sends its next request when its last one is answered) run waves of one route at a time,
 * the three routes in turn with the order rotating wave by wave, so machine noise hits all of them alike:
 *   GET /api/projects   with a `user` key: the key lookup (one UPDATE … RETURNING), the per-key rate
 *                       limit, the request id and log line, then the projects query
 *   GET /healthz        the same request id and log line, one `select 1`
 *   GET /healthz/live   no database at all (context: the worker and HTTP alone)
 * One JSON line per route; the projects line carries the goal: auth, rate limiting and tracing
 * together add ≤ 2 ms at p50 (projects − healthz, which also counts the one query more).
 * Every client has its own key(s), each used well under API_RATE_LIMITER's 300 a minute, so no
 * request is limited; each line counts its 429 and 5xx answers (the goal needs zero). A round during
 * which wrangler dev reloaded the worker (a source file changed) is thrown away and done again.
 */
import { randomBytes } from "node:crypto";
import { startLocalDatabase } from "../scripts/lib/local-db.ts";
import { type Stack, startStack } from "../scripts/lib/local-stack.ts";
import { nowMs, percentile, round } from "./stats.ts";

const GOAL_P50_MS = 2;
/** Requests a key takes in the whole run at most: API_RATE_LIMITER allows 300 a minute. */
const KEY_BUDGET = 200;
/** Projects the user owns, so the list has rows to read and serialise. */
const PROJECTS = 5;
const MAX_WAVES = 20;
/** Rounds a worker reload (someone saving a source file) may spoil before the run gives up redoing them. */
const MAX_REDONE = 5;

interface Options {
  clients: number;
  requests: number;
  warmup: number;
}

interface Route {
  name: string;
  path: string;
  /** The key a client sends with its n-th request to this route (none: no header). */
  keyFor?: (client: number, n: number) => string;
  latencies: number[];
  statuses: Map<string, number>;
  firstFailure?: string;
  /** Measured waves: their p50s (for the paired difference) and their busy time (for the rate). */
  waveP50s: number[];
  busyMs: number;
  /** Requests each client has sent to this route, warm-up included (for its keys' budget). */
  sent: number[];
}

function route(name: string, path: string, clients: number, keyFor?: Route["keyFor"]): Route {
  return { name, path, keyFor, latencies: [], statuses: new Map(), waveP50s: [], busyMs: 0, sent: new Array<number>(clients).fill(0) };
}

/** One request; its time to the last byte of the body, in ms, and its status (or "error"). */
async function hit(stack: Stack, r: Route, client: number): Promise<{ ms: number; status: string; body?: string }> {
  const key = r.keyFor?.(client, r.sent[client] ?? 0);
  r.sent[client] = (r.sent[client] ?? 0) + 1;
  const started = nowMs();
  try {
    const res = await fetch(`${stack.url}${r.path}`, key ? { headers: { authorization: `Bearer ${key}` } } : {});
    const body = await res.text();
    return { ms: nowMs() - started, status: String(res.status), ...(res.status === 200 ? {} : { body }) };
  } catch (error) {
    const cause = error instanceof Error && error.cause instanceof Error ? ` (${error.cause.message})` : "";
    return { ms: nowMs() - started, status: "error", body: error instanceof Error ? `${error.message}${cause}` : String(error) };
  }
}

interface Wave {
  route: Route;
  times: number[];
  statuses: string[];
  firstFailure?: string;
  busyMs: number;
}

/** Every client sends `perClient` requests to `r`, one after another, all clients at once. */
async function wave(stack: Stack, r: Route, clients: number, perClient: number): Promise<Wave> {
  const result: Wave = { route: r, times: [], statuses: [], busyMs: 0 };
  const started = nowMs();
  await Promise.all(
    Array.from({ length: clients }, async (_, client) => {
      for (let i = 0; i < perClient; i++) {
        const { ms, status, body } = await hit(stack, r, client);
        result.times.push(ms);
        result.statuses.push(status);
        if (status !== "200") result.firstFailure ??= `GET ${r.path} ${status}: ${(body ?? "").slice(0, 300)}`;
      }
    }),
  );
  result.busyMs = nowMs() - started;
  return result;
}

function record(w: Wave): void {
  const r = w.route;
  r.busyMs += w.busyMs;
  r.latencies.push(...w.times);
  r.waveP50s.push(percentile(w.times, 50));
  for (const status of w.statuses) r.statuses.set(status, (r.statuses.get(status) ?? 0) + 1);
  r.firstFailure ??= w.firstFailure;
}

const count = (r: Route, match: (status: string) => boolean) => [...r.statuses].reduce((sum, [status, n]) => sum + (match(status) ? n : 0), 0);

function summary(r: Route) {
  const statuses = Object.fromEntries([...r.statuses].sort(([a], [b]) => a.localeCompare(b)));
  return {
    requests: r.latencies.length,
    p50_ms: round(percentile(r.latencies, 50)),
    p90_ms: round(percentile(r.latencies, 90)),
    p99_ms: round(percentile(r.latencies, 99)),
    max_ms: round(Math.max(...r.latencies)),
    requests_per_s: round(r.latencies.length / (r.busyMs / 1000), 0),
    // Closed loop at saturation: the machine time one request takes (its waves' busy time / requests).
    busy_ms_per_request: round(r.busyMs / r.latencies.length),
    statuses,
    rejected_429: count(r, (s) => s === "429"),
    server_errors_5xx: count(r, (s) => s.startsWith("5")),
    failed_to_connect: count(r, (s) => s === "error"),
    ...(r.firstFailure ? { first_failure: r.firstFailure } : {}),
  };
}

/** Until the worker answers again after a reload. */
async function waitForHealthy(stack: Stack): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const ok = await fetch(`${stack.url}/healthz`).then(
      async (res) => {
        await res.arrayBuffer();
        return res.status === 200;
      },
      () => false,
    );
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`the worker did not come back after a reload\n${stack.process.output().slice(-2000)}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** wrangler dev rebuilds and restarts the worker when a source file changes (someone editing the tree): a run across one is suspect. */
const reloads = (stack: Stack) => stack.process.output().split("Local server updated").length - 1;

async function setUp(stack: Stack, keyCount: number): Promise<string[]> {
  const user = await stack.api<{ user: { id: string } }>("/api/users", { json: { name: "bench-api" } });
  if (user.status !== 201) throw new Error(`POST /api/users: ${user.status} ${JSON.stringify(user.body)}`);
  const userId = user.body.user.id;
  for (let i = 1; i <= PROJECTS; i++) {
    const project = await stack.api("/api/projects", { json: { name: `bench-api-${i}`, description: "A project for the API benchmark to list.", ownerId: userId } });
    if (project.status !== 201) throw new Error(`POST /api/projects: ${project.status} ${JSON.stringify(project.body)}`);
  }
  const keys: string[] = [];
  // The admin key is not rate-limited: these may go ten at a time.
  for (let i = 0; i < keyCount; i += 10) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(10, keyCount - i) }, async (_, j) => {
        const res = await stack.api<{ key: string; apiKey: { scopes: string[] } }>("/api/keys", { json: { userId, name: `bench-api-${i + j}` } });
        if (res.status !== 201 || res.body.apiKey.scopes.join() !== "user") throw new Error(`POST /api/keys: ${res.status} ${JSON.stringify(res.body)}`);
        return res.body.key;
      }),
    );
    keys.push(...batch);
  }
  return keys;
}

export async function api(options: Options): Promise<void> {
  const { clients } = options;
  if (!(clients >= 1 && options.requests >= 1 && options.warmup >= 0)) throw new Error("--clients and --requests must be at least 1, --warmup at least 0");
  // Each measured wave: every client sends `perClient` requests to one route.
  const waves = Math.max(1, Math.min(MAX_WAVES, Math.floor(options.requests / clients)));
  const perClient = Math.ceil(options.requests / (waves * clients));
  const warmupPerClient = Math.ceil(options.warmup / clients);
  // A client's requests to the projects route, spread over its own keys so none nears the limit.
  const keysPerClient = Math.ceil((warmupPerClient + (waves + MAX_REDONE) * perClient + 1) / KEY_BUDGET);

  const db = await startLocalDatabase("bench_api");
  let stack: Stack | undefined;
  try {
    // LOG_LEVEL info, as deployed (wrangler.toml): every request writes its log line.
    stack = await startStack({ databaseUrl: db.databaseUrl, dbWsProxy: db.wsProxy, adminKey: `ork_bench${randomBytes(16).toString("hex")}`, logLevel: "info" });
    const s = stack;
    const keys = await setUp(s, clients * keysPerClient);
    const projects = route("get_api_projects", "/api/projects", clients, (client, n) => keys[client * keysPerClient + (n % keysPerClient)] ?? "");
    const healthz = route("get_healthz", "/healthz", clients, undefined);
    const live = route("get_healthz_live", "/healthz/live", clients, undefined);
    const routes = [projects, healthz, live];

    // The listing sees the user's projects, and only theirs.
    const listed = await s.api<{ projects: unknown[] }>("/api/projects", { key: keys[0] });
    if (listed.status !== 200 || listed.body.projects.length !== PROJECTS) throw new Error(`GET /api/projects with a user key: ${listed.status} ${JSON.stringify(listed.body).slice(0, 300)}`);
    projects.sent[0] = (projects.sent[0] ?? 0) + 1;

    // Warm-up (not measured): every key, the isolate, Postgres' caches.
    for (const r of routes) {
      const warm = await wave(s, r, clients, warmupPerClient);
      if (warm.firstFailure) throw new Error(`warm-up: ${warm.firstFailure}`);
    }

    // Rounds of one wave per route. A round across a worker reload (wrangler dev rebuilds when a source
    // file changes: requests stall or are cut) is thrown away and done again, up to MAX_REDONE times.
    let redone = 0;
    let spoiled = 0;
    const started = nowMs();
    for (let w = 0; w < waves; ) {
      const before = reloads(s);
      const done: Wave[] = [];
      // projects, healthz, live; healthz, live, projects; live, projects, healthz; …
      for (let i = 0; i < routes.length; i++) {
        const r = routes[(w + i) % routes.length];
        if (r) done.push(await wave(s, r, clients, perClient));
      }
      const during = reloads(s) - before;
      if (during > 0 && redone < MAX_REDONE) {
        redone++;
        await waitForHealthy(s);
        continue;
      }
      if (during > 0) spoiled++;
      done.forEach(record);
      w++;
    }
    const elapsedMs = nowMs() - started;

    const maxPerKey = Math.max(...projects.sent.map((n) => Math.ceil(n / keysPerClient)));
    const p = summary(projects);
    const h = summary(healthz);
    const l = summary(live);
    const clean = [p, h, l].every((x) => x.rejected_429 + x.server_errors_5xx + x.failed_to_connect === 0 && x.statuses["200"] === x.requests);
    const diffP50 = p.p50_ms - h.p50_ms;
    // The same difference wave by wave: each projects wave against the healthz wave next to it in the same round.
    const byWave = projects.waveP50s.map((value, i) => value - (healthz.waveP50s[i] ?? Number.NaN)).filter(Number.isFinite);
    const common = { bench: "api", clients, waves, requests_per_client_per_wave: perClient, warmup_per_route: warmupPerClient * clients, rounds_redone_after_reload: redone };
    const warning = spoiled > 0 ? { warning: `wrangler dev reloaded the worker during ${spoiled} kept round(s) (a source file changed): the figures are suspect` } : {};
    console.log(
      JSON.stringify({
        ...common,
        case: projects.name,
        auth: "user key (UPDATE … RETURNING lookup + API_RATE_LIMITER)",
        keys: keys.length,
        max_requests_per_key: maxPerKey,
        projects_listed: PROJECTS,
        ...p,
        minus_healthz_p50_ms: round(diffP50),
        minus_healthz_p99_ms: round(p.p99_ms - h.p99_ms),
        minus_healthz_p50_by_wave_ms: { min: round(Math.min(...byWave)), median: round(percentile(byWave, 50)), max: round(Math.max(...byWave)) },
        minus_healthz_live_p50_ms: round(p.p50_ms - l.p50_ms),
        minus_healthz_busy_ms_per_request: round(p.busy_ms_per_request - h.busy_ms_per_request),
        goal: `auth, rate limiting and tracing together add ≤ ${GOAL_P50_MS} ms at p50 (GET /api/projects − GET /healthz; the difference also holds one query more)`,
        all_answers_200: clean,
        meets_goal: clean && diffP50 <= GOAL_P50_MS,
        run_ms: round(elapsedMs, 0),
        ...warning,
      }),
    );
    console.log(JSON.stringify({ ...common, case: healthz.name, ...h, ...warning }));
    console.log(JSON.stringify({ ...common, case: live.name, ...l, ...warning }));
  } finally {
    await stack?.stop();
    await db.stop();
  }
}
