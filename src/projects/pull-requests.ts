/**
 * Pull requests on a project's repository, as the GitHub App's installation: what a change request
 * opens from its branch, then ships (merges) or discards (closes). GitHub and the local stand-in
 * (standins/github-pulls.ts) differ only in the base URL. Answers are read through a schema: they
 * crossed a process boundary.
 */
import { z } from "zod";
import { type GitHubAppConfig, octokit, type Repository, status } from "./github.ts";

export const PullRequest = z.object({
  number: z.number().int(),
  title: z.string(),
  state: z.enum(["open", "closed"]),
  merged: z.boolean().default(false),
  /** null while GitHub has not worked it out yet (and for a closed one). */
  mergeable: z.boolean().nullable().default(null),
  htmlUrl: z.string(),
  head: z.object({ ref: z.string(), sha: z.string() }),
  base: z.object({ ref: z.string(), sha: z.string() }),
  mergeCommitSha: z.string().nullable(),
});
export type PullRequest = z.infer<typeof PullRequest>;

const Answer = z
  .object({
    number: z.number().int(),
    title: z.string(),
    state: z.enum(["open", "closed"]),
    merged: z.boolean().optional(),
    mergeable: z.boolean().nullable().optional(),
    html_url: z.string(),
    head: z.object({ ref: z.string(), sha: z.string() }),
    base: z.object({ ref: z.string(), sha: z.string() }),
    merge_commit_sha: z.string().nullable(),
  })
  .transform((pull): PullRequest => ({
    number: pull.number,
    title: pull.title,
    state: pull.state,
    merged: pull.merged ?? false,
    mergeable: pull.mergeable ?? null,
    htmlUrl: pull.html_url,
    head: pull.head,
    base: pull.base,
    mergeCommitSha: pull.merge_commit_sha,
  }));

type Where = Pick<Repository, "owner" | "name">;

/**
 * Opens a pull request from `head` into `base`; the one already open for them if there is one (a
 * retried step opens nothing twice).
 */
export async function openPullRequest(config: GitHubAppConfig, token: string, repository: Where, pull: { title: string; head: string; base: string; body: string }): Promise<PullRequest> {
  const client = octokit(config, token, "token");
  try {
    const { data } = await client.rest.pulls.create({ owner: repository.owner, repo: repository.name, ...pull });
    return Answer.parse(data);
  } catch (error) {
    if (status(error) !== 422) throw error;
    const open = await client.rest.pulls.list({ owner: repository.owner, repo: repository.name, state: "open", head: `${repository.owner}:${pull.head}`, base: pull.base });
    const [existing] = z.array(Answer).parse(open.data);
    if (existing) return existing;
    throw error;
  }
}

/** A pull request as it is now; null when the repository has none of that number. */
export async function getPullRequest(config: GitHubAppConfig, token: string, repository: Where, number: number): Promise<PullRequest | null> {
  try {
    const { data } = await octokit(config, token, "token").rest.pulls.get({ owner: repository.owner, repo: repository.name, pull_number: number });
    return Answer.parse(data);
  } catch (error) {
    if (status(error) === 404) return null;
    throw error;
  }
}

export type MergeOutcome = { merged: true; sha: string } | { merged: false; reason: "conflict" | "moved"; message: string };

/**
 * Merges it, only as it was when it was checked (`sha`: the head the tests passed on). Not merged:
 * it conflicts with its base or is closed (`conflict`), or a branch moved meanwhile (`moved`).
 */
export async function mergePullRequest(config: GitHubAppConfig, token: string, repository: Where, number: number, merge: { sha: string; method?: "merge" | "squash"; title?: string }): Promise<MergeOutcome> {
  try {
    const { data } = await octokit(config, token, "token").rest.pulls.merge({
      owner: repository.owner,
      repo: repository.name,
      pull_number: number,
      sha: merge.sha,
      merge_method: merge.method ?? "merge",
      ...(merge.title ? { commit_title: merge.title } : {}),
    });
    return { merged: true, sha: z.object({ sha: z.string() }).parse(data).sha };
  } catch (error) {
    const code = status(error);
    const message = error instanceof Error ? error.message : String(error);
    if (code === 405) return { merged: false, reason: "conflict", message };
    if (code === 409) return { merged: false, reason: "moved", message };
    throw error;
  }
}

/** Closes it unmerged (a discarded change); its branch stays. */
export async function closePullRequest(config: GitHubAppConfig, token: string, repository: Where, number: number): Promise<PullRequest> {
  const { data } = await octokit(config, token, "token").rest.pulls.update({ owner: repository.owner, repo: repository.name, pull_number: number, state: "closed" });
  return Answer.parse(data);
}
