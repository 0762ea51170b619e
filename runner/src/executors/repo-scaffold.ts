/**
 * repo.scaffold: renders a project template (runner/templates/<name>/) with the payload's values and
 * pushes it as the first commit of a repository's branch. A branch that exists already is left alone
 * and its head reported, so the job can be retried without a second commit.
 */
import { mkdtemp, mkdir, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import type { JobPayload } from "../../../src/shared/job-payloads.ts";
import { GitError, git, gitAuthEnv } from "../git.ts";
import type { Executor } from "./types.ts";

type Payload = JobPayload<"repo.scaffold">;

/** `{{name}}`: a placeholder a template's text files may hold. */
const PLACEHOLDER = /\{\{([a-z_]{1,40})\}\}/g;
/** Larger files are copied as they are (images, fixtures): placeholders live in small text files. */
const MAX_RENDERED_BYTES = 512 * 1024;

export const repoScaffold: Executor<Payload> = async (payload, context) => {
  const templateDir = join(context.config.templatesDir, payload.template);
  const auth = gitAuthEnv(payload.secrets.GIT_TOKEN);
  const work = await mkdtemp(join(tmpdir(), "orchestrator-scaffold-"));
  try {
    context.progress("check", `looking for ${payload.branch} in ${payload.repoUrl}`);
    const { stdout: existing } = await git(["ls-remote", payload.repoUrl, `refs/heads/${payload.branch}`], { cwd: work, env: auth, signal: context.signal });
    const head = existing.split(/\s+/)[0];
    if (head) {
      context.log(`${payload.branch} exists already at ${head}: left as it is`, "system");
      return { ok: true, message: `${payload.branch} was already scaffolded (at ${head})`, data: { sha: head, branch: payload.branch, created: false } };
    }

    context.progress("render", `rendering the ${payload.template} template`);
    const files = await renderTree(templateDir, join(work, "repo"), payload.values);
    context.log(`rendered ${files.length} files: ${files.join(", ")}`, "system");

    context.progress("push", `pushing the first commit to ${payload.branch}`);
    const repo = join(work, "repo");
    const identity = { GIT_AUTHOR_NAME: payload.author.name, GIT_AUTHOR_EMAIL: payload.author.email, GIT_COMMITTER_NAME: payload.author.name, GIT_COMMITTER_EMAIL: payload.author.email };
    await git(["init", "--quiet", `--initial-branch=${payload.branch}`], { cwd: repo });
    await git(["add", "--all"], { cwd: repo });
    await git(["commit", "--quiet", "-m", payload.message], { cwd: repo, env: identity });
    await git(["push", "--quiet", payload.repoUrl, `HEAD:refs/heads/${payload.branch}`], { cwd: repo, env: auth, signal: context.signal });
    const { stdout: sha } = await git(["rev-parse", "HEAD"], { cwd: repo });
    return { ok: true, message: `scaffolded ${payload.template} at ${sha.trim()}`, data: { sha: sha.trim(), branch: payload.branch, created: true, files: files.length } };
  } catch (error) {
    if (error instanceof GitError || error instanceof TemplateError) return { ok: false, message: error.message };
    throw error;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
};

export class TemplateError extends Error {}

/** Copies a template tree, filling in every placeholder of its text files; an unknown placeholder is an error. */
export async function renderTree(from: string, to: string, values: Record<string, string>): Promise<string[]> {
  try {
    if (!(await stat(from)).isDirectory()) throw new Error("not a directory");
  } catch {
    throw new TemplateError(`no template at ${from}`);
  }
  const written: string[] = [];
  const walk = async (dir: string) => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const source = join(dir, entry.name);
      const target = join(to, relative(from, source));
      if (entry.isDirectory()) {
        await mkdir(target, { recursive: true });
        await walk(source);
      } else if (entry.isFile()) {
        const bytes = await readFile(source);
        const text = bytes.length <= MAX_RENDERED_BYTES ? bytes.toString("utf8") : null;
        const rendered =
          text === null
            ? bytes
            : text.replace(PLACEHOLDER, (_, name: string) => {
                const value = values[name];
                if (value === undefined) throw new TemplateError(`${relative(from, source)}: no value for {{${name}}}`);
                return value;
              });
        await mkdir(join(target, ".."), { recursive: true });
        await writeFile(target, rendered);
        written.push(relative(from, source));
      }
    }
  };
  await mkdir(to, { recursive: true });
  await walk(from);
  return written.sort();
}
