/**
 * The GitHub stand-in's pull requests (standins/github-server.ts routes them here): GitHub's REST
 * routes on the stand-in's bare repositories, merged for real, as GitHub merges (a merge commit of the
 * base and the head, or one squashed commit on the base; a conflict is not mergeable):
 * - `POST /repos/:owner/:repo/pulls` {title, head, base, body?}
 * - `GET /repos/:owner/:repo/pulls?state=open|closed|all&head=owner:branch&base=branch`
 * - `GET /repos/:owner/:repo/pulls/:number`
 * - `PATCH /repos/:owner/:repo/pulls/:number` {title?, body?, state?: "open" | "closed"}
 * - `PUT /repos/:owner/:repo/pulls/:number/merge` {commit_title?, commit_message?, sha?, merge_method?: "merge" | "squash"}
 * - `POST /repos/:owner/:repo/merges` {base, head, commit_message?}: head merged into the branch base (a
 *   merge commit, 201); 204 when base has head already; 409 on a conflict; 404 when either is missing
 * They are kept in `pulls.json` in the bare repository, so a restarted stand-in (`npm run dev`) has them.
 */
import { execFile } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { z } from "zod";

const run = promisify(execFile);

const Stored = z.object({
  number: z.number(),
  title: z.string(),
  body: z.string().nullable(),
  head: z.string(),
  base: z.string(),
  state: z.enum(["open", "closed"]),
  /** Fixed once it is merged or closed (the branch may move on or go). */
  headSha: z.string(),
  merged: z.boolean(),
  mergeCommitSha: z.string().nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
  closedAt: z.string().nullable(),
  mergedAt: z.string().nullable(),
});
type Stored = z.infer<typeof Stored>;

const Branch = z.string().regex(/^(?!-)[A-Za-z0-9._/-]{1,200}$/).refine((name) => !name.includes(".."));
const CreateBody = z.object({ title: z.string().min(1).max(256), head: z.string().min(1), base: z.string().min(1), body: z.string().max(65_536).nullish() });
const UpdateBody = z.object({ title: z.string().min(1).max(256).optional(), body: z.string().max(65_536).nullish(), state: z.enum(["open", "closed"]).optional() });
const BranchMergeBody = z.object({ base: z.string().min(1), head: z.string().min(1), commit_message: z.string().max(65_536).optional() });
const MergeBody = z.object({ commit_title: z.string().max(256).optional(), commit_message: z.string().max(65_536).optional(), sha: z.string().optional(), merge_method: z.enum(["merge", "squash", "rebase"]).default("merge") });

export interface PullsContext {
  org: string;
  url: string;
  /** The bare repository's directory. */
  repoPath(name: string): string;
}

type Answer = { status: number; body: unknown };
const validation = (message: string, field?: string): Answer => ({ status: 422, body: { message: "Validation Failed", errors: [{ resource: "PullRequest", code: field ? "invalid" : "custom", ...(field ? { field } : {}), message }] } });

export class PullRequests {
  private readonly context: PullsContext;

  constructor(context: PullsContext) {
    this.context = context;
  }

  /** One change at a time per repository: a number is taken and pulls.json written between two awaits. */
  private readonly queues = new Map<string, Promise<unknown>>();

  /** Answers a `/repos/:owner/:repo/pulls…` request of an authorised caller; null: not a pulls route. */
  handle(method: string, name: string, rest: string, query: URLSearchParams, text: string): Promise<Answer | null> {
    const next = (this.queues.get(name) ?? Promise.resolve()).then(() => this.answer(method, name, rest, query, text));
    this.queues.set(name, next.catch(() => undefined));
    return next;
  }

