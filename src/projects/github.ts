/**
 * The GitHub App the engineering pipeline works through: the App's JWT (RS256, signed with
 * WebCrypto), a short-lived installation token, the installation's organisation, and repositories
 * created there. Calls go through @octokit/rest; GitHub and the local stand-in differ only in the
 * base URL (GITHUB_API_URL).
 */
import { Octokit } from "@octokit/rest";
import { z } from "zod";
import { AppError } from "../lib/app-error.ts";
import { fromBase64url, toBase64url } from "../shared/base64url.ts";

export interface GitHubAppConfig {
  appId: string;
  installationId: string;
  privateKeyPem: string;
  apiUrl: string;
}

const Env = z.object({
  GITHUB_APP_ID: z.string().regex(/^\d+$/),
  GITHUB_INSTALLATION_ID: z.string().regex(/^\d+$/),
  GITHUB_APP_PRIVATE_KEY: z.string().includes("PRIVATE KEY"),
  GITHUB_API_URL: z.url().default("https://api.github.com"),
});

/** The App's configuration, or an error that names what is missing. */
export function githubAppConfig(env: Partial<Record<keyof z.infer<typeof Env>, unknown>>): GitHubAppConfig {
  const parsed = Env.safeParse({ ...env, GITHUB_API_URL: env.GITHUB_API_URL || undefined });
  if (!parsed.success) {
    const missing = parsed.error.issues.map((issue) => issue.path.join(".")).join(", ");
    throw new AppError("conflict", `The GitHub App is not configured (${missing}); see docs/engineering.md, "Connecting GitHub"`);
  }
  return { appId: parsed.data.GITHUB_APP_ID, installationId: parsed.data.GITHUB_INSTALLATION_ID, privateKeyPem: parsed.data.GITHUB_APP_PRIVATE_KEY, apiUrl: parsed.data.GITHUB_API_URL.replace(/\/+$/, "") };
}

/** The App's JWT: RS256 over {iat, exp, iss}, valid for nine minutes (GitHub allows ten). */
export async function appJwt(config: GitHubAppConfig, now = Date.now()): Promise<string> {
  const key = await crypto.subtle.importKey("pkcs8", pkcs8Of(config.privateKeyPem), { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }, false, ["sign"]);
  const seconds = Math.floor(now / 1000);
  const encode = (value: unknown) => toBase64url(new TextEncoder().encode(JSON.stringify(value)));
  const unsigned = `${encode({ alg: "RS256", typ: "JWT" })}.${encode({ iat: seconds - 60, exp: seconds + 540, iss: config.appId })}`;
  const signature = await crypto.subtle.sign("RSASSA-PKCS1-v1_5", key, new TextEncoder().encode(unsigned));
  return `${unsigned}.${toBase64url(signature)}`;
}

export interface InstallationAccess {
  token: string;
  expiresAt: string;
  /** The organisation the App is installed in: where repositories are created. */
  org: string;
}

/** An installation token (about an hour) and the installation's organisation. */
export async function installationAccess(config: GitHubAppConfig): Promise<InstallationAccess> {
  const app = octokit(config, await appJwt(config), "bearer");
  const installation = Number(config.installationId);
  const [{ data: details }, { data: access }] = await Promise.all([
    app.rest.apps.getInstallation({ installation_id: installation }),
    app.rest.apps.createInstallationAccessToken({ installation_id: installation }),
  ]);
  const org = details.account && "login" in details.account ? details.account.login : null;
  if (!org) throw new AppError("conflict", `GitHub App installation ${config.installationId} has no organisation account`);
  return { token: access.token, expiresAt: access.expires_at, org };
}

/** The organisation the App is installed in (asked with the App's JWT alone: no installation token is made). */
export async function installationOrg(config: GitHubAppConfig): Promise<string> {
  const { data } = await octokit(config, await appJwt(config), "bearer").rest.apps.getInstallation({ installation_id: Number(config.installationId) });
  const org = data.account && "login" in data.account ? data.account.login : null;
  if (!org) throw new AppError("conflict", `GitHub App installation ${config.installationId} has no organisation account`);
  return org;
}

