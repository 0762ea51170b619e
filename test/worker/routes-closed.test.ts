/**
 * Every route the app registers is closed to a caller without a credential (401), except the few
 * listed below, each with the reason it may be open. A new route that forgets its auth fails here.
 */
import { describe, expect, it } from "vitest";
import { app } from "../../src/worker.ts";
import { call } from "./helpers.ts";

/** `METHOD path` as Hono registers it → why it answers without a key. */
const PUBLIC: Record<string, string> = {
  "GET /healthz": "liveness with a database round trip: says nothing but ok",
  "GET /healthz/live": "liveness without the database",
  "GET /api/openapi.json": "the API's description: documentation",
  "GET /api/docs": "the API's reference page: documentation",
  "GET /chat": "the console's static page: it signs in over its WebSocket",
  "POST /telegram/webhook": "authorised by Telegram's secret header (401 without it, tested in the Telegram tests)",
  "POST /runner/enroll": "authorised by the one-time enrollment token in its body",
  "GET /runner/connect": "authorised by a challenge signed with the runner's enrolled key",
};

/** The routes with handlers (not `use` middleware), as `METHOD path`. */
function registered(): { method: string; path: string }[] {
  const seen = new Map<string, { method: string; path: string }>();
  for (const route of app.routes) {
    if (route.method === "ALL" || route.path.includes("*")) continue;
    seen.set(`${route.method} ${route.path}`, { method: route.method, path: route.path });
  }
  return [...seen.values()];
}

/** A path to call: each `:param` filled with a value of the right shape. */
const concrete = (path: string) => path.replace(/:(\w+)(\{[^}]*\})?/g, (_, name: string) => (name === "name" ? "tg:1" : `x-${name}`));

describe("every route is closed unless it says otherwise", () => {
  it("knows the app's routes, and every public one is still there", () => {
    const keys = new Set(registered().map((route) => `${route.method} ${route.path}`));
    // Enough routes that the walk below means something (the API alone has dozens).
    expect(keys.size).toBeGreaterThan(50);
    for (const open of Object.keys(PUBLIC)) expect(keys, `${open} is listed as public but not registered`).toContain(open);
  });

  it("answers 401 without a key on every other route", async () => {
    const open: string[] = [];
    for (const { method, path } of registered()) {
      if (`${method} ${path}` in PUBLIC) continue;
      const res = await call(concrete(path), { method, ...(method === "GET" || method === "HEAD" ? {} : { json: {} }) });
      if (res.status !== 401) open.push(`${method} ${path} answered ${res.status}`);
      await res.body?.cancel();
    }
    expect(open).toEqual([]);
  });

  it("answers 401 to a made-up key on every /api route", async () => {
    const refused: string[] = [];
    for (const { method, path } of registered()) {
      if (`${method} ${path}` in PUBLIC || !path.startsWith("/api/")) continue;
      const res = await call(concrete(path), { method, key: "ork_notakeynotakeynotakeynotakeynotakey0000", ...(method === "GET" ? {} : { json: {} }) });
      if (res.status !== 401) refused.push(`${method} ${path} answered ${res.status} to a made-up key`);
      await res.body?.cancel();
    }
    expect(refused).toEqual([]);
  });
});