  private async answer(method: string, name: string, rest: string, query: URLSearchParams, text: string): Promise<Answer | null> {
    const body = (() => {
      try {
        return text ? (JSON.parse(text) as unknown) : {};
      } catch {
        return undefined;
      }
    })();
    if (rest === "/merges" && method === "POST") return body === undefined ? { status: 400, body: { message: "Problems parsing JSON" } } : this.mergeBranch(name, body);
    const route = /^\/pulls(?:\/(\d+)(\/merge)?)?$/.exec(rest);
    if (!route) return null;
    const number = route[1] ? Number(route[1]) : null;
    if (body === undefined) return { status: 400, body: { message: "Problems parsing JSON" } };
    if (number === null && method === "POST") return this.create(name, body);
    if (number === null && method === "GET") return this.list(name, query);
    const pull = number === null ? undefined : this.load(name).find((candidate) => candidate.number === number);
    if (!pull) return { status: 404, body: { message: "Not Found" } };
    if (route[2] && method === "PUT") return this.merge(name, pull, body);
    if (route[2] && method === "GET") return pull.merged ? { status: 204, body: null } : { status: 404, body: { message: "Not Found" } };
    if (!route[2] && method === "GET") return { status: 200, body: await this.view(name, pull) };
    if (!route[2] && method === "PATCH") return this.update(name, pull, body);
    return { status: 404, body: { message: "Not Found" } };
  }

  private async create(name: string, input: unknown): Promise<Answer> {
    const parsed = CreateBody.safeParse(input);
    if (!parsed.success) return validation(parsed.error.issues[0]?.message ?? "invalid", String(parsed.error.issues[0]?.path[0] ?? ""));
    // GitHub takes `owner:branch` or a branch of this repository.
    const head = parsed.data.head.replace(new RegExp(`^${this.context.org}:`), "");
    const { base } = parsed.data;
    if (!Branch.safeParse(head).success || !(await this.sha(name, head))) return validation(`head ${parsed.data.head} is not a branch of this repository`, "head");
    if (!Branch.safeParse(base).success || !(await this.sha(name, base))) return validation(`base ${base} is not a branch of this repository`, "base");
    const pulls = this.load(name);
    if (pulls.some((pull) => pull.state === "open" && pull.head === head && pull.base === base)) return validation(`A pull request already exists for ${this.context.org}:${head}.`);
    const ahead = Number((await this.git(name, ["rev-list", "--count", `refs/heads/${base}..refs/heads/${head}`])).trim());
    if (ahead === 0) return validation(`No commits between ${base} and ${head}`);
    const now = new Date().toISOString();
    const pull: Stored = { number: pulls.reduce((max, p) => Math.max(max, p.number), 0) + 1, title: parsed.data.title, body: parsed.data.body ?? null, head, base, state: "open", headSha: (await this.sha(name, head)) ?? "", merged: false, mergeCommitSha: null, createdAt: now, updatedAt: now, closedAt: null, mergedAt: null };
    this.save(name, [...pulls, pull]);
    return { status: 201, body: await this.view(name, pull) };
  }

  private async list(name: string, query: URLSearchParams): Promise<Answer> {
    const state = query.get("state") ?? "open";
    const head = query.get("head")?.replace(new RegExp(`^${this.context.org}:`), "");
    const base = query.get("base");
    const pulls = this.load(name)
      .filter((pull) => (state === "all" || pull.state === state) && (!head || pull.head === head) && (!base || pull.base === base))
      .sort((a, b) => b.number - a.number);
    return { status: 200, body: await Promise.all(pulls.map((pull) => this.view(name, pull))) };
  }

  private async update(name: string, pull: Stored, input: unknown): Promise<Answer> {
    const parsed = UpdateBody.safeParse(input);
    if (!parsed.success) return validation(parsed.error.issues[0]?.message ?? "invalid", String(parsed.error.issues[0]?.path[0] ?? ""));
    if (parsed.data.state === "open" && pull.merged) return validation("Cannot reopen a merged pull request", "state");
    const now = new Date().toISOString();
    const closing = parsed.data.state === "closed" && pull.state === "open";
    const next: Stored = {
      ...pull,
      ...(parsed.data.title !== undefined ? { title: parsed.data.title } : {}),
      ...(parsed.data.body !== undefined ? { body: parsed.data.body } : {}),
      ...(parsed.data.state ? { state: parsed.data.state } : {}),
      ...(closing ? { closedAt: now, headSha: (await this.sha(name, pull.head)) ?? pull.headSha } : {}),
      ...(parsed.data.state === "open" ? { closedAt: null } : {}),
      updatedAt: now,
    };
    this.replace(name, next);
    return { status: 200, body: await this.view(name, next) };
  }

