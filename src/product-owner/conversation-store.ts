/**
 * What one Product Owner conversation keeps in its Durable Object's SQLite storage, so that it
 * survives eviction: the model's turns (old ones summarised away, so the store stays bounded), the
 * entries the person sees, pending confirmations and questions, the tasks it follows, and the
 * Telegram update ids already taken (duplicates are dropped).
 */
import type { ChatEntry, SessionState } from "../shared/chat.ts";
import type { ModelMessage } from "./model.ts";
import { migrate, type SqlMigration } from "../lib/sql-migrations.ts";

/** Entries kept for the web console's history; older ones are in the person's own chat client. */
export const ENTRIES_KEPT = 100;
/** Update ids remembered for deduplication: Telegram redelivers within minutes, not thousands of updates later. */
const UPDATES_KEPT = 500;
/** A text longer than this is cut before it is stored as a turn (a tool's large answer, say). */
export const TURN_TEXT_LIMIT = 3000;

const MIGRATIONS: readonly SqlMigration[] = [
  {
    version: 1,
    name: "conversation",
    up(sql) {
      sql.exec(`CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`);
      sql.exec(`CREATE TABLE updates (update_id INTEGER PRIMARY KEY)`);
      sql.exec(`CREATE TABLE turns (seq INTEGER PRIMARY KEY AUTOINCREMENT, message TEXT NOT NULL)`);
      sql.exec(`CREATE TABLE entries (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, entry TEXT NOT NULL)`);
      sql.exec(`CREATE TABLE actions (id TEXT PRIMARY KEY, action TEXT NOT NULL, created_at TEXT NOT NULL)`);
      sql.exec(`CREATE TABLE work (task_id TEXT PRIMARY KEY, type TEXT NOT NULL, project TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL)`);
    },
  },
  {
    version: 2,
    name: "work that starts more work",
    up(sql) {
      sql.exec(`ALTER TABLE work ADD COLUMN then_deploy INTEGER NOT NULL DEFAULT 0`);
    },
  },
  {
    version: 3,
    name: "work remembers the key that started it",
    up(sql) {
      sql.exec(`ALTER TABLE work ADD COLUMN key_id TEXT`);
    },
  },
  {
    // The deploy after a build is the engineering task's own now (`deploy: true`): the chat only follows it.
    version: 4,
    name: "the build starts its deploy",
    up(sql) {
      sql.exec(`ALTER TABLE work DROP COLUMN then_deploy`);
      sql.exec(`ALTER TABLE work DROP COLUMN key_id`);
    },
  },
];

/** Where this conversation's messages go. */
export type ChatAddress =
  | { channel: "telegram"; chatId: number; chatType: string }
  | { channel: "web"; userId: string };

/** The person behind the conversation, as the tools act for them. */
export interface ChatUser {
  userId: string;
  name: string;
  isAdmin: boolean;
  telegramId?: number;
}

/** Something the agent waits for the person to answer with a button (or, for a secret, a message). */
export type PendingAction =
  | { kind: "confirm"; tool: string; args: unknown; question: string; askedOf?: number; financial?: boolean }
  | { kind: "decision"; taskId: string; question: string; askedOf?: number }
  | { kind: "secret"; taskId: string; name: string; project: string; askedOf?: number }
  /** Buttons that each run a tool (a change's preview: Ship it, Discard): the press is the person's confirmation. */
  | { kind: "offer"; question: string; options: Record<string, { label: string } & ({ tool: string; args: unknown } | { say: string })>; askedOf?: number };

export interface Work {
  taskId: string;
  type: string;
  project: string;
}

type WorkRow = { task_id: string; type: string; project: string; done: number };
const workOf = (row: WorkRow): Work => ({ taskId: row.task_id, type: row.type, project: row.project });

const cut = (text: string, limit: number) => (text.length > limit ? `${text.slice(0, limit)}… [cut: ${text.length - limit} more characters]` : text);

/** A turn as stored: long texts cut, so one tool answer cannot grow the store without bound. */
export function boundedTurn(message: ModelMessage): ModelMessage {
  if (typeof message.content === "string") return { ...message, content: cut(message.content, TURN_TEXT_LIMIT) };
  return message;
}

export class ConversationStore {
  private readonly sql: SqlStorage;
  private readonly storage: DurableObjectStorage;

  constructor(storage: DurableObjectStorage) {
    migrate(storage, MIGRATIONS);
    this.storage = storage;
    this.sql = storage.sql;
  }

  get<T>(key: string): T | undefined {
    const row = this.sql.exec<{ value: string }>(`SELECT value FROM meta WHERE key = ?`, key).toArray()[0];
    return row ? (JSON.parse(row.value) as T) : undefined;
  }

  set(key: string, value: unknown): void {
    if (value === undefined) this.sql.exec(`DELETE FROM meta WHERE key = ?`, key);
    else this.sql.exec(`INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)`, key, JSON.stringify(value));
  }

  get state(): SessionState {
    return this.get<SessionState>("state") ?? "IDLE";
  }

