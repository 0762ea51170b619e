/**
 * A scheduler job under its Lock lease: acquired with a TTL, renewed while the job runs, released at
 * the end. When another run holds it, this run does nothing and says so; when a holder died, its lease
 * expires and the next run takes over (and says that too).
 */
import { getLock } from "../platform/lock.ts";
import type { Logger } from "../lib/log.ts";

export type LockedRun<T> = { ran: true; result: T } | { ran: false; heldBy: string; expiresAt: string };

export async function withLock<T>(env: Env, log: Logger, name: string, holder: string, ttlMs: number, work: () => Promise<T>): Promise<LockedRun<T>> {
  const lock = getLock(env, `scheduler:${name}`);
  const acquired = await lock.acquire(holder, ttlMs);
  if (!acquired.ok) {
    log.warn("scheduler job skipped: another run holds its lock", { job: name, holder, heldBy: acquired.heldBy, until: acquired.expiresAt });
    return { ran: false, heldBy: acquired.heldBy, expiresAt: acquired.expiresAt };
  }
  if (acquired.tookOver) log.warn("scheduler lock taken over from a run whose lease expired", { job: name, holder, from: acquired.tookOver.holder, expiredAt: acquired.tookOver.expiredAt });
  log.info("scheduler lock acquired", { job: name, holder, until: acquired.lease.expiresAt });
  const { token } = acquired.lease;
  // Renewed at a third of its TTL, so a long run keeps it and a dead one loses it soon.
  const renewal = setInterval(() => {
    lock.renew(token, ttlMs).then(
      (renewed) => renewed.ok || log.warn("scheduler lock lost while running", { job: name, holder }),
      () => undefined,
    );
  }, Math.max(500, Math.floor(ttlMs / 3)));
  try {
    return { ran: true, result: await work() };
  } finally {
    clearInterval(renewal);
    await lock.release(token).catch(() => false);
    log.info("scheduler lock released", { job: name, holder });
  }
}