/**
 * Read access to project repositories, one repository at a time: each gets a token limited to it
 * (read-only), made when first asked for and reused for the session (a consumer batch, a cron run).
 */
export interface RepositoryReader {
  config: GitHubAppConfig;
  /** The installation's organisation: the `<org>` of every repository the factory made. */
  org(): Promise<string>;
  /** A token that reads `name` and nothing else. */
  tokenFor(name: string): Promise<string>;
}

export function repositoryReader(config: GitHubAppConfig): RepositoryReader {
  let org: Promise<string> | null = null;
  const tokens = new Map<string, Promise<string>>();
  return {
    config,
    org: () => (org ??= installationOrg(config)),
    tokenFor(name) {
      let token = tokens.get(name);
      if (!token) {
        token = repositoryToken(config, name, { contents: "read", metadata: "read" }).then((access) => access.token);
        // A failed request is not remembered: the next caller asks again.
        token.catch(() => tokens.delete(name));
        tokens.set(name, token);
      }
      return token;
    },
  };
}

/** A repository as the pipelines keep it (in their steps' results, so a schema). */
export const Repository = z.object({
  owner: z.string(),
  name: z.string(),
  fullName: z.string(),
  cloneUrl: z.string(),
  htmlUrl: z.string(),
  defaultBranch: z.string(),
});
export type Repository = z.infer<typeof Repository>;

/** The repository `name` in the installation's organisation, created if it does not exist yet. */
export async function ensureRepository(config: GitHubAppConfig, access: InstallationAccess, name: string, description: string): Promise<{ repository: Repository; created: boolean }> {
  const client = octokit(config, access.token, "token");
  const existing = await client.rest.repos.get({ owner: access.org, repo: name }).catch((error: unknown) => {
    if (status(error) === 404) return null;
    throw error;
  });
  if (existing) return { repository: repositoryOf(existing.data), created: false };
  try {
    const { data } = await client.rest.repos.createInOrg({ org: access.org, name, description: description.slice(0, 350), private: true, auto_init: false });
    return { repository: repositoryOf(data), created: true };
  } catch (error) {
    // Created by a retry of this very step a moment ago.
    if (status(error) === 422) {
      const { data } = await client.rest.repos.get({ owner: access.org, repo: name });
      return { repository: repositoryOf(data), created: false };
    }
    throw error;
  }
}

/** Whether `sha` is a commit of the repository. */
export async function commitExists(config: GitHubAppConfig, access: Pick<InstallationAccess, "token">, repository: Pick<Repository, "owner" | "name">, sha: string): Promise<boolean> {
  try {
    const { data } = await octokit(config, access.token, "token").rest.repos.getCommit({ owner: repository.owner, repo: repository.name, ref: sha });
    return data.sha === sha;
  } catch (error) {
    if (status(error) === 404 || status(error) === 422) return false;
    throw error;
  }
}

function repositoryOf(data: { owner: { login: string }; name: string; full_name: string; clone_url: string; html_url: string; default_branch?: string }): Repository {
  return { owner: data.owner.login, name: data.name, fullName: data.full_name, cloneUrl: data.clone_url, htmlUrl: data.html_url, defaultBranch: data.default_branch ?? "main" };
}

/** The REST client, as the App (`bearer`: its JWT) or as an installation (`token`). */
export function octokit(config: GitHubAppConfig, credential: string, scheme: "bearer" | "token"): Octokit {
  return new Octokit({ baseUrl: config.apiUrl, auth: scheme === "bearer" ? `Bearer ${credential}` : credential, userAgent: "orchestrator" });
}

/** The HTTP status of an Octokit error, if it is one. */
export function status(error: unknown): number | undefined {
  return typeof error === "object" && error !== null && "status" in error && typeof error.status === "number" ? error.status : undefined;
}