  /** As GitHub merges: a merge commit (or one squashed commit) on the base, only if it has not moved meanwhile. */
  private async merge(name: string, pull: Stored, input: unknown): Promise<Answer> {
    const parsed = MergeBody.safeParse(input);
    if (!parsed.success) return validation(parsed.error.issues[0]?.message ?? "invalid", String(parsed.error.issues[0]?.path[0] ?? ""));
    if (pull.state !== "open") return { status: 405, body: { message: "Pull Request is not mergeable" } };
    if (parsed.data.merge_method === "rebase") return { status: 405, body: { message: "Rebase merges are not allowed on this repository." } };
    const head = await this.sha(name, pull.head);
    const base = await this.sha(name, pull.base);
    if (!head || !base) return { status: 405, body: { message: "Pull Request is not mergeable" } };
    if (parsed.data.sha && parsed.data.sha !== head) return { status: 409, body: { message: "Head branch was modified. Review and try the merge again." } };
    const tree = await this.mergeTree(name, base, head);
    if (!tree) return { status: 405, body: { message: "Pull Request is not mergeable" } };
    const squash = parsed.data.merge_method === "squash";
    const title = parsed.data.commit_title ?? (squash ? `${pull.title} (#${pull.number})` : `Merge pull request #${pull.number} from ${this.context.org}/${pull.head}`);
    const message = parsed.data.commit_message ?? (squash ? "" : pull.title);
    const parents = squash ? ["-p", base] : ["-p", base, "-p", head];
    const commit = (await this.git(name, ["commit-tree", tree, ...parents, "-m", message ? `${title}\n\n${message}` : title], { GIT_AUTHOR_NAME: "GitHub", GIT_AUTHOR_EMAIL: "noreply@github.com", GIT_COMMITTER_NAME: "GitHub", GIT_COMMITTER_EMAIL: "noreply@github.com" })).trim();
    // Only from the base it was merged onto: a push meanwhile makes this fail, as GitHub's merge would.
    const moved = await this.git(name, ["update-ref", `refs/heads/${pull.base}`, commit, base]).then(() => false, () => true);
    if (moved) return { status: 409, body: { message: "Base branch was modified. Review and try the merge again." } };
    const now = new Date().toISOString();
    this.replace(name, { ...pull, state: "closed", merged: true, mergeCommitSha: commit, headSha: head, closedAt: now, mergedAt: now, updatedAt: now });
    return { status: 200, body: { sha: commit, merged: true, message: "Pull Request successfully merged" } };
  }

  /** As GitHub's merges API: `head` (a branch or commit) merged into the branch `base`, which moves to the merge commit. */
  private async mergeBranch(name: string, input: unknown): Promise<Answer> {
    const parsed = BranchMergeBody.safeParse(input);
    if (!parsed.success) return validation(parsed.error.issues[0]?.message ?? "invalid", String(parsed.error.issues[0]?.path[0] ?? ""));
    const { base: branch, head: headRef } = parsed.data;
    const base = Branch.safeParse(branch).success ? await this.sha(name, branch) : null;
    const head = /^[0-9a-f]{40}$/.test(headRef) ? headRef : Branch.safeParse(headRef).success ? await this.sha(name, headRef) : null;
    if (!base) return { status: 404, body: { message: "Base does not exist" } };
    if (!head || !(await this.git(name, ["cat-file", "-e", `${head}^{commit}`]).then(() => true, () => false))) return { status: 404, body: { message: "Head does not exist" } };
    // Already there: nothing to merge.
    if (await this.git(name, ["merge-base", "--is-ancestor", head, base]).then(() => true, () => false)) return { status: 204, body: null };
    const tree = await this.mergeTree(name, base, head);
    if (!tree) return { status: 409, body: { message: "Merge conflict" } };
    const message = parsed.data.commit_message ?? `Merge ${headRef} into ${branch}`;
    const commit = (await this.git(name, ["commit-tree", tree, "-p", base, "-p", head, "-m", message], { GIT_AUTHOR_NAME: "GitHub", GIT_AUTHOR_EMAIL: "noreply@github.com", GIT_COMMITTER_NAME: "GitHub", GIT_COMMITTER_EMAIL: "noreply@github.com" })).trim();
    const moved = await this.git(name, ["update-ref", `refs/heads/${branch}`, commit, base]).then(() => false, () => true);
    if (moved) return { status: 409, body: { message: "Base branch was modified. Review and try the merge again." } };
    const repo = `${this.context.org}/${name}`;
    return { status: 201, body: { sha: commit, url: `${this.context.url}/repos/${repo}/commits/${commit}`, html_url: `${this.context.url}/${repo}/commit/${commit}`, commit: { message, tree: { sha: tree } }, parents: [{ sha: base }, { sha: head }] } };
  }

