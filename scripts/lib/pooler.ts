/**
 * PgBouncer in front of the local Postgres: what Neon's pooled endpoint (`…-pooler…`) is in production.
 * The worker opens a database connection for every request and workflow step; to a bare Postgres each
 * one forks a backend (measured here: ~35 ms of machine time per connection, ~8 ms through this pooler,
 * which hands the request an idle backend instead). Session pooling, so a connection behaves exactly as
 * a direct one (transactions, SET, advisory locks); the backend is reset (DISCARD ALL) between clients.
 *
 * Clients still authenticate with SCRAM-SHA-256: the pooler checks them against the role's verifier
 * (read from Postgres, never the password) and logs in to Postgres with the keys the client's proof
 * gave it. Migrations and CREATE/DROP DATABASE go to Postgres directly, as Neon advises for its pooler.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { chownSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { userInfo } from "node:os";
import { join } from "node:path";
import { isListening, waitFor } from "./processes.ts";

export interface Pooler {
  port: number;
  stop(): Promise<void>;
}

export interface PoolerOptions {
  /** Where its configuration goes (a folder of its own; the `postgres` user must be able to read it when we are root). */
  dir: string;
  port: number;
  postgresPort: number;
  /** The SCRAM verifier of the `postgres` role (pg_authid.rolpassword). */
  scramVerifier: string;
  log?: (line: string) => void;
}

/** The pgbouncer binary: $PGBOUNCER_BINARY, or Debian's package's (in /usr/sbin, which a non-root PATH may lack); undefined when neither exists. */
export function pgbouncerBinary(): string | undefined {
  const binary = process.env.PGBOUNCER_BINARY ?? "/usr/sbin/pgbouncer";
  return existsSync(binary) ? binary : undefined;
}

export async function startPooler(options: PoolerOptions): Promise<Pooler> {
  const binary = pgbouncerBinary();
  if (!binary) throw new Error("pgbouncer is not installed (`sudo apt-get install -y pgbouncer`, or `bash scripts/install-system-deps.sh`)");
  mkdirSync(options.dir, { recursive: true });
  const userlist = join(options.dir, "userlist.txt");
  const ini = join(options.dir, "pgbouncer.ini");
  writeFileSync(userlist, `"postgres" "${options.scramVerifier}"\n`, { mode: 0o600 });
  writeFileSync(
    ini,
    [
      "[databases]",
      // Any database name goes to the same server, so databases made later (a test file's own) work too.
      `* = host=127.0.0.1 port=${options.postgresPort}`,
      "[pgbouncer]",
      "listen_addr = 127.0.0.1",
      `listen_port = ${options.port}`,
      "unix_socket_dir =",
      "auth_type = scram-sha-256",
      `auth_file = ${userlist}`,
      "pool_mode = session",
      "max_client_conn = 2000",
      // Backends in all (for any one database too): Postgres allows 400 (scripts/lib/postgres.ts), the
      // rest are for direct connections. A client past the limit waits for a backend...
      "default_pool_size = 300",
      "max_user_connections = 300",
      // ...for 5 s at most (the driver's own connect timeout), then gets an error (08P01) the worker
      // answers with 503 db_unavailable. That is also how long the first query waits when Postgres is
      // down; the ones after it are refused at once (server_login_retry).
      "query_wait_timeout = 5",
      // Test runs make many short-lived databases: an idle backend goes after 20 s.
      "server_idle_timeout = 20",
      // Sent by the Neon driver and node-postgres; the pooler would refuse a startup naming them.
      "ignore_startup_parameters = extra_float_digits,options",
      "log_connections = 0",
      "log_disconnections = 0",
      "log_pooler_errors = 1",
      "",
    ].join("\n"),
  );
  const asRoot = userInfo().uid === 0;
  // pgbouncer refuses to run as root: it drops to the user Postgres runs as (scripts/lib/postgres.ts).
  if (asRoot) {
    const [uid, gid] = postgresIds();
    for (const file of [options.dir, userlist, ini]) chownSync(file, uid, gid);
  }
  const child: ChildProcess = spawn(binary, [...(asRoot ? ["-u", "postgres"] : []), ini], { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  const onData = (chunk: Buffer) => {
    const text = chunk.toString();
    output = (output + text).slice(-4000);
    for (const line of text.split("\n")) if (line.trim()) options.log?.(line);
  };
  child.stdout?.on("data", onData);
  child.stderr?.on("data", onData);
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    child.on("exit", () => {
      exited = true;
      resolve();
    }),
  );
  await waitFor(
    async () => ((await isListening(options.port)) ? true : undefined),
    15_000,
    () => `pgbouncer did not listen on 127.0.0.1:${options.port}:\n${output}`,
    () => exited,
  );
  return {
    port: options.port,
    async stop() {
      if (exited) return;
      child.kill("SIGTERM");
      await exit;
    },
  };
}

/** The uid and gid of the `postgres` user (made when Postgres was first started as root). */
function postgresIds(): [number, number] {
  const id = (flag: string) => Number(execFileSync("id", [flag, "postgres"], { encoding: "utf8" }).trim());
  return [id("-u"), id("-g")];
}