/**
 * The DER of a PEM private key, as PKCS#8: GitHub hands out PKCS#1 (`BEGIN RSA PRIVATE KEY`), which
 * WebCrypto cannot import, so it is wrapped in the PKCS#8 structure (RFC 5208) around it.
 */
export function pkcs8Of(pem: string): Uint8Array<ArrayBuffer> {
  const body = pem.replace(/-----(BEGIN|END) [A-Z ]+-----/g, "").replace(/\s+/g, "");
  const der = fromBase64url(body.replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, ""));
  if (!pem.includes("BEGIN RSA PRIVATE KEY")) return der;
  const rsaAlgorithm = [0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00];
  const inner = [0x02, 0x01, 0x00, ...rsaAlgorithm, 0x04, ...derLength(der.length), ...der];
  return new Uint8Array([0x30, ...derLength(inner.length), ...inner]);
}

function derLength(length: number): number[] {
  if (length < 0x80) return [length];
  const bytes: number[] = [];
  for (let rest = length; rest > 0; rest >>= 8) bytes.unshift(rest & 0xff);
  return [0x80 | bytes.length, ...bytes];
}

/**
 * A token for one repository only, with the permissions asked for (by default what a job needs to
 * clone and push: contents write) and no more. It lasts about an hour unless revoked first.
 */
export async function repositoryToken(config: GitHubAppConfig, repository: string, permissions: { contents: "read" | "write"; metadata: "read"; pull_requests?: "write" } = { contents: "write", metadata: "read" }): Promise<{ token: string; expiresAt: string }> {
  const app = octokit(config, await appJwt(config), "bearer");
  const { data } = await app.rest.apps.createInstallationAccessToken({
    installation_id: Number(config.installationId),
    repositories: [repository],
    permissions,
  });
  return { token: data.token, expiresAt: data.expires_at };
}

/** Ends an installation token before its hour is up (GitHub's `DELETE /installation/token`, authorised by the token itself). */
export async function revokeToken(config: GitHubAppConfig, token: string): Promise<void> {
  try {
    await octokit(config, token, "token").rest.apps.revokeInstallationAccessToken();
  } catch (error) {
    // Already expired or revoked: it ends either way.
    if (status(error) !== 401) throw error;
  }
}

/**
 * Moves `branch` forward to `sha` (GitHub's refs API, never forced). False when the branch has moved
 * on meanwhile and `sha` is not ahead of it: the work then stays on its own branch.
 */
export async function fastForward(config: GitHubAppConfig, access: Pick<InstallationAccess, "token">, repository: Pick<Repository, "owner" | "name">, branch: string, sha: string): Promise<boolean> {
  try {
    await octokit(config, access.token, "token").rest.git.updateRef({ owner: repository.owner, repo: repository.name, ref: `heads/${branch}`, sha, force: false });
    return true;
  } catch (error) {
    if (status(error) === 422) return false;
    throw error;
  }
}

/** A commit's tree and parents (GitHub's Git commits API); null when the repository has no such commit. */
export async function commitTree(config: GitHubAppConfig, token: string, repository: Pick<Repository, "owner" | "name">, sha: string): Promise<{ tree: string; parents: string[] } | null> {
  try {
    const { data } = await octokit(config, token, "token").rest.git.getCommit({ owner: repository.owner, repo: repository.name, commit_sha: sha });
    return { tree: data.tree.sha, parents: data.parents.map((parent) => parent.sha) };
  } catch (error) {
    if (status(error) === 404 || status(error) === 422) return null;
    throw error;
  }
}

/** A new commit of `tree` on `parents` (no branch moves: fastForward does that). */
export async function createCommit(config: GitHubAppConfig, token: string, repository: Pick<Repository, "owner" | "name">, commit: { message: string; tree: string; parents: string[] }): Promise<string> {
  const { data } = await octokit(config, token, "token").rest.git.createCommit({ owner: repository.owner, repo: repository.name, ...commit });
  return data.sha;
}

