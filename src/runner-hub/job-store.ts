/**
 * The RunnerHub's jobs, in its SQLite storage: synchronous, so a transition and the events it emits
 * are decided in one step with nothing interleaving.
 *
 * A job's life: queued → delivered (sent; the runner must accept within the ack lease, else it is
 * queued again) → running (accepted; the runner's reports renew its lease) → succeeded | failed |
 * cancelled. States only move forward: a finished job never changes state again, and a report that
 * arrives after it finished is kept aside as its `lateOutcome`.
 */
import type { JobOutcomeView, JobState, JobView } from "../shared/api.ts";
import { isFinalJobState } from "../shared/api.ts";
import type { TaskEventInput } from "../shared/events.ts";
import { redactPayload } from "../shared/job-payloads.ts";
import type { JobEnvelope } from "../shared/jobs.ts";
import { addColumnIfMissing, type SqlMigration } from "../lib/sql-migrations.ts";
import { OUTBOX_MIGRATION } from "../lib/outbox.ts";

export interface JobRow extends Record<string, SqlStorageValue> {
  id: string;
  type: string;
  task_id: string | null;
  finish_task: number;
  /** The signed envelope as JSON; its payload is redacted when the real one is sealed below. */
  envelope: string;
  signature: string;
  /** The envelope with its secrets, AES-GCM sealed (src/lib/secrets.ts); dropped once the runner has it. */
  sealed_envelope: string | null;
  state: string;
  attempts: number;
  lease_until: number | null;
  expires_at: number;
  timeout_seconds: number;
  created_at: number;
  updated_at: number;
  started_at: number | null;
  finished_at: number | null;
  outcome: string | null;
  late_outcome: string | null;
  cancel_requested: number;
  /** The signed cancel, kept to be sent again (before the job itself) after a reconnect. */
  cancel_message: string | null;
  /** JobNotify as JSON: the workflow instance to wake when the job finishes. */
  notify: string | null;
  idem_key: string | null;
  traceparent: string | null;
}

/** The workflow instance a job wakes when it finishes. */
export interface JobNotify {
  workflow: string;
  instanceId: string;
}

/** A transition that happened, with the events it means for the job's task (none without a task). */
export interface Transition {
  row: JobRow;
  events: TaskEventInput[];
}

export type NewJob = Pick<JobRow, "id" | "type" | "task_id" | "envelope" | "signature" | "sealed_envelope" | "expires_at" | "timeout_seconds" | "notify" | "idem_key" | "traceparent"> & {
  finishTask: boolean;
};

/** The hub's schema, version by version. Version 1 is the first hub's schema exactly. */
export const HUB_MIGRATIONS: readonly SqlMigration[] = [
  {
    version: 1,
    name: "meta and jobs (the first schema)",
    up(sql) {
      // IF NOT EXISTS: stores made before versioning began already have these tables.
      sql.exec(`CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`);
      sql.exec(`CREATE TABLE IF NOT EXISTS jobs (
        id TEXT PRIMARY KEY, type TEXT NOT NULL, task_id TEXT, finish_task INTEGER NOT NULL DEFAULT 0,
        envelope TEXT NOT NULL, signature TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
        lease_until INTEGER, expires_at INTEGER NOT NULL, timeout_seconds INTEGER NOT NULL,
        created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, started_at INTEGER, finished_at INTEGER, outcome TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0)`);
      sql.exec(`CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, created_at)`);
    },
  },
  {
    version: 2,
    name: "cancels, workflow wake-ups, idempotency keys (added before versioning began)",
    up(sql) {
      addColumnIfMissing(sql, "jobs", "cancel_message", "TEXT");
      addColumnIfMissing(sql, "jobs", "notify", "TEXT");
      addColumnIfMissing(sql, "jobs", "idem_key", "TEXT");
      sql.exec(`CREATE UNIQUE INDEX IF NOT EXISTS jobs_idem ON jobs (idem_key) WHERE idem_key IS NOT NULL`);
      sql.exec(`CREATE TABLE IF NOT EXISTS task_outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, task_id TEXT NOT NULL, job_id TEXT NOT NULL, event TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL DEFAULT 0)`);
      addColumnIfMissing(sql, "task_outbox", "kind", "TEXT NOT NULL DEFAULT 'task'");
    },
  },
  {
    version: 3,
    name: "sealed secrets, late outcomes, traceparent; one outbox lane per destination",
    up(sql) {
      sql.exec(`ALTER TABLE jobs ADD COLUMN sealed_envelope TEXT`);
      sql.exec(`ALTER TABLE jobs ADD COLUMN late_outcome TEXT`);
      sql.exec(`ALTER TABLE jobs ADD COLUMN traceparent TEXT`);
      OUTBOX_MIGRATION.up(sql);
      // Finished jobs kept their secrets in the clear until here; they are never sent again.
      for (const row of sql.exec<{ id: string; type: string; envelope: string }>(`SELECT id, type, envelope FROM jobs WHERE state IN ('succeeded', 'failed', 'cancelled')`).toArray()) {
        const envelope = JSON.parse(row.envelope) as JobEnvelope;
        sql.exec(`UPDATE jobs SET envelope = ? WHERE id = ?`, JSON.stringify({ ...envelope, payload: redactPayload(row.type, envelope.payload) }), row.id);
      }
      // The single queue becomes lanes, keeping each destination's order.
      const old = sql.exec<{ seq: number; kind: string; task_id: string; job_id: string; event: string }>(`SELECT * FROM task_outbox ORDER BY seq`).toArray();
      for (const row of old) {
        const event = JSON.parse(row.event) as Record<string, unknown>;
        const [lane, body] =
          row.kind === "workflow"
            ? [`workflow:${String(event.workflow)}:${row.task_id}`, { jobId: row.job_id, job: event.job }]
            : [`task:${row.task_id}`, { jobId: row.job_id, event }];
        sql.exec(`INSERT INTO outbox_items (lane, body, created_at) VALUES (?, ?, ?)`, lane, JSON.stringify(body), Date.now());
        sql.exec(`INSERT INTO outbox_lanes (lane, next_at) VALUES (?, 0) ON CONFLICT (lane) DO NOTHING`, lane);
      }
      sql.exec(`DROP TABLE task_outbox`);
    },
  },
];

