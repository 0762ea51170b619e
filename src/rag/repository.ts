/**
 * A project's repository into the knowledge index: its Markdown and text files (READMEs, ADRs,
 * docs) as `docs`, its source files as `code`, each under the source `repo:<path>`. A sync lists
 * the files at one commit (the Git Trees API), queues one `repository:file` message per file (the
 * consumer fetches it, so file contents never ride on the queue), and removes the documents of
 * files no longer there. Where the tree cannot be listed (a GitHub stand-in without the Trees API),
 * the well-known documentation paths are read instead, and nothing is removed: an incomplete
 * listing must not look like deleted files.
 */
import { Octokit } from "@octokit/rest";
import { eq } from "drizzle-orm";
import { projects } from "../db/schema.ts";
import { fileAt, getRepository, githubAppConfig, type RepositoryReader, repositoryReader, resolveCommit } from "../projects/github.ts";
import { projectRepository, type ProjectRow } from "../projects/projects.ts";
import { kindOfSource } from "./chunking.ts";
import type { RagScope } from "./contract.ts";
import { deleteDocument, type IngestServices, projectSources, upsertDocument, type UpsertOutcome } from "./documents.ts";
import { enqueueIngest, type IngestMessage } from "./messages.ts";
import { specDocument } from "./sources.ts";

export const REPOSITORY_PREFIX = "repo:";
/** Larger files are generated code or data, not what anyone searches for. */
export const MAX_FILE_BYTES = 256 * 1024;
/** Files per sync: a monorepo's first thousands of files rather than a sync that never ends. */
export const MAX_FILES = 2000;

const DOC_EXTENSIONS = /\.(md|mdx|markdown|rst|txt|adoc)$/i;
const SKIPPED_DIRECTORIES = /(^|\/)(node_modules|vendor|dist|build|out|coverage|target|__pycache__|\.git|\.next|\.venv|venv)\//;
const SKIPPED_FILES = /(^|\/)(package-lock\.json|yarn\.lock|pnpm-lock\.yaml|Cargo\.lock|poetry\.lock|go\.sum|LICENSE(\.\w+)?)$|\.min\.(js|css)$/i;
/** Read when the tree cannot be listed. */
const WELL_KNOWN_PATHS = ["README.md", "SPEC.md", "ARCHITECTURE.md", "DESIGN.md", "CONTRIBUTING.md", "docs/README.md", "docs/adr/README.md"];

/** The scope a repository file is indexed under, or null for files that are not indexed. */
export function scopeOfPath(path: string): RagScope | null {
  if (SKIPPED_DIRECTORIES.test(path) || SKIPPED_FILES.test(path)) return null;
  if (DOC_EXTENSIONS.test(path)) return "docs";
  return kindOfSource(path) === "code" ? "code" : null;
}

/** The GitHub App's read access for one consumer batch: a token per repository, each limited to it. */
export function githubSessions(env: Env): () => RepositoryReader {
  let reader: RepositoryReader | null = null;
  return () => (reader ??= repositoryReader(githubAppConfig(env)));
}

export interface RepositoryServices extends IngestServices {
  env: Env;
  github: () => RepositoryReader;
}

/** Where a project's repository is, with a token that reads it and nothing else; null when it has none of its own. */
async function openRepository(reader: RepositoryReader, project: Pick<ProjectRow, "name" | "repositoryUrl" | "managed">): Promise<{ owner: string; name: string; token: string } | null> {
  const where = projectRepository(project, await reader.org());
  if (!where) return null;
  return { ...where, token: await reader.tokenFor(where.name) };
}

async function listFiles(reader: RepositoryReader, token: string, owner: string, name: string, sha: string): Promise<{ files: { path: string; size: number | null }[]; complete: boolean }> {
  const client = new Octokit({ baseUrl: reader.config.apiUrl, auth: token, userAgent: "orchestrator" });
  try {
    const { data } = await client.rest.git.getTree({ owner, repo: name, tree_sha: sha, recursive: "1" });
    const files = data.tree.filter((entry) => entry.type === "blob" && entry.path).map((entry) => ({ path: entry.path ?? "", size: entry.size ?? null }));
    return { files, complete: !data.truncated };
  } catch (error) {
    const status = typeof error === "object" && error !== null && "status" in error ? error.status : undefined;
    if (status !== 404 && status !== 422) throw error;
    return { files: WELL_KNOWN_PATHS.map((path) => ({ path, size: null })), complete: false };
  }
}

