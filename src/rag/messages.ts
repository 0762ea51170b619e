/**
 * The rag-ingest queue's messages (one `type` tag, noun:verb) and the producer side: everything that
 * puts knowledge into the index sends one of these, so ingestion is retried, throttled and recorded
 * in one place (consumer.ts). A message carries a document's content only when the sender has it;
 * repository files and task logs are read by the consumer, so nothing large rides on the queue.
 */
import { z } from "zod";
import { DocumentKind, MAX_DOCUMENT_BYTES, RagScope } from "./contract.ts";

const Key = {
  projectId: z.string().min(1).nullable(),
  ownerId: z.string().min(1).nullable(),
  scope: RagScope,
  source: z.string().min(1).max(500),
};

export const IngestMessage = z.discriminatedUnion("type", [
  z.strictObject({ type: z.literal("document:upsert"), document: z.strictObject({ ...Key, title: z.string().max(300), content: z.string(), kind: DocumentKind }) }),
  z.strictObject({ type: z.literal("document:delete"), key: z.strictObject(Key) }),
  /** The project's spec and its repository's docs and code, at `ref` (default: its default branch). */
  z.strictObject({ type: z.literal("repository:sync"), projectId: z.string().min(1), ref: z.string().min(1).max(200).optional() }),
  z.strictObject({ type: z.literal("repository:file"), projectId: z.string().min(1), path: z.string().min(1).max(500), ref: z.string().min(1).max(200), scope: RagScope }),
  /** A task's event log, read from its TaskStream. */
  z.strictObject({ type: z.literal("task:log"), taskId: z.string().min(1).max(64) }),
]);
export type IngestMessage = z.infer<typeof IngestMessage>;

/** Queues take at most 100 messages and 256 KB per sendBatch; a message is at most 128 KB. */
const SEND_BATCH_MESSAGES = 100;
const SEND_BATCH_BYTES = 250 * 1024;
const MESSAGE_BYTES = 128 * 1024;

const bytes = (message: IngestMessage) => new TextEncoder().encode(JSON.stringify(message)).byteLength;

/** Sends messages to rag-ingest in as few batches as the queue's limits allow. */
export async function enqueueIngest(env: Pick<Env, "RAG_INGEST">, messages: readonly IngestMessage[]): Promise<void> {
  let batch: { body: IngestMessage }[] = [];
  let size = 0;
  for (const message of messages) {
    const length = bytes(message);
    // Callers check document sizes (MAX_DOCUMENT_BYTES) first; this is the last line before the queue refuses it.
    if (length > MESSAGE_BYTES) throw new Error(`a rag-ingest message of ${length} bytes is over the queue's limit (documents are at most ${MAX_DOCUMENT_BYTES} bytes)`);
    if (batch.length === SEND_BATCH_MESSAGES || size + length > SEND_BATCH_BYTES) {
      await env.RAG_INGEST.sendBatch(batch);
      batch = [];
      size = 0;
    }
    batch.push({ body: message });
    size += length;
  }
  if (batch.length > 0) await env.RAG_INGEST.sendBatch(batch);
}

/** A person's words for what a message is about, for the failures list. */
export function subjectOf(message: IngestMessage): string {
  switch (message.type) {
    case "document:upsert":
      return `${message.document.scope} ${message.document.source} of ${message.document.projectId ?? message.document.ownerId ?? "no one"}`;
    case "document:delete":
      return `removing ${message.key.scope} ${message.key.source} of ${message.key.projectId ?? message.key.ownerId ?? "no one"}`;
    case "repository:sync":
      return `repository of ${message.projectId}${message.ref ? ` at ${message.ref}` : ""}`;
    case "repository:file":
      return `${message.path} of ${message.projectId} at ${message.ref.slice(0, 12)}`;
    case "task:log":
      return `log of task ${message.taskId}`;
  }
}

export function projectOf(message: IngestMessage): string | null {
  switch (message.type) {
    case "document:upsert":
      return message.document.projectId;
    case "document:delete":
      return message.key.projectId;
    case "repository:sync":
    case "repository:file":
      return message.projectId;
    case "task:log":
      return null;
  }
}
