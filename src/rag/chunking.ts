/**
 * Splitting documents into chunks of about CHUNK_TOKENS cl100k_base tokens with a 10% overlap.
 * Structure first: Markdown on headings, then paragraphs (a fenced code block stays whole); code on
 * top-level declarations (a declaration keeps the comment above it); plain text on paragraphs. Only
 * a piece that is still too long is cut further, on lines, then sentences, then tokens. A chunk
 * never crosses a heading, and carries the headings above it (or its file and declaration), which
 * both indexes see with its text.
 */
import type { DocumentKind } from "./contract.ts";
import { countTokens, prefixWithin, splitByTokens, suffixWithin } from "./tokens.ts";

export const CHUNK_TOKENS = 512;
export const OVERLAP_TOKENS = Math.round(CHUNK_TOKENS / 10);
/** Bumped when chunking changes: a document's content hash includes it, so every document is chunked and embedded again. */
export const CHUNKER_VERSION = 1;

export interface Chunk {
  heading: string;
  text: string;
  /** Tokens of `embeddingInput(chunk)`: what is embedded and what a search result costs. */
  tokens: number;
}

export interface ChunkOptions {
  maxTokens?: number;
  overlapTokens?: number;
}

export interface ChunkInput {
  content: string;
  kind: DocumentKind;
  /** Names the document in code chunks' headings (`src/app.ts › function main()`). */
  source: string;
  title?: string;
}

/** What is embedded, counted and searched for a chunk: its heading line, then its text. */
export function embeddingInput(chunk: Pick<Chunk, "heading" | "text">): string {
  return chunk.heading ? `${chunk.heading}\n\n${chunk.text}` : chunk.text;
}

const LONG_RUN = /\S{1025,}/g;
const CODE_EXTENSIONS = new Set(["ts", "tsx", "mts", "cts", "js", "jsx", "mjs", "cjs", "py", "go", "rs", "java", "kt", "kts", "rb", "php", "c", "h", "cc", "cpp", "hpp", "cs", "swift", "scala", "sh", "bash", "sql", "vue", "svelte", "lua", "ex", "exs", "dart"]);
const MARKDOWN_EXTENSIONS = new Set(["md", "mdx", "markdown"]);

/** The kind a source's file extension suggests: Markdown, code, or plain text. */
export function kindOfSource(source: string): DocumentKind {
  const extension = /\.([A-Za-z0-9]+)$/.exec(source)?.[1]?.toLowerCase() ?? "";
  if (MARKDOWN_EXTENSIONS.has(extension)) return "markdown";
  if (CODE_EXTENSIONS.has(extension)) return "code";
  return "text";
}

/** A run of text to pack into chunks, with the declaration it starts (code) for the chunk's heading. */
interface Unit {
  text: string;
  label?: string;
}

interface Section {
  /** The headings above this part of the document, outermost first. */
  path: string[];
  /** The path starts at the document's own title (a level-1 heading): the chunk needs no other. */
  titled: boolean;
  units: Unit[];
}

export function chunkDocument(input: ChunkInput, options: ChunkOptions = {}): Chunk[] {
  const maxTokens = options.maxTokens ?? CHUNK_TOKENS;
  const overlapTokens = options.overlapTokens ?? Math.round(maxTokens / 10);
  // A run of 1,000+ characters without a space (a data: URI, a minified line) is broken into lines:
  // BPE over one huge "word" is slow, and such a run is never what a search is for.
  const content = input.content.replace(/\r\n?/g, "\n").replace(LONG_RUN, (run) => run.match(/[^]{1,1024}/g)?.join("\n") ?? run);
  const root = input.title?.trim() || input.source;
  const sections = input.kind === "markdown" ? markdownSections(content) : input.kind === "code" ? [codeSection(content, input.source)] : [{ path: [], titled: false, units: paragraphs(content).map((text) => ({ text })) }];
  const chunks: Chunk[] = [];
  for (const section of sections) {
    // Code is headed by its file, a document by its own title, or else by the title it was given.
    const path = section.titled ? section.path : [root, ...section.path];
    for (const packed of pack(section.units, path, input.kind === "code", maxTokens, overlapTokens)) chunks.push(packed);
  }
  return chunks;
}

