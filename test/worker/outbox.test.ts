/**
 * The generic outbox, on a real Durable Object's SQLite storage, with destinations the test controls:
 * lanes deliver independently, a failing lane backs off and is parked (kept, reported) without
 * holding up the others, items that wait for another lane go after it, and nothing is lost when the
 * object is reset mid-delivery.
 */
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { Outbox, type OutboxItem, type OutboxOptions } from "../../src/lib/outbox.ts";
import { getRunnerHubStub } from "../../src/runner-hub/client.ts";
import { createLogger } from "../../src/lib/log.ts";

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Runs `body` with an outbox over a fresh object's storage (a hub's, whose schema has the outbox tables). */
async function withOutbox<T>(options: Partial<OutboxOptions> & Pick<OutboxOptions, "deliver">, body: (outbox: Outbox, sql: SqlStorage) => Promise<T>): Promise<T> {
  const stub = getRunnerHubStub(env, `outbox-test-${crypto.randomUUID()}`);
  return runInDurableObject(stub, async (_instance, state) => {
    const outbox = new Outbox(state.storage.sql, { batchSize: () => 100, classify: () => "retry", log: createLogger("error"), ...options });
    return body(outbox, state.storage.sql);
  });
}

describe("Outbox", () => {
  it("delivers each lane in order, in batches, and a failing lane holds back only itself", async () => {
    const delivered: Record<string, string[]> = {};
    const times: Record<string, number> = {};
    let failures = 0;
    const deliver = (lane: string, items: OutboxItem[]) => {
      if (lane === "task:broken") {
        failures++;
        return Promise.reject(new Error("the database is unavailable"));
      }
      (delivered[lane] ??= []).push(...items.map((item) => String(item.body)));
      times[lane] = Date.now();
      return Promise.resolve();
    };
    await withOutbox({ deliver, maxAttempts: 3 }, async (outbox) => {
      for (let i = 1; i <= 5; i++) outbox.push("task:broken", `b${i}`);
      const pushedAt = Date.now();
      for (let i = 1; i <= 250; i++) outbox.push("task:fine", `f${i}`);
      await outbox.drain();
      expect(delivered["task:fine"]).toEqual(Array.from({ length: 250 }, (_, i) => `f${i + 1}`));
      // The other lane's trouble cost it nothing: delivered in the first round.
      expect((times["task:fine"] ?? Infinity) - pushedAt).toBeLessThan(500);
      expect(failures).toBe(1);
      expect(outbox.pendingOn("task:broken")).toBe(5);
      const retryAt = outbox.nextAt();
      expect(retryAt).toBeGreaterThan(Date.now());

      // Retried at its time, and parked after maxAttempts: kept, reported, retried only rarely.
      for (let attempt = 2; attempt <= 3; attempt++) {
        await sleep(Math.max(0, (outbox.nextAt() ?? 0) - Date.now()) + 20);
        await outbox.drain();
      }
      expect(failures).toBe(3);
      const status = outbox.status();
      expect(status.pending).toBe(5);
      expect(status.parked).toEqual([{ lane: "task:broken", items: 5, since: expect.any(String) as string, error: "the database is unavailable" }]);
      expect((outbox.nextAt() ?? 0) - Date.now()).toBeGreaterThan(4 * 60_000);
      // A new lane is not held back by the parked one either.
      outbox.push("task:later", "l1");
      await outbox.drain();
      expect(delivered["task:later"]).toEqual(["l1"]);
    });
  });

  it("starts a lane that becomes due while another hangs, and gives a hanging delivery up in time", { timeout: 40_000 }, async () => {
    const delivered: Record<string, number> = {};
    let hung = 0;
    await withOutbox(
      {
        deliver: (lane) => {
          if (lane === "task:slow") {
            hung++;
            return new Promise(() => undefined); // never answers
          }
          delivered[lane] = Date.now();
          return Promise.resolve();
        },
      },
      async (outbox) => {
        outbox.push("task:slow", "stuck");
        const first = outbox.drain();
        await sleep(50);
        const pushedAt = Date.now();
        outbox.push("task:quick", "fine");
        void outbox.drain();
        // Not held until the hanging lane is done: delivered as soon as it was pushed.
        while (delivered["task:quick"] === undefined && Date.now() - pushedAt < 5000) await sleep(10);
        expect((delivered["task:quick"] ?? Infinity) - pushedAt).toBeLessThan(1000);
        // While it hangs, the watchdog is in the future: no alarm loop.
        expect((outbox.nextAt() ?? 0) - Date.now()).toBeGreaterThan(500);
        await first;
        expect(hung).toBe(1);
        expect(outbox.pendingOn("task:slow")).toBe(1);
        expect(outbox.status().parked).toEqual([]);
        expect((outbox.nextAt() ?? 0) - Date.now()).toBeGreaterThan(0);
      },
    );
  });

  it("is not starved by many lanes waiting on a failing one", async () => {
    const delivered: string[] = [];
    await withOutbox(
      { deliver: (lane) => (lane === "task:t" ? Promise.reject(new Error("down")) : (delivered.push(lane), Promise.resolve())) },
      async (outbox) => {
        const last = outbox.push("task:t", "event");
        for (let i = 0; i < 40; i++) outbox.push(`workflow:w:${i}`, "wake", { lane: "task:t", seq: last });
        outbox.push("task:other", "event");
        await outbox.drain();
        expect(delivered).toEqual(["task:other"]);
        // The waiting lanes need no clock; the failing one's retry is in the future.
        expect((outbox.nextAt() ?? 0) - Date.now()).toBeGreaterThan(0);
      },
    );
  });

  it("drops what the destination refuses for good, and goes on with the lane", async () => {
    const delivered: string[] = [];
    await withOutbox(
      {
        deliver: (_lane, items) => (items.some((i) => i.body === "poison") ? Promise.reject(new Error("no such task")) : (delivered.push(...items.map((i) => String(i.body))), Promise.resolve())),
        batchSize: () => 1,
        classify: (error) => (String(error).includes("no such task") ? "drop" : "retry"),
      },
      async (outbox) => {
        for (const body of ["a", "poison", "b"]) outbox.push("task:x", body);
        await outbox.drain();
        expect(delivered).toEqual(["a", "b"]);
        expect(outbox.status()).toEqual({ pending: 0, parked: [] });
      },
    );
  });

  it("delivers an item that waits for another lane only after that lane's earlier items", async () => {
    const order: string[] = [];
    let releaseTask: (() => void) | undefined;
    const taskGate = new Promise<void>((resolve) => (releaseTask = resolve));
    await withOutbox(
      {
        deliver: async (lane, items) => {
          if (lane === "task:t") await taskGate;
          order.push(...items.map((i) => `${lane}=${String(i.body)}`));
        },
      },
      async (outbox) => {
        const last = outbox.push("task:t", "step.completed");
        outbox.push("workflow:w", "wake up", { lane: "task:t", seq: last });
        const draining = outbox.drain();
        await sleep(100);
        expect(order).toEqual([]);
        // Waiting on another lane is not a deadline: no alarm is due for it.
        expect(outbox.nextAt()).not.toBeNull();
        releaseTask?.();
        await draining;
        await outbox.drain();
        expect(order).toEqual(["task:t=step.completed", "workflow:w=wake up"]);
      },
    );
  });

  it("lets a delivery fail quietly when its lane was wiped meanwhile (its object's storage deleted)", async () => {
    let fail: (error: Error) => void = () => undefined;
    await withOutbox({ deliver: () => new Promise<void>((_resolve, reject) => (fail = reject)) }, async (outbox, sql) => {
      outbox.push("task:gone", "late");
      const draining = outbox.drain();
      await sleep(10);
      // A task stream's retention ends while the delivery is in flight: everything goes.
      sql.exec("DELETE FROM outbox_items");
      sql.exec("DELETE FROM outbox_lanes");
      fail(new Error("the database is unavailable"));
      await expect(draining).resolves.toBeUndefined();
      expect(outbox.status()).toEqual({ pending: 0, parked: [] });
    });
  });

  it("keeps an item whose delivery was cut short, and delivers it again later", async () => {
    const stub = getRunnerHubStub(env, `outbox-reset-${crypto.randomUUID()}`);
    // The first object is "reset" mid-delivery: its delivery never settles.
    await runInDurableObject(stub, (_instance, state) => {
      const outbox = new Outbox(state.storage.sql, { deliver: () => new Promise(() => undefined), batchSize: () => 10, classify: () => "retry", log: createLogger("error") });
      outbox.push("task:r", "survivor");
      void outbox.drain();
    });
    const delivered = await runInDurableObject(stub, async (_instance, state) => {
      const seen: string[] = [];
      const outbox = new Outbox(state.storage.sql, { deliver: (_lane, items) => (seen.push(...items.map((i) => String(i.body))), Promise.resolve()), batchSize: () => 10, classify: () => "retry", log: createLogger("error") });
      // In flight: not delivered again at once, but the watchdog time is the next alarm.
      await outbox.drain();
      expect(seen).toEqual([]);
      const watchdog = outbox.nextAt() ?? 0;
      expect(watchdog - Date.now()).toBeGreaterThan(20_000);
      state.storage.sql.exec(`UPDATE outbox_lanes SET in_flight_until = ?`, Date.now() - 1);
      await outbox.drain();
      return seen;
    });
    expect(delivered).toEqual(["survivor"]);
  });
});