const ACTIVE = `('delivered', 'running')`;

export class JobStore {
  private readonly sql: SqlStorage;

  constructor(sql: SqlStorage) {
    this.sql = sql;
  }

  insert(job: NewJob, now: number): JobRow {
    this.sql.exec(
      `INSERT INTO jobs (id, type, task_id, finish_task, envelope, signature, sealed_envelope, state, expires_at, timeout_seconds,
         created_at, updated_at, notify, idem_key, traceparent)
       VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?)`,
      job.id, job.type, job.task_id, job.finishTask ? 1 : 0, job.envelope, job.signature, job.sealed_envelope, job.expires_at,
      job.timeout_seconds, now, now, job.notify, job.idem_key, job.traceparent,
    );
    return this.row(job.id);
  }

  get(id: string): JobRow | undefined {
    return this.sql.exec<JobRow>(`SELECT * FROM jobs WHERE id = ?`, id).toArray()[0];
  }

  row(id: string): JobRow {
    const row = this.get(id);
    if (!row) throw new Error(`job ${id} vanished`);
    return row;
  }

  byIdempotencyKey(key: string): JobRow | undefined {
    return this.sql.exec<JobRow>(`SELECT * FROM jobs WHERE idem_key = ?`, key).toArray()[0];
  }

  list(options: { state?: JobState; limit: number }): JobRow[] {
    return (
      options.state
        ? this.sql.exec<JobRow>(`SELECT * FROM jobs WHERE state = ? ORDER BY created_at DESC LIMIT ?`, options.state, options.limit)
        : this.sql.exec<JobRow>(`SELECT * FROM jobs ORDER BY created_at DESC LIMIT ?`, options.limit)
    ).toArray();
  }

  /** A task's jobs that have not ended. */
  activeForTask(taskId: string): JobRow[] {
    return this.sql.exec<JobRow>(`SELECT * FROM jobs WHERE task_id = ? AND state NOT IN ('succeeded', 'failed', 'cancelled')`, taskId).toArray();
  }

  counts(): Record<JobState, number> {
    const counts: Record<JobState, number> = { queued: 0, delivered: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0 };
    for (const { state, n } of this.sql.exec<{ state: JobState; n: number }>(`SELECT state, COUNT(*) AS n FROM jobs GROUP BY state`)) counts[state] = n;
    return counts;
  }

  // ---- Delivery ----

  /** Jobs sent or running: what occupies the runner's slots. */
  activeCount(): number {
    return this.sql.exec<{ n: number }>(`SELECT COUNT(*) AS n FROM jobs WHERE state IN ${ACTIVE}`).one().n;
  }

  /** Queued jobs still deliverable, oldest first. */
  deliverable(now: number, limit: number): JobRow[] {
    return this.sql.exec<JobRow>(`SELECT * FROM jobs WHERE state = 'queued' AND expires_at > ? ORDER BY created_at LIMIT ?`, now, limit).toArray();
  }

