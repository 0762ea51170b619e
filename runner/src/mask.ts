/** Masking of secret values in everything a job reports (log lines, progress, results). */

export const MASK = "[secret]";

/**
 * Replaces every secret value with "[secret]". Longer secrets first, so one that contains another
 * is masked whole; the JSON-escaped form too (secrets inside raw JSON lines); and the lines of a
 * multi-line secret (a key file), as output is split into lines before it is masked.
 */
export function secretMasker(secrets: readonly string[]): (text: string) => string {
  const needles = new Set<string>();
  for (const secret of secrets) {
    if (!secret) continue;
    needles.add(secret);
    needles.add(JSON.stringify(secret).slice(1, -1));
    if (/[\r\n]/.test(secret)) {
      for (const line of secret.split(/\r?\n/)) if (line.trim().length >= 8) needles.add(line.trim());
    }
  }
  const sorted = [...needles].sort((a, b) => b.length - a.length);
  if (sorted.length === 0) return (text) => text;
  return (text) => sorted.reduce((masked, needle) => masked.split(needle).join(MASK), text);
}
