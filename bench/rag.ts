/**
 * `npm run bench -- rag [--queries 500] [--max-docs N] [--beir DIR] [--label]`: the knowledge index
 * through the local stack (wrangler dev, its rag-ingest queue, the VectorStore Durable Object,
 * embedded Postgres), one JSON line:
 *   ingest         documents POSTed to /api/rag/documents until the last chunk is in both indexes:
 *                  chunks per second, the whole path (queue, chunking, embeddings, both writes)
 *   search         p50/p95 of GET /api/rag/search (hybrid, top_k 5) for the local vector backend
 *                  (goal: p95 ≤ 50 ms at 5,000 chunks): end to end (search_*), and the search's
 *                  own work (search_work_*: the route's Server-Timing less the step that opens the
 *                  request's database connection), beside GET /healthz in the same run (one
 *                  `select 1` on a new connection: what every request costs here first)
 *   mrr_at_5       of full-text only, vector only and hybrid, over the labelled queries
 *
 * The corpus is the Markdown documentation the installed npm packages ship (node_modules, pinned by
 * package-lock.json), from packages under permissive licences only (MIT, Apache-2.0, ISC, BSD…);
 * the labelled queries are committed in BEIR format (bench/fixtures/rag/npm-docs, made with
 * --label): each was made from one sentence of one document, and a result is relevant when it is a
 * chunk of that document containing that sentence. `--beir DIR` runs any BEIR dataset instead
 * (corpus.jsonl, queries.jsonl, qrels/test.tsv; relevance by document).
 *
 * Embeddings come from the model stand-in (standins/model-server.ts: hashed bags of words, so the
 * vector figures are synthetic) unless OPENAI_API_KEY is set in the environment: then from the real
 * model at OPENAI_BASE_URL (default OpenAI), and the line says which.
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { startLocalDatabase } from "../scripts/lib/local-db.ts";
import { ROOT, type Stack, startStack } from "../scripts/lib/local-stack.ts";
import { waitFor } from "../scripts/lib/processes.ts";
import { MAX_DOCUMENT_BYTES, SearchResponse } from "../src/rag/contract.ts";
import { ModelServer } from "../standins/model-server.ts";
import { nowMs, percentile, round } from "./stats.ts";

export const GOAL_P95_MS = 50;
export const NPM_DOCS_DIR = join(ROOT, "bench", "fixtures", "rag", "npm-docs");
/** Licences whose terms let their documentation be indexed and quoted here. */
const PERMISSIVE = new Set(["MIT", "MIT-0", "ISC", "Apache-2.0", "BSD-2-Clause", "BSD-3-Clause", "0BSD", "Unlicense", "CC0-1.0", "BlueOak-1.0.0", "MIT OR Apache-2.0", "Apache-2.0 OR MIT", "(MIT OR CC0-1.0)"]);
/** Licence texts, change logs and the like: long, repetitive, and not what anyone searches. */
const NOT_DOCS = /(^|\/)(LICEN[CS]E|CHANGELOG|CHANGES|HISTORY|CODE_OF_CONDUCT|SECURITY|CONTRIBUTORS|AUTHORS|NOTICE)[^/]*$/i;
const MRR_CUTOFF = 5;

// ---- BEIR ----

export interface BeirDocument {
  id: string;
  title: string;
  text: string;
}
export interface BeirQuery {
  id: string;
  text: string;
  /** This benchmark's own: the sentence the query was made from (a relevant chunk contains it). */
  answer?: string;
}
export interface BeirDataset {
  corpus: BeirDocument[];
  queries: BeirQuery[];
  /** query id → relevant corpus ids (score > 0). */
  qrels: Map<string, Set<string>>;
}

function jsonLines(text: string, file: string): Record<string, unknown>[] {
  return text
    .split("\n")
    .map((line, index) => ({ line: line.trim(), index }))
    .filter(({ line }) => line)
    .map(({ line, index }) => {
      try {
        const value: unknown = JSON.parse(line);
        if (value && typeof value === "object" && !Array.isArray(value)) return value as Record<string, unknown>;
      } catch {
        // reported below
      }
      throw new Error(`${file}:${index + 1}: not a JSON object`);
    });
}

