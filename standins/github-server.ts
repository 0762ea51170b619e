/**
 * A GitHub stand-in for tests, `npm run dev` and the demo: the REST routes the pipelines use, with a
 * GitHub App's authentication, and real bare git repositories served over smart HTTP (Debian git's
 * `git http-backend`) with token auth. Production code reaches it as it reaches api.github.com, with
 * only the base URL changed.
 *
 * - `GET /app/installations/:id`, `POST /app/installations/:id/access_tokens`: the App's RS256 JWT
 *   (iss = app id) is verified against the App's public key.
 * - `POST /orgs/:org/repos`, `GET /repos/:owner/:repo`, `GET /repos/:owner/:repo/commits/:ref`,
 *   `GET /repos/:owner/:repo/contents/:path?ref=`, `GET /repos/:owner/:repo/git/trees/:sha?recursive=1`, `PATCH` and `DELETE /repos/:owner/:repo/git/refs/heads/:branch`
 *   (a fast-forward unless `force`), `GET` and `POST /repos/:owner/:repo/git/commits` (a commit's tree and
 *   parents; a new commit of a tree, as an undo's revert commit is made), and pull requests (standins/github-pulls.ts: create, get, list,
 *   update or close, merge; and `POST /repos/:owner/:repo/merges`, a branch merged into another): an installation token (`Authorization: token …` or `Bearer …`).
 * - `DELETE /installation/token`: revokes the token the call is made with.
 * - `/<owner>/<repo>.git/…`: git over HTTP, Basic auth with the installation token as password.
 * - `POST /_standin/token`: an installation token, no questions asked (the stand-in's own route, for
 *   scripts such as `npm run dev:fixture` that put a repository in place; never on GitHub).
 */
import { execFile, spawn } from "node:child_process";
import { createVerify, generateKeyPairSync, randomBytes, type KeyObject } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { PullRequests } from "./github-pulls.ts";
import { close, listen, readBody, sendJson } from "./http.ts";

const run = promisify(execFile);
const GIT_HTTP_BACKEND = "/usr/lib/git-core/git-http-backend";
const TOKEN_TTL_MS = 3600_000;

export interface Repo {
  id: number;
  name: string;
  full_name: string;
  private: boolean;
  description: string | null;
  default_branch: string;
  clone_url: string;
  html_url: string;
  owner: { login: string; type: string };
}

export interface GitHubOptions {
  /** The App: its id, and its key pair (a fresh one unless given). */
  appId?: number;
  installationId?: number;
  org?: string;
  /** Where the bare repositories live (a temp dir unless given; removed on stop when it made it). */
  dir?: string;
}

export class GitHubServer {
  readonly appId: number;
  readonly installationId: number;
  readonly org: string;
  /** PKCS#8 PEM: what the control plane is configured with (GITHUB_APP_PRIVATE_KEY). */
  readonly appPrivateKeyPem: string;
  private readonly appPublicKey: KeyObject;
  private readonly dir: string;
  private readonly ownsDir: boolean;
  /** Installation tokens: when each expires (0 once revoked), and the repositories it is limited to (null: all). */
  private readonly tokens = new Map<string, { expires: number; repositories: string[] | null; permissions: Record<string, string> | null }>();
  private readonly repos = new Map<string, Repo>();
  /** Read when a request comes, by when org and url are set. */
  private readonly pulls = new PullRequests(this);
  private server: Server | null = null;
  /** The tokens git over HTTP was used with (jobs' tokens: the worker itself never runs git). */
  readonly gitTokens = new Set<string>();
  /** Every API request, for tests to assert on (method, path, status). */
  readonly requests: { method: string; path: string; status: number }[] = [];
  /**
   * Awaited before a git request is answered, when set: a test's barrier (it holds a clone or fetch
   * until it has seen what it looks for, so a fast one cannot slip by between two looks).
   */
  beforeGit: (() => Promise<unknown>) | null = null;
  url = "";

  constructor(options: GitHubOptions = {}) {
    this.appId = options.appId ?? 4242;
    this.installationId = options.installationId ?? 77;
    this.org = options.org ?? "orchestrator-test";
    const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    this.appPrivateKeyPem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
    this.appPublicKey = publicKey;
    this.ownsDir = !options.dir;
    this.dir = options.dir ?? mkdtempSync(join(tmpdir(), "github-standin-"));
  }

