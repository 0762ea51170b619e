/**
 * Size limits that cross the runner → hub → task stream path, in one place so that what one hop
 * accepts the next one can store. Over-long text is truncated with a visible marker rather than
 * refused: a log line or a result must never be lost to its size.
 */

/** Longest `message` of a task event, and so the longest log line a runner reports. */
export const MAX_EVENT_MESSAGE_CHARS = 16_384;
/** Largest `data` one task event carries, in characters of JSON. */
export const MAX_EVENT_DATA_CHARS = 64 * 1024;
/** Longest log line in the runner protocol: exactly what a task event can hold. */
export const MAX_LOG_LINE_CHARS = MAX_EVENT_MESSAGE_CHARS;
/** Lines one job may stream into its task; the rest is counted and said, not sent. */
export const MAX_LOG_LINES_PER_JOB = 100_000;
/** Longest secret value a job may carry (docker secretEnv, ansible secretVars). */
export const MAX_SECRET_VALUE_CHARS = 100_000;
/** Longest free-text message in a runner report (progress, result, refusal). */
export const MAX_REPORT_MESSAGE_CHARS = 10_000;

/**
 * Shortens `text` to at most `max` characters, ending in a marker that says how much was cut, so a
 * reader can tell a truncated line from a short one. `alreadyCut` counts characters dropped before
 * `text` got here (a reader that kept only a line's start).
 */
export function truncateText(text: string, max: number, alreadyCut = 0): string {
  if (text.length <= max && alreadyCut === 0) return text;
  const marker = (cut: number) => ` … [truncated: ${cut} more characters]`;
  // The count never has more digits than the whole length, so this marker is the longest it can be.
  const keep = Math.min(text.length, max - marker(text.length + alreadyCut).length);
  return `${text.slice(0, Math.max(0, keep))}${marker(text.length - keep + alreadyCut)}`;
}

/**
 * Keeps a data object within `maxChars` of JSON. When it is larger, only its small scalar fields
 * stay (strings up to 200 characters, numbers, booleans, null) and `truncated` says what happened
 * and where the whole of it is kept (`whereFull`).
 */
export function fitData(data: Record<string, unknown>, maxChars: number, whereFull: string): Record<string, unknown> {
  const size = JSON.stringify(data).length;
  if (size <= maxChars) return data;
  const kept: Record<string, unknown> = {};
  let budget = maxChars - 400;
  for (const [key, value] of Object.entries(data)) {
    const small = value === null || typeof value === "number" || typeof value === "boolean" || (typeof value === "string" && value.length <= 200);
    if (!small) continue;
    const cost = key.length + JSON.stringify(value).length + 4;
    if (cost > budget) break;
    budget -= cost;
    kept[key] = value;
  }
  return { ...kept, truncated: `data was ${size} characters of JSON, over the ${maxChars} an event holds; ${whereFull}` };
}
