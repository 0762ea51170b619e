/** Small WebCrypto helpers shared by the worker's auth and secret handling. */

const encoder = new TextEncoder();

/** Lower-case hex SHA-256 of a string. */
export async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", encoder.encode(text));
  return [...new Uint8Array(digest)].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

/**
 * Compares two strings in time that does not depend on where they differ.
 * Both sides are hashed first so the comparison always runs on equal lengths.
 */
export async function constantTimeEqual(a: string, b: string): Promise<boolean> {
  const [ha, hb] = await Promise.all([
    crypto.subtle.digest("SHA-256", encoder.encode(a)),
    crypto.subtle.digest("SHA-256", encoder.encode(b)),
  ]);
  return crypto.subtle.timingSafeEqual(ha, hb);
}

const ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";

/** A random string of `length` characters from [a-z0-9], from a CSPRNG without modulo bias. */
export function randomToken(length: number): string {
  let out = "";
  while (out.length < length) {
    for (const byte of crypto.getRandomValues(new Uint8Array(length * 2))) {
      // 252 = 7 * 36: bytes at or above it would bias the first characters.
      if (byte < 252 && out.length < length) out += ALPHABET[byte % 36];
    }
  }
  return out;
}

/** A prefixed identifier such as `prj_3k9x…`: readable in logs, URLs and the CLI. */
export function newId(prefix: string): string {
  return `${prefix}_${randomToken(16)}`;
}
