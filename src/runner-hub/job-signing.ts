/**
 * The control plane's job-signing key (the JOB_SIGNING_KEY secret: base64url of a 32-byte Ed25519
 * seed). Runners receive the public half at enrollment and run only what this key signed.
 */
import { importPrivateKey } from "../shared/jobs.ts";

let cached: { seed: string; key: Promise<{ privateKey: CryptoKey; publicKey: string }> } | null = null;

export function loadJobSigningKey(env: Pick<Env, "JOB_SIGNING_KEY">): Promise<{ privateKey: CryptoKey; publicKey: string }> {
  const seed = env.JOB_SIGNING_KEY;
  if (cached?.seed !== seed) {
    const key = importPrivateKey(seed).catch((error: unknown) => {
      cached = null;
      throw new Error(`JOB_SIGNING_KEY is not a usable Ed25519 key (${error instanceof Error ? error.message : String(error)}); generate one with \`node scripts/new-signing-key.ts\``);
    });
    cached = { seed, key };
  }
  return cached.key;
}
