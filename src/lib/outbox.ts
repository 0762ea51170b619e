/**
 * A durable, ordered outbox with one lane per destination, over a Durable Object's SQLite storage.
 *
 * Items pushed to a lane are delivered in order, in batches, and deleted only once delivered, so
 * they survive the object being evicted or reset mid-delivery (an item may then be delivered twice:
 * destinations dedupe by the item's id). Lanes are independent: each delivers on its own, started as
 * soon as it is due, and a delivery that hangs is given up after DELIVERY_TIMEOUT_MS, so a destination
 * that fails or is slow holds back only its own lane. A lane that keeps failing is parked: kept,
 * reported in `status()`, and retried only every PARKED_RETRY_MS, never in front of the others; after
 * PARKED_MAX_MS parked its items are given up, with an error in the log.
 *
 * An item may wait for another lane (`after`): a workflow's wake-up for a job goes out only once the
 * job's task events are in, so the workflow never reads a stream that lacks them.
 */
import type { Logger } from "./log.ts";
import type { SqlMigration } from "./sql-migrations.ts";

export interface OutboxItem {
  seq: number;
  lane: string;
  body: unknown;
}

export type FailureVerdict = "retry" | "drop";

export interface OutboxOptions {
  /** Delivers items of one lane, in order; throwing retries them later (or drops them, see classify). */
  deliver(lane: string, items: OutboxItem[]): Promise<void>;
  /** Items per delivery for a lane: a task stream takes batches, a workflow one wake-up at a time. */
  batchSize(lane: string): number;
  /** `drop` for a failure that retrying cannot cure (the destination is gone); logged either way. */
  classify(error: unknown): FailureVerdict;
  log: Logger;
  /** Failed deliveries of one batch before its lane is parked. */
  maxAttempts?: number;
  /** How many lanes deliver at once. */
  concurrency?: number;
}

/** A delivery taking longer than this counts as failed (and is retried). */
const DELIVERY_TIMEOUT_MS = 20_000;
/** Until when a lane counts as being delivered; beyond DELIVERY_TIMEOUT_MS, so only a reset object leaves it stale. */
const IN_FLIGHT_MS = 30_000;
/** Batches one lane delivers before it lets other due lanes have its turn. */
const BATCHES_PER_TURN = 20;
export const PARKED_RETRY_MS = 5 * 60_000;
export const PARKED_MAX_MS = 7 * 24 * 3600_000;
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 30_000;
const DEFAULT_MAX_ATTEMPTS = 12;

interface LaneRow extends Record<string, SqlStorageValue> {
  lane: string;
  next_at: number;
  attempts: number;
  in_flight_until: number | null;
  parked_at: number | null;
  last_error: string | null;
}

interface ItemRow extends Record<string, SqlStorageValue> {
  seq: number;
  lane: string;
  body: string;
  after_lane: string | null;
  after_seq: number | null;
}

/** The outbox's tables, as a migration for the owning object's schema. */
export const OUTBOX_MIGRATION: Omit<SqlMigration, "version"> = {
  name: "outbox lanes",
  up(sql) {
    sql.exec(`CREATE TABLE outbox_items (
      seq INTEGER PRIMARY KEY AUTOINCREMENT, lane TEXT NOT NULL, body TEXT NOT NULL,
      after_lane TEXT, after_seq INTEGER, created_at INTEGER NOT NULL)`);
    sql.exec(`CREATE INDEX outbox_items_lane ON outbox_items (lane, seq)`);
    sql.exec(`CREATE TABLE outbox_lanes (
      lane TEXT PRIMARY KEY, next_at INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
      in_flight_until INTEGER, parked_at INTEGER, last_error TEXT)`);
  },
};

export interface OutboxStatus {
  pending: number;
  parked: { lane: string; items: number; since: string; error: string }[];
}

