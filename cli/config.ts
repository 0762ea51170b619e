import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { z } from "zod";

const ConfigFile = z.object({ url: z.string().url().optional(), apiKey: z.string().min(1).optional() });
type ConfigFile = z.infer<typeof ConfigFile>;

export interface CliConfig {
  url: string;
  apiKey: string;
}

/** Where the config file lives: $ORCHESTRATOR_CONFIG, else $XDG_CONFIG_HOME/orchestrator/config.json. */
export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.ORCHESTRATOR_CONFIG) return env.ORCHESTRATOR_CONFIG;
  return join(env.XDG_CONFIG_HOME ?? join(homedir(), ".config"), "orchestrator", "config.json");
}

/** The file's JSON object as it is (other fields included), or `{}` when there is no file. */
function readFileObject(path: string): Record<string, unknown> {
  if (!existsSync(path)) return {};
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, "utf8"));
  } catch (error) {
    throw new CliError(`${path} is not valid JSON (${error instanceof Error ? error.message : String(error)}); fix or remove it`);
  }
  if (!json || typeof json !== "object" || Array.isArray(json)) throw new CliError(`${path} is not a valid config: expected {"url": "...", "apiKey": "..."}`);
  return json as Record<string, unknown>;
}

function readConfigFile(path: string): ConfigFile {
  const parsed = ConfigFile.safeParse(readFileObject(path));
  if (!parsed.success) throw new CliError(`${path} is not a valid config: expected {"url": "...", "apiKey": "..."}`);
  return parsed.data;
}

/**
 * Resolves the server URL and API key: environment first (ORCHESTRATOR_URL, ORCHESTRATOR_API_KEY),
 * then the config file `{ "url": …, "apiKey": … }` (which `orchestrator login` writes).
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): CliConfig {
  const path = configPath(env);
  const file = readConfigFile(path);
  const url = env.ORCHESTRATOR_URL || file.url;
  const apiKey = env.ORCHESTRATOR_API_KEY || file.apiKey;
  if (!url || !apiKey) {
    throw new CliError(`set ORCHESTRATOR_URL and ORCHESTRATOR_API_KEY, run \`orchestrator login\`, or write {"url","apiKey"} to ${path}`);
  }
  return { url: safeServerUrl(url), apiKey };
}

/** Loopback: the only hosts an API key may travel to over plain http (a local factory, an SSH tunnel). */
function isLoopback(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, "").toLowerCase();
  return host === "localhost" || host.endsWith(".localhost") || host === "::1" || /^127(\.\d{1,3}){3}$/.test(host);
}

/**
 * The server URL without its trailing slash, refused when a key sent to it could be read on the way:
 * plain http to a host that is not this machine. Every command that sends a key goes through here.
 */
export function safeServerUrl(given: string): string {
  let url: URL;
  try {
    url = new URL(given);
  } catch {
    throw new CliError(`the server address ${JSON.stringify(given)} is not a URL: give https://…`, 2);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") throw new CliError(`the server address must be https:// (or http:// on this machine), not ${JSON.stringify(given)}`, 2);
  if (url.protocol === "http:" && !isLoopback(url.hostname)) {
    throw new CliError(`refusing to send an API key over plain http:// to ${url.host}: anyone on the way could read it; use https://${url.host}${url.pathname === "/" ? "" : url.pathname}`, 2);
  }
  return url.toString().replace(/\/+$/, "");
}

/** The server URL alone (environment, then the file), for commands that bring their own key. */
export function configuredUrl(env: NodeJS.ProcessEnv = process.env): string | undefined {
  return env.ORCHESTRATOR_URL || readConfigFile(configPath(env)).url;
}

/**
 * Writes the file with only its owner able to read it (0600), its directory made 0700 if missing;
 * other fields already in the file stay. The mode is set before the key goes in.
 */
function writeConfigFile(path: string, content: Record<string, unknown>): void {
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    if (existsSync(path)) chmodSync(path, 0o600);
    writeFileSync(path, `${JSON.stringify(content, null, 2)}\n`, { mode: 0o600 });
    chmodSync(path, 0o600);
  } catch (error) {
    throw new CliError(`cannot write ${path}: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/** Saves the URL and key to the config file; returns the file's path. */
export function saveLogin(url: string, apiKey: string, env: NodeJS.ProcessEnv = process.env): string {
  const path = configPath(env);
  writeConfigFile(path, { ...readFileObject(path), url, apiKey });
  return path;
}

/** Removes the key from the config file (the URL stays); says whether there was one. */
export function removeSavedKey(env: NodeJS.ProcessEnv = process.env): { path: string; removed: boolean } {
  const path = configPath(env);
  const { apiKey, ...rest } = readFileObject(path);
  if (apiKey === undefined) return { path, removed: false };
  writeConfigFile(path, rest);
  return { path, removed: true };
}

/** An error the CLI reports as one line and a non-zero exit. */
export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 3) {
    super(message);
    this.exitCode = exitCode;
  }
}