  /** true the first time an update id is seen, false for a redelivery. */
  firstSight(updateId: number): boolean {
    const inserted = this.sql.exec(`INSERT OR IGNORE INTO updates (update_id) VALUES (?)`, updateId).rowsWritten > 0;
    if (inserted) this.sql.exec(`DELETE FROM updates WHERE update_id NOT IN (SELECT update_id FROM updates ORDER BY update_id DESC LIMIT ?)`, UPDATES_KEPT);
    return inserted;
  }

  /** An update that could not be taken: its redelivery must be handled, not dropped as a duplicate. */
  forgetUpdate(updateId: number): void {
    this.sql.exec(`DELETE FROM updates WHERE update_id = ?`, updateId);
  }

  // ---- the model's turns ----

  appendTurn(message: ModelMessage): void {
    this.sql.exec(`INSERT INTO turns (message) VALUES (?)`, JSON.stringify(boundedTurn(message)));
  }

  turns(): { seq: number; message: ModelMessage }[] {
    return this.sql.exec<{ seq: number; message: string }>(`SELECT seq, message FROM turns ORDER BY seq`).toArray().map((row) => ({ seq: row.seq, message: JSON.parse(row.message) as ModelMessage }));
  }

  /** Replaces the turns up to `seq` with a summary (one transaction: both or neither). */
  summariseUpTo(seq: number, summary: string): void {
    this.storage.transactionSync(() => {
      this.sql.exec(`DELETE FROM turns WHERE seq <= ?`, seq);
      this.set("summary", summary);
    });
  }

  // ---- what the person sees ----

  addEntry(entry: ChatEntry): void {
    this.sql.exec(`INSERT OR REPLACE INTO entries (id, entry) VALUES (?, ?)`, entry.id, JSON.stringify(entry));
    this.sql.exec(`DELETE FROM entries WHERE seq NOT IN (SELECT seq FROM entries ORDER BY seq DESC LIMIT ?)`, ENTRIES_KEPT);
  }

  updateEntry(entry: ChatEntry): void {
    this.sql.exec(`UPDATE entries SET entry = ? WHERE id = ?`, JSON.stringify(entry), entry.id);
  }

  entry(id: string): ChatEntry | undefined {
    const row = this.sql.exec<{ entry: string }>(`SELECT entry FROM entries WHERE id = ?`, id).toArray()[0];
    return row ? (JSON.parse(row.entry) as ChatEntry) : undefined;
  }

  entries(limit = ENTRIES_KEPT): ChatEntry[] {
    return this.sql
      .exec<{ entry: string }>(`SELECT entry FROM (SELECT seq, entry FROM entries ORDER BY seq DESC LIMIT ?) ORDER BY seq`, limit)
      .toArray()
      .map((row) => JSON.parse(row.entry) as ChatEntry);
  }

  // ---- pending confirmations and questions ----

  putAction(id: string, action: PendingAction): void {
    this.sql.exec(`INSERT OR REPLACE INTO actions (id, action, created_at) VALUES (?, ?, ?)`, id, JSON.stringify(action), new Date().toISOString());
  }

  /** Takes an action out: a second press of its button finds nothing. */
  takeAction(id: string): PendingAction | undefined {
    const row = this.sql.exec<{ action: string }>(`SELECT action FROM actions WHERE id = ?`, id).toArray()[0];
    if (!row) return undefined;
    this.sql.exec(`DELETE FROM actions WHERE id = ?`, id);
    return JSON.parse(row.action) as PendingAction;
  }

  actions(): { id: string; action: PendingAction }[] {
    return this.sql.exec<{ id: string; action: string }>(`SELECT id, action FROM actions ORDER BY created_at`).toArray().map((row) => ({ id: row.id, action: JSON.parse(row.action) as PendingAction }));
  }

  // ---- the tasks it follows ----

  follow(work: Work): void {
    this.sql.exec(`INSERT OR IGNORE INTO work (task_id, type, project, created_at) VALUES (?, ?, ?, ?)`, work.taskId, work.type, work.project, new Date().toISOString());
  }

  work(taskId: string): (Work & { done: boolean }) | undefined {
    const row = this.sql.exec<WorkRow>(`SELECT * FROM work WHERE task_id = ?`, taskId).toArray()[0];
    return row ? { ...workOf(row), done: row.done === 1 } : undefined;
  }

  openWork(): Work[] {
    return this.sql.exec<WorkRow>(`SELECT * FROM work WHERE done = 0`).toArray().map(workOf);
  }

  /** Marks a task's outcome told; false when it had been told already. Old finished work is forgotten. */
  finishWork(taskId: string): boolean {
    const changed = this.sql.exec(`UPDATE work SET done = 1 WHERE task_id = ? AND done = 0`, taskId).rowsWritten > 0;
    this.sql.exec(`DELETE FROM work WHERE done = 1 AND task_id NOT IN (SELECT task_id FROM work WHERE done = 1 ORDER BY created_at DESC LIMIT 20)`);
    return changed;
  }

  /** The store's size on disk, in bytes. */
  bytes(): number {
    return this.sql.databaseSize;
  }
}
