/**
 * `orchestrator keys create|list|revoke` and `orchestrator login|logout` against the real worker
 * (`wrangler dev`), as a user runs them.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { ROOT, type StackClient } from "../../scripts/lib/local-stack.ts";
import { sharedStack } from "../../test/support/shared.ts";

let stack: StackClient;
let dir: string;
beforeAll(() => {
  stack = sharedStack();
  dir = mkdtempSync(join(tmpdir(), "orchestrator-cli-keys-"));
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Run {
  child: ChildProcess;
  stdout(): string;
  output(): string;
  exited: Promise<number | null>;
}

/**
 * The CLI as a person runs it: `env` on top of no configuration at all (no key, no URL, no file);
 * with `stdin`, its input is a pipe that gives that text, then ends.
 */
function cli(args: string[], env: Record<string, string>, stdin?: string): Run {
  const child = spawn(process.execPath, [inject("cliBundle"), ...args], {
    cwd: ROOT,
    env: { ...process.env, ORCHESTRATOR_CONFIG: "/nonexistent/config.json", ORCHESTRATOR_URL: "", ORCHESTRATOR_API_KEY: "", ...env },
    stdio: [stdin === undefined ? "ignore" : "pipe", "pipe", "pipe"],
  });
  let stdout = "";
  let all = "";
  child.stdout?.on("data", (chunk: Buffer) => ((stdout += chunk.toString()), (all += chunk.toString())));
  child.stderr?.on("data", (chunk: Buffer) => (all += chunk.toString()));
  if (stdin !== undefined) child.stdin?.end(stdin);
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return { child, stdout: () => stdout, output: () => all, exited };
}

/** Runs the CLI to its end. */
async function run(args: string[], env: Record<string, string>, stdin?: string) {
  const started = cli(args, env, stdin);
  const code = await started.exited;
  return { code, stdout: started.stdout(), output: started.output() };
}

const lines = (text: string) => text.split("\n").filter((line) => line.trim() !== "");
const as = (key: string) => ({ ORCHESTRATOR_URL: stack.url, ORCHESTRATOR_API_KEY: key });
const KEY = /ork_[a-z0-9]{40}/g;
const REFUSED = "orchestrator: API key rejected: Invalid, revoked or expired API key";

interface KeyView {
  id: string;
  userId: string;
  name: string;
  prefix: string;
  scopes: string[];
  projectId: string | null;
  lastUsedAt: string | null;
  expiresAt: string | null;
  revokedAt: string | null;
}

async function newUser(name = "cli-keys-user") {
  const user = await stack.api<{ user: { id: string } }>("/api/users", { json: { name } });
  const key = await stack.api<{ key: string }>("/api/keys", { json: { userId: user.body.user.id, name: "seed" } });
  expect(key.status).toBe(201);
  return { userId: user.body.user.id, key: key.body.key };
}

async function newProject(ownerId: string) {
  const name = `keys-${randomBytes(4).toString("hex")}`;
  const created = await stack.api<{ project: { id: string } }>("/api/projects", { json: { name, ownerId } });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  return { id: created.body.project.id, name };
}