  async start(port = 0, host = "127.0.0.1"): Promise<void> {
    const { server, url } = await listen((req, res) => this.handle(req, res), (error) => ({ message: String(error) }), port, host);
    this.server = server;
    this.url = url;
    for (const name of await this.existingRepos()) this.registerRepo(name);
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    await close(server);
    if (this.ownsDir) rmSync(this.dir, { recursive: true, force: true });
  }

  /** The bare repository on disk, for tests that look inside (`git --git-dir … log`). */
  repoPath(name: string): string {
    return join(this.dir, this.org, `${name}.git`);
  }

  repo(name: string): Repo | undefined {
    return this.repos.get(name);
  }

  /** Every installation token issued so far (revoked ones too): what tests look for where none may appear. */
  issuedTokens(): string[] {
    return [...this.tokens.keys()];
  }

  /** Whether a token still works (issued, not expired, not revoked). */
  tokenWorks(token: string): boolean {
    return this.validToken(token);
  }

  /** A token as the App would get one, for tests that push or clone by hand. */
  issueToken(repositories: string[] | null = null, permissions: Record<string, string> | null = null): string {
    const token = `ghs_${randomBytes(18).toString("base64url")}`;
    this.tokens.set(token, { expires: Date.now() + TOKEN_TTL_MS, repositories, permissions });
    return token;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://github");
    const path = url.pathname;
    if (/^\/[^/]+\/[^/]+\.git(\/|$)/.test(path)) {
      await this.beforeGit?.();
      return this.git(req, res, url);
    }
    const respond = (status: number, body: unknown) => {
      this.requests.push({ method: req.method ?? "GET", path, status });
      sendJson(res, status, body);
    };
    if (path === "/_standin/token" && req.method === "POST") return respond(201, { token: this.issueToken(), org: this.org });
    const installation = new RegExp(`^/app/installations/(\\d+)(/access_tokens)?$`).exec(path);
    if (installation) {
      if (!this.validJwt(req.headers.authorization)) return respond(401, { message: "A JSON web token could not be decoded" });
      if (Number(installation[1]) !== this.installationId) return respond(404, { message: "Not Found" });
      if (installation[2] && req.method === "POST") {
        // As GitHub does: a token may be narrowed to some repositories and some of the App's permissions.
        const text = await readBody(req);
        const body = (text ? JSON.parse(text) : {}) as { repositories?: unknown; permissions?: Record<string, string> };
        const repositories = Array.isArray(body.repositories) ? body.repositories.map(String) : null;
        const unknown = repositories?.filter((name) => !this.repos.has(name)) ?? [];
        if (unknown.length) return respond(422, { message: `There is at least one repository that does not exist or is not accessible to the parent installation: ${unknown.join(", ")}` });
        const token = this.issueToken(repositories, body.permissions ?? null);
        return respond(201, {
          token,
          expires_at: new Date(Date.now() + TOKEN_TTL_MS).toISOString(),
          permissions: body.permissions ?? { administration: "write", contents: "write", metadata: "read" },
          repository_selection: repositories ? "selected" : "all",
        });
      }
      if (!installation[2] && req.method === "GET") {
        return respond(200, { id: this.installationId, app_id: this.appId, account: { login: this.org, type: "Organization" }, permissions: { administration: "write", contents: "write", metadata: "read" } });
      }
      return respond(404, { message: "Not Found" });
    }
    if (!this.validToken(tokenOf(req.headers.authorization))) return respond(401, { message: "Bad credentials" });
    // GitHub's DELETE /installation/token: the token that authorises the call ends now.
    if (path === "/installation/token" && req.method === "DELETE") {
      const entry = this.tokens.get(tokenOf(req.headers.authorization) ?? "");
      if (entry) entry.expires = 0;
      res.writeHead(204).end();
      this.requests.push({ method: "DELETE", path, status: 204 });
      return;
    }
    const createRepo = /^\/orgs\/([^/]+)\/repos$/.exec(path);
    if (createRepo && req.method === "POST") {
      if (createRepo[1] !== this.org) return respond(404, { message: "Not Found" });
      const body = JSON.parse(await readBody(req)) as { name?: unknown; private?: unknown; description?: unknown };
      const name = typeof body.name === "string" ? body.name : "";
      if (!/^[A-Za-z0-9._-]{1,100}$/.test(name)) return respond(422, { message: "Validation Failed", errors: [{ resource: "Repository", field: "name", code: "invalid" }] });
      if (this.repos.has(name)) {
        return respond(422, { message: "Repository creation failed.", errors: [{ resource: "Repository", code: "custom", field: "name", message: "name already exists on this account" }] });
      }
      await this.createBareRepo(name);
      const repo = this.registerRepo(name, body.private !== false, typeof body.description === "string" ? body.description : null);
      return respond(201, repo);
    }
    // Octokit sends the ref encoded as one segment (heads%2Fmain).
    const refRoute = /^\/repos\/([^/]+)\/([^/]+)\/git\/refs\/(.+)$/.exec(path);
    if (refRoute && req.method === "PATCH" && decodeURIComponent(refRoute[3] ?? "").startsWith("heads/")) {
      const [, owner, name = ""] = refRoute;
      const branch = decodeURIComponent(refRoute[3] ?? "").slice("heads/".length);
      if (owner !== this.org || !this.repos.has(name) || !this.validToken(tokenOf(req.headers.authorization), name)) return respond(404, { message: "Not Found" });
      const body = JSON.parse(await readBody(req)) as { sha?: unknown; force?: unknown };
      const result = await this.updateRef(name, branch, typeof body.sha === "string" ? body.sha : "", body.force === true);
      return result.ok ? respond(200, { ref: `refs/heads/${branch}`, object: { sha: body.sha, type: "commit" } }) : respond(422, { message: result.message });
    }
    // GitHub's Git commits API: GET …/git/commits/:sha (tree and parents), POST …/git/commits {message, tree, parents} (a commit object, no ref moved).
    const commitsRoute = /^\/repos\/([^/]+)\/([^/]+)\/git\/commits(?:\/([0-9a-f]{40}))?$/.exec(path);
    if (commitsRoute && (req.method === "GET" || req.method === "POST")) {
      const [, owner, name = "", sha] = commitsRoute;
      if (owner !== this.org || !this.repos.has(name) || !this.validToken(tokenOf(req.headers.authorization), name)) return respond(404, { message: "Not Found" });
      if (req.method === "GET") {
        const found = sha ? await this.gitCommit(name, sha) : null;
        return found ? respond(200, found) : respond(404, { message: "Not Found" });
      }
      const granted = this.tokens.get(tokenOf(req.headers.authorization) ?? "")?.permissions;
      if (granted && granted.contents !== "write") return respond(403, { message: "Resource not accessible by integration" });
      const body = JSON.parse(await readBody(req)) as { message?: unknown; tree?: unknown; parents?: unknown };
      const parents = Array.isArray(body.parents) ? body.parents.filter((p): p is string => typeof p === "string") : [];
      if (typeof body.message !== "string" || typeof body.tree !== "string" || !/^[0-9a-f]{40}$/.test(body.tree) || parents.some((p) => !/^[0-9a-f]{40}$/.test(p))) {
        return respond(422, { message: "Invalid request: message, tree and parents (commit shas) are required" });
      }
      const made = await run("git", ["--git-dir", this.repoPath(name), "commit-tree", body.tree, ...parents.flatMap((p) => ["-p", p]), "-m", body.message], {
        env: { ...process.env, GIT_AUTHOR_NAME: "orchestrator[bot]", GIT_AUTHOR_EMAIL: "bot@orchestrator.local", GIT_COMMITTER_NAME: "GitHub", GIT_COMMITTER_EMAIL: "noreply@github.com" },
      })
        .then((r) => r.stdout.trim())
        .catch(() => null);
      if (!made) return respond(422, { message: "Tree or parent SHA does not exist" });
      return respond(201, await this.gitCommit(name, made));
    }
    // GitHub's DELETE /repos/:owner/:repo/git/refs/heads/:branch (a change's branch, once shipped or discarded): 422 when there is none.
    if (refRoute && req.method === "DELETE" && decodeURIComponent(refRoute[3] ?? "").startsWith("heads/")) {
      const [, owner, name = ""] = refRoute;
      const branch = decodeURIComponent(refRoute[3] ?? "").slice("heads/".length);
      if (owner !== this.org || !this.repos.has(name) || !this.validToken(tokenOf(req.headers.authorization), name)) return respond(404, { message: "Not Found" });
      const granted = this.tokens.get(tokenOf(req.headers.authorization) ?? "")?.permissions;
      if (granted && granted.contents !== "write") return respond(403, { message: "Resource not accessible by integration" });
      const current = /^[A-Za-z0-9._/-]{1,200}$/.test(branch) ? await run("git", ["--git-dir", this.repoPath(name), "rev-parse", "--verify", "--quiet", `refs/heads/${branch}`]).then((r) => r.stdout.trim()).catch(() => null) : null;
      if (!current) return respond(422, { message: "Reference does not exist" });
      await run("git", ["--git-dir", this.repoPath(name), "update-ref", "-d", `refs/heads/${branch}`, current]);
      this.requests.push({ method: "DELETE", path, status: 204 });
      return void res.writeHead(204).end();
    }
    const pullsRoute = /^\/repos\/([^/]+)\/([^/]+)(\/pulls(?:\/.*)?|\/merges)$/.exec(path);
    if (pullsRoute) {
      const [, owner, name = "", rest = ""] = pullsRoute;
      if (owner !== this.org || !this.repos.has(name) || !this.validToken(tokenOf(req.headers.authorization), name)) return respond(404, { message: "Not Found" });
      // A token narrowed to some permissions reaches pull requests only with pull_requests (write, to change one), and merges branches only with contents write, as on GitHub.
      const granted = this.tokens.get(tokenOf(req.headers.authorization) ?? "")?.permissions;
      if (granted && rest === "/merges" && granted.contents !== "write") return respond(403, { message: "Resource not accessible by integration" });
      if (granted && rest !== "/merges" && (!granted.pull_requests || (req.method !== "GET" && granted.pull_requests !== "write"))) return respond(403, { message: "Resource not accessible by integration" });
      const answer = await this.pulls.handle(req.method ?? "GET", name, rest, url.searchParams, await readBody(req));
      if (answer?.status === 204) {
        this.requests.push({ method: req.method ?? "GET", path, status: 204 });
        return void res.writeHead(204).end();
      }
      return answer ? respond(answer.status, answer.body) : respond(404, { message: "Not Found" });
    }
    const repoRoute = /^\/repos\/([^/]+)\/([^/]+)(?:\/(commits|contents|git\/trees)\/(.+))?$/.exec(path);
    if (repoRoute && req.method === "GET") {
      const [, owner, name = "", kind, rest = ""] = repoRoute;
      const repo = owner === this.org && this.validToken(tokenOf(req.headers.authorization), name) ? this.repos.get(name) : undefined;
      if (!repo) return respond(404, { message: "Not Found" });
      if (!kind) return respond(200, repo);
      if (kind === "git/trees") {
        const tree = await this.tree(name, decodeURIComponent(rest), url.searchParams.get("recursive") !== null);
        return tree ? respond(200, tree) : respond(404, { message: "Not Found" });
      }
      if (kind === "commits") {
        const commit = await this.commit(name, decodeURIComponent(rest));
        return commit ? respond(200, commit) : respond(422, { message: `No commit found for SHA: ${decodeURIComponent(rest)}` });
      }
      const file = await this.file(name, decodeURIComponent(rest), url.searchParams.get("ref") ?? repo.default_branch);
      return file === null ? respond(404, { message: "Not Found" }) : respond(200, { type: "file", encoding: "base64", path: decodeURIComponent(rest), content: Buffer.from(file).toString("base64") });
    }
    return respond(404, { message: "Not Found" });
  }

