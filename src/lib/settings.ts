/**
 * The worker's numeric settings (wrangler.toml `[vars]`, overridable per environment), parsed once
 * per `env` with zod: a malformed value is a clear startup error naming it, not a NaN somewhere.
 */
import { z } from "zod";

const seconds = (fallback: number) => z.coerce.number().int().positive().default(fallback);
/** Empty strings count as unset, as they do in `.dev.vars`. */
const unsetIfEmpty = (value: unknown) => (value === "" ? undefined : value);

const Settings = z.object({
  TASK_STREAM_RETENTION_SECONDS: z.preprocess(unsetIfEmpty, seconds(7 * 24 * 3600)),
  VIEW_TOKEN_TTL_SECONDS: z.preprocess(unsetIfEmpty, seconds(3600)),
  ENROLLMENT_TOKEN_TTL_SECONDS: z.preprocess(unsetIfEmpty, seconds(3600)),
  RUNNER_ACK_LEASE_SECONDS: z.preprocess(unsetIfEmpty, seconds(15)),
  RUNNER_MISSING_AFTER_SECONDS: z.preprocess(unsetIfEmpty, seconds(300)),
  /** A workflow waiting on a job reads it back after this long without a wake-up (doubling, up to 10 minutes). */
  JOB_WAIT_SLICE_SECONDS: z.preprocess(unsetIfEmpty, seconds(30)),
  /** After a release takes over the route, the previous one keeps running this long for requests in flight. */
  DEPLOY_DRAIN_SECONDS: z.preprocess(unsetIfEmpty, seconds(10)),
  /** How long a new release has to answer its health check on its own port before it is called unhealthy (a check every 500 ms, at most 1,000 checks). */
  DEPLOY_HEALTH_SECONDS: z.preprocess(unsetIfEmpty, z.coerce.number().int().positive().max(500).default(15)),
  /** The most one Developer round's model credential may spend, in USD. */
  DEVELOPER_ROUND_BUDGET_USD: z.preprocess(unsetIfEmpty, z.coerce.number().positive().default(5)),
  /** How long a deploy waits for missing user secrets before it fails. */
  DEPLOY_SECRETS_TIMEOUT_SECONDS: z.preprocess(unsetIfEmpty, seconds(24 * 3600)),
});
export type Settings = z.infer<typeof Settings>;

const cache = new WeakMap<object, Settings>();

/** The settings of this environment; throws naming the variable when one is not a positive integer. */
export function settings(env: Partial<Record<keyof Settings, unknown>>): Settings {
  const cached = cache.get(env);
  if (cached) return cached;
  const parsed = Settings.safeParse(env);
  if (!parsed.success) {
    throw new Error(`invalid setting ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
  }
  cache.set(env, parsed.data);
  return parsed.data;
}
