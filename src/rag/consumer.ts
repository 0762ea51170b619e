/**
 * The rag-ingest queue's consumer. Each message is acked once done, or retried with exponential
 * backoff (2, 4, 8… seconds, at most 5 minutes) until RAG_INGEST_MAX_ATTEMPTS deliveries; then it
 * is recorded whole in rag_ingest_failures with the reason, and acked. A message that is not a
 * rag-ingest message at all is recorded at once (no retry can fix it). A message the consumer never
 * finishes (a crash, a timeout) reaches the rag-ingest-failed dead-letter queue after the queue's own
 * retries, and `recordDeadLetters` records it the same way: no message is lost silently.
 */
import { eq } from "drizzle-orm";
import { type Db, withDb } from "../db/client.ts";
import { isForeignKeyViolation } from "../db/errors.ts";
import { ragIngestFailures, tasks } from "../db/schema.ts";
import { getTaskStream } from "../tasks/stream-client.ts";
import { newId } from "../lib/crypto.ts";
import { createLogger, type Logger } from "../lib/log.ts";
import type { TaskEvent } from "../shared/events.ts";
import { deleteDocument, upsertDocument } from "./documents.ts";
import { configuredEmbedder } from "./embeddings.ts";
import { IngestMessage, projectOf, subjectOf } from "./messages.ts";
import { githubSessions, ingestRepositoryFile, type RepositoryServices, syncRepository } from "./repository.ts";
import { taskLogDocument } from "./sources.ts";
import { configuredVectorIndex } from "./services.ts";

export const RAG_INGEST_QUEUE = "rag-ingest";
export const RAG_INGEST_DEAD_LETTERS = "rag-ingest-failed";

/** The consumer's max_retries (wrangler.toml) + 1: past it the queue would drop the message itself. */
const QUEUE_DELIVERIES = 11;
const MAX_BACKOFF_SECONDS = 300;
/** Events of one task read into its log document (the document keeps the end of them). */
const MAX_LOG_EVENTS = 20_000;

export function maxAttempts(env: Pick<Env, "RAG_INGEST_MAX_ATTEMPTS">): number {
  const configured = Math.floor(Number(env.RAG_INGEST_MAX_ATTEMPTS));
  return Number.isFinite(configured) && configured >= 1 ? Math.min(configured, QUEUE_DELIVERIES) : 6;
}

/** Seconds before delivery `attempts + 1`. */
export function backoffSeconds(attempts: number): number {
  return Math.min(MAX_BACKOFF_SECONDS, 2 ** Math.max(1, attempts));
}

/** An error as one line that never carries a key: the SDK's messages do not, and AppErrors are public text. */
function reasonOf(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.replace(/\s+/g, " ").slice(0, 1000);
}

/** Records a message that will not be processed; the caller acks it only once this has succeeded. */
export async function recordFailure(db: Db, body: unknown, error: string, attempts: number): Promise<string> {
  const parsed = IngestMessage.safeParse(body);
  const message = body !== null && typeof body === "object" && !Array.isArray(body) ? (body as Record<string, unknown>) : { body };
  const row = { id: newId("rif"), message, subject: parsed.success ? subjectOf(parsed.data) : "an unreadable message", projectId: parsed.success ? projectOf(parsed.data) : null, error, attempts };
  try {
    await db.insert(ragIngestFailures).values(row);
  } catch (failure) {
    // Its project was deleted: the record stays, without the link.
    if (!isForeignKeyViolation(failure)) throw failure;
    await db.insert(ragIngestFailures).values({ ...row, projectId: null });
  }
  return row.id;
}

async function taskEvents(env: Env, taskId: string): Promise<TaskEvent[]> {
  const stream = getTaskStream(env, taskId);
  const events: TaskEvent[] = [];
  for (let after = 0; ; ) {
    const page = await stream.read({ after, limit: 1000 });
    events.push(...page.events);
    if (events.length > MAX_LOG_EVENTS) events.splice(0, events.length - MAX_LOG_EVENTS);
    const last = page.events.at(-1)?.seq;
    if (last === undefined || last >= page.lastSeq) return events;
    after = last;
  }
}

