/**
 * Chunking and token counting (src/rag/chunking.ts, tokens.ts) in the Workers runtime, where the
 * rag-ingest consumer runs them: about 512 cl100k_base tokens a chunk, 10% overlap, Markdown split on
 * headings and paragraphs, code on declarations, and tokens only as the last resort.
 */
import { describe, expect, it } from "vitest";
import { CHUNK_TOKENS, chunkDocument, embeddingInput, kindOfSource, OVERLAP_TOKENS } from "../../src/rag/chunking.ts";
import { countTokens, prefixWithin, splitByTokens, suffixWithin } from "../../src/rag/tokens.ts";

const words = (n: number, word = "lorem") => Array.from({ length: n }, (_, i) => `${word}${i % 97}`).join(" ");

describe("token counting", () => {
  it("counts with cl100k_base, and treats special-token text as plain text", () => {
    expect(countTokens("hello world")).toBe(2);
    expect(countTokens("")).toBe(0);
    expect(countTokens("say <|endoftext|> aloud")).toBeGreaterThan(3);
  });

  it("cuts at word boundaries within a budget, from either end", () => {
    const text = words(300);
    const prefix = prefixWithin(text, 50);
    expect(countTokens(prefix)).toBeLessThanOrEqual(50);
    expect(text.startsWith(prefix)).toBe(true);
    expect(text[prefix.length]).toBe(" ");
    const suffix = suffixWithin(text, 50);
    expect(countTokens(suffix)).toBeLessThanOrEqual(50);
    expect(countTokens(suffix)).toBeGreaterThan(40);
    expect(text.endsWith(suffix)).toBe(true);
    const pieces = splitByTokens(text, 100);
    expect(pieces.every((piece) => countTokens(piece) <= 100)).toBe(true);
    expect(pieces.join(" ")).toBe(text);
  });
});

