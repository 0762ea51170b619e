/**
 * Runner jobs (docs/design.md, "Contracts"): the envelope the control plane signs and the runner checks
 * before executing anything. Ed25519 (WebCrypto, the same code in workerd and Node 22) over the
 * RFC 8785 canonical JSON of the envelope, so both sides hash exactly the same bytes.
 */
import canonicalize from "canonicalize";
import { z } from "zod";
import { fromBase64url, toBase64url } from "./base64url.ts";
import { Traceparent } from "./trace.ts";

export const JobType = z.enum(["noop", "docker.run", "ansible.playbook", "caddy.sync", "health.check", "acceptance.check", "provision", "repo.scaffold", "release.logs"]);
export type JobType = z.infer<typeof JobType>;

export const JobEnvelope = z.strictObject({
  v: z.literal(1),
  id: z.string().min(1).max(100),
  /** The one runner this job is for (its audience). */
  runner: z.string().min(1).max(100),
  /** A string on the wire, checked against JobType after the signature, so an unknown type is refused as such. */
  type: z.string().min(1).max(50),
  taskId: z.string().min(1).max(100).optional(),
  payload: z.record(z.string(), z.unknown()),
  /** Issued-at and expiry, unix seconds. */
  iat: z.number().int().positive(),
  exp: z.number().int().positive(),
  nonce: z.string().min(16).max(100),
  /** The trace the job belongs to; the runner puts it on its reports and spans. */
  traceparent: Traceparent.optional(),
});
export type JobEnvelope = z.infer<typeof JobEnvelope>;

export const SignedJob = z.strictObject({ envelope: JobEnvelope, signature: z.string().min(1) });
export type SignedJob = z.infer<typeof SignedJob>;
/** What names a job the runner refuses before it could read it: its envelope's id, when there is a plausible one. */
export const SignedJobHead = z.object({ envelope: z.object({ id: z.string().max(100) }) });

/** Clock difference tolerated between control plane and runner. */
export const CLOCK_SKEW_SECONDS = 60;
/** The longest a job may stay valid: a bound on how long a runner must remember seen ids. */
export const MAX_JOB_LIFETIME_SECONDS = 24 * 3600;

const encoder = new TextEncoder();

/** Signs any JSON value (a job, a runner message, a connect proof) over its canonical form. */
export async function signValue(privateKey: CryptoKey, value: unknown): Promise<string> {
  return toBase64url(await crypto.subtle.sign("Ed25519", privateKey, canonicalBytes(value)));
}

/** Verifies a base64url Ed25519 signature over the canonical form of `value`; never throws. */
export async function verifyValue(publicKey: CryptoKey, value: unknown, signature: string): Promise<boolean> {
  try {
    return await crypto.subtle.verify("Ed25519", publicKey, fromBase64url(signature), canonicalBytes(value));
  } catch {
    return false;
  }
}

/** The exact bytes that are signed: the RFC 8785 canonical JSON of the value. */
function canonicalBytes(value: unknown): Uint8Array<ArrayBuffer> {
  const text = canonicalize(value);
  if (text === undefined) throw new Error("value cannot be canonicalised");
  // A copy typed over a plain ArrayBuffer, which WebCrypto's typings require in Node and workerd alike.
  return new Uint8Array(encoder.encode(text));
}

/**
 * Ed25519 private keys travel as the base64url of their 32-byte seed (the JOB_SIGNING_KEY secret,
 * the runner's config). WebCrypto imports only PKCS#8 or JWK, so the seed is wrapped in the fixed
 * PKCS#8 prefix for Ed25519 (RFC 8410).
 */
const PKCS8_ED25519_PREFIX = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

export async function importPrivateKey(seed: string): Promise<{ privateKey: CryptoKey; publicKey: string }> {
  const bytes = fromBase64url(seed);
  if (bytes.length !== 32) throw new Error("an Ed25519 private key is 32 bytes (base64url, 43 characters)");
  const pkcs8 = new Uint8Array([...PKCS8_ED25519_PREFIX, ...bytes]);
  const privateKey = await crypto.subtle.importKey("pkcs8", pkcs8, "Ed25519", true, ["sign"]);
  const jwk = (await crypto.subtle.exportKey("jwk", privateKey)) as JsonWebKey;
  if (!jwk.x) throw new Error("could not derive the public key");
  return { privateKey, publicKey: jwk.x };
}

