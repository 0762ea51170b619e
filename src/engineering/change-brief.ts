/**
 * The Architect on a change request: one model call that reads the project as it was built (its spec,
 * its README) and the person's words, and writes a change brief (src/shared/changes.ts): what changes,
 * and which acceptance checks it adds or replaces. It never rewrites the spec. A reply that does not
 * fit is shown its errors and asked once more, as for a spec.
 */
import type OpenAI from "openai";
import { z } from "zod";
import { ChangeBrief } from "../shared/changes.ts";
import type { ProjectSpec } from "../shared/spec.ts";
import type { AgentConfig } from "../models/llm.ts";
import { jsonAnswer, readReply } from "./architect.ts";

export const CHANGE_SYSTEM_PROMPT = `You are the Architect of a software factory, writing a change brief: a project was built
from the spec below, and its owner asks for a change. Say what changes in the project as it is, in a few
concrete lines a coding agent can act on (a route added: "GET /path: answers {...}"), and nothing the owner
did not ask for. Do not rewrite the spec. Answer with one JSON object and nothing else, matching this JSON Schema:
${JSON.stringify(z.toJSONSchema(ChangeBrief, { io: "input" }))}
acceptance: checks for what the change makes the live app do, from the owner's own words (the spec's
check format; one with the name of an existing check replaces it); leave it out when nothing new can be
checked from outside.`;

export interface ChangeBriefResult {
  brief: ChangeBrief;
  usage: { promptTokens: number; completionTokens: number };
}

export async function draftChangeBrief(client: OpenAI, config: AgentConfig, input: { name: string; spec: ProjectSpec; readme: string | null; request: string; previous?: ChangeBrief }): Promise<ChangeBriefResult> {
  const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [
    { role: "system", content: CHANGE_SYSTEM_PROMPT },
    {
      role: "user",
      content: [
        `Project: ${input.name}`,
        `The spec it was built from:\n${JSON.stringify(input.spec)}`,
        ...(input.readme ? [`Its README:\n${input.readme.slice(0, 6000)}`] : []),
        // Another round of a change under way: the brief answers the new words only; the factory adds it to this one.
        ...(input.previous ? [`This change so far (its brief; already on its branch, do not repeat it):\n${JSON.stringify(input.previous)}`] : []),
        `The change the owner asks for:\n${input.request}`,
      ].join("\n\n"),
    },
  ];
  const answer = await jsonAnswer(client, config, messages, (reply) => readReply(reply, ChangeBrief, "the change brief's schema"), "the Architect's change brief");
  return { brief: answer.value, usage: answer.usage };
}
