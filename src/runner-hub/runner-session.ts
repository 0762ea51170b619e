/**
 * One runner connection, as the RunnerHub sees it: the challenge it was sent, the signed hello that
 * answers it, and the signature and session checks every later message must pass. Pure functions
 * over the connection's state (kept in the socket's attachment), so they are tested without a socket.
 */
import type { PortRange } from "../shared/api.ts";
import { randomToken } from "../lib/crypto.ts";
import { verifyValue } from "../shared/jobs.ts";
import { connectProof, RunnerBody, RunnerBodyHead, RunnerMessage } from "../shared/runner-protocol.ts";

/** A socket that has not said hello within this is closed. */
export const AUTH_TIMEOUT_MS = 15_000;

/** What each socket remembers across hibernation (serializeAttachment). */
export interface SessionState {
  challenge: string;
  openedAt: number;
  authenticated: boolean;
  runnerId: string | null;
  concurrency: number;
  version: string | null;
  releasePorts: PortRange | null;
  memoryMb: number | null;
  /** Closed for not saying hello in time; it may linger until the peer completes the close. */
  closing?: boolean;
}

export type SessionVerdict =
  /** A valid hello: the session is authenticated from now on. */
  | { kind: "hello"; state: SessionState }
  /** A signed, well-formed message of this session. */
  | { kind: "body"; body: RunnerBody }
  /**
   * Signed by the runner and of this session, but not understood (an over-long report, say).
   * Closing would only bring the runner back with the same message, forever; the hub ends the job.
   */
  | { kind: "unreadable"; reportType: unknown; jobId: string | undefined; problem: string }
  | { kind: "close"; code: 4400 | 4401; reason: string };

export function newSession(now: number): SessionState {
  return { challenge: randomToken(32), openedAt: now, authenticated: false, runnerId: null, concurrency: 1, version: null, releasePorts: null, memoryMb: null };
}

/** Whether a not-yet-authenticated session has run out of time to say hello. */
export function helloOverdue(state: SessionState, now: number): boolean {
  return !state.authenticated && !state.closing && now - state.openedAt >= AUTH_TIMEOUT_MS;
}

/**
 * Checks one message from the runner against the session: the hello (its runner id and the
 * signature over this connection's challenge), then every message's signature and session.
 */
export async function readRunnerMessage(
  state: SessionState,
  raw: string | ArrayBuffer,
  runner: { runnerId: string; publicKey: CryptoKey },
): Promise<SessionVerdict> {
  let message: RunnerMessage;
  try {
    message = RunnerMessage.parse(JSON.parse(typeof raw === "string" ? raw : new TextDecoder().decode(raw)));
  } catch {
    return { kind: "close", code: 4400, reason: "malformed message" };
  }
  if (!state.authenticated) {
    if (message.type !== "session:hello") return { kind: "close", code: 4401, reason: "expected session:hello" };
    if (message.runnerId !== runner.runnerId) return { kind: "close", code: 4401, reason: "unknown runner id for this server" };
    if (!(await verifyValue(runner.publicKey, connectProof(message.runnerId, state.challenge), message.signature))) {
      return { kind: "close", code: 4401, reason: "the challenge signature does not match the enrolled runner key" };
    }
    return {
      kind: "hello",
      state: { ...state, authenticated: true, runnerId: message.runnerId, concurrency: message.concurrency, version: message.version, releasePorts: message.releasePorts ?? null, memoryMb: message.memoryMb ?? null },
    };
  }
  if (message.type !== "report:signed") return { kind: "close", code: 4400, reason: "already authenticated" };
  if (!(await verifyValue(runner.publicKey, message.body, message.signature))) return { kind: "close", code: 4401, reason: "bad message signature" };
  const head = RunnerBodyHead.safeParse(message.body).data;
  if (head?.session !== state.challenge) return { kind: "close", code: 4400, reason: "message from another session" };
  const body = RunnerBody.safeParse(message.body);
  if (body.success) return { kind: "body", body: body.data };
  return {
    kind: "unreadable",
    reportType: head.type,
    jobId: typeof head.jobId === "string" && head.jobId.length <= 100 ? head.jobId : undefined,
    problem: body.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ").slice(0, 500),
  };
}
