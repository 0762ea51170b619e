/**
 * A lease held by a Lock Durable Object (src/durable/lock.ts), one object per lock name: what it
 * answers, and how to reach it.
 */
export interface Lease {
  holder: string;
  token: string;
  acquiredAt: string;
  expiresAt: string;
}

export type AcquireResult = { ok: true; lease: Lease; tookOver?: { holder: string; expiredAt: string } } | { ok: false; heldBy: string; expiresAt: string };

export function getLock(env: Env, name: string) {
  return env.LOCK.get(env.LOCK.idFromName(name));
}
