import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { z } from "zod";

const ConfigFile = z.object({ url: z.string().url().optional(), apiKey: z.string().min(1).optional() });

export interface CliConfig {
  url: string;
  apiKey: string;
}

/** Where the config file lives: $ORCHESTRATOR_CONFIG, else $XDG_CONFIG_HOME/orchestrator/config.json. */
export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.ORCHESTRATOR_CONFIG) return env.ORCHESTRATOR_CONFIG;
  return join(env.XDG_CONFIG_HOME ?? join(homedir(), ".config"), "orchestrator", "config.json");
}

/**
 * Resolves the server URL and API key: environment first (ORCHESTRATOR_URL, ORCHESTRATOR_API_KEY),
 * then the config file `{ "url": …, "apiKey": … }`.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): CliConfig {
  const path = configPath(env);
  let file: z.infer<typeof ConfigFile> = {};
  if (existsSync(path)) {
    const parsed = ConfigFile.safeParse(JSON.parse(readFileSync(path, "utf8")));
    if (!parsed.success) throw new CliError(`${path} is not a valid config: expected {"url": "...", "apiKey": "..."}`);
    file = parsed.data;
  }
  const url = env.ORCHESTRATOR_URL || file.url;
  const apiKey = env.ORCHESTRATOR_API_KEY || file.apiKey;
  if (!url || !apiKey) {
    throw new CliError(`set ORCHESTRATOR_URL and ORCHESTRATOR_API_KEY, or write {"url","apiKey"} to ${path}`);
  }
  return { url: url.replace(/\/+$/, ""), apiKey };
}

/** An error the CLI reports as one line and a non-zero exit. */
export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 3) {
    super(message);
    this.exitCode = exitCode;
  }
}