const stringField = (record: Record<string, unknown>, field: string, file: string): string => {
  const value = record[field];
  if (typeof value === "string") return value;
  if (typeof value === "number") return String(value);
  throw new Error(`${file}: a line without "${field}"`);
};

/** Parses BEIR's three files: corpus.jsonl ({_id, title, text}), queries.jsonl ({_id, text}) and a qrels TSV (query-id, corpus-id, score; a header line is skipped). */
export function parseBeir(files: { corpus?: string; queries: string; qrels: string }): BeirDataset {
  const corpus = jsonLines(files.corpus ?? "", "corpus.jsonl").map((record) => ({ id: stringField(record, "_id", "corpus.jsonl"), title: typeof record.title === "string" ? record.title : "", text: stringField(record, "text", "corpus.jsonl") }));
  const queries = jsonLines(files.queries, "queries.jsonl").map((record) => {
    const metadata = record.metadata && typeof record.metadata === "object" ? (record.metadata as Record<string, unknown>) : {};
    return { id: stringField(record, "_id", "queries.jsonl"), text: stringField(record, "text", "queries.jsonl"), ...(typeof metadata.answer === "string" ? { answer: metadata.answer } : {}) };
  });
  const qrels = new Map<string, Set<string>>();
  files.qrels.split("\n").forEach((line, index) => {
    const cells = line.trim().split("\t");
    if (cells.length < 3 || (index === 0 && Number.isNaN(Number(cells[2])))) return;
    const [queryId = "", corpusId = "", score = "0"] = cells;
    if (Number(score) <= 0) return;
    qrels.set(queryId, (qrels.get(queryId) ?? new Set()).add(corpusId));
  });
  return { corpus, queries, qrels };
}

/** Reads a BEIR dataset's folder; corpus.jsonl may be missing (the npm-docs set builds its corpus). */
export function loadBeir(dir: string, split = "test"): BeirDataset {
  const read = (file: string) => readFileSync(join(dir, file), "utf8");
  return parseBeir({ ...(existsSync(join(dir, "corpus.jsonl")) ? { corpus: read("corpus.jsonl") } : {}), queries: read("queries.jsonl"), qrels: read(join("qrels", `${split}.tsv`)) });
}

const normalise = (text: string) => text.replace(/\s+/g, " ").trim().toLowerCase();

/** Whether a search result answers the query: a chunk of a relevant document (containing the query's sentence, when it has one). */
export function isRelevant(query: BeirQuery, relevant: Set<string> | undefined, hit: { source: string; text: string }): boolean {
  if (!relevant?.has(hit.source)) return false;
  return query.answer === undefined || normalise(hit.text).includes(normalise(query.answer));
}

/** Mean reciprocal rank at `cutoff`: 1/rank of the first relevant result, 0 when none is in the first `cutoff`. */
export function meanReciprocalRank(ranks: (number | null)[], cutoff = MRR_CUTOFF): number {
  if (ranks.length === 0) return 0;
  return ranks.reduce<number>((sum, rank) => sum + (rank !== null && rank <= cutoff ? 1 / rank : 0), 0) / ranks.length;
}

// ---- The npm-docs corpus ----

interface Package {
  name: string;
  version: string;
  license: string;
  /** The folder of its package.json. */
  dir: string;
}

function packageOf(file: string, cache: Map<string, Package | null>): Package | null {
  for (let dir = dirname(file); dir.startsWith(join(ROOT, "node_modules")); dir = dirname(dir)) {
    if (!cache.has(dir)) {
      let found: Package | null = null;
      const manifest = join(dir, "package.json");
      if (existsSync(manifest)) {
        try {
          const json = JSON.parse(readFileSync(manifest, "utf8")) as { name?: unknown; version?: unknown; license?: unknown };
          if (typeof json.name === "string" && typeof json.version === "string") found = { name: json.name, version: json.version, license: typeof json.license === "string" ? json.license : "", dir };
        } catch {
          found = null;
        }
      }
      cache.set(dir, found);
    }
    const found = cache.get(dir);
    if (found) return found;
  }
  return null;
}

