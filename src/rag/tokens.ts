/**
 * Token counts as OpenAI's embedding models see them: cl100k_base, the encoding of
 * text-embedding-3-small, imported by subpath so that only this one encoding's ranks are bundled.
 */
import { countTokens as countCl100k } from "gpt-tokenizer/encoding/cl100k_base";

// Documents are data: "<|endoftext|>" in a README is text to count, not a special token to refuse.
const AS_PLAIN_TEXT = { disallowedSpecial: new Set<string>() };

export function countTokens(text: string): number {
  return text ? countCl100k(text, AS_PLAIN_TEXT) : 0;
}

/** Offsets where a cut leaves whole words: just after each run of whitespace. */
function wordStarts(text: string): number[] {
  const starts: number[] = [];
  for (const match of text.matchAll(/\s+/g)) starts.push(match.index + match[0].length);
  return starts;
}

/**
 * The longest prefix of `text` of at most `budget` tokens, cut at a word boundary when there is one
 * (otherwise at any character). Binary search over cut points: token counts only grow with length.
 */
export function prefixWithin(text: string, budget: number): string {
  // A token is rarely more than 16 characters: no prefix within the budget is longer than this, and
  // counting a long run without spaces (a minified line, a base64 blob) is slow.
  const window = text.length > budget * 16 ? text.slice(0, budget * 16) : text;
  if (window.length < text.length) return prefixWithin(window, budget);
  if (countTokens(text) <= budget) return text;
  const cuts = wordStarts(text).filter((at) => at < text.length);
  const candidates = cuts.length > 0 ? cuts : Array.from({ length: text.length - 1 }, (_, i) => i + 1);
  let lo = 0;
  let hi = candidates.length - 1;
  let best = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const cut = candidates[mid] ?? 0;
    if (countTokens(text.slice(0, cut)) <= budget) {
      best = cut;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  // Not even the first word fits: cut inside it, by characters.
  if (best <= 0) return cuts.length > 0 ? prefixWithin(text.slice(0, candidates[0] ?? text.length).trimEnd(), budget) : text.slice(0, 1);
  return text.slice(0, best).trimEnd();
}

/** The shortest suffix start such that the suffix has at most `budget` tokens, at a word boundary: the overlap carried into the next chunk. */
export function suffixWithin(text: string, budget: number): string {
  if (budget <= 0) return "";
  if (countTokens(text) <= budget) return text;
  const cuts = wordStarts(text).filter((at) => at < text.length);
  let lo = 0;
  let hi = cuts.length - 1;
  let best = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const cut = cuts[mid] ?? text.length;
    if (countTokens(text.slice(cut)) <= budget) {
      best = cut;
      hi = mid - 1;
    } else lo = mid + 1;
  }
  return best < 0 ? "" : text.slice(best);
}

/** Splits `text` into consecutive pieces of at most `budget` tokens each, at word boundaries where it can. */
export function splitByTokens(text: string, budget: number): string[] {
  const pieces: string[] = [];
  let rest = text.trim();
  while (rest) {
    const piece = prefixWithin(rest, budget);
    pieces.push(piece);
    rest = rest.slice(piece.length).trimStart();
  }
  return pieces;
}
