/**
 * `orchestrator keys create|list|revoke` (the API's /api/keys) and `orchestrator login|logout`,
 * which keep a checked key in the CLI's config file (see cli/config.ts).
 */
import { createInterface } from "node:readline";
import { Writable } from "node:stream";
import { parseArgs } from "node:util";
import { z } from "zod";
import { API_KEY_SCOPES, ApiKeyView } from "../src/shared/api.ts";
import { ErrorBody } from "../src/shared/errors.ts";
import { apiGet, apiPost, describeNetworkError, responseError } from "./api.ts";
import { type CliConfig, CliError, configuredUrl, loadConfig, removeSavedKey, safeServerUrl, saveLogin } from "./config.ts";

/** What these commands take from bin.ts: its output, its usage error, its project lookup and its "how long ago". */
export interface Cli {
  out(line: string): void;
  usage(message: string): never;
  projectIdOf(config: CliConfig, project: string): Promise<string>;
  since(iso: string | null): string;
}

type Scope = (typeof API_KEY_SCOPES)[number];

const KeyCreated = z.object({ apiKey: ApiKeyView, key: z.string().min(1) });
const KeyList = z.object({ keys: z.array(ApiKeyView) });
const KeyRevoked = z.object({ apiKey: ApiKeyView });
const ProjectNames = z.object({ projects: z.array(z.object({ id: z.string(), name: z.string() })) });
const ProjectPage = z.object({ projects: z.array(z.unknown()) });

const DURATION_UNITS: Record<string, number> = { h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 };

/** `--expires`: an ISO date or date-time, or a time from now such as 12h, 30d or 2w. */
function expiresAt(text: string, cli: Cli): string {
  const relative = /^(\d+)([hdw])$/.exec(text.trim());
  if (relative) {
    const amount = Number(relative[1]);
    if (amount < 1) cli.usage("--expires must be at least 1h, 1d or 1w from now");
    return new Date(Date.now() + amount * (DURATION_UNITS[relative[2] ?? "d"] ?? 0)).toISOString();
  }
  const at = /^\d{4}-\d{2}-\d{2}/.test(text) ? Date.parse(text) : NaN;
  if (Number.isNaN(at)) cli.usage(`--expires takes an ISO date (2030-01-31, 2030-01-31T12:00:00Z) or a time from now (12h, 30d, 2w), not ${JSON.stringify(text)}`);
  return new Date(at).toISOString();
}

function scopesOf(values: string[] | undefined, cli: Cli): Scope[] | undefined {
  if (!values?.length) return undefined;
  const scopes = values.flatMap((value) => value.split(",")).map((scope) => scope.trim());
  for (const scope of scopes) {
    if (!(API_KEY_SCOPES as readonly string[]).includes(scope)) cli.usage(`--scope is one of ${API_KEY_SCOPES.join(", ")}, not ${JSON.stringify(scope)}`);
  }
  return [...new Set(scopes as Scope[])];
}

const when = (iso: string) => iso.replace(/\.\d+Z$/, "Z");
const expiry = (key: ApiKeyView) => (key.expiresAt ? `${when(key.expiresAt)}${Date.parse(key.expiresAt) <= Date.now() ? " (expired)" : ""}` : "never");

