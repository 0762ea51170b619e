/**
 * The knowledge index's contract (what GET /api/rag/search takes and answers, what POST
 * /api/rag/documents takes): zod schemas that the worker, the CLI and the benchmark all parse with.
 * It imports zod only, so the CLI can use it without the worker's dependencies.
 */
import { z } from "zod";

/** What a document is: repository docs and specs, code files, conversation summaries, task logs. */
export const RAG_SCOPES = ["docs", "code", "history", "logs"] as const;
export const RagScope = z.enum(RAG_SCOPES);
export type RagScope = z.infer<typeof RagScope>;

/** `hybrid` fuses both retrievers; `fts` and `vector` run one alone (to compare them, or to debug). */
export const SEARCH_MODES = ["hybrid", "fts", "vector"] as const;
export const SearchMode = z.enum(SEARCH_MODES);
export type SearchMode = z.infer<typeof SearchMode>;

/** How a result was found: by full-text search, by vector similarity, or by both. */
export const MATCH_REASONS = ["fts", "vector", "both"] as const;
export type MatchReason = (typeof MATCH_REASONS)[number];

export const SEARCH_DEFAULTS = { topK: 5, maxTokens: 2000, minSimilarity: 0.7 } as const;

/** `scope=docs` or `scope=docs,code`: one or more scopes. */
const ScopeList = z
  .string()
  .transform((value) => value.split(",").map((part) => part.trim()).filter(Boolean))
  .pipe(z.array(RagScope).min(1, "name at least one scope").max(RAG_SCOPES.length));

/** The search's options, as the API's query string spells them. */
export const SearchQuery = z.strictObject({
  q: z.string().trim().min(1, "the query is empty").max(1000),
  project: z.string().min(1).max(64).optional(),
  scope: ScopeList.optional(),
  top_k: z.coerce.number().int().min(1).max(50).default(SEARCH_DEFAULTS.topK),
  max_tokens: z.coerce.number().int().min(1).max(32_000).default(SEARCH_DEFAULTS.maxTokens),
  min_similarity: z.coerce.number().min(-1).max(1).default(SEARCH_DEFAULTS.minSimilarity),
  mode: SearchMode.default("hybrid"),
});
export type SearchQuery = z.infer<typeof SearchQuery>;

export const SearchHit = z.object({
  chunkId: z.string(),
  documentId: z.string(),
  project: z.object({ id: z.string(), name: z.string() }).nullable(),
  scope: RagScope,
  /** The document's source: a repository path, `spec`, `task:<id>`, `chat:<name>`… */
  source: z.string(),
  title: z.string(),
  /** Where in the document: the headings above the chunk, or the file and declaration it starts in. */
  heading: z.string(),
  text: z.string(),
  /** cl100k_base tokens of heading and text: what the result costs the token budget. */
  tokens: z.number().int(),
  /** The reciprocal-rank-fusion score the results are ordered by. */
  score: z.number(),
  matchedBy: z.enum(MATCH_REASONS),
  /** Cosine similarity to the query, when the vector search found it. */
  similarity: z.number().nullable(),
  /** ts_rank_cd of the full-text match, when full-text search found it. */
  ftsRank: z.number().nullable(),
});
export type SearchHit = z.infer<typeof SearchHit>;

export const SearchResponse = z.object({
  query: z.string(),
  mode: SearchMode,
  results: z.array(SearchHit),
  /** Tokens of the results, at most `budget.maxTokens`. */
  tokens: z.number().int(),
  budget: z.object({ topK: z.number().int(), maxTokens: z.number().int(), minSimilarity: z.number() }),
  /** How many candidates each retriever brought (vector ones at or above minSimilarity). */
  candidates: z.object({ fts: z.number().int(), vector: z.number().int() }),
  /** Results that ranked high enough but were left out because they did not fit the token budget. */
  overBudget: z.number().int(),
  /** What went wrong without failing the search: a hybrid search whose vector half was unavailable answers from full text. */
  warnings: z.array(z.string()),
});
export type SearchResponse = z.infer<typeof SearchResponse>;

/** A queue message carries the whole document: it stays under the queue's 128 KB per message. */
export const MAX_DOCUMENT_BYTES = 96 * 1024;

/** How the text is split: on headings and paragraphs, on declarations, or on paragraphs and lines. */
export const DOCUMENT_KINDS = ["markdown", "code", "text"] as const;
export const DocumentKind = z.enum(DOCUMENT_KINDS);
export type DocumentKind = z.infer<typeof DocumentKind>;

const Source = z.string().trim().min(1).max(500);

export const IngestDocument = z.strictObject({
  /** The project (id or name) it belongs to; without one it is the caller's own. */
  project: z.string().min(1).max(64).optional(),
  scope: RagScope,
  source: Source,
  title: z.string().max(300).optional(),
  content: z
    .string()
    .min(1, "the document is empty")
    .refine((text) => new TextEncoder().encode(text).byteLength <= MAX_DOCUMENT_BYTES, `a document is at most ${MAX_DOCUMENT_BYTES} bytes of UTF-8`),
  /** Default: from the source's file extension (markdown for .md, code for source files, text otherwise). */
  kind: DocumentKind.optional(),
});
export type IngestDocument = z.infer<typeof IngestDocument>;

export const IngestBody = z.strictObject({ documents: z.array(IngestDocument).min(1).max(100) });

export const DeleteDocument = z.strictObject({ project: z.string().min(1).max(64).optional(), scope: RagScope, source: Source });

export const DocumentsQuery = z.strictObject({
  project: z.string().min(1).max(64).optional(),
  scope: RagScope.optional(),
  limit: z.coerce.number().int().min(1).max(500).default(100),
  offset: z.coerce.number().int().min(0).default(0),
});

export const DocumentView = z.object({
  id: z.string(),
  projectId: z.string().nullable(),
  ownerId: z.string().nullable(),
  scope: RagScope,
  source: z.string(),
  title: z.string(),
  contentHash: z.string(),
  chunkCount: z.number().int(),
  updatedAt: z.string(),
});
export type DocumentView = z.infer<typeof DocumentView>;