  /** An RS256 JWT from the App, current (iat/exp), for this App id. */
  private validJwt(header: string | undefined): boolean {
    const token = /^Bearer\s+(\S+)$/i.exec(header ?? "")?.[1];
    const [head, payload, signature] = token?.split(".") ?? [];
    if (!head || !payload || !signature) return false;
    const verifier = createVerify("RSA-SHA256");
    verifier.update(`${head}.${payload}`);
    if (!verifier.verify(this.appPublicKey, Buffer.from(signature, "base64url"))) return false;
    try {
      const claims = JSON.parse(Buffer.from(payload, "base64url").toString()) as { iss?: unknown; iat?: unknown; exp?: unknown };
      const now = Math.floor(Date.now() / 1000);
      return String(claims.iss) === String(this.appId) && typeof claims.exp === "number" && claims.exp > now && claims.exp - now <= 600 && typeof claims.iat === "number" && claims.iat <= now + 60;
    } catch {
      return false;
    }
  }

  private validToken(token: string | undefined, repository?: string): boolean {
    const entry = token ? this.tokens.get(token) : undefined;
    if (!entry || entry.expires <= Date.now()) return false;
    return !repository || !entry.repositories || entry.repositories.includes(repository);
  }

  private async createBareRepo(name: string): Promise<void> {
    const path = this.repoPath(name);
    mkdirSync(join(this.dir, this.org), { recursive: true });
    await run("git", ["init", "--bare", "--quiet", "--initial-branch=main", path]);
    await run("git", ["--git-dir", path, "config", "http.receivepack", "true"]);
  }