function markdownFiles(dir: string, into: string[] = []): string[] {
  for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    const path = join(dir, entry.name);
    if (entry.isDirectory() && !entry.isSymbolicLink()) markdownFiles(path, into);
    else if (entry.isFile() && /\.(md|markdown)$/i.test(entry.name)) into.push(path);
  }
  return into;
}

/**
 * The Markdown docs of the installed packages under permissive licences, in a stable order; ids are
 * `npm/<package>/<path>`. A package installed at several versions (nested node_modules) is indexed
 * once: at the version `labelled` names (the manifest's "version (licence)", so that the labels made
 * from it still hold when another dependency hoists an older copy), or else the first found.
 */
export function npmDocsCorpus(maxDocs = Number.POSITIVE_INFINITY, labelled: Record<string, string> = {}): { documents: BeirDocument[]; packages: Record<string, string> } {
  const cache = new Map<string, Package | null>();
  const documents: BeirDocument[] = [];
  const packages: Record<string, string> = {};
  const taken = new Map<string, { index: number; version: string }>();
  for (const file of markdownFiles(join(ROOT, "node_modules"))) {
    const pkg = packageOf(file, cache);
    if (!pkg || !PERMISSIVE.has(pkg.license)) continue;
    const within = relative(pkg.dir, file);
    if (NOT_DOCS.test(within) || statSync(file).size > MAX_DOCUMENT_BYTES || statSync(file).size < 200) continue;
    const id = `npm/${pkg.name}/${within}`;
    const version = `${pkg.version} (${pkg.license})`;
    const earlier = taken.get(id);
    if (earlier && (earlier.version === labelled[pkg.name] || version !== labelled[pkg.name])) continue;
    if (!earlier && documents.length >= maxDocs) continue;
    const text = readFileSync(file, "utf8");
    if (Buffer.byteLength(text) > MAX_DOCUMENT_BYTES) continue;
    packages[pkg.name] = version;
    const document = { id, title: id, text };
    if (earlier) documents[earlier.index] = document;
    else documents.push(document);
    taken.set(id, { index: earlier?.index ?? documents.length - 1, version });
  }
  return { documents, packages };
}

/** The packages (name → "version (licence)") the labelled queries were made from. */
export function labelledPackages(): Record<string, string> {
  const path = join(NPM_DOCS_DIR, "manifest.json");
  if (!existsSync(path)) return {};
  return (JSON.parse(readFileSync(path, "utf8")) as { packages?: Record<string, string> }).packages ?? {};
}

// ---- The labelled queries (--label) ----

const STOP = new Set("a about above after again all also an and any are as at be because been before being below between both but by can could did do does doing down during each few for from further had has have having here how i if in into is it its itself just like may me more most must my no nor not now of off on once only or other our out over own same see set should so some such than that the their them then there these they this those through to too under until up use used uses using very via was we were what when where which while who why will with within without would you your".split(" "));

