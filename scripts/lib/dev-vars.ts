import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { parseEnv } from "node:util";

/** Reads a dotenv-style file (`.dev.vars`); an absent file reads as empty. */
export function readDevVars(path: string): Record<string, string> {
  if (!existsSync(path)) return {};
  return Object.fromEntries(
    Object.entries(parseEnv(readFileSync(path, "utf8"))).filter((entry): entry is [string, string] => entry[1] !== undefined),
  );
}

export interface FreshDevVars {
  DATABASE_URL: string;
  ADMIN_API_KEY: string;
  SECRETS_ENCRYPTION_KEY: string;
  JOB_SIGNING_KEY: string;
}

/** Generates local-only secrets for a new development setup. */
export function generateDevVars(pgPort: number): FreshDevVars {
  const pgPassword = randomBytes(18).toString("base64url");
  return {
    DATABASE_URL: `postgres://postgres:${pgPassword}@127.0.0.1:${pgPort}/orchestrator`,
    ADMIN_API_KEY: `ork_${randomBytes(30).toString("hex").slice(0, 40)}`,
    SECRETS_ENCRYPTION_KEY: randomBytes(32).toString("base64"),
    JOB_SIGNING_KEY: newJobSigningKey(),
  };
}

/** An Ed25519 seed (base64url), as the JOB_SIGNING_KEY secret holds it. */
export function newJobSigningKey(): string {
  return randomBytes(32).toString("base64url");
}

/** Writes `.dev.vars` readable only by its owner: it holds the admin key and the database password. */
export function writeDevVars(path: string, vars: FreshDevVars | Record<string, string>): void {
  const lines = [
    `# Local secrets written by \`npm run dev\` on ${new Date().toISOString()}. Never commit this file.`,
    ...Object.entries(vars).map(([key, value]) => `${key}=${value}`),
    "",
  ];
  writeFileSync(path, lines.join("\n"), { mode: 0o600 });
}

/** Whether a Postgres URL points at this machine (embedded Postgres) rather than Neon. */
export function isLocalDatabase(databaseUrl: string): boolean {
  const host = new URL(databaseUrl).hostname;
  return host === "127.0.0.1" || host === "localhost" || host === "[::1]";
}
