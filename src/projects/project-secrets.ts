/**
 * A project's secrets (`project_secrets`): sealed with AES-GCM under the "project-secrets" key, each
 * bound to its project and name (moved to another row, it no longer opens). Values leave this module
 * only for a release's env file; every view of them is names, kinds and "set".
 */
import { and, eq, inArray, sql } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { projectSecrets } from "../db/schema.ts";
import { newId } from "../lib/crypto.ts";
import { openText, sealText } from "../lib/secrets.ts";
import type { EnvKind, SecretView } from "../shared/deploys.ts";

const context = (projectId: string, name: string) => `${projectId}:${name}`;

function sealRows(env: Pick<Env, "SECRETS_ENCRYPTION_KEY">, projectId: string, values: Record<string, string>, kind: EnvKind) {
  return Promise.all(
    Object.entries(values).map(async ([name, value]) => {
      const sealed = await sealText(env.SECRETS_ENCRYPTION_KEY, "project-secrets", value, context(projectId, name));
      return { id: newId("sec"), projectId, name, kind, ciphertext: sealed.ciphertext, iv: sealed.iv };
    }),
  );
}

/** Stores (or replaces) values; `kind` says where they came from. */
export async function putSecrets(env: Pick<Env, "SECRETS_ENCRYPTION_KEY">, db: Db, projectId: string, values: Record<string, string>, kind: EnvKind): Promise<void> {
  const rows = await sealRows(env, projectId, values, kind);
  if (rows.length === 0) return;
  await db
    .insert(projectSecrets)
    .values(rows)
    .onConflictDoUpdate({
      target: [projectSecrets.projectId, projectSecrets.name],
      set: { ciphertext: sql`excluded.ciphertext`, iv: sql`excluded.iv`, kind: sql`excluded.kind`, updatedAt: new Date() },
    });
}

/** Stores values only where the project has none yet (generated infra secrets stay stable across redeploys). */
export async function putSecretsIfAbsent(env: Pick<Env, "SECRETS_ENCRYPTION_KEY">, db: Db, projectId: string, values: Record<string, string>, kind: EnvKind): Promise<void> {
  const rows = await sealRows(env, projectId, values, kind);
  if (rows.length) await db.insert(projectSecrets).values(rows).onConflictDoNothing();
}

/** Names, kinds and when each was set: never a value. */
export async function secretViews(db: Db, projectId: string): Promise<SecretView[]> {
  const rows = await db
    .select({ name: projectSecrets.name, kind: projectSecrets.kind, updatedAt: projectSecrets.updatedAt })
    .from(projectSecrets)
    .where(eq(projectSecrets.projectId, projectId))
    .orderBy(projectSecrets.name);
  return rows.map((row) => ({ name: row.name, kind: row.kind as EnvKind, set: true as const, updatedAt: row.updatedAt.toISOString() }));
}

/** The plain values of `names` (those the project has), for a release's env file only. */
export async function openSecrets(env: Pick<Env, "SECRETS_ENCRYPTION_KEY">, db: Db, projectId: string, names: readonly string[]): Promise<Record<string, string>> {
  if (names.length === 0) return {};
  const rows = await db
    .select()
    .from(projectSecrets)
    .where(and(eq(projectSecrets.projectId, projectId), inArray(projectSecrets.name, [...names])));
  const values: Record<string, string> = {};
  for (const row of rows) values[row.name] = await openText(env.SECRETS_ENCRYPTION_KEY, "project-secrets", { ciphertext: row.ciphertext, iv: row.iv }, context(projectId, row.name));
  return values;
}

export async function deleteSecret(db: Db, projectId: string, name: string): Promise<boolean> {
  const deleted = await db
    .delete(projectSecrets)
    .where(and(eq(projectSecrets.projectId, projectId), eq(projectSecrets.name, name)))
    .returning({ id: projectSecrets.id });
  return deleted.length > 0;
}
