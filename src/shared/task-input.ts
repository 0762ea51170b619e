/**
 * What a task asks a person (`task.needs_input`) and the answers it takes. Every answer comes through
 * `POST /api/tasks/:id/input`, which checks it against the question's kind before the workflow sees
 * it; the workflow waits for the event type the question names, so an answer can only ever reach the
 * question it was given for.
 */
import { z } from "zod";
import { MAX_ITERATIONS_LIMIT } from "./spec.ts";

/** The engineering loop ran out of rounds: go on for more, or stop. */
export const DecisionAnswer = z.discriminatedUnion("decision", [
  z.strictObject({ decision: z.literal("continue"), rounds: z.number().int().min(1).max(MAX_ITERATIONS_LIMIT).default(1) }),
  z.strictObject({ decision: z.literal("stop"), reason: z.string().trim().max(1000).optional() }),
]);
export type DecisionAnswer = z.infer<typeof DecisionAnswer>;

/**
 * A deploy is missing secrets only the person has: their values. They are stored encrypted with the
 * project before the workflow hears of it, and the workflow is told only their names.
 */
export const SecretsAnswer = z.strictObject({
  secrets: z.record(
    z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "must be a variable name"),
    z.string().min(1).max(16_384).refine((value) => !/[\r\n]/.test(value), "must be one line"),
  ),
});
export type SecretsAnswer = z.infer<typeof SecretsAnswer>;

export const TASK_INPUT_KINDS = { decision: DecisionAnswer, secrets: SecretsAnswer } as const;
export const InputKind = z.enum(Object.keys(TASK_INPUT_KINDS) as [keyof typeof TASK_INPUT_KINDS]);
export type InputKind = z.infer<typeof InputKind>;

/** The `data` of a `task.needs_input` event, kept on the task while it waits (`tasks.pending_input`). */
export const PendingInput = z.object({
  kind: InputKind,
  /** Unique within the task: the answer is sent to the workflow as event `input-<inputId>`. */
  inputId: z.string().regex(/^[A-Za-z0-9_-]{1,60}$/),
  question: z.string(),
  /** For `decision`: the answers it takes. */
  options: z.array(z.string()).optional(),
  /** For `secrets`: the variables asked for, and why each is needed. */
  fields: z.array(z.object({ name: z.string(), reason: z.string().optional() })).optional(),
  expiresAt: z.string(),
});
export type PendingInput = z.infer<typeof PendingInput>;

export const inputEventType = (inputId: string) => `input-${inputId}`;

/** Checks an answer against what was asked: the parsed answer, or the error to give the sender. */
export function readAnswer(kind: InputKind, body: unknown): { ok: true; answer: DecisionAnswer | SecretsAnswer } | { ok: false; message: string } {
  const parsed = TASK_INPUT_KINDS[kind].safeParse(body);
  if (parsed.success) return { ok: true, answer: parsed.data };
  return { ok: false, message: parsed.error.issues.map((issue) => `${issue.path.join(".") || "body"}: ${issue.message}`).join("; ") };
}