export class Outbox {
  private readonly sql: SqlStorage;
  private readonly options: Required<OutboxOptions>;
  /** Lanes being delivered by this instance right now, each on its own. */
  private readonly running = new Map<string, Promise<void>>();
  private idleWaiters: (() => void)[] = [];
  /** Callers waiting for an item to be delivered (or given up on). */
  private readonly watchers = new Set<() => void>();

  constructor(sql: SqlStorage, options: OutboxOptions) {
    this.sql = sql;
    this.options = { maxAttempts: DEFAULT_MAX_ATTEMPTS, concurrency: 16, ...options };
  }

  /** Queues an item at the end of its lane; returns its seq. Synchronous: it is durable on return. */
  push(lane: string, body: unknown, after?: { lane: string; seq: number }): number {
    const now = Date.now();
    const { seq } = this.sql
      .exec<{ seq: number }>(
        `INSERT INTO outbox_items (lane, body, after_lane, after_seq, created_at) VALUES (?, ?, ?, ?, ?) RETURNING seq`,
        lane, JSON.stringify(body), after?.lane ?? null, after?.seq ?? null, now,
      )
      .one();
    this.sql.exec(`INSERT INTO outbox_lanes (lane, next_at) VALUES (?, ?) ON CONFLICT (lane) DO NOTHING`, lane, now);
    return seq;
  }

  /** The last item queued on a lane, if any is still undelivered. */
  lastSeq(lane: string): number | null {
    return this.sql.exec<{ seq: number | null }>(`SELECT MAX(seq) AS seq FROM outbox_items WHERE lane = ?`, lane).one().seq;
  }

