/**
 * Short-lived, task-scoped, signed tokens for the live task view. Browsers cannot send an
 * Authorization header on a WebSocket, so the view link carries one of these instead.
 * Format: base64url(JSON {t: taskId, exp: unix seconds}) "." base64url(HMAC-SHA256).
 * The HMAC key is derived (HKDF) from SECRETS_ENCRYPTION_KEY, so no extra secret is needed.
 */

import { fromBase64url, toBase64url } from "../shared/base64url.ts";

const encoder = new TextEncoder();

async function viewKey(secret: string, purpose = "view-token"): Promise<CryptoKey> {
  const material = await crypto.subtle.importKey("raw", encoder.encode(secret), "HKDF", false, ["deriveKey"]);
  return crypto.subtle.deriveKey(
    { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(0), info: encoder.encode(`orchestrator/${purpose}/v1`) },
    material,
    { name: "HMAC", hash: "SHA-256", length: 256 },
    false,
    ["sign", "verify"],
  );
}

/** Issues a token that lets its holder watch `taskId` until `ttlSeconds` from now. */
export async function signViewToken(secret: string, taskId: string, ttlSeconds: number, now = Date.now()): Promise<{ token: string; expiresAt: Date }> {
  const exp = Math.floor(now / 1000) + ttlSeconds;
  const payload = toBase64url(encoder.encode(JSON.stringify({ t: taskId, exp })));
  const signature = await crypto.subtle.sign("HMAC", await viewKey(secret), encoder.encode(payload));
  return { token: `${payload}.${toBase64url(signature)}`, expiresAt: new Date(exp * 1000) };
}

export type ViewTokenCheck = { ok: true } | { ok: false; reason: "malformed" | "bad_signature" | "expired" | "other_task" };

/** Checks signature (in constant time, through WebCrypto), expiry and task. */
export async function verifyViewToken(secret: string, token: string, taskId: string, now = Date.now()): Promise<ViewTokenCheck> {
  const [payload, signature, extra] = token.split(".");
  if (!payload || !signature || extra !== undefined) return { ok: false, reason: "malformed" };
  let signatureBytes: Uint8Array<ArrayBuffer>;
  let claims: { t?: unknown; exp?: unknown };
  try {
    signatureBytes = fromBase64url(signature);
    claims = JSON.parse(new TextDecoder().decode(fromBase64url(payload))) as { t?: unknown; exp?: unknown };
  } catch {
    return { ok: false, reason: "malformed" };
  }
  const valid = await crypto.subtle.verify("HMAC", await viewKey(secret), signatureBytes, encoder.encode(payload));
  if (!valid) return { ok: false, reason: "bad_signature" };
  if (typeof claims.exp !== "number" || claims.exp * 1000 <= now) return { ok: false, reason: "expired" };
  if (claims.t !== taskId) return { ok: false, reason: "other_task" };
  return { ok: true };
}

/**
 * The web console's sign-in: a token for one user's chat, bound to the API key it was made with (the
 * chat acts with that key's reach, and ends when the key is revoked), made the same way under its own
 * HMAC key (a view token is never a chat token, nor the other way round).
 */
export async function signChatToken(secret: string, userId: string, keyId: string, ttlSeconds: number, now = Date.now()): Promise<{ token: string; expiresAt: Date }> {
  const exp = Math.floor(now / 1000) + ttlSeconds;
  const payload = toBase64url(encoder.encode(JSON.stringify({ u: userId, k: keyId, exp })));
  const signature = await crypto.subtle.sign("HMAC", await viewKey(secret, "chat-token"), encoder.encode(payload));
  return { token: `${payload}.${toBase64url(signature)}`, expiresAt: new Date(exp * 1000) };
}

export async function verifyChatToken(secret: string, token: string, now = Date.now()): Promise<{ ok: true; userId: string; keyId: string } | { ok: false; reason: "malformed" | "bad_signature" | "expired" }> {
  const [payload, signature, extra] = token.split(".");
  if (!payload || !signature || extra !== undefined) return { ok: false, reason: "malformed" };
  let signatureBytes: Uint8Array<ArrayBuffer>;
  let claims: { u?: unknown; k?: unknown; exp?: unknown };
  try {
    signatureBytes = fromBase64url(signature);
    claims = JSON.parse(new TextDecoder().decode(fromBase64url(payload))) as { u?: unknown; k?: unknown; exp?: unknown };
  } catch {
    return { ok: false, reason: "malformed" };
  }
  if (!(await crypto.subtle.verify("HMAC", await viewKey(secret, "chat-token"), signatureBytes, encoder.encode(payload)))) return { ok: false, reason: "bad_signature" };
  if (typeof claims.exp !== "number" || claims.exp * 1000 <= now) return { ok: false, reason: "expired" };
  if (typeof claims.u !== "string" || !claims.u || typeof claims.k !== "string" || !claims.k) return { ok: false, reason: "malformed" };
  return { ok: true, userId: claims.u, keyId: claims.k };
}
