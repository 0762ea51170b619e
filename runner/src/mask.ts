/** Masking of secret values in everything a job reports (log lines, progress, results). */

export const MASK = "[secret]";

/** Derived forms are masked only for secrets this long: shorter ones would mask ordinary text. */
const MIN_DERIVED_LENGTH = 8;

/**
 * The forms a secret takes in output: itself, JSON-escaped (inside raw JSON lines), URL-encoded (in a
 * URL's userinfo or query), base64 and base64url (printed by a curious program), and base64 of
 * `x-access-token:<secret>` (the Basic header git sends a repository token in).
 */
function formsOf(secret: string): string[] {
  const forms = [secret, JSON.stringify(secret).slice(1, -1)];
  if (secret.length < MIN_DERIVED_LENGTH) return forms;
  const base64 = (text: string) => Buffer.from(text, "utf8").toString("base64");
  forms.push(encodeURIComponent(secret), base64(secret), base64(secret).replace(/=+$/, ""), Buffer.from(secret, "utf8").toString("base64url"), base64(`x-access-token:${secret}`));
  return forms;
}

/**
 * Replaces every secret value with "[secret]". Longer forms first, so one that contains another is
 * masked whole; and the lines of a multi-line secret (a key file), as output is split into lines
 * before it is masked.
 */
export function secretMasker(secrets: readonly string[]): (text: string) => string {
  const needles = new Set<string>();
  for (const secret of secrets) {
    if (!secret) continue;
    for (const form of formsOf(secret)) needles.add(form);
    if (/[\r\n]/.test(secret)) {
      for (const line of secret.split(/\r?\n/)) if (line.trim().length >= 8) needles.add(line.trim());
    }
  }
  const sorted = [...needles].filter(Boolean).sort((a, b) => b.length - a.length);
  if (sorted.length === 0) return (text) => text;
  return (text) => sorted.reduce((masked, needle) => masked.split(needle).join(MASK), text);
}