export async function keysCreate(args: string[], cli: Cli) {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { scope: { type: "string", multiple: true }, project: { type: "string" }, user: { type: "string" }, expires: { type: "string" }, json: { type: "boolean" } },
  });
  const [name, ...extra] = positionals;
  if (!name?.trim()) cli.usage("keys create needs a name for the key, e.g. orchestrator keys create laptop");
  if (extra.length) cli.usage(`keys create takes one name (quote it if it has spaces), not ${positionals.length} words`);
  const scopes = scopesOf(values.scope, cli);
  const expires = values.expires === undefined ? undefined : expiresAt(values.expires, cli);
  const config = loadConfig();
  const projectId = values.project ? await cli.projectIdOf(config, values.project) : undefined;
  const body = { name, ...(scopes ? { scopes } : {}), ...(projectId ? { projectId } : {}), ...(values.user ? { userId: values.user } : {}), ...(expires ? { expiresAt: expires } : {}) };
  const { apiKey, key } = await apiPost(config, "/api/keys", body, `key ${name}`, KeyCreated);
  const warning = "This is the only time the key is shown: store it now. It cannot be shown again; if it is lost, revoke it and create another.";
  if (values.json) {
    cli.out(JSON.stringify({ apiKey, key }));
    process.stderr.write(`${warning}\n`);
    return;
  }
  const project = apiKey.projectId ? `${apiKey.projectId}${values.project && values.project !== apiKey.projectId ? ` (${values.project})` : ""}, nothing else` : "all (not limited to one)";
  cli.out(`Created API key ${apiKey.id} "${apiKey.name}" for ${apiKey.userId}`);
  cli.out(`  prefix   ${apiKey.prefix}`);
  cli.out(`  scopes   ${apiKey.scopes.join(", ")}`);
  cli.out(`  project  ${project}`);
  cli.out(`  expires  ${expiry(apiKey)}`);
  cli.out("");
  cli.out(`  ${key}`);
  cli.out("");
  cli.out(warning);
  cli.out("To use it with this CLI: orchestrator login   (paste it when asked)");
}

export async function keysList(args: string[], cli: Cli) {
  const { values } = parseArgs({ args, options: { all: { type: "boolean" }, user: { type: "string" }, json: { type: "boolean" } } });
  const query = new URLSearchParams({ limit: "200" });
  if (values.all) query.set("revoked", "true");
  if (values.user) query.set("userId", values.user);
  const config = loadConfig();
  const { keys } = await apiGet(config, `/api/keys?${query.toString()}`, "keys", KeyList);
  if (values.json) return cli.out(JSON.stringify(keys));
  if (keys.length === 0) return cli.out(values.all ? "No API keys." : "No active API keys (--all lists revoked ones too).");
  // Names for the projects keys are limited to, when the caller can see them.
  const names = new Map<string, string>();
  if (keys.some((key) => key.projectId)) {
    const { projects } = await apiGet(config, "/api/projects?limit=200", "projects", ProjectNames);
    for (const project of projects) names.set(project.id, project.name);
  }
  const header = ["ID", "NAME", "PREFIX", "SCOPES", "PROJECT", "LAST USED", "EXPIRES", "REVOKED"];
  const rows = keys.map((key) => [
    key.id,
    key.name,
    key.prefix,
    key.scopes.join(","),
    key.projectId ? (names.get(key.projectId) ?? key.projectId) : "-",
    cli.since(key.lastUsedAt),
    expiry(key),
    key.revokedAt ? when(key.revokedAt) : "-",
  ]);
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]?.length ?? 0)) + 2);
  const line = (cells: string[]) => cells.map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column] ?? 0))).join("");
  cli.out(line(header));
  for (const row of rows) cli.out(line(row));
}

/** A request whose error answers the caller reads itself (DELETE, the login check). */
async function send(config: CliConfig, method: string, path: string): Promise<Response> {
  try {
    return await fetch(`${config.url}${path}`, { method, headers: { authorization: `Bearer ${config.apiKey}` } });
  } catch (error) {
    throw new CliError(describeNetworkError(config, error));
  }
}

/** The message of an error answer (or the start of its body, if it is not the API's error format). */
async function serverMessage(res: Response): Promise<string> {
  const text = await res.text();
  try {
    return ErrorBody.parse(JSON.parse(text)).error.message;
  } catch {
    return text.slice(0, 200) || `HTTP ${res.status}`;
  }
}

async function read<S extends z.ZodType>(res: Response, what: string, schema: S): Promise<z.infer<S>> {
  const parsed = schema.safeParse(await res.json().catch(() => undefined));
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  throw new CliError(`${what}: the server's answer is not what this CLI expects (${issue ? `${issue.path.join(".")}: ${issue.message}` : "unreadable"}); is the CLI older than the server?`);
}