  private registerRepo(name: string, isPrivate = true, description: string | null = null): Repo {
    const repo: Repo = {
      id: this.repos.size + 1000,
      name,
      full_name: `${this.org}/${name}`,
      private: isPrivate,
      description,
      default_branch: "main",
      clone_url: `${this.url}/${this.org}/${name}.git`,
      html_url: `${this.url}/${this.org}/${name}`,
      owner: { login: this.org, type: "Organization" },
    };
    this.repos.set(name, repo);
    return repo;
  }

  private async existingRepos(): Promise<string[]> {
    const orgDir = join(this.dir, this.org);
    if (!existsSync(orgDir)) return [];
    const { stdout } = await run("ls", [orgDir]);
    return stdout.split("\n").filter((entry) => entry.endsWith(".git")).map((entry) => entry.slice(0, -4));
  }

  /** Moves a branch to a commit, as GitHub's refs API does: only forward unless forced. */
  private async updateRef(name: string, branch: string, sha: string, force: boolean): Promise<{ ok: true } | { ok: false; message: string }> {
    const gitDir = this.repoPath(name);
    if (!/^[0-9a-f]{40}$/.test(sha) || !(await this.commit(name, sha))) return { ok: false, message: "Object does not exist" };
    const current = await run("git", ["--git-dir", gitDir, "rev-parse", "--verify", "--quiet", `refs/heads/${branch}`]).then((r) => r.stdout.trim()).catch(() => null);
    if (!current) return { ok: false, message: "Reference does not exist" };
    if (!force) {
      const forward = await run("git", ["--git-dir", gitDir, "merge-base", "--is-ancestor", current, sha]).then(() => true).catch(() => false);
      if (!forward) return { ok: false, message: "Update is not a fast forward" };
    }
    await run("git", ["--git-dir", gitDir, "update-ref", `refs/heads/${branch}`, sha, current]);
    return { ok: true };
  }

