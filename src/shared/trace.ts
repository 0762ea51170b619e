/**
 * W3C Trace Context (`traceparent`), carried by job envelopes, runner messages and task events so
 * one trace can follow a piece of work from the request that started it to the runner's job.
 */
import * as z from "zod";

/** `00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>`; all-zero ids are invalid. */
export const Traceparent = z
  .string()
  .regex(/^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$/, "must be a W3C traceparent (00-<trace id>-<span id>-<flags>)");
export type Traceparent = z.infer<typeof Traceparent>;

/** The trace id inside a traceparent. */
export function traceIdOf(traceparent: string): string {
  return traceparent.slice(3, 35);
}

/** A traceparent from a header value, or undefined when it is absent or malformed (never an error). */
export function parseTraceparent(value: string | null | undefined): Traceparent | undefined {
  const parsed = Traceparent.safeParse(value?.trim().toLowerCase());
  return parsed.success ? parsed.data : undefined;
}

const hex = (bytes: number) => Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (b) => b.toString(16).padStart(2, "0")).join("");

/** A new span in the trace `traceId` (as a task event carries it), or a new trace when it is not one. */
export function traceparentIn(traceId: string | undefined): Traceparent {
  return parseTraceparent(traceId ? `00-${traceId}-${hex(8)}-01` : undefined) ?? newTraceparent();
}

/** A new trace (random ids, sampled): for work that arrives without one. */
export function newTraceparent(): Traceparent {
  return `00-${hex(16)}-${hex(8)}-01`;
}