  private async view(name: string, pull: Stored): Promise<Record<string, unknown>> {
    const head = pull.state === "open" ? ((await this.sha(name, pull.head)) ?? pull.headSha) : pull.headSha;
    const base = await this.sha(name, pull.base);
    const mergeable = pull.state === "open" && base ? (await this.mergeTree(name, base, head)) !== null : null;
    const commits = base ? Number((await this.git(name, ["rev-list", "--count", `${base}..${head}`]).catch(() => "0")).trim()) : 0;
    const repo = `${this.context.org}/${name}`;
    return {
      url: `${this.context.url}/repos/${repo}/pulls/${pull.number}`,
      id: pull.number + 500_000,
      number: pull.number,
      html_url: `${this.context.url}/${repo}/pull/${pull.number}`,
      state: pull.state,
      title: pull.title,
      body: pull.body,
      user: { login: `${this.context.org}[bot]`, type: "Bot" },
      created_at: pull.createdAt,
      updated_at: pull.updatedAt,
      closed_at: pull.closedAt,
      merged_at: pull.mergedAt,
      merge_commit_sha: pull.mergeCommitSha,
      draft: false,
      head: { label: `${this.context.org}:${pull.head}`, ref: pull.head, sha: head },
      base: { label: `${this.context.org}:${pull.base}`, ref: pull.base, sha: base },
      merged: pull.merged,
      mergeable,
      mergeable_state: pull.state !== "open" ? "unknown" : mergeable ? "clean" : "dirty",
      commits,
    };
  }

  /** The tree of base and head merged, or null when they conflict (git merge-tree, no work tree needed). */
  private async mergeTree(name: string, base: string, head: string): Promise<string | null> {
    return this.git(name, ["merge-tree", "--write-tree", base, head]).then(
      (out) => out.split("\n")[0]?.trim() || null,
      () => null,
    );
  }

  private async sha(name: string, branch: string): Promise<string | null> {
    return this.git(name, ["rev-parse", "--verify", "--quiet", `refs/heads/${branch}`]).then((out) => out.trim() || null, () => null);
  }

  private async git(name: string, args: string[], env: Record<string, string> = {}): Promise<string> {
    return (await run("git", ["--git-dir", this.context.repoPath(name), ...args], { env: { ...process.env, ...env } })).stdout;
  }

  private file(name: string): string {
    return join(this.context.repoPath(name), "pulls.json");
  }

  private load(name: string): Stored[] {
    const file = this.file(name);
    return existsSync(file) ? z.array(Stored).parse(JSON.parse(readFileSync(file, "utf8"))) : [];
  }

  private save(name: string, pulls: Stored[]): void {
    writeFileSync(this.file(name), JSON.stringify(pulls, null, 2));
  }

  private replace(name: string, pull: Stored): void {
    this.save(name, this.load(name).map((candidate) => (candidate.number === pull.number ? pull : candidate)));
  }
}