export interface SyncOutcome {
  spec: UpsertOutcome["status"] | "none";
  queued: number;
  removed: number;
  listing: "tree" | "well-known" | "no repository" | "not the project's repository";
}

/** `repository:sync`: the spec now, one `repository:file` message per file, and the documents of deleted files removed. */
export async function syncRepository(services: RepositoryServices, projectId: string, ref: string | undefined): Promise<SyncOutcome | { skipped: string }> {
  const [project] = await services.db.select().from(projects).where(eq(projects.id, projectId));
  if (!project) return { skipped: "the project no longer exists" };
  const spec = specDocument(project);
  const specStatus = spec ? (await upsertDocument(services, spec)).status : "none";
  if (!project.repositoryUrl) return { spec: specStatus, queued: 0, removed: 0, listing: "no repository" };
  const reader = services.github();
  const where = await openRepository(reader, project);
  // A URL naming a repository that is not this project's (another's, put there by other means): nothing is read.
  if (!where) return { spec: specStatus, queued: 0, removed: 0, listing: "not the project's repository" };
  const repository = await getRepository(reader.config, where.token, where.owner, where.name);
  if (!repository) throw new Error(`${where.owner}/${where.name} is not reachable through the GitHub App`);
  const wanted = ref ?? repository.defaultBranch;
  const sha = await resolveCommit(reader.config, where.token, repository, wanted);
  if (!sha) throw new Error(`${repository.fullName} has no commit ${wanted}`);
  const { files, complete } = await listFiles(reader, where.token, repository.owner, repository.name, sha);
  const messages: IngestMessage[] = [];
  for (const file of files) {
    const scope = scopeOfPath(file.path);
    if (!scope || (file.size !== null && file.size > MAX_FILE_BYTES)) continue;
    messages.push({ type: "repository:file", projectId, path: file.path, ref: sha, scope });
    if (messages.length === MAX_FILES) break;
  }
  await enqueueIngest(services.env, messages);
  let removed = 0;
  if (complete) {
    const present = new Set(messages.map((message) => (message.type === "repository:file" ? `${message.scope} ${REPOSITORY_PREFIX}${message.path}` : "")));
    for (const key of await projectSources(services.db, projectId, REPOSITORY_PREFIX)) {
      if (present.has(`${key.scope} ${key.source}`)) continue;
      if ((await deleteDocument(services, key)).deleted) removed++;
    }
  }
  return { spec: specStatus, queued: messages.length, removed, listing: complete ? "tree" : "well-known" };
}

/** `repository:file`: one file at one commit, indexed; a file that is not there (any more) is removed. */
export async function ingestRepositoryFile(services: RepositoryServices, message: { projectId: string; path: string; ref: string; scope: RagScope }): Promise<UpsertOutcome | { skipped: string } | { removed: boolean }> {
  const [project] = await services.db.select({ name: projects.name, repositoryUrl: projects.repositoryUrl, managed: projects.managed }).from(projects).where(eq(projects.id, message.projectId));
  if (!project) return { skipped: "the project no longer exists" };
  const reader = services.github();
  const where = await openRepository(reader, project);
  if (!where) return { skipped: "the project has no repository of its own" };
  const key = { projectId: message.projectId, ownerId: null, scope: message.scope, source: `${REPOSITORY_PREFIX}${message.path}` };
  const content = await fileAt(reader.config, where.token, { owner: where.owner, name: where.name }, message.path, message.ref);
  if (content === null) return { removed: (await deleteDocument(services, key)).deleted };
  if (new TextEncoder().encode(content).byteLength > MAX_FILE_BYTES) return { skipped: `${message.path} is larger than ${MAX_FILE_BYTES} bytes` };
  // A NUL byte: a binary file with a text-like name.
  if (content.includes("\u0000")) return { skipped: `${message.path} is not text` };
  return upsertDocument(services, { ...key, title: message.path, content, kind: kindOfSource(message.path) });
}
