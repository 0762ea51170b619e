// What the bot keeps: SQLite (node:sqlite, built into Node) in DATA_DIR, which survives redeploys and
// rollbacks. WAL mode and a busy timeout: while a new release takes over, the old and the new one use
// the database at once.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";

export class Store {
  private readonly db: DatabaseSync;

  constructor(dir = process.env.DATA_DIR ?? "data") {
    mkdirSync(dir, { recursive: true });
    this.db = new DatabaseSync(join(dir, "bot.sqlite"));
    this.db.exec("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000;");
    this.db.exec("CREATE TABLE IF NOT EXISTS chats (id INTEGER PRIMARY KEY, first_name TEXT, started_at TEXT NOT NULL)");
  }

  /** A chat that started the bot: whom it may message later (notifications). */
  rememberChat(id: number, firstName: string | undefined): void {
    this.db.prepare("INSERT INTO chats (id, first_name, started_at) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET first_name = excluded.first_name").run(id, firstName ?? null, new Date().toISOString());
  }

  chatIds(): number[] {
    return this.db.prepare("SELECT id FROM chats ORDER BY id").all().map((row) => Number(row.id));
  }

  close(): void {
    this.db.close();
  }
}