function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Prose sentences of a Markdown text: no code, tables, lists, quotes, headings or HTML. */
function sentences(markdown: string): string[] {
  const found: string[] = [];
  let fenced = false;
  for (const paragraph of markdown.replace(/\r\n?/g, "\n").split(/\n\s*\n/)) {
    const fences = (paragraph.match(/^\s*(```|~~~)/gm) ?? []).length;
    const wasFenced = fenced;
    if (fences % 2 === 1) fenced = !fenced;
    if (wasFenced || fences > 0) continue;
    const text = paragraph.trim();
    if (!text || /^([#|>*+<![-]|\d+[.)]\s|\s{4})/.test(text)) continue;
    for (const sentence of text.split(/(?<=[.!?])\s+/)) {
      const words = sentence.split(/\s+/);
      if (words.length >= 8 && words.length <= 30 && /[.!?]$/.test(sentence) && !/[<>{}|\\]|https?:/.test(sentence)) found.push(sentence.trim());
    }
  }
  return found;
}

const contentWords = (text: string) => (text.replace(/`/g, " ").toLowerCase().match(/[a-z][a-z0-9_]{2,}/g) ?? []).filter((word) => !STOP.has(word));

/**
 * Queries made from sentences found in exactly one document: half are four to six of the
 * sentence's own content words ("keywords"), half are four of them plus one word from elsewhere in
 * the corpus ("keywords+1": a word the document does not use, as a person's wording often is,
 * which full text — every word must match — cannot find, and vectors can).
 */
export interface LabelledQuery extends BeirQuery {
  answer: string;
  kind: "keywords" | "keywords+1";
  corpusId: string;
}

export function labelQueries(documents: BeirDocument[], count: number, seed = 13): LabelledQuery[] {
  const random = prng(seed);
  const bySentence = new Map<string, Set<string>>();
  const perDocument = documents.map((document) => ({ document, candidates: sentences(document.text) }));
  for (const { document, candidates } of perDocument) for (const sentence of candidates) bySentence.set(normalise(sentence), (bySentence.get(normalise(sentence)) ?? new Set()).add(document.id));
  const vocabulary = [...new Set(documents.flatMap((document) => contentWords(document.text.slice(0, 2000))))].sort();
  const usable = perDocument.filter((entry) => entry.candidates.length > 0);
  const queries: LabelledQuery[] = [];
  const used = new Set<string>();
  for (let tries = 0; queries.length < count && tries < count * 50; tries++) {
    const { document, candidates } = usable[Math.floor(random() * usable.length)] ?? { document: null, candidates: [] };
    const sentence = candidates[Math.floor(random() * candidates.length)];
    if (!document || !sentence || used.has(sentence) || (bySentence.get(normalise(sentence))?.size ?? 0) !== 1) continue;
    const words = [...new Set(contentWords(sentence))];
    if (words.length < 5) continue;
    const keywordsOnly = queries.length % 2 === 0;
    const take = keywordsOnly ? Math.min(words.length, 4 + Math.floor(random() * 3)) : 4;
    const picked = words.map((word) => ({ word, key: random() })).sort((a, b) => a.key - b.key).slice(0, take).map((entry) => entry.word);
    const kept = words.filter((word) => picked.includes(word));
    if (!keywordsOnly) {
      const own = new Set(contentWords(document.text));
      let extra = "";
      for (let i = 0; i < 20 && !extra; i++) {
        const word = vocabulary[Math.floor(random() * vocabulary.length)] ?? "";
        if (word && !own.has(word)) extra = word;
      }
      if (!extra) continue;
      kept.splice(Math.floor(random() * (kept.length + 1)), 0, extra);
    }
    used.add(sentence);
    queries.push({ id: `q${String(queries.length + 1).padStart(3, "0")}`, text: kept.join(" "), answer: sentence, kind: keywordsOnly ? "keywords" : "keywords+1", corpusId: document.id });
  }
  return queries;
}

function writeLabels(documents: BeirDocument[], packages: Record<string, string>, count: number): void {
  const queries = labelQueries(documents, count);
  mkdirSync(join(NPM_DOCS_DIR, "qrels"), { recursive: true });
  writeFileSync(join(NPM_DOCS_DIR, "queries.jsonl"), queries.map((query) => JSON.stringify({ _id: query.id, text: query.text, metadata: { answer: query.answer, kind: query.kind } })).join("\n") + "\n");
  writeFileSync(join(NPM_DOCS_DIR, "qrels", "test.tsv"), ["query-id\tcorpus-id\tscore", ...queries.map((query) => `${query.id}\t${query.corpusId}\t1`)].join("\n") + "\n");
  writeFileSync(join(NPM_DOCS_DIR, "manifest.json"), JSON.stringify({ made_by: "npm run bench -- rag --label", queries: queries.length, documents: documents.length, packages }, null, 2) + "\n");
  console.error(`wrote ${queries.length} queries over ${documents.length} documents to ${relative(ROOT, NPM_DOCS_DIR)}`);
}

// ---- The run ----

interface Options {
  queries: number;
  maxDocs?: number;
  beir?: string;
  label?: boolean;
}

interface Stats {
  documents: number;
  chunks: number;
  vectors: number;
  failures: number;
}

/** POSTs the documents in bodies under the API's 1 MiB, a few requests at a time. */
async function ingestAll(stack: Stack, key: string, project: string, documents: BeirDocument[]): Promise<void> {
  const bodies: object[][] = [[]];
  let size = 0;
  for (const document of documents) {
    const entry = { project, scope: "docs", source: document.id, title: document.title || document.id, content: document.text, kind: /\.(md|markdown)$/i.test(document.id) ? "markdown" : "text" };
    const length = Buffer.byteLength(JSON.stringify(entry));
    const current = bodies.at(-1) ?? [];
    if (current.length === 100 || size + length > 900 * 1024) {
      bodies.push([entry]);
      size = length;
    } else {
      current.push(entry);
      size += length;
    }
  }
  for (let i = 0; i < bodies.length; i += 4) {
    await Promise.all(
      bodies.slice(i, i + 4).map(async (body) => {
        const res = await stack.api("/api/rag/documents", { json: { documents: body }, key });
        if (res.status !== 202) throw new Error(`POST /api/rag/documents: ${res.status} ${JSON.stringify(res.body).slice(0, 300)}`);
      }),
    );
  }
}

/** The durations of a Server-Timing header, by name. */
export function serverTimings(header: string | null): Record<string, number> {
  const timings: Record<string, number> = {};
  for (const part of (header ?? "").split(",")) {
    const match = /^\s*([\w-]+);dur=([\d.]+)/.exec(part);
    if (match?.[1]) timings[match[1]] = Number(match[2]);
  }
  return timings;
}

async function searchOnce(stack: Stack, params: Record<string, string | number>): Promise<{ ms: number; timings: Record<string, number>; body: SearchResponse }> {
  const query = new URLSearchParams(Object.entries(params).map(([name, value]) => [name, String(value)]));
  const started = nowMs();
  const res = await fetch(`${stack.url}/api/rag/search?${query.toString()}`, { headers: { authorization: `Bearer ${stack.adminKey}` } });
  const text = await res.text();
  const ms = nowMs() - started;
  if (res.status !== 200) throw new Error(`search ${query.toString()}: ${res.status} ${text.slice(0, 300)}`);
  return { ms, timings: serverTimings(res.headers.get("server-timing")), body: SearchResponse.parse(JSON.parse(text)) };
}

/** GET /healthz: the same worker, one `select 1` on a new database connection: what any request costs here before it does anything. */
async function healthzLatencies(stack: Stack, count: number): Promise<number[]> {
  const latencies: number[] = [];
  for (let i = 0; i < count; i++) {
    const started = nowMs();
    await (await fetch(`${stack.url}/healthz`)).text();
    latencies.push(nowMs() - started);
  }
  return latencies;
}

export async function rag(options: Options): Promise<void> {
  const beir = options.beir ? loadBeir(options.beir) : null;
  const npm = beir ? null : npmDocsCorpus(options.maxDocs, labelledPackages());
  const documents = beir?.corpus.slice(0, options.maxDocs ?? beir.corpus.length) ?? npm?.documents ?? [];
  if (options.label) return writeLabels(documents, npm?.packages ?? {}, options.queries);
  const labelled = beir ?? loadBeir(NPM_DOCS_DIR);
  const present = new Set(documents.map((document) => document.id));
  // Queries whose document is not in this corpus (a package upgraded since labelling, or --max-docs) are left out, and counted.
  const queries = labelled.queries.filter((query) => [...(labelled.qrels.get(query.id) ?? [])].some((id) => present.has(id))).slice(0, options.queries);
  const skippedQueries = Math.min(options.queries, labelled.queries.length) - queries.length;

  const realModel = Boolean(process.env.OPENAI_API_KEY);
  const modelKey = realModel ? (process.env.OPENAI_API_KEY ?? "") : `sk-bench-${randomBytes(8).toString("hex")}`;
  const model = realModel ? null : new ModelServer({ apiKey: modelKey });
  await model?.start();
  const db = await startLocalDatabase("bench_rag");
  const stack = await startStack({
    databaseUrl: db.databaseUrl,
    dbWsProxy: db.wsProxy,
    adminKey: `ork_bench${randomBytes(12).toString("hex")}`,
    logLevel: "error",
    vars: { OPENAI_BASE_URL: model?.baseUrl ?? (process.env.OPENAI_BASE_URL || "https://api.openai.com/v1"), OPENAI_API_KEY: modelKey },
  });
  try {
    const project = await stack.api<{ project: { id: string; name: string } }>("/api/projects", { json: { name: `rag-bench-${randomBytes(3).toString("hex")}`, description: "the RAG benchmark's corpus" } });
    if (project.status !== 201) throw new Error(`create project: ${project.status}`);
    const projectName = project.body.project.name;

    const started = nowMs();
    await ingestAll(stack, stack.adminKey, projectName, documents);
    let stats: Stats = { documents: 0, chunks: 0, vectors: 0, failures: 0 };
    await waitFor(
      async () => {
        stats = (await stack.api<Stats>("/api/rag/stats")).body;
        if (stats.failures > 0) throw new Error(`${stats.failures} documents could not be ingested: ${JSON.stringify((await stack.api("/api/rag/failures?limit=3")).body).slice(0, 600)}`);
        return stats.documents >= documents.length && stats.vectors === stats.chunks ? true : undefined;
      },
      1_800_000,
      () => `ingested ${JSON.stringify(stats)} of ${documents.length} documents\n${stack.process.output().slice(-2000)}`,
    );
    const ingestSeconds = (nowMs() - started) / 1000;

    const base = { project: projectName, top_k: MRR_CUTOFF, max_tokens: 32_000 };
    // Warm-up: the first requests compile and load (the tokenizer's ranks, the vectors into memory).
    for (const query of queries.slice(0, 20)) await searchOnce(stack, { ...base, q: query.text });
    const latencies: number[] = [];
    // The search's own work: the handler's time after the request's database connection is open
    // (the "access" step opens it), as the route's Server-Timing header reports it.
    const work: number[] = [];
    const steps = new Map<string, number[]>();
    const ranks: Record<"fts" | "vector" | "hybrid", (number | null)[]> = { fts: [], vector: [], hybrid: [] };
    for (const query of queries) {
      for (const mode of ["hybrid", "fts", "vector"] as const) {
        // No similarity floor for the quality figures: MRR ranks whatever the vectors bring.
        const { ms, timings, body } = await searchOnce(stack, { ...base, q: query.text, mode, min_similarity: -1 });
        if (mode === "hybrid") {
          latencies.push(ms);
          work.push((timings.search ?? ms) - (timings.access ?? 0));
          for (const [name, value] of Object.entries(timings)) steps.set(name, [...(steps.get(name) ?? []), value]);
        }
        const rank = body.results.findIndex((hit) => isRelevant(query, labelled.qrels.get(query.id), hit));
        ranks[mode].push(rank < 0 ? null : rank + 1);
      }
    }
    const healthz = await healthzLatencies(stack, Math.min(200, Math.max(20, queries.length)));
    console.log(
      JSON.stringify({
        bench: "rag",
        corpus: beir ? `BEIR ${relative(ROOT, options.beir ?? "")}` : "npm-docs: Markdown of the installed npm packages (permissive licences)",
        documents: stats.documents,
        chunks: stats.chunks,
        ingest_seconds: round(ingestSeconds, 1),
        ingest_chunks_per_s: round(stats.chunks / ingestSeconds, 1),
        queries: queries.length,
        ...(skippedQueries > 0 ? { queries_left_out: skippedQueries } : {}),
        backend: "local",
        search_p50_ms: round(percentile(latencies, 50)),
        search_p95_ms: round(percentile(latencies, 95)),
        search_work_p50_ms: round(percentile(work, 50)),
        search_work_p95_ms: round(percentile(work, 95)),
        search_steps_p50_ms: Object.fromEntries([...steps.entries()].map(([name, values]) => [name, round(percentile(values, 50), 1)])),
        healthz_p50_ms: round(percentile(healthz, 50)),
        healthz_p95_ms: round(percentile(healthz, 95)),
        goal_p95_ms: GOAL_P95_MS,
        mrr_at_5: { fts: round(meanReciprocalRank(ranks.fts), 3), vector: round(meanReciprocalRank(ranks.vector), 3), hybrid: round(meanReciprocalRank(ranks.hybrid), 3) },
        embeddings: realModel ? "OpenAI text-embedding-3-small (512 dimensions) at OPENAI_BASE_URL" : "synthetic: the model stand-in's hashed bag of words (set OPENAI_API_KEY for the real model's figures)",
      }),
    );
  } finally {
    await stack.stop();
    await db.stop();
    await model?.stop();
  }
}
