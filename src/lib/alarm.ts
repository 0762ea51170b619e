/**
 * A Durable Object has one alarm; objects with several kinds of deadline compute the earliest and
 * set it here, so no source can be forgotten or overwrite another's earlier time.
 */

/** The earliest of the given times, or null when there is none. */
export function earliest(times: readonly (number | null | undefined)[]): number | null {
  let min: number | null = null;
  for (const time of times) if (typeof time === "number" && (min === null || time < min)) min = time;
  return min;
}

/**
 * Makes the alarm fire no later than `at`: an alarm already due sooner is kept (when it fires, its
 * handler plans again), a later or stale one is moved forward.
 */
export async function scheduleAlarm(storage: DurableObjectStorage, at: number | null): Promise<void> {
  if (at === null) return;
  const now = Date.now();
  const current = await storage.getAlarm();
  if (current === null || at < current || current < now) await storage.setAlarm(Math.max(at, now + 10));
}