describe("orchestrator keys", () => {
  it("create prints the key once with its warning; the key works; list shows it, never the key", async () => {
    const { userId, key: seed } = await newUser();
    const created = await run(["keys", "create", "laptop", "--expires", "30d"], as(seed));
    expect(created.code, created.output).toBe(0);
    const keys = created.output.match(KEY) ?? [];
    expect(keys, created.output).toHaveLength(1);
    const key = keys[0] ?? "";
    const id = /Created API key (key_\w+) "laptop" for (\w+)/.exec(created.stdout);
    expect(id?.[2], created.output).toBe(userId);
    const keyId = id?.[1] ?? "";
    expect(lines(created.stdout)).toEqual([
      `Created API key ${keyId} "laptop" for ${userId}`,
      `  prefix   ${key.slice(0, 12)}`,
      "  scopes   user",
      "  project  all (not limited to one)",
      expect.stringMatching(/^ {2}expires {2}\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/),
      `  ${key}`,
      "This is the only time the key is shown: store it now. It cannot be shown again; if it is lost, revoke it and create another.",
      "To use it with this CLI: orchestrator login   (paste it when asked)",
    ]);
    const expires = Date.parse(/expires {2}(\S+)/.exec(created.stdout)?.[1] ?? "");
    expect(Math.abs(expires - (Date.now() + 30 * 86_400_000))).toBeLessThan(120_000);

    const status = await run(["status"], as(key));
    expect(status.code, status.output).toBe(0);
    expect(status.output).toContain("No projects yet.");

    const list = await run(["keys", "list"], as(key));
    expect(list.code, list.output).toBe(0);
    expect(list.output).not.toMatch(KEY);
    const table = lines(list.stdout);
    expect(table[0]).toMatch(/^ID\s+NAME\s+PREFIX\s+SCOPES\s+PROJECT\s+LAST USED\s+EXPIRES\s+REVOKED$/);
    // Newest first: the new key (just used), then the seed one (used to create it).
    expect(table.slice(1)).toEqual([
      expect.stringMatching(new RegExp(`^${keyId}\\s+laptop\\s+${key.slice(0, 12)}\\s+user\\s+-\\s+\\d+s ago\\s+\\d{4}-\\S+Z\\s+-$`)),
      expect.stringMatching(/^key_\w+\s+seed\s+ork_\w{8}\s+user\s+-\s+\d+s ago\s+never\s+-$/),
    ]);

    const json = await run(["keys", "list", "--json"], as(seed));
    expect(json.code, json.output).toBe(0);
    const listed = JSON.parse(json.stdout) as (KeyView & { key?: string })[];
    expect(listed.map((k) => [k.id, k.name, k.scopes, k.key])).toEqual([
      [keyId, "laptop", ["user"], undefined],
      [expect.stringMatching(/^key_/), "seed", ["user"], undefined],
    ]);
    expect(json.stdout).not.toMatch(KEY);
  });

  it("create --json prints {apiKey, key} (the warning on stderr); an admin issues other scopes for a user", async () => {
    const { userId, key: seed } = await newUser();
    const mine = cli(["keys", "create", "ci", "--json"], as(seed));
    expect(await mine.exited, mine.output()).toBe(0);
    const body = JSON.parse(mine.stdout()) as { apiKey: KeyView; key: string };
    expect(body.apiKey).toMatchObject({ name: "ci", userId, scopes: ["user"], projectId: null, expiresAt: null, revokedAt: null });
    expect(body.key.startsWith(body.apiKey.prefix)).toBe(true);
    expect(mine.output()).toContain("This is the only time the key is shown");

    const runner = await run(["keys", "create", "box", "--scope", "runner", "--scope", "user", "--user", userId, "--expires", "2099-01-31", "--json"], as(stack.adminKey));
    expect(runner.code, runner.output).toBe(0);
    const issued = JSON.parse(runner.stdout) as { apiKey: KeyView };
    expect(issued.apiKey).toMatchObject({ userId, scopes: ["runner", "user"], expiresAt: "2099-01-31T00:00:00.000Z" });

    // What only an admin may do is refused, with the server's reason.
    const refused = await run(["keys", "create", "root", "--scope", "runner"], as(seed));
    expect(refused.code).toBe(3);
    expect(lines(refused.output)).toEqual(["orchestrator: key root: HTTP 403: Only an admin issues admin or runner keys"]);
  });

  it("revoke: the key is refused at once; revoking it again or an unknown key exits 3 with the server's message", async () => {
    const { key: seed } = await newUser();
    const created = await run(["keys", "create", "doomed", "--json"], as(seed));
    expect(created.code, created.output).toBe(0);
    const { apiKey, key } = JSON.parse(created.stdout) as { apiKey: KeyView; key: string };
    expect((await run(["status"], as(key))).code).toBe(0);

    const revoked = await run(["keys", "revoke", apiKey.id], as(seed));
    expect(revoked.code, revoked.output).toBe(0);
    expect(lines(revoked.stdout)).toEqual([`Revoked ${apiKey.id} "doomed" (${apiKey.prefix}…, user) of ${apiKey.userId}; it stops working now.`]);

    const status = await run(["status"], as(key));
    expect(status.code).toBe(3);
    expect(lines(status.output)).toEqual([REFUSED]);

    const again = await run(["keys", "revoke", apiKey.id], as(seed));
    expect(again.code).toBe(3);
    expect(lines(again.output)).toEqual([`orchestrator: key ${apiKey.id}: This key is revoked already`]);
    const unknown = await run(["keys", "revoke", "key_nope"], as(seed));
    expect(unknown.code).toBe(3);
    expect(lines(unknown.output)).toEqual(["orchestrator: key key_nope: API key not found"]);

    // Gone from the list, there with --all.
    const active = await run(["keys", "list", "--json"], as(seed));
    expect((JSON.parse(active.stdout) as KeyView[]).map((k) => k.name)).toEqual(["seed"]);
    const all = await run(["keys", "list", "--all"], as(seed));
    expect(all.code, all.output).toBe(0);
    expect(lines(all.stdout)).toContainEqual(expect.stringMatching(new RegExp(`^${apiKey.id}\\s+doomed\\s+.*\\s+never\\s+\\d{4}-\\d\\d-\\d\\dT\\S+Z$`)));
  });

  it("create --project by name: the key sees that project only and cannot manage keys", async () => {
    const { userId, key: seed } = await newUser();
    const project = await newProject(userId);
    const other = await newProject(userId);
    const created = await run(["keys", "create", "deployer", "--project", project.name], as(seed));
    expect(created.code, created.output).toBe(0);
    expect(created.stdout).toContain(`  project  ${project.id} (${project.name}), nothing else`);
    const key = created.output.match(KEY)?.[0] ?? "";

    const status = await run(["status", "--json"], as(key));
    expect(status.code, status.output).toBe(0);
    expect((JSON.parse(status.stdout) as { projects: { name: string }[] }).projects.map((p) => p.name)).toEqual([project.name]);
    const mine = await run(["status", "--json"], as(seed));
    expect((JSON.parse(mine.stdout) as { projects: { name: string }[] }).projects.map((p) => p.name).sort()).toEqual([project.name, other.name].sort());

    const list = await run(["keys", "list"], as(key));
    expect(list.code).toBe(3);
    expect(lines(list.output)).toEqual(["orchestrator: keys: HTTP 403: A key limited to one project cannot manage keys"]);

    // The owner's list names the project.
    const owner = await run(["keys", "list"], as(seed));
    expect(lines(owner.stdout)).toContainEqual(expect.stringMatching(new RegExp(`^key_\\w+\\s+deployer\\s+ork_\\w{8}\\s+user\\s+${project.name}\\s+`)));

    const unknown = await run(["keys", "create", "x", "--project", "no-such-project"], as(seed));
    expect(unknown.code).toBe(3);
    expect(lines(unknown.output)).toEqual(["orchestrator: project no-such-project not found"]);
  });
});

