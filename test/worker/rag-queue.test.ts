/**
 * The rag-ingest consumer (src/rag/consumer.ts) with batches made here, so every branch is seen: a
 * message it cannot read is recorded at once; a failing one is retried with exponential backoff and
 * recorded once its deliveries are used up; the dead-letter consumer records what reaches it. This
 * worker has no model key, so an embedding always fails: a poison message that parses.
 */
import { env } from "cloudflare:workers";
import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { withDb } from "../../src/db/client.ts";
import { ragIngestFailures } from "../../src/db/schema.ts";
import { backoffSeconds, consumeRagIngest, maxAttempts, recordDeadLetters } from "../../src/rag/consumer.ts";
import { createUserWithKey } from "./helpers.ts";

interface Settled {
  acked: boolean;
  retried: { delaySeconds?: number } | null;
}

function batchOf(bodies: { body: unknown; attempts: number }[]): { batch: MessageBatch; settled: Settled[] } {
  const settled: Settled[] = bodies.map(() => ({ acked: false, retried: null }));
  const messages = bodies.map(({ body, attempts }, i) => ({
    id: crypto.randomUUID(),
    timestamp: new Date(),
    body,
    attempts,
    ack: () => void ((settled[i] as Settled).acked = true),
    retry: (options?: { delaySeconds?: number }) => void ((settled[i] as Settled).retried = options ?? {}),
  }));
  const batch = { queue: "rag-ingest", messages, ackAll: () => undefined, retryAll: () => undefined } as unknown as MessageBatch;
  return { batch, settled };
}

const failuresFor = (marker: string) => withDb(env, (db) => db.select().from(ragIngestFailures)).then((rows) => rows.filter((row) => JSON.stringify(row.message).includes(marker)));

describe("the rag-ingest consumer", () => {
  it("backs off 2, 4, 8… seconds up to 5 minutes, and gives up after RAG_INGEST_MAX_ATTEMPTS deliveries", () => {
    expect([1, 2, 3, 4, 8, 9, 20].map(backoffSeconds)).toEqual([2, 4, 8, 16, 256, 300, 300]);
    expect(maxAttempts(env)).toBe(6);
    expect(maxAttempts({ RAG_INGEST_MAX_ATTEMPTS: "3" })).toBe(3);
    // Never past the queue's own retries (max_retries 10), where the queue would drop the message itself.
    expect(maxAttempts({ RAG_INGEST_MAX_ATTEMPTS: "50" })).toBe(11);
    expect(maxAttempts({ RAG_INGEST_MAX_ATTEMPTS: "" })).toBe(6);
  });

  it("retries a message that fails, then records it whole with the reason and acks it", async () => {
    const { userId } = await createUserWithKey("poison");
    const marker = `poison-${crypto.randomUUID()}`;
    const body = { type: "document:upsert", document: { projectId: null, ownerId: userId, scope: "history", source: `chat:${marker}`, title: "t", content: `about ${marker}`, kind: "text" } };
    const early = batchOf([
      { body, attempts: 1 },
      { body, attempts: 2 },
    ]);
    await consumeRagIngest(early.batch, env);
    expect(early.settled).toEqual([
      { acked: false, retried: { delaySeconds: 2 } },
      { acked: false, retried: { delaySeconds: 4 } },
    ]);
    expect(await failuresFor(marker)).toEqual([]);

    const last = batchOf([{ body, attempts: 6 }]);
    await consumeRagIngest(last.batch, env);
    expect(last.settled).toEqual([{ acked: true, retried: null }]);
    const [failure] = await failuresFor(marker);
    expect(failure).toMatchObject({ attempts: 6, message: body, subject: `history chat:${marker} of ${userId}` });
    expect(failure?.error).toMatch(/No model is configured/);
  });

  it("records a message it cannot read at once, without retrying it", async () => {
    const marker = `garbled-${crypto.randomUUID()}`;
    const { batch, settled } = batchOf([
      { body: { type: "document:upsert", document: { source: marker } }, attempts: 1 },
      { body: `plain text ${marker}`, attempts: 1 },
    ]);
    await consumeRagIngest(batch, env);
    expect(settled).toEqual([
      { acked: true, retried: null },
      { acked: true, retried: null },
    ]);
    const failures = await failuresFor(marker);
    expect(failures).toHaveLength(2);
    for (const failure of failures) {
      expect(failure.subject).toBe("an unreadable message");
      expect(failure.error).toMatch(/^not a rag-ingest message: /);
      expect(failure.attempts).toBe(1);
    }
    expect(failures.find((failure) => typeof failure.message.body === "string")?.message).toEqual({ body: `plain text ${marker}` });
  });

  it("acks what has nothing left to do: a document of a project that is gone", async () => {
    const { batch, settled } = batchOf([{ body: { type: "document:delete", key: { projectId: "prj_gone", ownerId: null, scope: "docs", source: "x.md" } }, attempts: 1 }, { body: { type: "repository:sync", projectId: "prj_gone" }, attempts: 1 }]);
    await consumeRagIngest(batch, env);
    expect(settled.every((entry) => entry.acked && !entry.retried)).toBe(true);
  });

  it("records each dead letter and acks it", async () => {
    const marker = `dead-${crypto.randomUUID()}`;
    const { batch, settled } = batchOf([{ body: { type: "task:log", taskId: marker }, attempts: 1 }]);
    await recordDeadLetters(batch, env);
    expect(settled).toEqual([{ acked: true, retried: null }]);
    const [failure] = await failuresFor(marker);
    expect(failure).toMatchObject({ subject: `log of task ${marker}` });
    expect(failure?.error).toMatch(/never finished/);
    await withDb(env, (db) => db.delete(ragIngestFailures).where(eq(ragIngestFailures.id, failure?.id ?? "")));
  });
});