  markDelivered(id: string, now: number, leaseUntil: number): void {
    this.sql.exec(`UPDATE jobs SET state = 'delivered', attempts = attempts + 1, lease_until = ?, updated_at = ? WHERE id = ? AND state = 'queued'`, leaseUntil, now, id);
  }

  /** Sent but never accepted (the connection went away, or the ack lease ran out): to be sent again. */
  requeueDelivered(now: number, onlyLapsed = false): void {
    this.sql.exec(
      `UPDATE jobs SET state = 'queued', lease_until = NULL, updated_at = ? WHERE state = 'delivered'${onlyLapsed ? " AND lease_until <= ?" : ""}`,
      ...(onlyLapsed ? [now, now] : [now]),
    );
  }

  /** The runner took the job: running, with a lease its reports renew. Null when it was not queued or delivered. */
  accept(id: string, now: number, leaseUntil: number, server: string): Transition | null {
    const row = this.get(id);
    if (!row || (row.state !== "queued" && row.state !== "delivered")) return null;
    // The runner has the envelope now and never runs it twice: its secrets need not be kept.
    this.sql.exec(
      `UPDATE jobs SET state = 'running', started_at = COALESCE(started_at, ?), lease_until = ?, updated_at = ?, sealed_envelope = NULL WHERE id = ?`,
      now, leaseUntil, now, id,
    );
    return { row: this.row(id), events: row.task_id ? [{ type: "step.started", step: row.type, message: `${row.type} job ${row.id} started on ${server}`, data: { jobId: row.id } }] : [] };
  }

  /** Renews the leases of running jobs the runner still reports. */
  renewLeases(ids: readonly string[], leaseUntil: number): void {
    for (const id of ids) this.sql.exec(`UPDATE jobs SET lease_until = MAX(COALESCE(lease_until, 0), ?) WHERE id = ? AND state = 'running'`, leaseUntil, id);
  }

  /**
   * Ends a job that has not ended: its outcome, the events for its task, and its secrets dropped.
   * Null when it had already finished (the caller may record the report as a late outcome).
   */
  finish(id: string, outcome: JobOutcomeView, state: JobState, now: number): Transition | null {
    const row = this.get(id);
    if (!row || isFinalJobState(row.state as JobState)) return null;
    // A finished job is never sent again: none of its secrets need be kept, sealed or not.
    const envelope = JSON.parse(row.envelope) as JobEnvelope;
    const shown = JSON.stringify({ ...envelope, payload: redactPayload(row.type, envelope.payload) });
    this.sql.exec(
      `UPDATE jobs SET state = ?, outcome = ?, finished_at = ?, updated_at = ?, lease_until = NULL, sealed_envelope = NULL, envelope = ? WHERE id = ?`,
      state, JSON.stringify(outcome), now, now, shown, id,
    );
    const done = this.row(id);
    if (!row.task_id) return { row: done, events: [] };
    const summary = { jobId: row.id, ok: outcome.ok, ...(outcome.reason ? { reason: outcome.reason } : {}), ...(outcome.exitCode !== undefined ? { exitCode: outcome.exitCode } : {}) };
    const verb = outcome.ok ? "succeeded" : state === "cancelled" ? "was cancelled" : "failed";
    const events: TaskEventInput[] = [{ type: "step.completed", step: row.type, message: `${row.type} ${verb}: ${outcome.message}`, data: summary }];
    if (row.finish_task) {
      events.push(
        outcome.ok
          ? { type: "task.completed", message: outcome.message, data: { jobId: row.id, ...outcome.data } }
          : state === "cancelled"
            ? { type: "task.cancelled", message: outcome.message, data: { jobId: row.id } }
            : { type: "task.failed", message: outcome.message, data: summary },
      );
    }
    return { row: done, events };
  }

  /** A report for a job that had already ended: kept as its late outcome (the first one only). */
  recordLateOutcome(id: string, outcome: JobOutcomeView): boolean {
    const row = this.get(id);
    if (!row || !isFinalJobState(row.state as JobState) || row.late_outcome !== null) return false;
    this.sql.exec(`UPDATE jobs SET late_outcome = ?, updated_at = ? WHERE id = ?`, JSON.stringify(outcome), Date.now(), id);
    return true;
  }

  // ---- Cancels ----

  requestCancel(id: string, message: string, now: number): void {
    this.sql.exec(`UPDATE jobs SET cancel_requested = 1, cancel_message = ?, updated_at = ? WHERE id = ?`, message, now, id);
  }

