import { randomToken, sha256Hex } from "../lib/crypto.ts";

const KEY_PREFIX = "ork_";

/** A new API key: the plain text (shown once), its SHA-256 (stored) and a short display prefix. */
export async function generateApiKey(): Promise<{ key: string; hash: string; prefix: string }> {
  // 40 characters of [a-z0-9] is about 206 bits: a fast hash is enough, nothing to brute-force.
  const key = `${KEY_PREFIX}${randomToken(40)}`;
  return { key, hash: await sha256Hex(key), prefix: key.slice(0, KEY_PREFIX.length + 8) };
}

/** The users row that stands for the bootstrap admin key (created by the first migration). */
export const BOOTSTRAP_ADMIN_USER_ID = "usr_admin";
