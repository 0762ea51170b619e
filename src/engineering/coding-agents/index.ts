/** The coding agents the Developer step can run, by the name `agent_configs.settings.codingAgent` gives. */
import { z } from "zod";
import { opencode } from "./opencode.ts";
import type { CodingAgent } from "./types.ts";

export const CODING_AGENTS = { opencode } as const satisfies Record<string, CodingAgent>;
export const CodingAgentName = z.enum(Object.keys(CODING_AGENTS) as [keyof typeof CODING_AGENTS]);
export type CodingAgentName = z.infer<typeof CodingAgentName>;

export function codingAgent(name: unknown): CodingAgent {
  const parsed = CodingAgentName.safeParse(name ?? "opencode");
  if (!parsed.success) throw new Error(`unknown coding agent ${JSON.stringify(name)}: one of ${Object.keys(CODING_AGENTS).join(", ")}`);
  return CODING_AGENTS[parsed.data];
}