  /**
   * Starts every due lane that is not delivering already, and resolves once no lane is delivering.
   * Safe to call at any time: a lane already on its way is not started twice. Lanes in flight have
   * their watchdog time set (nextAt) by the time this returns.
   */
  drain(): Promise<void> {
    this.startDue();
    if (this.running.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private startDue(): void {
    const free = this.options.concurrency - this.running.size;
    if (free <= 0) return;
    for (const lane of this.dueLanes(free)) {
      const run = this.deliverLane(lane).finally(() => {
        this.running.delete(lane);
        this.startDue();
        if (this.running.size === 0) for (const resolve of this.idleWaiters.splice(0)) resolve();
      });
      this.running.set(lane, run);
    }
  }

  /** When the next delivery (or retry, or in-flight watchdog) is due; null when the outbox is empty. */
  nextAt(): number | null {
    let next: number | null = null;
    const now = Date.now();
    for (const row of this.sql.exec<LaneRow>(`SELECT * FROM outbox_lanes`).toArray()) {
      // A lane waiting on another is woken by that lane's delivery, not by the clock.
      if (!this.running.has(row.lane) && this.blocked(row.lane)) continue;
      // A lane being delivered here needs the clock only as a watchdog, should the object be reset.
      const at = this.running.has(row.lane) ? Math.max(row.in_flight_until ?? 0, now + 1000) : Math.max(row.next_at, row.in_flight_until ?? 0);
      if (next === null || at < next) next = at;
    }
    return next;
  }

  status(): OutboxStatus {
    const pending = this.sql.exec<{ n: number }>(`SELECT COUNT(*) AS n FROM outbox_items`).one().n;
    const parked = this.sql
      .exec<LaneRow & { items: number }>(
        `SELECT l.*, (SELECT COUNT(*) FROM outbox_items i WHERE i.lane = l.lane) AS items FROM outbox_lanes l WHERE parked_at IS NOT NULL ORDER BY parked_at`,
      )
      .toArray()
      .map((row) => ({ lane: row.lane, items: row.items, since: new Date(row.parked_at ?? 0).toISOString(), error: row.last_error ?? "" }));
    return { pending, parked };
  }

  /** Items still waiting on a lane. */
  pendingOn(lane: string): number {
    return this.sql.exec<{ n: number }>(`SELECT COUNT(*) AS n FROM outbox_items WHERE lane = ?`, lane).one().n;
  }

  /**
   * Resolves true once the item `seq` of `lane` is delivered (or dropped), false when its lane is
   * failing or `timeoutMs` passes first. For callers that answer only after a delivery (`?wait=`).
   */
  whenDelivered(lane: string, seq: number, timeoutMs: number): Promise<boolean> {
    const settled = (): boolean | undefined => {
      if (!this.hasItemUpTo(lane, seq)) return true;
      const state = this.sql.exec<LaneRow>(`SELECT * FROM outbox_lanes WHERE lane = ?`, lane).toArray()[0];
      return state && (state.attempts > 0 || state.parked_at !== null) ? false : undefined;
    };
    const now = settled();
    if (now !== undefined) return Promise.resolve(now);
    return new Promise((resolve) => {
      const check = () => {
        const verdict = settled();
        if (verdict === undefined) return;
        finish(verdict);
      };
      const finish = (verdict: boolean) => {
        clearTimeout(timer);
        this.watchers.delete(check);
        resolve(verdict);
      };
      const timer = setTimeout(() => finish(false), timeoutMs);
      this.watchers.add(check);
    });
  }

  private dueLanes(limit: number): string[] {
    const now = Date.now();
    const due: string[] = [];
    for (const { lane } of this.sql.exec<LaneRow>(`SELECT lane FROM outbox_lanes WHERE next_at <= ? AND (in_flight_until IS NULL OR in_flight_until <= ?) ORDER BY next_at`, now, now).toArray()) {
      if (this.running.has(lane) || this.blocked(lane)) continue;
      due.push(lane);
      if (due.length >= limit) break;
    }
    return due;
  }

  /** Whether the head of a lane waits for another lane's item that is still undelivered. */
  private blocked(lane: string): boolean {
    const head = this.head(lane, 1)[0];
    if (!head?.after_lane || head.after_seq === null) return false;
    if (!this.hasItemUpTo(head.after_lane, head.after_seq)) return false;
    // A parked dependency would hold this lane for as long as it stays parked: go ahead instead.
    const dependency = this.sql.exec<LaneRow>(`SELECT * FROM outbox_lanes WHERE lane = ?`, head.after_lane).toArray()[0];
    return dependency?.parked_at === null || dependency?.parked_at === undefined;
  }

  private head(lane: string, limit: number): ItemRow[] {
    return this.sql.exec<ItemRow>(`SELECT * FROM outbox_items WHERE lane = ? ORDER BY seq LIMIT ?`, lane, limit).toArray();
  }

  private hasItemUpTo(lane: string, seq: number): boolean {
    return this.sql.exec(`SELECT 1 FROM outbox_items WHERE lane = ? AND seq <= ? LIMIT 1`, lane, seq).toArray().length > 0;
  }

  private async deliverLane(lane: string): Promise<void> {
    for (let batch = 0; batch < BATCHES_PER_TURN; batch++) {
      const rows = this.batch(lane);
      if (rows.length === 0) {
        this.sql.exec(`DELETE FROM outbox_lanes WHERE lane = ? AND NOT EXISTS (SELECT 1 FROM outbox_items WHERE lane = ?)`, lane, lane);
        return;
      }
      if (rows[0]?.after_lane && this.blocked(lane)) return;
      this.sql.exec(`UPDATE outbox_lanes SET in_flight_until = ? WHERE lane = ?`, Date.now() + IN_FLIGHT_MS, lane);
      const items = rows.map((row) => ({ seq: row.seq, lane, body: JSON.parse(row.body) as unknown }));
      let delivered = false;
      try {
        await withTimeout(this.options.deliver(lane, items), DELIVERY_TIMEOUT_MS, `delivery to ${lane} took longer than ${DELIVERY_TIMEOUT_MS / 1000} s`);
        delivered = true;
        this.remove(lane, rows);
        this.sql.exec(`UPDATE outbox_lanes SET attempts = 0, in_flight_until = NULL, parked_at = NULL, last_error = NULL WHERE lane = ?`, lane);
      } catch (error) {
        if (!this.failed(lane, rows, error)) return;
      } finally {
        this.notify();
        // A lane waiting on this one may be free to go now.
        if (delivered) this.startDue();
      }
    }
    // Its turn is over: still due, but behind every lane that was waiting meanwhile.
    this.sql.exec(`UPDATE outbox_lanes SET in_flight_until = NULL, next_at = ? WHERE lane = ?`, Date.now(), lane);
  }

  /** The next batch of a lane: up to its batch size, stopping before an item that waits on another lane. */
  private batch(lane: string): ItemRow[] {
    const rows = this.head(lane, this.options.batchSize(lane));
    const waiting = rows.findIndex((row, index) => index > 0 && row.after_lane !== null);
    return waiting === -1 ? rows : rows.slice(0, waiting);
  }

  private remove(lane: string, rows: ItemRow[]): void {
    const last = rows.at(-1)?.seq ?? 0;
    this.sql.exec(`DELETE FROM outbox_items WHERE lane = ? AND seq <= ?`, lane, last);
  }

  /** Records a failed delivery; returns whether the lane may go on with its next items now. */
  private failed(lane: string, rows: ItemRow[], error: unknown): boolean {
    const message = error instanceof Error ? error.message : String(error);
    if (this.options.classify(error) === "drop") {
      this.options.log.warn("outbox items dropped: their destination refused them for good", { lane, items: rows.length, error: message.slice(0, 500) });
      this.remove(lane, rows);
      this.sql.exec(`UPDATE outbox_lanes SET attempts = 0, in_flight_until = NULL WHERE lane = ?`, lane);
      return true;
    }
    const state = this.sql.exec<LaneRow>(`SELECT * FROM outbox_lanes WHERE lane = ?`, lane).toArray()[0];
    // The lane went while its delivery was in flight (the owner's storage was wiped, e.g. a task
    // stream's retention ended): nothing is left to retry.
    if (!state) return false;
    const attempts = state.attempts + 1;
    const now = Date.now();
    if (state.parked_at !== null && now - state.parked_at > PARKED_MAX_MS) {
      const items = this.pendingOn(lane);
      this.options.log.error("outbox lane given up: parked for a week, its items are dropped", { lane, items, error: message.slice(0, 500) });
      this.sql.exec(`DELETE FROM outbox_items WHERE lane = ?`, lane);
      this.sql.exec(`DELETE FROM outbox_lanes WHERE lane = ?`, lane);
      return false;
    }
    if (attempts >= this.options.maxAttempts) {
      if (state.parked_at === null) {
        this.options.log.error("outbox lane parked: its destination keeps failing; retried every few minutes", { lane, items: this.pendingOn(lane), attempts, error: message.slice(0, 500) });
      }
      this.sql.exec(
        `UPDATE outbox_lanes SET attempts = ?, next_at = ?, in_flight_until = NULL, parked_at = COALESCE(parked_at, ?), last_error = ? WHERE lane = ?`,
        attempts, now + PARKED_RETRY_MS, now, message.slice(0, 1000), lane,
      );
      return false;
    }
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** (attempts - 1)) * (0.75 + Math.random() / 2);
    this.options.log.warn("outbox delivery failed; will retry", { lane, attempts, inMs: Math.round(delay), error: message.slice(0, 500) });
    this.sql.exec(`UPDATE outbox_lanes SET attempts = ?, next_at = ?, in_flight_until = NULL, last_error = ? WHERE lane = ?`, attempts, now + delay, message.slice(0, 1000), lane);
    return false;
  }

  private notify(): void {
    for (const check of [...this.watchers]) check();
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | null = null;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(message)), ms)));
  return Promise.race([promise, timeout]).finally(() => {
    if (timer !== null) clearTimeout(timer);
  });
}