  private async commit(name: string, ref: string): Promise<Record<string, unknown> | null> {
    if (!/^[A-Za-z0-9._/-]{1,200}$/.test(ref)) return null;
    try {
      const { stdout } = await run("git", ["--git-dir", this.repoPath(name), "log", "-1", "--format=%H%n%an%n%ae%n%aI%n%s", `${ref}^{commit}`, "--"]);
      const [sha, author, email, date, message] = stdout.trim().split("\n");
      return { sha, commit: { message, author: { name: author, email, date } }, html_url: `${this.url}/${this.org}/${name}/commit/${sha}` };
    } catch {
      return null;
    }
  }

  /** GitHub's Git commit object: its tree and parents. */
  private async gitCommit(name: string, sha: string): Promise<Record<string, unknown> | null> {
    try {
      const { stdout } = await run("git", ["--git-dir", this.repoPath(name), "log", "-1", "--format=%H%n%T%n%P%n%B", `${sha}^{commit}`, "--"]);
      const [commit = "", tree = "", parents = "", ...message] = stdout.split("\n");
      return { sha: commit, tree: { sha: tree, url: `${this.url}/repos/${this.org}/${name}/git/trees/${tree}` }, parents: parents.split(" ").filter(Boolean).map((p) => ({ sha: p })), message: message.join("\n").trimEnd(), html_url: `${this.url}/${this.org}/${name}/commit/${commit}` };
    } catch {
      return null;
    }
  }

