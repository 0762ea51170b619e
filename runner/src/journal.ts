/**
 * The runner's journal: every job id and nonce it has received, and every result the hub has not yet
 * acknowledged. Appended as JSON lines and fsynced before the runner acts, so after a crash or restart
 * a job is never run twice (its id is refused as replayed) and no result is lost (it is sent again).
 * Entries are kept until the job's `exp` (plus clock skew) has passed and its result was acknowledged;
 * after that the job's signature has expired anyway, so forgetting it is safe.
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import { CLOCK_SKEW_SECONDS } from "../../src/shared/jobs.ts";
import type { RunnerBodyInput } from "../../src/shared/runner-protocol.ts";

export type ResultBody = Extract<RunnerBodyInput, { type: "job:result" }>;

export interface JournalEntry {
  id: string;
  nonce: string;
  exp: number;
  type: string;
  result?: ResultBody;
  acked?: boolean;
}

type Record_ =
  | { k: "seen"; id: string; nonce: string; exp: number; type: string }
  | { k: "result"; id: string; result: ResultBody }
  | { k: "acked"; id: string };

export class Journal {
  private readonly path: string;
  private readonly lockPath: string;
  private readonly entries = new Map<string, JournalEntry>();
  private readonly nonces = new Set<string>();
  private fd: number;
  private appended = 0;

  constructor(stateDir: string) {
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    this.lockPath = join(stateDir, "runner.lock");
    takeLock(this.lockPath);
    this.path = join(stateDir, "journal.jsonl");
    if (existsSync(this.path)) this.load();
    this.compact();
    this.fd = openSync(this.path, "a", 0o600);
  }

  /** Whether this id or nonce was ever received (the replay check). */
  seen(id: string, nonce: string): boolean {
    return this.entries.has(id) || this.nonces.has(nonce);
  }

  get(id: string): JournalEntry | undefined {
    return this.entries.get(id);
  }

  /** Jobs received but without a result: after a restart, these were interrupted. */
  unfinished(): JournalEntry[] {
    return [...this.entries.values()].filter((entry) => !entry.result);
  }

  /** Results the hub has not acknowledged yet, oldest first. */
  unacknowledged(): ResultBody[] {
    return [...this.entries.values()].flatMap((entry) => (entry.result && !entry.acked ? [entry.result] : []));
  }

  recordSeen(id: string, nonce: string, exp: number, type: string): void {
    this.append({ k: "seen", id, nonce, exp, type });
  }

  recordResult(result: ResultBody): void {
    this.append({ k: "result", id: result.jobId, result });
  }

  recordAcked(id: string): void {
    const entry = this.entries.get(id);
    if (!entry?.result || entry.acked) return;
    this.append({ k: "acked", id });
  }

  close(): void {
    closeSync(this.fd);
    rmSync(this.lockPath, { force: true });
  }

  private append(record: Record_): void {
    this.apply(record);
    writeSync(this.fd, `${JSON.stringify(record)}\n`);
    fsyncSync(this.fd);
    if (++this.appended >= 10_000) {
      closeSync(this.fd);
      this.compact();
      this.fd = openSync(this.path, "a", 0o600);
      this.appended = 0;
    }
  }

  private apply(record: Record_): void {
    if (record.k === "seen") {
      this.entries.set(record.id, { id: record.id, nonce: record.nonce, exp: record.exp, type: record.type });
      this.nonces.add(record.nonce);
      return;
    }
    const entry = this.entries.get(record.id);
    if (!entry) return;
    if (record.k === "result") entry.result = resultOf(record.result);
    else entry.acked = true;
  }

  private load(): void {
    const lines = readFileSync(this.path, "utf8").split("\n");
    for (const [index, line] of lines.entries()) {
      if (!line) continue;
      try {
        this.apply(JSON.parse(line) as Record_);
      } catch {
        // Only the last line can be torn (a crash mid-write); anything else is corruption worth stopping for.
        if (index < lines.length - 2) throw new Error(`runner journal ${this.path} is damaged at line ${index + 1}`);
      }
    }
  }

  /** Rewrites the journal with only what must still be remembered. */
  private compact(): void {
    const now = Math.floor(Date.now() / 1000);
    const keep: string[] = [];
    for (const entry of [...this.entries.values()]) {
      // Forgotten only once it can no longer be replayed (expired) and the hub has its result: a job
      // still running, or a result not yet acknowledged, is kept however old it is.
      const expired = entry.exp + CLOCK_SKEW_SECONDS < now;
      if (expired && entry.result && entry.acked) {
        this.entries.delete(entry.id);
        this.nonces.delete(entry.nonce);
        continue;
      }
      keep.push(JSON.stringify({ k: "seen", id: entry.id, nonce: entry.nonce, exp: entry.exp, type: entry.type }));
      if (entry.result) keep.push(JSON.stringify({ k: "result", id: entry.id, result: entry.result }));
      if (entry.acked) keep.push(JSON.stringify({ k: "acked", id: entry.id }));
    }
    const temp = `${this.path}.tmp`;
    const fd = openSync(temp, "w", 0o600);
    writeSync(fd, keep.length ? `${keep.join("\n")}\n` : "");
    fsyncSync(fd);
    closeSync(fd);
    renameSync(temp, this.path);
  }
}

export class JournalLockedError extends Error {}

/**
 * One daemon per state directory: two daemons with one identity would each run jobs the other
 * already journaled. A lock left by a dead process (its pid is gone) is taken over.
 */
function takeLock(path: string): void {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, "wx", 0o600);
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const pid = Number(readFileSync(path, "utf8").trim());
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isRunner(pid)) {
        throw new JournalLockedError(`another orchestrator-runner (pid ${pid}) is using ${path}; stop it first`);
      }
      rmSync(path, { force: true });
    }
  }
  throw new JournalLockedError(`could not lock ${path}`);
}

/**
 * Whether `pid` is a live runner. After a reboot the pid in a stale lock may belong to another
 * program, so on Linux its command line must name the runner too.
 */
function isRunner(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    return /orchestrator-runner|runner\/bin\.ts/.test(cmdline);
  } catch {
    return true;
  }
}

/** A stored result as this runner sends it: a journal written before `type` (0.1) named it in `kind`. */
function resultOf(stored: ResultBody | (Omit<ResultBody, "type"> & { kind: "result" })): ResultBody {
  if (!("kind" in stored)) return stored;
  const { kind: _old, ...rest } = stored;
  return { ...rest, type: "job:result" };
}
