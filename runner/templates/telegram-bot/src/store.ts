// What the bot keeps (the chats that started it, and their subscriptions to its notifications): SQLite (node:sqlite, built into Node) in DATA_DIR, which survives redeploys and
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
    this.db.exec("CREATE TABLE IF NOT EXISTS subscriptions (chat_id INTEGER NOT NULL, topic TEXT NOT NULL, PRIMARY KEY (chat_id, topic))");
  }

  /** A chat that started the bot: whom it may message later (notifications). */
  rememberChat(id: number, firstName: string | undefined): void {
    this.db.prepare("INSERT INTO chats (id, first_name, started_at) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET first_name = excluded.first_name").run(id, firstName ?? null, new Date().toISOString());
  }

  chatIds(): number[] {
    return this.db.prepare("SELECT id FROM chats ORDER BY id").all().map((row) => Number(row.id));
  }

  /** A chat subscribes to a topic of the bot's notifications (a city, a feed…). */
  subscribe(chatId: number, topic: string): void {
    this.db.prepare("INSERT OR IGNORE INTO subscriptions (chat_id, topic) VALUES (?, ?)").run(chatId, topic);
  }

  /** Whether the chat was subscribed. */
  unsubscribe(chatId: number, topic: string): boolean {
    return Number(this.db.prepare("DELETE FROM subscriptions WHERE chat_id = ? AND topic = ?").run(chatId, topic).changes) > 0;
  }

  topicsOf(chatId: number): string[] {
    return this.db.prepare("SELECT topic FROM subscriptions WHERE chat_id = ? ORDER BY topic").all(chatId).map((row) => String(row.topic));
  }

  /** Every subscription, for sending the notifications. */
  subscriptions(): { chatId: number; topic: string }[] {
    return this.db.prepare("SELECT chat_id, topic FROM subscriptions ORDER BY chat_id, topic").all().map((row) => ({ chatId: Number(row.chat_id), topic: String(row.topic) }));
  }

  close(): void {
    this.db.close();
  }
}
