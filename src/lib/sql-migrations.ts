/**
 * Numbered schema migrations for a Durable Object's SQLite storage, like the Postgres ones: each
 * runs once, in order, inside one transaction with the version bump, so a store is always at one
 * known version. Durable Objects refuse `PRAGMA user_version` (SQLITE_AUTH), so the version lives
 * in a one-row `schema_version` table.
 */

export interface SqlMigration {
  /** 1, 2, 3…: the version the store is at once this migration has run. */
  version: number;
  /** What it changes, for the log line and for readers. */
  name: string;
  up(sql: SqlStorage): void;
}

/** The store's schema version: 0 for a store that has never been migrated. */
export function schemaVersion(sql: SqlStorage): number {
  sql.exec(`CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`);
  return sql.exec<{ version: number }>(`SELECT version FROM schema_version`).toArray()[0]?.version ?? 0;
}

/**
 * Brings the store up to the last migration. Call it synchronously at the top of the constructor:
 * no request can reach the object before the constructor returns, so nothing reads an old schema
 * (what `blockConcurrencyWhile` gives asynchronous initialisation).
 * Returns the migrations that ran.
 */
export function migrate(storage: DurableObjectStorage, migrations: readonly SqlMigration[]): SqlMigration[] {
  const ordered = [...migrations].sort((a, b) => a.version - b.version);
  ordered.forEach((migration, index) => {
    if (migration.version !== index + 1) throw new Error(`migrations must be numbered 1, 2, 3… (found ${migration.version} at position ${index + 1})`);
  });
  const ran: SqlMigration[] = [];
  storage.transactionSync(() => {
    const current = schemaVersion(storage.sql);
    const latest = ordered.length;
    if (current > latest) throw new Error(`this store is at schema version ${current}, newer than this code knows (${latest})`);
    if (current === latest) return;
    for (const migration of ordered.slice(current)) {
      migration.up(storage.sql);
      ran.push(migration);
    }
    storage.sql.exec(`DELETE FROM schema_version`);
    storage.sql.exec(`INSERT INTO schema_version (version) VALUES (?)`, latest);
  });
  return ran;
}

/** The columns a table has (empty when the table does not exist). */
export function columnsOf(sql: SqlStorage, table: string): Set<string> {
  return new Set(sql.exec<{ name: string }>(`PRAGMA table_info(${JSON.stringify(table)})`).toArray().map((column) => column.name));
}

/** Adds a column unless the table already has it: for stores made before versioning began. */
export function addColumnIfMissing(sql: SqlStorage, table: string, column: string, definition: string): void {
  if (!columnsOf(sql, table).has(column)) sql.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${definition}`);
}
