/**
 * Secrets at rest: AES-256-GCM (WebCrypto), with one key per purpose derived by HKDF from the
 * SECRETS_ENCRYPTION_KEY secret, so a key used for one kind of data never decrypts another.
 * Serves the RunnerHub's queued job secrets and `project_secrets` / pooled bot tokens alike.
 *
 * An optional `context` (additional authenticated data) binds a ciphertext to what it belongs to,
 * e.g. a job id: moved to another row, it no longer decrypts.
 */
import { fromBase64url, toBase64url } from "../shared/base64url.ts";

export type SecretPurpose = "job-secrets" | "project-secrets" | "telegram-bots" | "job-credentials" | "preview-secrets";

export interface Sealed {
  /** base64url of the ciphertext with its 16-byte GCM tag. */
  ciphertext: string;
  /** base64url of the 12-byte random IV. */
  iv: string;
}

const encoder = new TextEncoder();

async function keyFor(secret: string, purpose: SecretPurpose): Promise<CryptoKey> {
  if (!secret) throw new Error("SECRETS_ENCRYPTION_KEY is not set");
  const material = await crypto.subtle.importKey("raw", encoder.encode(secret), "HKDF", false, ["deriveKey"]);
  return crypto.subtle.deriveKey(
    { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(0), info: encoder.encode(`orchestrator/${purpose}/v1`) },
    material,
    purpose === "preview-secrets" ? { name: "HMAC", hash: "SHA-256", length: 256 } : { name: "AES-GCM", length: 256 },
    false,
    purpose === "preview-secrets" ? ["sign"] : ["encrypt", "decrypt"],
  );
}

/**
 * A secret value derived for `context` (64 hex characters, as a generated one): the same for the same
 * context, unguessable without SECRETS_ENCRYPTION_KEY, never stored. A change's preview's infra secrets.
 */
export async function derivedSecret(secret: string, context: string): Promise<string> {
  const mac = await crypto.subtle.sign("HMAC", await keyFor(secret, "preview-secrets"), encoder.encode(context));
  return [...new Uint8Array(mac)].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

function params(iv: Uint8Array<ArrayBuffer>, context: string | undefined): SubtleCryptoEncryptAlgorithm {
  return context === undefined ? { name: "AES-GCM", iv } : { name: "AES-GCM", iv, additionalData: encoder.encode(context) };
}

/** Encrypts `plaintext` under the purpose's key, with a fresh random IV. */
export async function sealText(secret: string, purpose: SecretPurpose, plaintext: string, context?: string): Promise<Sealed> {
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const ciphertext = await crypto.subtle.encrypt(params(iv, context), await keyFor(secret, purpose), encoder.encode(plaintext));
  return { ciphertext: toBase64url(ciphertext), iv: toBase64url(iv) };
}

/** Decrypts what sealText made; throws when the key, the context or the bytes do not match. */
export async function openText(secret: string, purpose: SecretPurpose, sealed: Sealed, context?: string): Promise<string> {
  const plain = await crypto.subtle.decrypt(params(fromBase64url(sealed.iv), context), await keyFor(secret, purpose), fromBase64url(sealed.ciphertext));
  return new TextDecoder().decode(plain);
}

/** One string for a single column: `v1.<iv>.<ciphertext>`. */
export function packSealed(sealed: Sealed): string {
  return `v1.${sealed.iv}.${sealed.ciphertext}`;
}

export function unpackSealed(packed: string): Sealed {
  const [version, iv, ciphertext, extra] = packed.split(".");
  if (version !== "v1" || !iv || !ciphertext || extra !== undefined) throw new Error("not a sealed value");
  return { iv, ciphertext };
}
