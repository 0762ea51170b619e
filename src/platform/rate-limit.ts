/**
 * Limits by client address, for what has no API key to limit by (Cloudflare's `ratelimits` binding):
 * - the routes anyone may call (runner enrollment, the live view and chat pages, the chat socket) at
 *   ADDRESS_RATE_LIMITER's rate per address and route;
 * - failed authentication of any kind (an API key, a view or chat link, an enrollment token, the
 *   webhook's secret) at AUTH_FAILURE_RATE_LIMITER's, so guessing is slow: past it, every further
 *   failure from that address is a 429 for the rest of the minute.
 * A limited request gets 429 `rate_limited` with `Retry-After`.
 */
import type { Context } from "hono";
import { createMiddleware } from "hono/factory";
import { AppError } from "../lib/app-error.ts";
import type { AppEnv } from "../lib/context.ts";

/** The period both bindings count over (wrangler.toml `simple.period`), which is what a client waits. */
export const RATE_LIMIT_PERIOD_SECONDS = 60;

/** The caller's address as Cloudflare saw it (wrangler dev sets it too). */
export function clientAddress(c: Context<AppEnv>): string {
  return c.req.header("cf-connecting-ip") ?? c.req.header("x-real-ip") ?? "unknown";
}

export function limitByAddress(scope: string) {
  return createMiddleware<AppEnv>(async (c, next) => {
    const { success } = await c.env.ADDRESS_RATE_LIMITER.limit({ key: `${scope}:${clientAddress(c)}` });
    if (!success) throw new AppError("rate_limited", "Too many requests from your address; retry in a minute");
    await next();
  });
}

/** Counts a failed authentication; throws `rate_limited` once the address is past its limit. */
export async function authFailed(c: Context<AppEnv>): Promise<void> {
  const { success } = await c.env.AUTH_FAILURE_RATE_LIMITER.limit({ key: clientAddress(c) });
  if (!success) throw new AppError("rate_limited", "Too many failed sign-ins from your address; retry in a minute");
}
