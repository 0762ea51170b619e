/**
 * Signed-job checks shared by the worker-runtime and Node test files: the control plane signs in
 * workerd and the runner verifies in Node, so both runtimes must agree byte for byte.
 */
import { expect } from "vitest";
import { importPublicKey, signJob, verifyJob, type JobEnvelope } from "../../src/shared/jobs.ts";
import { toBase64url } from "../../src/shared/base64url.ts";
import vector from "../fixtures/job-vector.json" with { type: "json" };

async function vectorKeys() {
  // Without "alg": Node writes "Ed25519" there and workerd accepts only "EdDSA"; it is optional.
  const { alg: _alg, ...jwk } = vector.privateKeyJwk;
  const privateKey = await crypto.subtle.importKey("jwk", jwk, "Ed25519", true, ["sign"]);
  const { d: _d, ...publicJwk } = jwk;
  const publicKey = await crypto.subtle.importKey("jwk", { ...publicJwk, key_ops: ["verify"] }, "Ed25519", true, ["verify"]);
  return { privateKey, publicKey };
}

/** The fixed vector signs to the same bytes here, whatever the key order of the envelope. */
export async function checkVector(): Promise<void> {
  const { privateKey, publicKey } = await vectorKeys();
  const envelope = vector.envelope as JobEnvelope;
  expect((await signJob(privateKey, envelope)).signature).toBe(vector.signature);
  const shuffled = Object.fromEntries(Object.entries(envelope).reverse()) as JobEnvelope;
  expect((await signJob(privateKey, shuffled)).signature).toBe(vector.signature);
  const check = await verifyJob({ envelope, signature: vector.signature }, { publicKey, runnerId: "run_vector", now: envelope.iat + 10 });
  expect(check.ok).toBe(true);
}

/** Every refusal, each with its specific reason. */
export async function checkRefusals(): Promise<void> {
  const { privateKey, publicKey } = await vectorKeys();
  const now = Math.floor(Date.now() / 1000);
  const base: JobEnvelope = { v: 1, id: "job_1", runner: "run_a", type: "noop", payload: {}, iat: now, exp: now + 300, nonce: "n".repeat(16) };
  const signed = await signJob(privateKey, base);
  const verify = (input: unknown, extra: Partial<Parameters<typeof verifyJob>[1]> = {}) => verifyJob(input, { publicKey, runnerId: "run_a", ...extra });
  const reason = async (input: unknown, extra: Partial<Parameters<typeof verifyJob>[1]> = {}) => {
    const check = await verify(input, extra);
    return check.ok ? "ok" : check.reason;
  };

  expect(await reason(signed)).toBe("ok");
  expect(await reason({ ...signed, envelope: { ...signed.envelope, payload: { image: "evil" } } })).toBe("bad_signature");
  const other = (await crypto.subtle.generateKey("Ed25519", true, ["sign", "verify"])) as CryptoKeyPair;
  expect(await reason(await signJob(other.privateKey, base))).toBe("bad_signature");
  expect(await reason(signed, { runnerId: "run_b" })).toBe("wrong_runner");
  expect(await reason(await signJob(privateKey, { ...base, iat: now - 900, exp: now - 300 }))).toBe("expired");
  expect(await reason(await signJob(privateKey, { ...base, iat: now + 600, exp: now + 900 }))).toBe("not_yet_valid");
  expect(await reason(await signJob(privateKey, { ...base, exp: now + 3 * 24 * 3600 }))).toBe("lifetime_too_long");
  expect(await reason(signed, { seen: (id) => id === "job_1" })).toBe("replayed");
  expect(await reason({ envelope: { ...base, type: "x".repeat(51) }, signature: signed.signature })).toBe("malformed");
  expect(await reason({ envelope: { ...base, type: "rm -rf" }, signature: signed.signature })).toBe("bad_signature");
  expect(await reason(await signJob(privateKey, { ...base, type: "shell.exec" }))).toBe("unknown_type");
  expect(await reason({ envelope: base, signature: "!!" })).toBe("bad_signature");
  const wrong = await verify(signed, { runnerId: "run_b" });
  expect(wrong.ok ? "" : wrong.message).toBe("job job_1 is for runner run_a, not run_b");
  // Round trip of the exported public key form.
  const exported = await crypto.subtle.exportKey("raw", other.publicKey);
  const raw = toBase64url(exported as ArrayBuffer);
  expect((await verifyJob(await signJob(other.privateKey, base), { publicKey: await importPublicKey(raw), runnerId: "run_a" })).ok).toBe(true);
}
