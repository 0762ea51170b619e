/** The runner's journal: what it remembers across restarts, and that one daemon owns it. */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { spawn } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Journal, JournalLockedError } from "../src/journal.ts";

const dir = () => mkdtempSync(join(tmpdir(), "runner-journal-"));
const now = () => Math.floor(Date.now() / 1000);

describe("the runner's journal", () => {
  it("remembers ids and nonces, results and acks across a reopen", () => {
    const state = dir();
    const first = new Journal(state);
    first.recordSeen("job_a", "nonce-a", now() + 600, "noop");
    first.recordResult({ type: "job:result", jobId: "job_a", ok: true, message: "noop" });
    first.recordSeen("job_b", "nonce-b", now() + 600, "noop");
    first.recordResult({ type: "job:result", jobId: "job_b", ok: true, message: "noop" });
    first.recordAcked("job_b");
    first.close();
    const second = new Journal(state);
    expect(second.seen("job_a", "other")).toBe(true);
    expect(second.seen("job_new", "nonce-b")).toBe(true);
    expect(second.seen("job_new", "nonce-new")).toBe(false);
    expect(second.unacknowledged().map((r) => r.jobId)).toEqual(["job_a"]);
    second.close();
  });

  it("reads a result a 0.1 runner wrote (named in kind) as this runner sends it (type job:result)", () => {
    const state = dir();
    const old = { kind: "result", jobId: "job_old", ok: false, reason: "interrupted", message: "the runner stopped" };
    writeFileSync(join(state, "journal.jsonl"), `${JSON.stringify({ k: "seen", id: "job_old", nonce: "n-old", exp: now() + 600, type: "noop" })}\n${JSON.stringify({ k: "result", id: "job_old", result: old })}\n`);
    const journal = new Journal(state);
    expect(journal.unacknowledged()).toEqual([{ type: "job:result", jobId: "job_old", ok: false, reason: "interrupted", message: "the runner stopped" }]);
    journal.close();
  });

  it("forgets a job only once it has expired and the hub has its result; an unfinished one is kept however old", () => {
    const state = dir();
    const journal = new Journal(state);
    const past = now() - 3600;
    journal.recordSeen("job_done", "n-done", past, "noop");
    journal.recordResult({ type: "job:result", jobId: "job_done", ok: true, message: "noop" });
    journal.recordAcked("job_done");
    journal.recordSeen("job_unacked", "n-unacked", past, "noop");
    journal.recordResult({ type: "job:result", jobId: "job_unacked", ok: true, message: "noop" });
    journal.recordSeen("job_running", "n-running", past, "docker.run");
    journal.close();
    const reopened = new Journal(state);
    expect(reopened.seen("job_done", "n-done")).toBe(false);
    expect(reopened.unacknowledged().map((r) => r.jobId)).toEqual(["job_unacked"]);
    expect(reopened.unfinished().map((e) => e.id)).toEqual(["job_running"]);
    reopened.close();
  });

  it("survives a torn last line and refuses a damaged middle", () => {
    const state = dir();
    const journal = new Journal(state);
    journal.recordSeen("job_a", "nonce-a", now() + 600, "noop");
    journal.close();
    const path = join(state, "journal.jsonl");
    writeFileSync(path, `${readFileSync(path, "utf8")}{"k":"seen","id":"job_b"`);
    const reopened = new Journal(state);
    expect(reopened.seen("job_a", "x")).toBe(true);
    reopened.close();
    writeFileSync(path, `garbage\n${readFileSync(path, "utf8")}{"k":"acked","id":"job_a"}\n`);
    expect(() => new Journal(state)).toThrow(/damaged at line 1/);
  });

  it("belongs to one daemon at a time; a lock left by a dead process, or by a pid now reused by another program, is taken over", async () => {
    const state = dir();
    const journal = new Journal(state);
    // A live process whose command line names the runner holds the lock.
    const other = spawn(process.execPath, ["-e", "setTimeout(() => {}, 30000)", "orchestrator-runner"], { stdio: "ignore" });
    try {
      await new Promise((resolve) => setTimeout(resolve, 200));
      writeFileSync(join(state, "runner.lock"), String(other.pid));
      expect(() => new Journal(state)).toThrow(JournalLockedError);
    } finally {
      other.kill();
    }
    // pid 1 is alive but is not a runner (a pid reused after a reboot).
    writeFileSync(join(state, "runner.lock"), "1");
    new Journal(state).close();
    writeFileSync(join(state, "runner.lock"), "999999999");
    const again = new Journal(state);
    expect(readFileSync(join(state, "runner.lock"), "utf8")).toBe(String(process.pid));
    again.close();
    journal.close();
  });
});
