/**
 * Servers and their runners: registration, one-time enrollment tokens, and the status people see.
 */
import { and, eq, gt, sql } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { servers } from "../db/schema.ts";
import type { HubIdentity } from "../shared/api.ts";
import { AppError, notFound } from "../lib/app-error.ts";
import { newId, randomToken, sha256Hex } from "../lib/crypto.ts";
import { settings } from "../lib/settings.ts";
import type { CreateServer, ServerStatus, ServerView } from "../shared/api.ts";

export type ServerRow = typeof servers.$inferSelect;

/** What a ProvisionServerWorkflow run is started with (POST /api/servers/:id/provision). */
export interface ProvisionServerParams {
  taskId: string;
  handle: string;
  check: boolean;
  traceparent?: string;
}

/**
 * `online` while the runner is connected and heartbeating; `offline` once it disconnected (or went
 * quiet for three heartbeats); `missing` once it has been silent for RUNNER_MISSING_AFTER_SECONDS.
 */
export function serverStatus(row: ServerRow, env: Pick<Env, "RUNNER_MISSING_AFTER_SECONDS">, now = Date.now()): ServerStatus {
  if (row.status === "disabled" || row.status === "pending") return row.status;
  const silentMs = row.lastSeenAt ? now - row.lastSeenAt.getTime() : Number.POSITIVE_INFINITY;
  if (silentMs > settings(env).RUNNER_MISSING_AFTER_SECONDS * 1000) return "missing";
  if (row.status === "online" && silentMs > 30_000) return "offline";
  return row.status === "online" ? "online" : "offline";
}

export function serverView(row: ServerRow, env: Pick<Env, "RUNNER_MISSING_AFTER_SECONDS">): ServerView {
  return {
    id: row.id,
    handle: row.handle,
    host: row.host,
    labels: row.labels,
    capacity: row.capacity,
    baseDomain: row.baseDomain,
    publicHttpPort: row.publicHttpPort,
    status: serverStatus(row, env),
    runnerId: row.runnerId,
    enrolledAt: row.enrolledAt?.toISOString() ?? null,
    lastSeenAt: row.lastSeenAt?.toISOString() ?? null,
    createdAt: row.createdAt.toISOString(),
  };
}

export function hubIdentity(row: ServerRow): HubIdentity {
  return { serverId: row.id, handle: row.handle, runnerId: row.runnerId, runnerPublicKey: row.runnerPublicKey };
}

function enrollmentTtl(env: Pick<Env, "ENROLLMENT_TOKEN_TTL_SECONDS">, requested?: number): number {
  return requested ?? settings(env).ENROLLMENT_TOKEN_TTL_SECONDS;
}

async function newEnrollmentToken(ttlSeconds: number) {
  const token = `ort_${randomToken(40)}`;
  return { token, hash: await sha256Hex(token), expiresAt: new Date(Date.now() + ttlSeconds * 1000) };
}

export async function createServer(db: Db, env: Env, input: CreateServer) {
  const enrollment = await newEnrollmentToken(enrollmentTtl(env, input.enrollmentTtlSeconds));
  const [row] = await db
    .insert(servers)
    .values({
      id: newId("srv"),
      handle: input.handle,
      host: input.host,
      labels: input.labels,
      capacity: input.capacity,
      baseDomain: input.baseDomain ?? null,
      publicHttpPort: input.publicHttpPort ?? null,
      enrollmentTokenHash: enrollment.hash,
      enrollmentExpiresAt: enrollment.expiresAt,
    })
    .onConflictDoNothing({ target: servers.handle })
    .returning();
  if (!row) throw new AppError("conflict", `A server with handle ${input.handle} already exists`);
  return { server: row, enrollment: { token: enrollment.token, expiresAt: enrollment.expiresAt.toISOString() } };
}

/** A fresh one-time token for a server (the old one stops working); the enrolled runner keeps working until replaced. */
export async function renewEnrollmentToken(db: Db, env: Env, handle: string, ttlSeconds?: number) {
  const enrollment = await newEnrollmentToken(enrollmentTtl(env, ttlSeconds));
  const [row] = await db
    .update(servers)
    .set({ enrollmentTokenHash: enrollment.hash, enrollmentExpiresAt: enrollment.expiresAt })
    .where(eq(servers.handle, handle))
    .returning();
  if (!row) notFound("Server");
  return { server: row, enrollment: { token: enrollment.token, expiresAt: enrollment.expiresAt.toISOString() } };
}

/**
 * Exchanges a one-time token and the runner's public key for a runner id. The token is consumed in
 * the same statement that checks it, so two racing enrollments cannot both succeed.
 */
export async function enrollRunner(db: Db, token: string, publicKey: string): Promise<ServerRow> {
  const hash = await sha256Hex(token);
  const [row] = await db
    .update(servers)
    .set({
      runnerId: newId("run"),
      runnerPublicKey: publicKey,
      enrollmentTokenHash: null,
      enrollmentExpiresAt: null,
      enrolledAt: sql`now()`,
      // Counted from enrollment, so a runner that never connects turns `missing` in time.
      lastSeenAt: sql`now()`,
      status: "offline",
    })
    .where(and(eq(servers.enrollmentTokenHash, hash), gt(servers.enrollmentExpiresAt, sql`now()`)))
    .returning();
  if (row) return row;
  const [expired] = await db.select({ id: servers.id }).from(servers).where(eq(servers.enrollmentTokenHash, hash));
  throw new AppError(
    "unauthorized",
    expired
      ? "This enrollment token has expired; ask an admin for a new one (POST /api/servers/<handle>/enrollment)"
      : "This enrollment token is not valid or was already used; ask an admin for a new one",
  );
}

export async function loadServer(db: Db, handle: string): Promise<ServerRow> {
  const [row] = await db.select().from(servers).where(eq(servers.handle, handle));
  if (!row) notFound("Server");
  return row;
}

export async function listServers(db: Db, page: { limit: number; offset: number }): Promise<ServerRow[]> {
  return db.select().from(servers).orderBy(servers.handle).limit(page.limit).offset(page.offset);
}

export async function loadServerByRunner(db: Db, runnerId: string): Promise<ServerRow | undefined> {
  const [row] = await db.select().from(servers).where(eq(servers.runnerId, runnerId));
  return row;
}