  /** Running jobs with a cancel to send again after a reconnect. */
  runningWithCancel(): JobRow[] {
    return this.sql.exec<JobRow>(`SELECT * FROM jobs WHERE state = 'running' AND cancel_message IS NOT NULL`).toArray();
  }

  /** Jobs not yet accepted: what a re-enrollment leaves without a runner to take them. */
  unaccepted(): JobRow[] {
    return this.sql.exec<JobRow>(`SELECT * FROM jobs WHERE state IN ('queued', 'delivered')`).toArray();
  }

  // ---- Deadlines ----

  /**
   * What the hub's alarm must end now, with why: jobs past their delivery deadline (at `exp` if never
   * sent; if sent, once the runner could no longer accept them either, exp + clock skew, and their
   * acceptance had `graceMs` to arrive), and running jobs whose lease lapsed. A disconnected runner
   * gets until the job's own timeout plus `resultGraceMs` to come back and report, so those leases are
   * extended instead. Sent-but-unaccepted jobs whose ack lease lapsed are queued to be sent again.
   */
  sweep(now: number, context: { graceMs: number; resultGraceMs: number; connected: boolean; server: string; offlineSince: string | null }): { id: string; outcome: JobOutcomeView }[] {
    const ended: { id: string; outcome: JobOutcomeView }[] = [];
    const offline = context.connected ? "" : ` (runner offline since ${context.offlineSince ?? "it was enrolled"})`;
    const pastDeadline = this.sql
      .exec<JobRow>(`SELECT * FROM jobs WHERE state IN ('queued', 'delivered') AND (CASE WHEN attempts = 0 THEN expires_at ELSE expires_at + ? END) <= ?`, context.graceMs, now)
      .toArray();
    for (const row of pastDeadline) {
      const message =
        row.attempts === 0
          ? `the runner of ${context.server} did not take the job before its deadline${offline}`
          : `the runner of ${context.server} did not confirm the job before its deadline${offline}; should it report the job later, that report is kept as the job's late outcome`;
      ended.push({ id: row.id, outcome: { ok: false, reason: "undelivered", message } });
    }
    this.requeueDelivered(now, true);
    for (const row of this.sql.exec<JobRow>(`SELECT * FROM jobs WHERE state = 'running' AND lease_until <= ?`, now).toArray()) {
      const deadline = (row.started_at ?? now) + row.timeout_seconds * 1000 + context.resultGraceMs;
      if (!context.connected && deadline > now) {
        this.sql.exec(`UPDATE jobs SET lease_until = ? WHERE id = ? AND state = 'running'`, deadline, row.id);
        continue;
      }
      const message = context.connected
        ? "the runner no longer reports this job (it restarted or lost it); it is not run again"
        : "the runner went offline while the job ran and did not report back; it is not run again";
      ended.push({ id: row.id, outcome: { ok: false, reason: "interrupted", message } });
    }
    return ended;
  }

  /** The earliest deadline or lease among unfinished jobs: when the hub's alarm must look again. */
  nextDeadline(graceMs: number): number | null {
    return this.sql
      .exec<{ at: number | null }>(
        `SELECT MIN(t) AS at FROM (
           SELECT MIN(CASE WHEN attempts = 0 THEN expires_at ELSE expires_at + ? END) AS t FROM jobs WHERE state IN ('queued', 'delivered')
           UNION ALL SELECT MIN(lease_until) FROM jobs WHERE state IN ${ACTIVE})`,
        graceMs,
      )
      .one().at;
  }
}

/** What the API shows of a job; secret payload values appear as "[redacted]". */
export function jobView(row: JobRow, server: string): JobView {
  const envelope = JSON.parse(row.envelope) as JobEnvelope;
  return {
    id: row.id,
    server,
    type: row.type,
    taskId: row.task_id,
    state: row.state as JobState,
    attempts: row.attempts,
    createdAt: new Date(row.created_at).toISOString(),
    updatedAt: new Date(row.updated_at).toISOString(),
    expiresAt: new Date(row.expires_at).toISOString(),
    startedAt: iso(row.started_at),
    finishedAt: iso(row.finished_at),
    payload: redactPayload(row.type, envelope.payload),
    outcome: row.outcome ? (JSON.parse(row.outcome) as JobOutcomeView) : null,
    ...(row.late_outcome ? { lateOutcome: JSON.parse(row.late_outcome) as JobOutcomeView } : {}),
    ...(row.traceparent ? { traceparent: row.traceparent } : {}),
  };
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