  /** GitHub's Git Trees API from `git ls-tree` (blobs with their sizes; `recursive` walks subtrees). */
  private async tree(name: string, ref: string, recursive: boolean): Promise<Record<string, unknown> | null> {
    if (!/^[A-Za-z0-9._/-]{1,200}$/.test(ref)) return null;
    try {
      const sha = (await run("git", ["--git-dir", this.repoPath(name), "rev-parse", `${ref}^{tree}`])).stdout.trim();
      const { stdout } = await run("git", ["--git-dir", this.repoPath(name), "ls-tree", "-l", "-z", ...(recursive ? ["-r", "-t"] : []), sha], { maxBuffer: 32 * 1024 * 1024 });
      const tree = stdout
        .split("\0")
        .filter(Boolean)
        .map((line) => {
          const [meta = "", path = ""] = line.split("\t");
          const [mode, type, object, size] = meta.split(/\s+/);
          return { path, mode, type, sha: object, ...(type === "blob" ? { size: Number(size) } : {}), url: `${this.url}/repos/${this.org}/${name}/git/${type}s/${object}` };
        });
      return { sha, url: `${this.url}/repos/${this.org}/${name}/git/trees/${sha}`, tree, truncated: false };
    } catch {
      return null;
    }
  }

  private async file(name: string, path: string, ref: string): Promise<string | null> {
    if (!/^[A-Za-z0-9._/-]{1,200}$/.test(ref) || path.includes("..")) return null;
    try {
      const { stdout } = await run("git", ["--git-dir", this.repoPath(name), "show", `${ref}:${path}`], { maxBuffer: 10 * 1024 * 1024 });
      return stdout;
    } catch {
      return null;
    }
  }

  /** Smart HTTP through git http-backend (CGI), after checking the token in Basic auth. */
  private git(req: IncomingMessage, res: ServerResponse, url: URL): void {
    const basic = /^Basic\s+(\S+)$/i.exec(req.headers.authorization ?? "")?.[1];
    const password = basic ? Buffer.from(basic, "base64").toString().split(":").slice(1).join(":") : undefined;
    const repository = /^\/[^/]+\/([^/]+)\.git/.exec(url.pathname)?.[1];
    if (password) this.gitTokens.add(password);
    if (!this.validToken(password, repository)) {
      res.writeHead(401, { "www-authenticate": 'Basic realm="GitHub"', "content-type": "text/plain" }).end("Authentication failed\n");
      return;
    }
    const child = spawn(GIT_HTTP_BACKEND, [], {
      env: {
        GIT_PROJECT_ROOT: this.dir,
        GIT_HTTP_EXPORT_ALL: "1",
        PATH_INFO: url.pathname,
        QUERY_STRING: url.search.slice(1),
        REQUEST_METHOD: req.method ?? "GET",
        CONTENT_TYPE: req.headers["content-type"] ?? "",
        REMOTE_USER: "x-access-token",
        REMOTE_ADDR: req.socket.remoteAddress ?? "",
        ...(req.headers["content-encoding"] ? { HTTP_CONTENT_ENCODING: req.headers["content-encoding"] } : {}),
        GIT_PROTOCOL: String(req.headers["git-protocol"] ?? ""),
      },
      stdio: ["pipe", "pipe", "pipe"],
    });
    req.pipe(child.stdin);
    let head = Buffer.alloc(0);
    let headersDone = false;
    child.stdout.on("data", (chunk: Buffer) => {
      if (headersDone) return void res.write(chunk);
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) return;
      headersDone = true;
      let status = 200;
      const headers: Record<string, string> = {};
      for (const line of head.subarray(0, end).toString().split("\r\n")) {
        const at = line.indexOf(":");
        const key = line.slice(0, at).trim();
        const value = line.slice(at + 1).trim();
        if (key.toLowerCase() === "status") status = Number(value.split(" ")[0]);
        else headers[key] = value;
      }
      res.writeHead(status, headers);
      res.write(head.subarray(end + 4));
    });
    child.stdout.on("end", () => res.end());
    child.on("error", (error) => {
      if (!res.headersSent) res.writeHead(500).end(String(error));
    });
  }
}

function tokenOf(header: string | undefined): string | undefined {
  return /^(?:token|Bearer)\s+(\S+)$/i.exec(header ?? "")?.[1];
}


