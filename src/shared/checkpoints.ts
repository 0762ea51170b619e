/**
 * Checkpoints: the points a project's code can go back to. Every commit its default branch reached
 * with its tests passing is one: a first build's passing round, a change shipped (its merge), an undo
 * (its revert commit). Each keeps its test results and the project's acceptance checks at that point,
 * and (once deployed) names its release. Undo goes back to one: a revert commit on the default branch
 * (history is never rewritten) and that checkpoint's release live again, with no rebuild. The contract
 * of the API, the CLI and the Product Owner's tools.
 */
import { z } from "zod";

export const CHECKPOINT_KINDS = ["build", "change", "undo"] as const;
export const CheckpointKind = z.enum(CHECKPOINT_KINDS);
export type CheckpointKind = z.infer<typeof CheckpointKind>;

/** What an undo does to the app's data (said in every confirmation and answer): data is never rolled back silently. */
export const UNDO_DATA_NOTE = "The app's data directory (/data) is not rolled back: it stays as it is now, so data written since that checkpoint is kept.";

export const CheckpointView = z.object({
  projectId: z.string(),
  number: z.number().int().positive(),
  kind: CheckpointKind,
  summary: z.string(),
  /** The commit of the default branch it stands for. */
  commitSha: z.string(),
  /** The engineering task whose tests passed (for an undo: the one of the checkpoint it went back to). */
  taskId: z.string().nullable(),
  /** The change it shipped, for a change. */
  change: z.number().int().positive().nullable(),
  /** The checkpoint it went back to, for an undo. */
  restores: z.number().int().positive().nullable(),
  /** The tests' summary at that commit ("12 passed"). */
  tests: z.string().nullable(),
  /** The release that served this commit, if one did; live: it serves now. */
  release: z.object({ deploymentId: z.string(), status: z.string(), live: z.boolean() }).nullable(),
  /** The newest checkpoint: what "undo the last change" goes back from (the default branch may have moved past it since, by a person's push). */
  latest: z.boolean(),
  createdAt: z.string(),
});
export type CheckpointView = z.infer<typeof CheckpointView>;

/**
 * `POST /api/projects/:id/undo`: back to a checkpoint. Without one, the checkpoint before the latest
 * one ("undo the last change"); `asOf` picks the newest checkpoint made at or before a time ("how it was
 * yesterday").
 */
export const UndoBody = z
  .strictObject({
    checkpoint: z.number().int().positive().optional(),
    asOf: z.iso.datetime({ offset: true }).optional(),
  })
  .refine((body) => !(body.checkpoint && body.asOf), { message: "give a checkpoint or a time (asOf), not both" });
export type UndoBody = z.infer<typeof UndoBody>;

export const UndoView = z.object({
  /** The new checkpoint: the revert commit. */
  checkpoint: CheckpointView,
  /** The checkpoint it went back to. */
  restored: z.number().int().positive(),
  /** How production follows: the kept release started again (no rebuild), a rebuild of the revert commit when that release is gone, nothing (not deployed, or that release serves already), or not at all yet (its deploy could not start; the message says why). */
  production: z.enum(["release restarted", "rebuilt", "not deployed", "already live", "not started"]),
  deployTaskId: z.string().nullable(),
  data: z.string(),
  message: z.string(),
});
export type UndoView = z.infer<typeof UndoView>;