describe("chunking", () => {
  it("keeps every chunk within 512 tokens, heading included", () => {
    const content = Array.from({ length: 6 }, (_, s) => `## Section ${s}\n\n${Array.from({ length: 8 }, (_, p) => `Paragraph ${p}: ${words(40, `w${s}`)}.`).join("\n\n")}`).join("\n\n");
    const chunks = chunkDocument({ content: `# Manual\n\n${content}`, kind: "markdown", source: "manual.md" });
    expect(CHUNK_TOKENS).toBe(512);
    expect(chunks.length).toBeGreaterThan(6);
    for (const chunk of chunks) {
      expect(chunk.tokens).toBe(countTokens(embeddingInput(chunk)));
      expect(chunk.tokens).toBeLessThanOrEqual(512);
    }
    // Paragraphs are packed together: only a section's last chunk may be short.
    expect(chunks.filter((chunk) => chunk.tokens > 400).length).toBeGreaterThanOrEqual(chunks.length - 6);
  });

  it("splits on headings: a chunk belongs to one section and carries its headings", () => {
    const content = "# Guide\n\nIntro text.\n\n## Install\n\nRun the installer.\n\n### Linux\n\nUse the package.\n\n## Usage\n\nStart it.";
    const chunks = chunkDocument({ content, kind: "markdown", source: "guide.md" });
    expect(chunks.map((chunk) => [chunk.heading, chunk.text])).toEqual([
      ["Guide", "Intro text."],
      ["Guide › Install", "Run the installer."],
      ["Guide › Install › Linux", "Use the package."],
      ["Guide › Usage", "Start it."],
    ]);
  });

  it("heads a document without a title heading with its title, and reads setext headings", () => {
    const chunks = chunkDocument({ content: "Setup\n=====\n\nDo this.\n\nNotes\n-----\n\nAnd that.", kind: "markdown", source: "notes.md", title: "Team notes" });
    expect(chunks.map((chunk) => chunk.heading)).toEqual(["Setup", "Setup › Notes"]);
    const untitled = chunkDocument({ content: "## Only a second level\n\nText.", kind: "markdown", source: "x.md", title: "X doc" });
    expect(untitled[0]?.heading).toBe("X doc › Only a second level");
  });

  it("keeps a fenced code block whole, blank lines and # lines included", () => {
    const fence = "```sh\n# not a heading\necho one\n\necho two\n```";
    const chunks = chunkDocument({ content: `# Run\n\n${fence}\n\nAfter.`, kind: "markdown", source: "run.md" });
    expect(chunks).toHaveLength(1);
    expect(chunks[0]?.heading).toBe("Run");
    expect(chunks[0]?.text).toContain(fence);
  });

  it("starts each chunk after a section's first with the last ~10% tokens of the one before", () => {
    const content = `# Long\n\n${Array.from({ length: 12 }, (_, i) => `Paragraph ${i} says ${words(80, `p${i}x`)}.`).join("\n\n")}`;
    const chunks = chunkDocument({ content, kind: "markdown", source: "long.md" });
    expect(chunks.length).toBeGreaterThan(2);
    expect(OVERLAP_TOKENS).toBe(51);
    for (let i = 1; i < chunks.length; i++) {
      const previous = chunks[i - 1]?.text ?? "";
      const current = chunks[i]?.text ?? "";
      const overlap = current.split("\n\n")[0] ?? "";
      expect(previous.endsWith(overlap)).toBe(true);
      expect(countTokens(overlap)).toBeLessThanOrEqual(OVERLAP_TOKENS);
      expect(countTokens(overlap)).toBeGreaterThan(30);
    }
  });

  it("cuts a paragraph too long for one chunk on sentences, then on tokens", () => {
    const sentences = Array.from({ length: 60 }, (_, i) => `Sentence ${i} is about ${words(12, `s${i}y`)}.`).join(" ");
    const bySentence = chunkDocument({ content: sentences, kind: "text", source: "s.txt" });
    expect(bySentence.length).toBeGreaterThan(1);
    for (const chunk of bySentence) expect(chunk.tokens).toBeLessThanOrEqual(512);
    // Each chunk's own part (after the overlap) starts at a sentence.
    for (const chunk of bySentence.slice(1)) expect(chunk.text.split("\n\n")[1]).toMatch(/^Sentence \d+ is about/);
    const blob = "x".repeat(20_000);
    const byToken = chunkDocument({ content: blob, kind: "text", source: "blob.txt" });
    expect(byToken.length).toBeGreaterThan(1);
    for (const chunk of byToken) expect(chunk.tokens).toBeLessThanOrEqual(512);
  });

  it("splits code on top-level declarations, each with the comment above it, headed by file and declaration", () => {
    const fn = (name: string) => `/** ${name} does its part of the work. */\nexport function ${name}(input: string): string {\n${Array.from({ length: 14 }, (_, i) => `  const step${i} = input.replace("${name}${i}", "${i}");`).join("\n")}\n  return input;\n}`;
    const names = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf"];
    const source = `import { x } from "./x.ts";\n\n${names.map(fn).join("\n\n")}\n`;
    const chunks = chunkDocument({ content: source, kind: "code", source: "src/steps.ts" });
    expect(chunks.length).toBeGreaterThan(1);
    // No declaration is cut in two: each function, comment and all, is whole in some chunk.
    for (const name of names) expect(chunks.some((chunk) => chunk.text.includes(fn(name)))).toBe(true);
    for (const chunk of chunks) {
      expect(chunk.tokens).toBeLessThanOrEqual(512);
      expect(chunk.heading).toMatch(/^src\/steps\.ts › export function \w+\(input: string\): string$/);
    }
  });

  it("tells the kind of a document from its source", () => {
    expect(kindOfSource("docs/adr/0001-queues.md")).toBe("markdown");
    expect(kindOfSource("src/worker.ts")).toBe("code");
    expect(kindOfSource("main.py")).toBe("code");
    expect(kindOfSource("task:eng_123")).toBe("text");
  });
});
