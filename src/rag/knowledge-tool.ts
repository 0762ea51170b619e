/**
 * The Product Owner's `search_knowledge` tool (registered in src/product-owner/tools.ts): the same
 * hybrid search as GET /api/rag/search, as the person in the chat, with the search's defaults and a
 * smaller ceiling on what one call may pull into the conversation.
 */
import { z } from "zod";
import type { Db } from "../db/client.ts";
import type { Principal } from "../lib/context.ts";
import { RagScope, SEARCH_DEFAULTS } from "./contract.ts";
import { searchKnowledge } from "./search.ts";
import { ragServices } from "./services.ts";

export const KNOWLEDGE_TOOL_DESCRIPTION =
  "Search the knowledge of the person's projects: specs, READMEs, ADRs and docs from their repositories, their code, past conversation summaries and task logs. Returns the best-matching passages with their source; quote them, and say where they come from.";

export const KnowledgeToolInput = z.strictObject({
  query: z.string().trim().min(1).max(500).describe("what to look for: words, an identifier, an error message or a question"),
  project: z.string().min(1).max(64).optional().describe("only this project (its name or id)"),
  scope: RagScope.optional().describe("docs (specs, READMEs, ADRs), code, history (past conversations) or logs (task logs); default: all"),
  top_k: z.number().int().min(1).max(10).optional().describe(`how many passages (default ${SEARCH_DEFAULTS.topK})`),
  max_tokens: z.number().int().min(100).max(4000).optional().describe(`most tokens of passages in all (default ${SEARCH_DEFAULTS.maxTokens})`),
});
export type KnowledgeToolInput = z.infer<typeof KnowledgeToolInput>;

export async function searchKnowledgeForChat(db: Db, env: Env, principal: Principal, args: KnowledgeToolInput) {
  const found = await searchKnowledge(ragServices(db, env), principal, {
    q: args.query,
    ...(args.project ? { project: args.project } : {}),
    ...(args.scope ? { scope: [args.scope] } : {}),
    top_k: args.top_k ?? SEARCH_DEFAULTS.topK,
    max_tokens: args.max_tokens ?? SEARCH_DEFAULTS.maxTokens,
    min_similarity: SEARCH_DEFAULTS.minSimilarity,
    mode: "hybrid",
  });
  return {
    results: found.results.map((hit) => ({ project: hit.project?.name ?? null, scope: hit.scope, source: hit.source, heading: hit.heading, text: hit.text, score: hit.score, matchedBy: hit.matchedBy })),
    tokens: found.tokens,
    ...(found.warnings.length ? { warnings: found.warnings } : {}),
  };
}