// ---- Markdown ----

const FENCE = /^ {0,3}(`{3,}|~{3,})/;
const ATX_HEADING = /^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const SETEXT_UNDERLINE = /^ {0,3}(=+|-+)\s*$/;

/** Sections of a Markdown text, one per heading, each with its paragraphs (fenced code kept whole). */
function markdownSections(text: string): Section[] {
  const lines = text.split("\n");
  const sections: Section[] = [];
  const stack: { level: number; title: string }[] = [];
  let blocks: string[] = [];
  let current: string[] = [];
  let fence: string | null = null;
  const endBlock = () => {
    const block = current.join("\n").trim();
    if (block) blocks.push(block);
    current = [];
  };
  const endSection = () => {
    endBlock();
    if (blocks.length > 0) sections.push({ path: stack.map((entry) => entry.title), titled: stack[0]?.level === 1, units: blocks.map((block) => ({ text: block })) });
    blocks = [];
  };
  const openHeading = (level: number, title: string) => {
    endSection();
    while (stack.length > 0 && (stack.at(-1)?.level ?? 0) >= level) stack.pop();
    stack.push({ level, title: title.trim() || "(untitled)" });
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? "";
    const fenceMark = FENCE.exec(line)?.[1];
    if (fence) {
      current.push(line);
      if (fenceMark && fenceMark[0] === fence[0] && fenceMark.length >= fence.length && line.trim() === fenceMark) {
        fence = null;
        endBlock();
      }
      continue;
    }
    if (fenceMark) {
      endBlock();
      fence = fenceMark;
      current.push(line);
      continue;
    }
    const atx = ATX_HEADING.exec(line);
    if (atx) {
      openHeading(atx[1]?.length ?? 1, atx[2] ?? "");
      continue;
    }
    // A setext heading: one line of text underlined with === (level 1) or --- (level 2), after a blank line.
    const next = lines[i + 1] ?? "";
    const underline = SETEXT_UNDERLINE.exec(next)?.[1];
    if (underline && line.trim() && current.length === 0 && !/^\s*([-*+]|\d+[.)])\s/.test(line)) {
      openHeading(underline.startsWith("=") ? 1 : 2, line);
      i++;
      continue;
    }
    if (!line.trim()) endBlock();
    else current.push(line);
  }
  endSection();
  return sections;
}

// ---- Code ----

const DECLARATION = /^(export\s+)?(default\s+)?(declare\s+)?(abstract\s+)?(async\s+)?(function\*?|class|interface|type|enum|namespace|module|const|let|var|def|fn|func|impl|struct|trait|pub|public|private|protected|internal|static|object|package|@\w+|[A-Za-z_$][\w$]*\s*\([^)]*\)\s*\{)/;
const COMMENT = /^\s*(\/\/|\/\*|\*|#(?!include)|"""|'''|--)/;

/** A code file as one section whose units are its top-level declarations, each with the comment just above it. */
function codeSection(text: string, source: string): Section {
  const lines = text.split("\n");
  const units: Unit[] = [];
  let current: string[] = [];
  let label: string | undefined;
  const flush = (upTo: number) => {
    const body = current.slice(0, upTo).join("\n").trim();
    if (body) units.push({ text: body, ...(label ? { label } : {}) });
    current = current.slice(upTo);
  };
  for (const line of lines) {
    if (DECLARATION.test(line)) {
      // The comment lines (and blank lines) right above the declaration go with it.
      let keep = current.length;
      while (keep > 0 && (COMMENT.test(current[keep - 1] ?? "") || !(current[keep - 1] ?? "").trim())) keep--;
      flush(keep);
      label = line.trim().replace(/\s*\{?\s*$/, "").slice(0, 120);
    }
    current.push(line);
  }
  flush(current.length);
  return { path: [source], titled: true, units };
}

// ---- Plain text ----

function paragraphs(text: string): string[] {
  return text
    .split(/\n\s*\n/)
    .map((paragraph) => paragraph.trim())
    .filter(Boolean);
}

// ---- Packing ----

/** Pieces of `text` of at most `budget` tokens: whole lines, then sentences, then words. */
function fit(text: string, budget: number): string[] {
  if (countTokens(text) <= budget) return [text];
  for (const separator of [/\n/, /(?<=[.!?])\s+/]) {
    const parts = text.split(separator).filter((part) => part.trim());
    if (parts.length > 1) return joinWithin(parts, budget, separator.source === "\\n" ? "\n" : " ").flatMap((part) => fit(part, budget));
  }
  return splitByTokens(text, budget);
}

/** Joins consecutive parts back together as long as they fit in `budget`. */
function joinWithin(parts: string[], budget: number, glue: string): string[] {
  const joined: string[] = [];
  let current = "";
  for (const part of parts) {
    const candidate = current ? `${current}${glue}${part}` : part;
    if (current && countTokens(candidate) > budget) {
      joined.push(current);
      current = part;
    } else current = candidate;
  }
  if (current) joined.push(current);
  return joined;
}

function headingOf(path: string[], label: string | undefined, maxTokens: number): string {
  const heading = [...path, ...(label ? [label] : [])].join(" › ");
  // A runaway heading must leave the chunk room for its text.
  return prefixWithin(heading, Math.floor(maxTokens / 4));
}

/**
 * Packs units into chunks of at most `maxTokens` tokens (heading included). Each chunk after the
 * first of a section starts with the last `overlapTokens` tokens of the one before, so a sentence
 * cut at a chunk boundary can still be found whole.
 */
function pack(units: Unit[], path: string[], labelled: boolean, maxTokens: number, overlapTokens: number): Chunk[] {
  const chunks: Chunk[] = [];
  // Room for the heading line (and the blank line after it), with the label the chunk would carry.
  const reserve = (label: string | undefined) => countTokens(headingOf(path, labelled ? label : undefined, maxTokens)) + 2;
  let body: string[] = [];
  // A running count (parts plus one per seam): exact counts are taken only near the limit.
  let bodyTokens = 0;
  let bodyLabel: string | undefined;
  let lastText = "";
  const add = (piece: string, tokens: number) => {
    bodyTokens += tokens + (body.length > 0 ? 1 : 0);
    body.push(piece);
  };
  const emit = () => {
    if (body.length === 0) return;
    const heading = headingOf(path, labelled ? bodyLabel : undefined, maxTokens);
    let text = body.join("\n\n");
    let tokens = countTokens(embeddingInput({ heading, text }));
    // Joining can merge tokens at the seams; a chunk that comes out over is trimmed, never kept over.
    while (tokens > maxTokens) {
      text = prefixWithin(text, countTokens(text) - (tokens - maxTokens));
      tokens = countTokens(embeddingInput({ heading, text }));
    }
    chunks.push({ heading, text, tokens });
    lastText = text;
    body = [];
    bodyTokens = 0;
    bodyLabel = undefined;
  };
  for (const unit of units) {
    const budget = Math.max(16, maxTokens - reserve(unit.label));
    for (const piece of fit(unit.text, budget)) {
      const tokens = countTokens(piece);
      const limit = maxTokens - reserve(bodyLabel ?? unit.label);
      const over = () => bodyTokens + 1 + tokens > limit - 4 && countTokens([...body, piece].join("\n\n")) > limit;
      if (body.length > 0 && over()) {
        emit();
        const overlap = suffixWithin(lastText, Math.min(overlapTokens, budget - tokens - 2)).trim();
        if (overlap) add(overlap, countTokens(overlap));
      }
      // The chunk is labelled by the first declaration that starts in it (not by the overlap it begins with).
      if (bodyLabel === undefined) bodyLabel = unit.label;
      add(piece, tokens);
    }
  }
  emit();
  return chunks;
}
