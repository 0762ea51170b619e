/**
 * Change requests: a person's words about a project that was built ("add a /bye route") become a
 * change, worked on a branch of its own (`change/<n>-<slug>`) by the same Developer ⇄ Tester rounds as
 * a first build, and offered as a pull request once its tests pass; the owner ships it (the pull
 * request is merged and production deploys the merge) or discards it (the pull request is closed and
 * the branch deleted). The contract of the API, the CLI and the Product Owner's tool.
 */
import { z } from "zod";
import { type AcceptanceCheck, AcceptanceChecks, MAX_ACCEPTANCE_CHECKS } from "./spec.ts";

export const CHANGE_STATUSES = ["building", "open", "shipped", "discarded", "failed"] as const;
export const ChangeStatus = z.enum(CHANGE_STATUSES);
export type ChangeStatus = z.infer<typeof ChangeStatus>;

/** What a person asks for, in their words. */
export const ChangeRequestText = z.string().trim().min(3, "say what should change").max(4000);

/** `POST /api/projects/:id/changes`, and `POST /api/projects/:id/changes/:n/more` (another round of an open change). */
export const ChangeRequestBody = z.strictObject({ request: ChangeRequestText });

export const PullRequestRef = z.object({ number: z.number().int().positive(), url: z.string() });
export type PullRequestRef = z.infer<typeof PullRequestRef>;

export const ChangeView = z.object({
  projectId: z.string(),
  number: z.number().int().positive(),
  request: z.string(),
  branch: z.string(),
  status: ChangeStatus,
  /** The engineering task that works on it. */
  taskId: z.string(),
  pullRequest: PullRequestRef.nullable(),
  /** The branch head whose tests passed last: what shipping merges (a later push is taken back first). */
  testedSha: z.string().nullable(),
  /** Once shipped: the merge commit production deploys, and the deploy's task (once discarded: the task removing its preview, if it had one). */
  mergeSha: z.string().nullable(),
  deployTaskId: z.string().nullable(),
  /**
   * Its preview at `<project>--<n>.<base domain>` (of a deployed project): the deploy task that made
   * the latest, its URL once live (null again once removed), and whether it serves now.
   */
  preview: z.object({ taskId: z.string(), url: z.string().nullable(), live: z.boolean() }).nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export type ChangeView = z.infer<typeof ChangeView>;

/**
 * A change catching up after another shipped (POST …/changes/:n/ship answers with one per other open
 * change): the task that merges the default branch into it and tests it again, or why it did not start.
 */
export const CatchUpStart = z.union([z.object({ number: z.number().int().positive(), taskId: z.string() }), z.object({ number: z.number().int().positive(), notStarted: z.string() })]);
export type CatchUpStart = z.infer<typeof CatchUpStart>;

/** The branch a change is worked on: its number and a slug of its words (git-safe, short). */
export function changeBranch(number: number, request: string): string {
  const slug = request
    .toLowerCase()
    .normalize("NFKD")
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 40)
    .replace(/-+$/g, "");
  return `change/${number}${slug ? `-${slug}` : ""}`;
}

/**
 * The Architect's change brief: what changes, in the project as it is (never a new spec), and the
 * acceptance checks the change adds or replaces (by name).
 */
export const ChangeBrief = z.strictObject({
  summary: z.string().trim().min(1).max(300),
  changes: z.array(z.string().trim().min(1).max(500)).min(1).max(20),
  /** Checks to add to the project's, or to put in place of the one of the same name; none: the project's stay as they are. */
  acceptance: AcceptanceChecks.default([]),
});
export type ChangeBrief = z.infer<typeof ChangeBrief>;

/** The project's acceptance checks once a change's are in: each of the change's added, or in place of the one of its name. */
export function withChangeChecks(checks: AcceptanceCheck[], added: AcceptanceCheck[]): AcceptanceCheck[] {
  const replaced = new Set(added.map((check) => check.name));
  return AcceptanceChecks.parse([...checks.filter((check) => !replaced.has(check.name)), ...added].slice(-MAX_ACCEPTANCE_CHECKS));
}