/** A fresh key pair as seed + public key, both base64url: what enrollment and `npm run dev` generate. */
export async function generateKeySeed(): Promise<{ seed: string; publicKey: string }> {
  const pair = (await crypto.subtle.generateKey("Ed25519", true, ["sign", "verify"])) as CryptoKeyPair;
  const jwk = (await crypto.subtle.exportKey("jwk", pair.privateKey)) as JsonWebKey;
  if (!jwk.d || !jwk.x) throw new Error("could not export the key pair");
  return { seed: jwk.d, publicKey: jwk.x };
}

/** Imports a raw Ed25519 public key given as base64url (how runners and the control plane exchange them). */
export function importPublicKey(publicKey: string): Promise<CryptoKey> {
  return crypto.subtle.importKey("raw", fromBase64url(publicKey), "Ed25519", false, ["verify"]);
}

export async function signJob(privateKey: CryptoKey, envelope: JobEnvelope): Promise<SignedJob> {
  const checked = JobEnvelope.parse(envelope);
  return { envelope: checked, signature: await signValue(privateKey, checked) };
}

export type JobRefusal =
  | "malformed"
  | "bad_signature"
  | "wrong_runner"
  | "not_yet_valid"
  | "expired"
  | "lifetime_too_long"
  | "unknown_type"
  | "replayed";

export type JobCheck = { ok: true; envelope: JobEnvelope & { type: JobType } } | { ok: false; reason: JobRefusal; message: string };

/**
 * Everything a runner checks before running a job, in an order that does no work for forgeries:
 * shape, signature, audience, time window, job type, then replay (`seen` answers whether the id or nonce
 * was already accepted; the caller records them until `exp`).
 */
export async function verifyJob(
  input: unknown,
  options: { publicKey: CryptoKey; runnerId: string; now?: number; seen?: (id: string, nonce: string) => boolean | Promise<boolean> },
): Promise<JobCheck> {
  const parsed = SignedJob.safeParse(input);
  if (!parsed.success) return { ok: false, reason: "malformed", message: `malformed job: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}` };
  const { envelope, signature } = parsed.data;
  if (!(await verifyValue(options.publicKey, envelope, signature))) return { ok: false, reason: "bad_signature", message: `job ${envelope.id}: signature does not match the control plane's key` };
  if (envelope.runner !== options.runnerId) return { ok: false, reason: "wrong_runner", message: `job ${envelope.id} is for runner ${envelope.runner}, not ${options.runnerId}` };
  const now = options.now ?? Math.floor(Date.now() / 1000);
  if (envelope.iat > now + CLOCK_SKEW_SECONDS) return { ok: false, reason: "not_yet_valid", message: `job ${envelope.id} is issued in the future (iat ${envelope.iat}, now ${now})` };
  if (envelope.exp + CLOCK_SKEW_SECONDS <= now) return { ok: false, reason: "expired", message: `job ${envelope.id} expired at ${envelope.exp} (now ${now})` };
  if (envelope.exp - envelope.iat > MAX_JOB_LIFETIME_SECONDS) return { ok: false, reason: "lifetime_too_long", message: `job ${envelope.id} is valid for longer than ${MAX_JOB_LIFETIME_SECONDS} s` };
  const type = JobType.safeParse(envelope.type);
  if (!type.success) return { ok: false, reason: "unknown_type", message: `job ${envelope.id}: unknown job type "${envelope.type}" (this runner runs ${JobType.options.join(", ")})` };
  if (options.seen && (await options.seen(envelope.id, envelope.nonce))) return { ok: false, reason: "replayed", message: `job ${envelope.id} was already received` };
  return { ok: true, envelope: { ...envelope, type: type.data } };
}
