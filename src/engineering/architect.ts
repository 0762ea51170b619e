/**
 * The Architect: one model call that turns a project's description into its spec (src/shared/spec.ts).
 * The reply must be a JSON object the spec schema accepts; one that is not is shown its errors and
 * asked once more, and a second bad reply is an error that says what was wrong. A description none of
 * the templates can make (a mobile app, a desktop program) is declined instead: {"decline": "why"}.
 */
import type OpenAI from "openai";
import { z } from "zod";
import { ProjectSpec } from "../shared/spec.ts";
import { buildableKinds, PROJECT_TEMPLATES } from "../shared/templates.ts";
import type { AgentConfig } from "../models/llm.ts";

export class SpecRejected extends Error {
  readonly usage: ArchitectResult["usage"];
  constructor(message: string, usage: ArchitectResult["usage"]) {
    super(message);
    this.usage = usage;
  }
}

/** The Architect's answer to a description the factory cannot build. */
export class Declined extends Error {
  readonly usage: ArchitectResult["usage"];
  constructor(why: string, usage: ArchitectResult["usage"]) {
    super(`The factory cannot build this: ${why.replace(/[.\s]+$/, "")}. It builds:\n${buildableKinds()}`);
    this.usage = usage;
  }
}

const Decline = z.strictObject({ decline: z.string().trim().min(1).max(1000) });

export interface ArchitectInput {
  name: string;
  description: string;
}

export interface ArchitectResult {
  spec: ProjectSpec;
  attempts: number;
  usage: { promptTokens: number; completionTokens: number };
}

const templates = Object.entries(PROJECT_TEMPLATES)
  .map(([name, template]) => `- ${name}: ${template.description} (tests: \`${template.testCommand}\`)`)
  .join("\n");

export const ARCHITECT_SYSTEM_PROMPT = `You are the Architect of a software factory. From a product description you write the
spec of one small HTTP service that a coding agent will then build and test.
Answer with one JSON object and nothing else. It must match this JSON Schema:
${JSON.stringify(z.toJSONSchema(ProjectSpec, { io: "input" }))}
Templates the service can start from:
${templates}
Keep it small: the modules, entities and routes the description needs, no more. List every
environment variable the service reads, with its kind: "user" (the person provides it, e.g. an API
token), "infra" (the platform generates it, e.g. a database password), "computed" (derived from other
values), "bot" (a Telegram bot token from the platform's pool). Leave testCommand out to use the
template's. Write acceptance checks from the person's own words: for each thing they asked the service to
do, one request and what its answer must be (status; text the body contains, or a value at a JSON
Pointer); for a Telegram bot, a message sent to it ({"send": "/weather Lisbon"}) and text its reply must
contain. They run against every new release before it gets traffic (requests again once it is live), so
use requests and messages that change nothing (GET; a command that only answers), and never a value the
person did not state.
If the description asks for something none of the templates can make (a mobile app, a desktop program,
a browser extension…), answer {"decline": "<one sentence for the person: what they asked for that cannot be built here>"} instead.`;

function issuesOf(error: z.ZodError): string {
  return error.issues.map((issue) => `${issue.path.join(".") || "(root)"}: ${issue.message}`).join("; ");
}

/** A reply's JSON (some models wrap it in a fence even when told not to), or why it is not JSON. */
export function parseJsonReply(reply: string): { ok: true; value: unknown } | { ok: false; error: string } {
  try {
    return { ok: true, value: JSON.parse(reply.trim().replace(/^```(?:json)?\s*|\s*```$/g, "")) };
  } catch (error) {
    return { ok: false, error: `the reply is not JSON (${error instanceof Error ? error.message : String(error)})` };
  }
}

/** A reply read against a schema: its value, or the schema's complaints in words the model (and a person) can act on. */
export function readReply<T>(reply: string, schema: z.ZodType<T>, what: string): { ok: true; value: T } | { ok: false; error: string } {
  const json = parseJsonReply(reply);
  if (!json.ok) return json;
  const parsed = schema.safeParse(json.value);
  return parsed.success ? { ok: true, value: parsed.data } : { ok: false, error: `the reply does not match ${what}: ${issuesOf(parsed.error)}` };
}

/** Reads a reply as a spec (or a decline): the error says why not, in words the model (and a person) can act on. */
export function readSpec(reply: string): { ok: true; spec: ProjectSpec } | { ok: true; decline: string } | { ok: false; error: string } {
  const json = parseJsonReply(reply);
  if (!json.ok) return json;
  const declined = Decline.safeParse(json.value);
  if (declined.success) return { ok: true, decline: declined.data.decline };
  const parsed = ProjectSpec.safeParse(json.value);
  return parsed.success ? { ok: true, spec: parsed.data } : { ok: false, error: `the reply does not match the spec schema: ${issuesOf(parsed.error)}` };
}

export async function draftSpec(client: OpenAI, config: AgentConfig, project: ArchitectInput): Promise<ArchitectResult> {
  const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [
    { role: "system", content: ARCHITECT_SYSTEM_PROMPT },
    { role: "user", content: `Project name: ${project.name}\nDescription:\n${project.description || "(none given: a minimal service)"}` },
  ];
  const answer = await jsonAnswer(client, config, messages, (reply) => {
    const read = readSpec(reply);
    return read.ok ? { ok: true, value: read } : read;
  }, "the Architect's reply");
  if ("decline" in answer.value) throw new Declined(answer.value.decline, answer.usage);
  return { spec: answer.value.spec, attempts: answer.attempts, usage: answer.usage };
}

/**
 * One JSON answer from the model, read by `read`: a reply it refuses is shown why and asked for once
 * more; a second refusal is a SpecRejected naming what was wrong (`what` names the answer in it).
 */
export async function jsonAnswer<T>(
  client: OpenAI,
  config: AgentConfig,
  messages: OpenAI.Chat.ChatCompletionMessageParam[],
  read: (reply: string) => { ok: true; value: T } | { ok: false; error: string },
  what: string,
): Promise<{ value: T; attempts: number; usage: ArchitectResult["usage"] }> {
  const usage = { promptTokens: 0, completionTokens: 0 };
  let lastError = "";
  for (let attempt = 1; attempt <= 2; attempt++) {
    const completion = await client.chat.completions.create({
      model: config.model,
      messages,
      response_format: { type: "json_object" },
      ...(config.temperature !== null ? { temperature: config.temperature } : {}),
    });
    usage.promptTokens += completion.usage?.prompt_tokens ?? 0;
    usage.completionTokens += completion.usage?.completion_tokens ?? 0;
    const reply = completion.choices[0]?.message.content ?? "";
    const answer = read(reply);
    if (answer.ok) return { value: answer.value, attempts: attempt, usage };
    lastError = answer.error;
    messages.push({ role: "assistant", content: reply }, { role: "user", content: `That reply was rejected: ${answer.error}. Answer again with only the corrected JSON object.` });
  }
  throw new SpecRejected(`${what} was rejected twice; the second time: ${lastError}`, usage);
}