describe("orchestrator login and logout", () => {
  it("login checks the key, saves it 0600 (directory 0700), later commands need no env; logout removes it", async () => {
    const { key } = await newUser();
    const path = join(dir, "fresh", "orchestrator", "config.json");
    const env = { ORCHESTRATOR_CONFIG: path };

    const login = await run(["login", "--url", `${stack.url}/`, "--key", key], env);
    expect(login.code, login.output).toBe(0);
    expect(lines(login.stdout)).toEqual([`Saved the key (${key.slice(0, 12)}…) and ${stack.url} to ${path}`]);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(dirname(path)).mode & 0o777).toBe(0o700);
    expect(JSON.parse(readFileSync(path, "utf8"))).toEqual({ url: stack.url, apiKey: key });

    const status = await run(["status"], env);
    expect(status.code, status.output).toBe(0);
    const list = await run(["keys", "list", "--json"], env);
    expect(list.code, list.output).toBe(0);

    // Again from stdin, the URL taken from the file: the new key replaces the old.
    const created = await run(["keys", "create", "second", "--json"], env);
    const second = (JSON.parse(created.stdout) as { key: string }).key;
    const piped = await run(["login"], env, `${second}\n`);
    expect(piped.code, piped.output).toBe(0);
    expect(JSON.parse(readFileSync(path, "utf8"))).toEqual({ url: stack.url, apiKey: second });
    expect(second).not.toBe(key);

    const logout = await run(["logout"], env);
    expect(logout.code, logout.output).toBe(0);
    expect(lines(logout.stdout)).toEqual([`Removed the API key from ${path}`]);
    expect(JSON.parse(readFileSync(path, "utf8"))).toEqual({ url: stack.url });
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const after = await run(["status"], env);
    expect(after.code).toBe(3);
    expect(after.output).toContain("set ORCHESTRATOR_URL and ORCHESTRATOR_API_KEY");
    const twice = await run(["logout"], env);
    expect(twice.code).toBe(0);
    expect(lines(twice.stdout)).toEqual([`No API key saved in ${path}`]);
  });

  it("an existing file becomes 0600 and keeps its other fields; a runner key is saved with a note that it is limited", async () => {
    const { userId } = await newUser();
    const runnerKey = await stack.api<{ key: string }>("/api/keys", { json: { userId, name: "runner", scopes: ["runner"] } });
    const path = join(dir, "existing.json");
    writeFileSync(path, JSON.stringify({ url: "http://127.0.0.1:1", theme: "dark" }), { mode: 0o644 });
    const login = await run(["login", "--url", stack.url, "--key", runnerKey.body.key], { ORCHESTRATOR_CONFIG: path });
    expect(login.code, login.output).toBe(0);
    expect(login.output).toContain("note: the key works, but it is limited: This needs an API key with scope: user");
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(path, "utf8"))).toEqual({ url: stack.url, theme: "dark", apiKey: runnerKey.body.key });
  });

  it("a refused key, revoked or wrong, exits 3 and saves nothing", async () => {
    const path = join(dir, "refused", "config.json");
    const wrong = await run(["login", "--url", stack.url, "--key", "ork_wrongwrongwrongwrongwrongwrongwrongwrong"], { ORCHESTRATOR_CONFIG: path });
    expect(wrong.code).toBe(3);
    expect(lines(wrong.output)).toEqual([`orchestrator: the key was refused by ${stack.url}: Invalid, revoked or expired API key; nothing saved`]);
    expect(existsSync(dirname(path))).toBe(false);

    const { key: seed } = await newUser();
    const created = JSON.parse((await run(["keys", "create", "gone", "--json"], as(seed))).stdout) as { apiKey: KeyView; key: string };
    expect((await run(["keys", "revoke", created.apiKey.id], as(seed))).code).toBe(0);
    const revoked = await run(["login", "--url", stack.url], { ORCHESTRATOR_CONFIG: path }, `${created.key}\n`);
    expect(revoked.code).toBe(3);
    expect(revoked.output).toContain("the key was refused");
    expect(existsSync(path)).toBe(false);
  });
});

