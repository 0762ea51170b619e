/**
 * The person who uses the local factory: a user `you` with a `user` key, made once and kept in
 * <state dir>/console.json (0600), so the web console, the CLI and the demo sign in as them.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Factory } from "./factory.ts";

export interface ConsoleUser {
  userId: string;
  key: string;
}

export async function consoleUser(factory: Pick<Factory, "api">, stateDir: string): Promise<ConsoleUser> {
  const file = join(stateDir, "console.json");
  if (existsSync(file)) {
    const saved = JSON.parse(readFileSync(file, "utf8")) as ConsoleUser;
    // A key that still works is kept (a new database, or a revoked key, means a new user).
    if ((await factory.api("/api/projects?limit=1", { key: saved.key })).status === 200) return saved;
  }
  const user = await factory.api<{ user: { id: string } }>("/api/users", { json: { name: "you" } });
  if (user.status !== 201) throw new Error(`could not create the console's user: ${user.status} ${JSON.stringify(user.body)}`);
  const key = await factory.api<{ key: string }>("/api/keys", { json: { userId: user.body.user.id, name: "local console" } });
  if (key.status !== 201) throw new Error(`could not issue the console's key: ${key.status} ${JSON.stringify(key.body)}`);
  const saved = { userId: user.body.user.id, key: key.body.key };
  writeFileSync(file, JSON.stringify(saved, null, 2), { mode: 0o600 });
  return saved;
}

/** A signed link that opens the web console as `user` (valid 12 hours). */
export async function consoleLink(factory: Pick<Factory, "api">, user: ConsoleUser): Promise<string> {
  const link = await factory.api<{ url: string }>("/api/chat/link", { method: "POST", key: user.key });
  if (link.status !== 200) throw new Error(`could not make a console link: ${link.status} ${JSON.stringify(link.body)}`);
  return link.body.url;
}
