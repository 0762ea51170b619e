/**
 * Workflow steps whose results are JSON text, checked on the way back. A step's result must be
 * serialisable, and Workflows' typing (Rpc.Serializable) cannot express free-form records (a job's
 * payload, a spec), so such a step returns its value as JSON; the engine keeps that text and hands it
 * back on every replay, possibly to a newer version of this code. It is read back through the step's
 * zod schema: a result that does not fit is an error naming the step, never a silent cast.
 */
import type { WorkflowStep, WorkflowStepConfig } from "cloudflare:workers";
import type { z } from "zod";
import { parseJson } from "../shared/json.ts";

/** A step's stored result that is not what its schema says. */
export class StepResultMismatch extends Error {}

/** Reads a step's stored JSON result through its schema. */
export function parseStepResult<S extends z.ZodType>(name: string, schema: S, text: string): z.output<S> {
  const parsed = parseJson(schema, text, "result");
  if (!parsed.success) throw new StepResultMismatch(`step "${name}": its stored result does not fit its schema (${parsed.error})`);
  return parsed.data;
}

/**
 * `step.do` for a result that is JSON: `work`'s value is stored as JSON text and read back through
 * `schema`, on the first run as on a replay.
 */
export async function jsonStep<S extends z.ZodType>(step: Pick<WorkflowStep, "do">, name: string, config: WorkflowStepConfig | undefined, schema: S, work: () => Promise<z.input<S>>): Promise<z.output<S>> {
  const run = async () => JSON.stringify(await work());
  const text = config ? await step.do(name, config, run) : await step.do(name, run);
  return parseStepResult(name, schema, text);
}
