/**
 * A real Caddy for tests: `caddy run --config <dir>/caddy.json` on free loopback ports, plain HTTP,
 * everything it writes (autosave, storage) kept inside its temp dir. Plus tiny upstream servers for it
 * to proxy to. The runner's Caddy executors are tested against this, not against a fake.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { type IncomingMessage, type ServerResponse, createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { adminConfig, adminRequest } from "../../runner/src/caddy-admin.ts";
import { freePort, freePortIn, TEST_RELEASE_PORTS } from "./ports.ts";
import { type Spawned, isListening, spawnCollecting, waitFor } from "./processes.ts";

export interface TestCaddy {
  /** Caddy's admin API: a unix socket, as the runner requires (never a TCP port). */
  adminSocket: string;
  /** Caddy's plain-HTTP listener, e.g. http://127.0.0.1:41234 */
  httpUrl: string;
  httpPort: number;
  /** The file Caddy was started with, and is started with again by restart(). */
  configPath: string;
  dir: string;
  binary: string;
  /** Everything Caddy printed since it was last started. */
  output(): string;
  /** Stops Caddy and removes its directory. */
  stop(): Promise<void>;
  /** Stops Caddy and starts it again with the same --config, as a reboot or `systemctl restart` would. */
  restart(): Promise<void>;
}

const BINARY = process.env.CADDY_BINARY ?? "caddy";

/**
 * A temp dir and a free port unless given. With `keep`, the directory stays when it stops (`npm run
 * dev` keeps its Caddy's last routes across restarts, as a server would).
 */
export async function startCaddy(options: { dir?: string; httpPort?: number; keep?: boolean } = {}): Promise<TestCaddy> {
  await checkInstalled();
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), "orchestrator-caddy-"));
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const httpPort = options.httpPort ?? (await freePort());
  const configPath = join(dir, "caddy.json");
  const adminSocket = join(dir, "admin.sock");
  rmSync(adminSocket, { force: true });
  if (!options.keep || !existsSync(configPath)) writeFileSync(
    configPath,
    JSON.stringify({
      admin: adminConfig(adminSocket),
      apps: { http: { servers: { test: { listen: [`127.0.0.1:${httpPort}`], automatic_https: { disable: true }, routes: [] } } } },
    }),
  );
  // Caddy keeps its autosave and certificate storage under these: nothing may land in the real $HOME.
  const env = { ...process.env, HOME: dir, XDG_DATA_HOME: join(dir, "data"), XDG_CONFIG_HOME: join(dir, "config") };

  let caddy: Spawned | undefined;
  const launch = async () => {
    const started = spawnCollecting(BINARY, ["run", "--config", configPath], { cwd: dir, env });
    caddy = started;
    await waitFor(
      async () => ((await adminRequest(adminSocket, "GET", "/config/").catch(() => ({ status: 0 }))).status === 200 && (await isListening(httpPort)) ? true : undefined),
      15_000,
      () => `caddy did not come up on ${adminSocket} and port ${httpPort}:\n${started.output()}`,
      () => hasExited(started),
    );
  };
  const halt = async () => {
    if (caddy) await terminate(caddy);
  };

  try {
    await launch();
  } catch (error) {
    await halt();
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    adminSocket,
    httpUrl: `http://127.0.0.1:${httpPort}`,
    httpPort,
    configPath,
    dir,
    binary: BINARY,
    output: () => caddy?.output() ?? "",
    async stop() {
      await halt();
      if (!options.keep) rmSync(dir, { recursive: true, force: true });
    },
    async restart() {
      await halt();
      await launch();
    },
  };
}

async function checkInstalled(): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    execFile(BINARY, ["version"], (error) => {
      if (!error) return resolve();
      const hint = error.code === "ENOENT" ? `${BINARY} is not installed` : `\`${BINARY} version\` failed: ${error.message}`;
      reject(new Error(`${hint}; the Caddy tests need the real binary: run \`bash scripts/install-system-deps.sh\``));
    });
  });
}

function hasExited(spawned: Spawned): boolean {
  return spawned.child.exitCode !== null || spawned.child.signalCode !== null;
}

/** SIGTERM, then SIGKILL if Caddy is still draining connections after a few seconds. */
async function terminate(spawned: Spawned): Promise<void> {
  if (hasExited(spawned)) return;
  spawned.child.kill("SIGTERM");
  const stopped = await Promise.race([spawned.exited.then(() => true), new Promise<false>((resolve) => setTimeout(() => resolve(false), 5_000))]);
  if (!stopped) {
    spawned.child.kill("SIGKILL");
    await spawned.exited;
  }
}

export interface Upstream {
  port: number;
  /** Requests answered so far. */
  hits(): number;
  close(): Promise<void>;
}

/**
 * An app behind Caddy: an HTTP server on a free loopback port among the test release ports. By
 * default it answers 200 with `name`; `handler` gets the 1-based request number to script answers
 * that change over time.
 */
export async function startUpstream(name: string, handler?: (req: IncomingMessage, res: ServerResponse, hit: number) => void): Promise<Upstream> {
  let hits = 0;
  const server = createServer((req, res) => {
    hits += 1;
    if (handler) return handler(req, res, hits);
    res.writeHead(200, { "content-type": "text/plain" }).end(name);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    void freePortIn(TEST_RELEASE_PORTS).then((port) => server.listen(port, "127.0.0.1", resolve), reject);
  });
  const address = server.address();
  if (!address || typeof address === "string") throw new Error("upstream server has no TCP address");
  return {
    port: address.port,
    hits: () => hits,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