/**
 * Merges `head` (a branch or commit) into the branch `base` (GitHub's merges API): the merge commit, or
 * "up to date" when base has it already, or "conflict" when they do not merge cleanly (then nothing moved).
 */
export async function mergeBranch(config: GitHubAppConfig, token: string, repository: Pick<Repository, "owner" | "name">, merge: { base: string; head: string; message: string }): Promise<{ sha: string } | "up to date" | "conflict"> {
  try {
    const response = await octokit(config, token, "token").rest.repos.merge({ owner: repository.owner, repo: repository.name, base: merge.base, head: merge.head, commit_message: merge.message });
    // Octokit's types know only 201; GitHub answers 204 when base has head already.
    if ((response.status as number) === 204) return "up to date";
    return { sha: response.data.sha };
  } catch (error) {
    if (status(error) === 409) return "conflict";
    throw error;
  }
}

/** Moves a branch to `sha` even backwards (a change's branch back to its tested head, after an untested push). */
export async function resetBranch(config: GitHubAppConfig, token: string, repository: Pick<Repository, "owner" | "name">, branch: string, sha: string): Promise<void> {
  await octokit(config, token, "token").rest.git.updateRef({ owner: repository.owner, repo: repository.name, ref: `heads/${branch}`, sha, force: true });
}

/** Deletes a branch (a change's, once shipped or discarded); one already gone is not an error. */
export async function deleteBranch(config: GitHubAppConfig, token: string, repository: Pick<Repository, "owner" | "name">, branch: string): Promise<void> {
  try {
    await octokit(config, token, "token").rest.git.deleteRef({ owner: repository.owner, repo: repository.name, ref: `heads/${branch}` });
  } catch (error) {
    if (status(error) !== 422 && status(error) !== 404) throw error;
  }
}

/** owner and name from a repository's URL (github.com's, or a stand-in's `…/<owner>/<name>[.git]`). */
export function repositoryFromUrl(url: string | null | undefined): { owner: string; name: string } | null {
  const match = /github\.com\/([^/]+)\/([^/.]+)|\/([^/]+)\/([^/.]+?)(?:\.git)?$/.exec(url ?? "");
  const owner = match?.[1] ?? match?.[3];
  const name = match?.[2] ?? match?.[4];
  return owner && name ? { owner, name } : null;
}

/** The repository `owner/name` of a project (from its html URL), as the App's token sees it. */
export async function getRepository(config: GitHubAppConfig, token: string, owner: string, name: string): Promise<Repository | null> {
  try {
    const { data } = await octokit(config, token, "token").rest.repos.get({ owner, repo: name });
    return repositoryOf(data);
  } catch (error) {
    if (status(error) === 404) return null;
    throw error;
  }
}

/** The full SHA a branch, tag or SHA names, or null when the repository has no such ref. */
export async function resolveCommit(config: GitHubAppConfig, token: string, repository: Pick<Repository, "owner" | "name">, ref: string): Promise<string | null> {
  try {
    const { data } = await octokit(config, token, "token").rest.repos.getCommit({ owner: repository.owner, repo: repository.name, ref });
    return data.sha;
  } catch (error) {
    if (status(error) === 404 || status(error) === 422) return null;
    throw error;
  }
}

/** A text file of the repository at `ref`, or null when there is none. */
export async function fileAt(config: GitHubAppConfig, token: string, repository: Pick<Repository, "owner" | "name">, path: string, ref: string): Promise<string | null> {
  try {
    const { data } = await octokit(config, token, "token").rest.repos.getContent({ owner: repository.owner, repo: repository.name, path, ref });
    if (Array.isArray(data) || data.type !== "file" || !("content" in data)) return null;
    return new TextDecoder().decode(Uint8Array.from(atob(data.content.replace(/\s/g, "")), (c) => c.charCodeAt(0)));
  } catch (error) {
    if (status(error) === 404) return null;
    throw error;
  }
}
