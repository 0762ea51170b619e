import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { migrate } from "drizzle-orm/neon-serverless/migrator";
import { createDb } from "../../src/db/client.ts";

export const MIGRATIONS_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "migrations");

/**
 * Applies the SQL migrations in `migrations/` through the same Neon driver the worker uses,
 * so a Neon DATABASE_URL works unchanged; `wsProxy` is set only for local Postgres.
 */
export async function runMigrations(databaseUrl: string, wsProxy?: string): Promise<void> {
  const handle = createDb({ databaseUrl, wsProxy });
  try {
    await migrate(handle.db, { migrationsFolder: MIGRATIONS_DIR });
  } finally {
    await handle.close();
  }
}
