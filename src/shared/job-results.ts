/**
 * What a finished job reports in its outcome's `data`, as far as the control plane reads it: the
 * runner builds these (typed by them), the pipelines read them back through them. The rest of a
 * job's data is free-form (shown, stored), so it stays a record of unknowns.
 */
import { z } from "zod";

/**
 * A file a docker.run job collected (`data.files`, by path). A long one keeps its end (`truncated`):
 * a test run's summary and an agent's last words are at the end of what they wrote.
 */
export const CollectedFile = z.union([z.object({ content: z.string(), bytes: z.number(), truncated: z.literal(true).optional() }), z.object({ missing: z.literal(true) })]);
export type CollectedFile = z.infer<typeof CollectedFile>;

/** An ansible.playbook job's `data.customStats`: what the playbook's `set_stats` reported. */
export const CustomStats = z.record(z.string(), z.unknown());

/** deploy_project.yml's custom stats, as far as the deploy reads them: the release's last log lines. */
export const DeployProjectStats = z.object({ release: z.object({ logTail: z.array(z.unknown()) }) });

/** One acceptance check's result, as an acceptance.check job reports it (`data.results`, in order). */
export const AcceptanceResult = z.object({
  name: z.string(),
  ok: z.boolean(),
  status: z.number().nullable(),
  /** What held, or what did not ("expected status 200, got 404"). */
  detail: z.string(),
  /** The start of the body of a failed check's answer. */
  body: z.string().optional(),
});
export type AcceptanceResult = z.infer<typeof AcceptanceResult>;
export const AcceptanceStats = z.object({ results: z.array(AcceptanceResult) });
