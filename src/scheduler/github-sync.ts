/**
 * `github_sync`: each project's repository state, as the GitHub App sees it: default branch and its
 * head commit, kept in the project's `config.github`. A repository the App can no longer reach opens a
 * `repository_unreachable` incident; reaching it again resolves it.
 */
import { and, eq, isNotNull, isNull, sql } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { incidents, projects } from "../db/schema.ts";
import { newId } from "../lib/crypto.ts";
import type { Logger } from "../lib/log.ts";
import { ingestRepositoryDocs } from "../rag/sources.ts";
import { getRepository, githubAppConfig, repositoryFromUrl, repositoryReader, resolveCommit } from "../projects/github.ts";
import { managedOf, projectRepository } from "../projects/projects.ts";

export interface GithubSyncResult {
  checked: number;
  moved: { project: string; from: string | null; to: string }[];
  unreachable: string[];
  /** Projects whose repository URL names a repository that is not theirs: not read. */
  foreign: string[];
}

export async function githubSync(db: Db, env: Env, log: Logger): Promise<GithubSyncResult> {
  const rows = await db.select().from(projects).where(isNotNull(projects.repositoryUrl));
  const result: GithubSyncResult = { checked: 0, moved: [], unreachable: [], foreign: [] };
  if (rows.length === 0) return result;
  const reader = repositoryReader(githubAppConfig(env));
  const org = await reader.org();
  for (const project of rows) {
    const named = repositoryFromUrl(project.repositoryUrl);
    if (!named) continue;
    // Each project is read with a token for its own repository only; a URL naming another's is never followed.
    const where = projectRepository(project, org);
    if (!where) {
      result.foreign.push(project.name);
      log.warn("repository not the project's own, not read", { project: project.name, repository: `${named.owner}/${named.name}` });
      continue;
    }
    result.checked++;
    const token = await reader.tokenFor(where.name).catch(() => null);
    const repository = token ? await getRepository(reader.config, token, where.owner, where.name) : null;
    const [open] = await db.select({ id: incidents.id }).from(incidents).where(and(eq(incidents.projectId, project.id), eq(incidents.kind, "repository_unreachable"), isNull(incidents.resolvedAt)));
    if (!repository || !token) {
      result.unreachable.push(project.name);
      if (!open) await db.insert(incidents).values({ id: newId("inc"), projectId: project.id, kind: "repository_unreachable", message: `${where.owner}/${where.name} is not reachable through the GitHub App`, data: { repository: `${where.owner}/${where.name}` } });
      log.warn("repository unreachable", { project: project.name, repository: `${where.owner}/${where.name}` });
      continue;
    }
    if (open) await db.update(incidents).set({ resolvedAt: new Date() }).where(eq(incidents.id, open.id));
    const head = await resolveCommit(reader.config, token, repository, repository.defaultBranch);
    const known = managedOf(project).github?.headSha ?? null;
    if (head && head !== known) {
      result.moved.push({ project: project.name, from: known, to: head });
      // The knowledge index follows the default branch (its docs and code at the new head).
      await ingestRepositoryDocs(env, { projectId: project.id, ref: head }).catch((error: unknown) => log.warn("knowledge sync not queued", { project: project.name, error }));
    }
    const state = { defaultBranch: repository.defaultBranch, headSha: head, syncedAt: new Date().toISOString() };
    await db.update(projects).set({ managed: sql`jsonb_set(${projects.managed}, '{github}', ${JSON.stringify(state)}::jsonb)` }).where(eq(projects.id, project.id));
  }
  return result;
}
