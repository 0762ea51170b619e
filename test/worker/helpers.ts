import { env, exports } from "cloudflare:workers";

export const BASE = "http://orchestrator.test";

/** Sends a request through the worker's real fetch handler. */
export function call(path: string, init: RequestInit & { key?: string; json?: unknown } = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  // Each call from an address of its own, unless the test names one: the per-address limits (failed
  // sign-ins above all, which many tests make on purpose) then only count what a test means them to.
  if (!headers.has("cf-connecting-ip")) headers.set("cf-connecting-ip", `127.${Math.floor(Math.random() * 256)}.${Math.floor(Math.random() * 256)}.${Math.floor(Math.random() * 254) + 1}`);
  if (init.key) headers.set("authorization", `Bearer ${init.key}`);
  let body = init.body;
  if (init.json !== undefined) {
    headers.set("content-type", "application/json");
    body = JSON.stringify(init.json);
  }
  return exports.default.fetch(new Request(`${BASE}${path}`, { ...init, headers, body }));
}

export const adminKey = () => env.ADMIN_API_KEY;

/** A fresh user with a `user`-scoped key, made through the API as an admin would. */
export async function createUserWithKey(name = "someone"): Promise<{ userId: string; key: string }> {
  const userRes = await call("/api/users", { method: "POST", key: adminKey(), json: { name } });
  if (userRes.status !== 201) throw new Error(`create user: ${userRes.status} ${await userRes.text()}`);
  const { user } = await userRes.json<{ user: { id: string } }>();
  const keyRes = await call("/api/keys", { method: "POST", key: adminKey(), json: { userId: user.id, name: "test" } });
  if (keyRes.status !== 201) throw new Error(`create key: ${keyRes.status} ${await keyRes.text()}`);
  const { key } = await keyRes.json<{ key: string }>();
  return { userId: user.id, key };
}

export const uniqueName = (prefix = "p") => `${prefix}-${crypto.randomUUID().slice(0, 8)}`;