export async function keysRevoke(args: string[], cli: Cli) {
  const [keyId, ...extra] = parseArgs({ args, allowPositionals: true, options: {} }).positionals;
  if (!keyId || extra.length) cli.usage("keys revoke needs one key id (see orchestrator keys list)");
  const res = await send(loadConfig(), "DELETE", `/api/keys/${encodeURIComponent(keyId)}`);
  // Not found, or revoked already: the server says which.
  if (res.status === 404 || res.status === 409) throw new CliError(`key ${keyId}: ${await serverMessage(res)}`);
  if (!res.ok) throw await responseError(res, `key ${keyId}`);
  const { apiKey } = await read(res, `key ${keyId}`, KeyRevoked);
  cli.out(`Revoked ${apiKey.id} "${apiKey.name}" (${apiKey.prefix}…, ${apiKey.scopes.join(", ")}${apiKey.projectId ? `, project ${apiKey.projectId}` : ""}) of ${apiKey.userId}; it stops working now.`);
}

/** Reads a line on a terminal without showing what is typed (readline writing to a muted output). */
function promptHidden(prompt: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let muted = false;
    const output = new Writable({
      write(chunk: Buffer, _encoding, done) {
        if (!muted) process.stderr.write(chunk);
        done();
      },
    });
    const rl = createInterface({ input: process.stdin, output, terminal: true });
    let answer: string | undefined;
    rl.on("SIGINT", () => rl.close());
    rl.on("close", () => {
      process.stderr.write("\n");
      if (answer === undefined) reject(new CliError("no API key given", 2));
      else resolve(answer);
    });
    rl.question(prompt, (line) => {
      answer = line;
      rl.close();
    });
    muted = true;
  });
}

/** The first line of piped stdin ("" when it ends first). */
async function firstLine(): Promise<string> {
  const rl = createInterface({ input: process.stdin, terminal: false, crlfDelay: Infinity });
  for await (const line of rl) return line;
  return "";
}

/**
 * `orchestrator login`: checks the key against the server (GET /api/projects, which any user key
 * may call) and only then saves URL and key to the config file.
 */
export async function login(args: string[], cli: Cli) {
  const { values } = parseArgs({ args, options: { url: { type: "string" }, key: { type: "string" } } });
  const given = values.url ?? configuredUrl();
  if (!given) cli.usage("login needs the server's address: --url https://… (or ORCHESTRATOR_URL)");
  let url: URL | undefined;
  try {
    url = new URL(given);
  } catch {
    // said below
  }
  if (!url || (url.protocol !== "http:" && url.protocol !== "https:")) cli.usage(`--url must be an http(s) address, not ${JSON.stringify(given)}`);
  const base = safeServerUrl(url.toString());
  const key = (values.key ?? (process.stdin.isTTY ? await promptHidden("API key: ") : await firstLine())).trim();
  if (!key) cli.usage("no API key given: pass --key KEY, or give it on stdin (orchestrator login < key.txt)");

  const res = await send({ url: base, apiKey: key }, "GET", "/api/projects?limit=1");
  let limited: string | undefined;
  if (res.status === 401) throw new CliError(`the key was refused by ${base}: ${await serverMessage(res)}; nothing saved`);
  if (res.status === 403) limited = await serverMessage(res);
  else if (!res.ok) throw await responseError(res, `checking the key at ${base}`);
  else await read(res, `checking the key at ${base}`, ProjectPage);

  const path = saveLogin(base, key);
  cli.out(`Saved the key (${key.slice(0, 12)}…) and ${base} to ${path}`);
  if (limited) process.stderr.write(`note: the key works, but it is limited: ${limited}\n`);
  if (process.env.ORCHESTRATOR_API_KEY && process.env.ORCHESTRATOR_API_KEY !== key) process.stderr.write("note: ORCHESTRATOR_API_KEY is set and wins over the file while it is\n");
  if (process.env.ORCHESTRATOR_URL && process.env.ORCHESTRATOR_URL.replace(/\/+$/, "") !== base) process.stderr.write("note: ORCHESTRATOR_URL is set and wins over the file while it is\n");
}

/** `orchestrator logout`: removes the key from the config file (the URL stays). */
export function logout(args: string[], cli: Cli) {
  parseArgs({ args, options: {} });
  const { path, removed } = removeSavedKey();
  cli.out(removed ? `Removed the API key from ${path}` : `No API key saved in ${path}`);
  if (process.env.ORCHESTRATOR_API_KEY) process.stderr.write("note: ORCHESTRATOR_API_KEY is still set in this environment\n");
}
