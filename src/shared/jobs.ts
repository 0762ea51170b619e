/**
 * Runner jobs (DESIGN.md "Contracts"): the envelope the control plane signs and the runner checks
 * before executing anything. Ed25519 (WebCrypto, the same code in workerd and Node 22) over the
 * RFC 8785 canonical JSON of the envelope, so both sides hash exactly the same bytes.
 */
import canonicalize from "canonicalize";
import { z } from "zod";
import { fromBase64url, toBase64url } from "./base64url.ts";

export const JobType = z.enum(["noop", "docker.run", "ansible.playbook", "caddy.sync", "health.check", "provision"]);
export type JobType = z.infer<typeof JobType>;

export const JobEnvelope = z.strictObject({
  v: z.literal(1),
  id: z.string().min(1).max(100),
  /** The one runner this job is for (its audience). */
  runner: z.string().min(1).max(100),
  type: JobType,
  taskId: z.string().min(1).max(100).optional(),
  payload: z.record(z.string(), z.unknown()),
  /** Issued-at and expiry, unix seconds. */
  iat: z.number().int().positive(),
  exp: z.number().int().positive(),
  nonce: z.string().min(16).max(100),
});
export type JobEnvelope = z.infer<typeof JobEnvelope>;

export const SignedJob = z.strictObject({ envelope: JobEnvelope, signature: z.string().min(1) });
export type SignedJob = z.infer<typeof SignedJob>;

/** Clock difference tolerated between control plane and runner. */
export const CLOCK_SKEW_SECONDS = 60;
/** The longest a job may stay valid: a bound on how long a runner must remember seen ids. */
export const MAX_JOB_LIFETIME_SECONDS = 24 * 3600;

const encoder = new TextEncoder();

/** The exact bytes that are signed: RFC 8785 canonical JSON of the envelope. */
export function signingBytes(envelope: JobEnvelope): Uint8Array<ArrayBuffer> {
  const text = canonicalize(envelope);
  if (text === undefined) throw new Error("envelope cannot be canonicalised");
  // A copy typed over a plain ArrayBuffer, which WebCrypto's typings require in Node and workerd alike.
  return new Uint8Array(encoder.encode(text));
}

export async function generateSigningKeyPair(): Promise<{ privateKey: CryptoKey; publicKey: string }> {
  const pair = (await crypto.subtle.generateKey("Ed25519", true, ["sign", "verify"])) as CryptoKeyPair;
  const raw = (await crypto.subtle.exportKey("raw", pair.publicKey)) as ArrayBuffer;
  return { privateKey: pair.privateKey, publicKey: toBase64url(raw) };
}

/** Imports a raw Ed25519 public key given as base64url (how runners and the control plane exchange them). */
export function importPublicKey(publicKey: string): Promise<CryptoKey> {
  return crypto.subtle.importKey("raw", fromBase64url(publicKey), "Ed25519", false, ["verify"]);
}

export async function signJob(privateKey: CryptoKey, envelope: JobEnvelope): Promise<SignedJob> {
  const checked = JobEnvelope.parse(envelope);
  const signature = await crypto.subtle.sign("Ed25519", privateKey, signingBytes(checked));
  return { envelope: checked, signature: toBase64url(signature) };
}

export type JobRefusal =
  | "malformed"
  | "bad_signature"
  | "wrong_runner"
  | "not_yet_valid"
  | "expired"
  | "lifetime_too_long"
  | "replayed";

export type JobCheck = { ok: true; envelope: JobEnvelope } | { ok: false; reason: JobRefusal; message: string };

/**
 * Everything a runner checks before running a job, in an order that does no work for forgeries:
 * shape, signature, audience, time window, then replay (`seen` answers whether the id or nonce
 * was already accepted; the caller records them until `exp`).
 */
export async function verifyJob(
  input: unknown,
  options: { publicKey: CryptoKey; runnerId: string; now?: number; seen?: (id: string, nonce: string) => boolean | Promise<boolean> },
): Promise<JobCheck> {
  const parsed = SignedJob.safeParse(input);
  if (!parsed.success) return { ok: false, reason: "malformed", message: `malformed job: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}` };
  const { envelope, signature } = parsed.data;
  let valid: boolean;
  try {
    valid = await crypto.subtle.verify("Ed25519", options.publicKey, fromBase64url(signature), signingBytes(envelope));
  } catch {
    valid = false;
  }
  if (!valid) return { ok: false, reason: "bad_signature", message: `job ${envelope.id}: signature does not match the control plane's key` };
  if (envelope.runner !== options.runnerId) return { ok: false, reason: "wrong_runner", message: `job ${envelope.id} is for runner ${envelope.runner}, not ${options.runnerId}` };
  const now = options.now ?? Math.floor(Date.now() / 1000);
  if (envelope.iat > now + CLOCK_SKEW_SECONDS) return { ok: false, reason: "not_yet_valid", message: `job ${envelope.id} is issued in the future (iat ${envelope.iat}, now ${now})` };
  if (envelope.exp + CLOCK_SKEW_SECONDS <= now) return { ok: false, reason: "expired", message: `job ${envelope.id} expired at ${envelope.exp} (now ${now})` };
  if (envelope.exp - envelope.iat > MAX_JOB_LIFETIME_SECONDS) return { ok: false, reason: "lifetime_too_long", message: `job ${envelope.id} is valid for longer than ${MAX_JOB_LIFETIME_SECONDS} s` };
  if (options.seen && (await options.seen(envelope.id, envelope.nonce))) return { ok: false, reason: "replayed", message: `job ${envelope.id} was already received` };
  return { ok: true, envelope };
}