async function handle(services: RepositoryServices, log: Logger, message: IngestMessage): Promise<unknown> {
  switch (message.type) {
    case "document:upsert":
      return upsertDocument(services, message.document);
    case "document:delete":
      return deleteDocument(services, message.key);
    case "repository:sync": {
      const outcome = await syncRepository(services, message.projectId, message.ref);
      // A URL naming a repository the project does not own got into its row: worth an operator's look.
      if ("listing" in outcome && outcome.listing === "not the project's repository") log.warn("repository sync refused: the project's URL names a repository that is not its own", { projectId: message.projectId });
      return outcome;
    }
    case "repository:file":
      return ingestRepositoryFile(services, message);
    case "task:log": {
      const [task] = await services.db.select().from(tasks).where(eq(tasks.id, message.taskId));
      if (!task) return { skipped: "no such task" };
      return upsertDocument(services, taskLogDocument(task, await taskEvents(services.env, task.id)));
    }
  }
}

/** One message: done and acked, retried later, or recorded and acked. */
async function settle(services: RepositoryServices, log: Logger, message: Message, limit: number): Promise<void> {
  const { db } = services;
  const parsed = IngestMessage.safeParse(message.body);
  if (!parsed.success) {
    const reason = `not a rag-ingest message: ${parsed.error.issues.map((issue) => `${issue.path.join(".") || "body"}: ${issue.message}`).join("; ")}`;
    await recordFailure(db, message.body, reason, message.attempts);
    log.warn("rag-ingest message unreadable, recorded", { messageId: message.id, reason });
    return message.ack();
  }
  try {
    const outcome = await handle(services, log, parsed.data);
    log.debug("rag-ingest message done", { messageId: message.id, subject: subjectOf(parsed.data), outcome });
    message.ack();
  } catch (error) {
    const reason = reasonOf(error);
    if (message.attempts >= limit) {
      const failureId = await recordFailure(db, message.body, reason, message.attempts);
      log.warn("rag-ingest message failed, recorded", { messageId: message.id, failureId, subject: subjectOf(parsed.data), attempts: message.attempts, reason });
      return message.ack();
    }
    const delaySeconds = backoffSeconds(message.attempts);
    log.info("rag-ingest message retried", { messageId: message.id, subject: subjectOf(parsed.data), attempts: message.attempts, delaySeconds, reason });
    message.retry({ delaySeconds });
  }
}

/** The rag-ingest consumer: every message of the batch, one after another, each acked or retried. */
export async function consumeRagIngest(batch: MessageBatch, env: Env): Promise<void> {
  const log = createLogger(env.LOG_LEVEL, { component: "rag-ingest" });
  const limit = maxAttempts(env);
  await withDb(env, async (db) => {
    const services: RepositoryServices = { db, env, index: configuredVectorIndex(env), embedder: configuredEmbedder(db, env), github: githubSessions(env) };
    for (const message of batch.messages) {
      await settle(services, log, message, limit).catch((error: unknown) => {
        // Recording the failure failed too (the database is down): the queue keeps the message.
        log.error("rag-ingest message could not be settled", { messageId: message.id, error });
        message.retry({ delaySeconds: backoffSeconds(message.attempts) });
      });
    }
  });
}

/** The dead-letter queue's consumer: what the queue gave up on is recorded, then acked. */
export async function recordDeadLetters(batch: MessageBatch, env: Env): Promise<void> {
  const log = createLogger(env.LOG_LEVEL, { component: "rag-ingest" });
  await withDb(env, async (db) => {
    for (const message of batch.messages) {
      const failureId = await recordFailure(db, message.body, "the rag-ingest consumer never finished this message: it failed or ran out of time on every delivery", message.attempts);
      log.warn("rag-ingest message dead-lettered, recorded", { messageId: message.id, failureId });
      message.ack();
    }
  });
}