describe("usage errors exit 2 with the usage", () => {
  it.each([
    [["keys", "create"], "keys create needs a name"],
    [["keys", "create", "two", "words"], "keys create takes one name"],
    [["keys", "create", "a", "--scope", "root"], '--scope is one of admin, user, runner, not "root"'],
    [["keys", "create", "a", "--expires", "tomorrow"], "--expires takes an ISO date"],
    [["keys", "create", "a", "--frob"], "Unknown option '--frob'"],
    [["keys", "revoke"], "keys revoke needs one key id"],
    [["keys", "frobnicate"], "unknown command: keys frobnicate"],
    [["login", "--key", "ork_x"], "login needs the server's address"],
    [["login", "--url", "ftp://example.com", "--key", "ork_x"], '--url must be an http(s) address, not "ftp://example.com"'],
    [["login", "--url", "http://127.0.0.1:9"], "no API key given"],
    [["logout", "now"], "Unexpected argument 'now'"],
  ])("%j", async (args, message) => {
    const result = await run(args, { ORCHESTRATOR_CONFIG: join(dir, "never", "config.json") }, "");
    expect(result.code, result.output).toBe(2);
    expect(result.output).toContain(message);
    expect(result.output).toContain("orchestrator keys create <name> [--scope user|admin|runner ...]");
    expect(existsSync(join(dir, "never"))).toBe(false);
  });
});

describe("a key never travels over plain http to another machine", () => {
  it.each([
    [["login", "--url", "http://orchestrator.example.com", "--key", "ork_x"], {}],
    [["keys", "list"], { ORCHESTRATOR_URL: "http://10.1.2.3:8787", ORCHESTRATOR_API_KEY: "ork_x" }],
    [["engineering", "status", "eng_x"], { ORCHESTRATOR_URL: "http://[fe80::1]:8787", ORCHESTRATOR_API_KEY: "ork_x" }],
  ])("%j refuses before sending anything", async (args, env) => {
    const result = await run(args, { ORCHESTRATOR_CONFIG: join(dir, "never", "config.json"), ...env }, "");
    expect(result.code, result.output).toBe(2);
    expect(result.output).toMatch(/refusing to send an API key over plain http:\/\/ to \S+: anyone on the way could read it; use https:\/\//);
    expect(existsSync(join(dir, "never"))).toBe(false);
  });
});
