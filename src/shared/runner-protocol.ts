/**
 * The WebSocket protocol between a RunnerHub (one per server) and its runner daemon.
 *
 * The runner connects outbound to `/runner/connect`; the hub sends a fresh challenge and the runner
 * answers with `session:hello`, signing the challenge with its enrolled key. After that:
 * - hub → runner: signed jobs, signed cancels, and acks of results (plain JSON, authenticity by signature);
 * - runner → hub: every message is a `RunnerBody` signed with the runner's key and bound to this
 *   connection's challenge (`session`), so a message cannot be forged or replayed into another session.
 *
 * Every message names what it is in `type`, as `noun:verb`. Runners before 0.2 named them in `t` and
 * `kind`: `/runner/connect` refuses them (by their user-agent) with what to do, see speaksThisProtocol.
 */
import { z } from "zod";
import { PortRange } from "./api.ts";
import { SignedJob } from "./jobs.ts";
import { MAX_LOG_LINE_CHARS, MAX_REPORT_MESSAGE_CHARS } from "./limits.ts";
import { Traceparent } from "./trace.ts";

export const CONNECT_PURPOSE = "orchestrator-runner-connect";
/** How often the runner reports in; the hub counts a runner silent for 3 beats as gone. */
export const HEARTBEAT_INTERVAL_MS = 10_000;

/** What the runner signs to prove its identity for one connection. */
export function connectProof(runnerId: string, challenge: string) {
  return { purpose: CONNECT_PURPOSE, runnerId, challenge };
}

export const CancelEnvelope = z.strictObject({
  v: z.literal(2),
  type: z.literal("job:cancel"),
  jobId: z.string().min(1).max(100),
  runner: z.string().min(1).max(100),
  iat: z.number().int().positive(),
  exp: z.number().int().positive(),
});
export type CancelEnvelope = z.infer<typeof CancelEnvelope>;

export const HubMessage = z.discriminatedUnion("type", [
  z.strictObject({ type: z.literal("session:challenge"), challenge: z.string().min(16) }),
  z.strictObject({ type: z.literal("session:welcome"), runnerId: z.string(), server: z.string() }),
  z.strictObject({ type: z.literal("job:offer"), job: z.unknown() }),
  z.strictObject({ type: z.literal("job:cancel"), cancel: CancelEnvelope, signature: z.string() }),
  /** The hub stored this job's result: the runner may forget its outbox copy. */
  z.strictObject({ type: z.literal("result:stored"), jobId: z.string() }),
]);
export type HubMessage = z.infer<typeof HubMessage>;

export const JobFailureReason = z.enum(["failed", "timeout", "cancelled", "interrupted", "refused", "undelivered"]);
export type JobFailureReason = z.infer<typeof JobFailureReason>;

const LogLine = z.strictObject({ stream: z.enum(["stdout", "stderr", "system"]), line: z.string().max(MAX_LOG_LINE_CHARS) });
export type LogLine = z.infer<typeof LogLine>;

/** Every report carries its session, its time and, when the job has one, the job's trace. */
const Base = { session: z.string(), at: z.number(), traceparent: Traceparent.optional() };
export const RunnerBody = z.discriminatedUnion("type", [
  z.strictObject({ ...Base, type: z.literal("job:accepted"), jobId: z.string() }),
  z.strictObject({
    ...Base,
    type: z.literal("job:refused"),
    /** Absent when the job was too malformed to name. */
    jobId: z.string().optional(),
    reason: z.string(),
    message: z.string(),
  }),
  z.strictObject({ ...Base, type: z.literal("job:progress"), jobId: z.string(), step: z.string().max(100), message: z.string().max(MAX_REPORT_MESSAGE_CHARS), data: z.record(z.string(), z.unknown()).optional() }),
  z.strictObject({ ...Base, type: z.literal("job:log"), jobId: z.string(), lines: z.array(LogLine).min(1).max(500) }),
  z.strictObject({
    ...Base,
    type: z.literal("job:result"),
    jobId: z.string(),
    ok: z.boolean(),
    message: z.string().max(MAX_REPORT_MESSAGE_CHARS),
    reason: JobFailureReason.optional(),
    exitCode: z.number().int().optional(),
    data: z.record(z.string(), z.unknown()).optional(),
  }),
  z.strictObject({ ...Base, type: z.literal("runner:heartbeat"), running: z.array(z.string()).max(1000), concurrency: z.number().int().positive() }),
]);
export type RunnerBody = z.infer<typeof RunnerBody>;
/**
 * What the hub reads of any body, understood or not: its session (checked before anything else), and
 * for one it cannot read, the type and job it names, to end that job with the reason.
 */
export const RunnerBodyHead = z.object({ session: z.unknown().optional(), type: z.unknown().optional(), jobId: z.unknown().optional() });
/** A body as the runner builds it, before `session` and `at` are stamped on. */
export type RunnerBodyInput = RunnerBody extends infer B ? (B extends RunnerBody ? Omit<B, "session" | "at" | "traceparent"> : never) : never;

export const RunnerMessage = z.discriminatedUnion("type", [
  z.strictObject({
    type: z.literal("session:hello"),
    runnerId: z.string().min(1).max(100),
    signature: z.string(),
    version: z.string().max(50),
    concurrency: z.number().int().positive().max(1000),
    /** The internal ports this runner's releases listen on: what caddy.sync may route to. */
    releasePorts: PortRange.optional(),
    /** The server's memory in MiB: what a change's preview may take is counted against it. */
    memoryMb: z.number().int().positive().max(16_777_216).optional(),
  }),
  z.strictObject({ type: z.literal("report:signed"), body: z.unknown(), signature: z.string() }),
]);
export type RunnerMessage = z.infer<typeof RunnerMessage>;

/**
 * Whether a runner, by the user-agent it connects with (`orchestrator-runner/<version>`), speaks this
 * protocol: 0.1 runners do not (they could not even read the challenge). Other clients are let through
 * to the challenge, which they must answer anyway.
 */
export function speaksThisProtocol(userAgent: string | undefined): boolean {
  return !/^orchestrator-runner\/0\.1\./.test(userAgent ?? "");
}

export { SignedJob };
