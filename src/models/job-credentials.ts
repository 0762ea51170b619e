/**
 * What a container a model drives is given instead of the factory's keys, each good for one job:
 *
 * - a model credential (`orj_…`): the relay (/relay/v1, routes/relay.ts) takes it in place of an
 *   API key, swaps it for the factory's own, prices each call against the credential's spend cap and
 *   the project's budget, and refuses it once the job is over;
 * - a repository token limited to the project's one repository, which GitHub itself ends when the job
 *   does (it is revoked then, not left to run out its hour).
 *
 * Only the model credential's hash is kept; the repository token is kept sealed, and only until it
 * is revoked, because revoking it needs it.
 */
import { and, eq, isNotNull, isNull, lt, or, sql } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { jobCredentials } from "../db/schema.ts";
import { newId, randomToken, sha256Hex } from "../lib/crypto.ts";
import { openText, packSealed, sealText, unpackSealed } from "../lib/secrets.ts";
import { githubAppConfig, revokeToken } from "../projects/github.ts";
import type { AgentName } from "./llm.ts";

const MODEL_KEY_PREFIX = "orj_";

export type JobCredentialRow = typeof jobCredentials.$inferSelect;

type CredentialEnv = Pick<Env, "SECRETS_ENCRYPTION_KEY"> & Partial<Pick<Env, "GITHUB_APP_ID" | "GITHUB_INSTALLATION_ID" | "GITHUB_APP_PRIVATE_KEY" | "GITHUB_API_URL">>;

export interface JobCredentialRequest {
  taskId: string;
  projectId: string | null;
  userId: string | null;
  /** The job within the task (`develop 2`): what `revokeJobCredentials` ends. */
  purpose: string;
  /** It ends on its own after this long, whatever happens to the job. */
  ttlSeconds: number;
  /** A model credential for this agent and model, spending at most this much. */
  model?: { agent: AgentName; name: string; spendCapUsd: number };
  /** The job's repository token, remembered (sealed) so that it can be revoked. */
  gitToken?: string;
}

/** Records the credentials of one job; returns the model credential to hand the container (null when none was asked for). */
export async function mintJobCredentials(env: CredentialEnv, db: Db, request: JobCredentialRequest): Promise<{ modelKey: string | null }> {
  const id = newId("jcr");
  const modelKey = request.model ? `${MODEL_KEY_PREFIX}${randomToken(40)}` : null;
  const gitToken = request.gitToken ? packSealed(await sealText(env.SECRETS_ENCRYPTION_KEY, "job-credentials", request.gitToken, id)) : null;
  await db.insert(jobCredentials).values({
    id,
    taskId: request.taskId,
    projectId: request.projectId,
    userId: request.userId,
    purpose: request.purpose,
    modelKeyHash: modelKey ? await sha256Hex(modelKey) : null,
    agent: request.model?.agent ?? "none",
    model: request.model?.name ?? "none",
    spendCapUsd: (request.model?.spendCapUsd ?? 0).toFixed(6),
    gitToken,
    expiresAt: new Date(Date.now() + request.ttlSeconds * 1000),
  });
  return { modelKey };
}

/** The live credential behind a model key the relay was shown, or null (unknown, revoked, expired). */
export async function credentialOfModelKey(db: Db, presented: string): Promise<JobCredentialRow | null> {
  if (!presented.startsWith(MODEL_KEY_PREFIX)) return null;
  const [row] = await db
    .select()
    .from(jobCredentials)
    .where(and(eq(jobCredentials.modelKeyHash, await sha256Hex(presented)), isNull(jobCredentials.revokedAt), sql`${jobCredentials.expiresAt} > now()`));
  return row ?? null;
}

/** Adds a call's cost to what the credential has spent. */
export async function chargeCredential(db: Db, id: string, costUsd: number): Promise<void> {
  await db
    .update(jobCredentials)
    .set({ spentUsd: sql`${jobCredentials.spentUsd} + ${costUsd.toFixed(6)}::numeric` })
    .where(eq(jobCredentials.id, id));
}

/**
 * Ends every credential of one job (its model key is refused from now on, its repository token revoked
 * at GitHub); without `purpose`, of every job of the task (it was cancelled, or its workflow stopped).
 */
export async function revokeJobCredentials(env: CredentialEnv, db: Db, taskId: string, purpose?: string): Promise<number> {
  const rows = await db
    .select()
    .from(jobCredentials)
    .where(and(eq(jobCredentials.taskId, taskId), purpose === undefined ? undefined : eq(jobCredentials.purpose, purpose), isNull(jobCredentials.revokedAt)));
  for (const row of rows) await revoke(env, db, row);
  return rows.length;
}

/**
 * For the scheduler: ends the credentials whose time ran out without their job ending them (a workflow
 * that stopped), and revokes again the repository tokens GitHub could not be asked to end before.
 */
export async function revokeExpiredCredentials(env: CredentialEnv, db: Db): Promise<number> {
  const rows = await db
    .select()
    .from(jobCredentials)
    .where(or(and(isNull(jobCredentials.revokedAt), lt(jobCredentials.expiresAt, sql`now()`)), and(isNotNull(jobCredentials.revokedAt), isNotNull(jobCredentials.gitToken))))
    .limit(200);
  for (const row of rows) await revoke(env, db, row);
  return rows.length;
}

/** GitHub's installation tokens end on their own after an hour: after that there is nothing left to revoke. */
const GIT_TOKEN_LIFETIME_MS = 3600_000;

async function revoke(env: CredentialEnv, db: Db, row: JobCredentialRow): Promise<void> {
  let gitToken = row.gitToken;
  if (gitToken) {
    const token = await openText(env.SECRETS_ENCRYPTION_KEY, "job-credentials", unpackSealed(gitToken), row.id);
    const revoked = await revokeToken(githubAppConfig(env), token).then(
      () => true,
      () => false,
    );
    // Kept (sealed) for the next sweep when GitHub could not be asked, until it has run out anyway.
    if (revoked || Date.now() - row.createdAt.getTime() > GIT_TOKEN_LIFETIME_MS) gitToken = null;
  }
  await db.update(jobCredentials).set({ revokedAt: row.revokedAt ?? new Date(), gitToken }).where(eq(jobCredentials.id, row.id));
}
