import { Client, type NeonConfig, Pool, type PoolConfig } from "@neondatabase/serverless";
import { drizzle } from "drizzle-orm/neon-serverless";
import * as schema from "./schema.ts";

export type Db = ReturnType<typeof drizzle<typeof schema>>;
/** A transaction's handle (`db.transaction(async (tx) => …)`): the same queries, inside it. */
export type DbTx = Parameters<Parameters<Db["transaction"]>[0]>[0];

export interface DbHandle {
  db: Db;
  /** Closes the pool's connections; call once the request (or script) is done with the database. */
  close(): Promise<void>;
}

export interface DbOptions {
  /** A Postgres URL: Neon's in production, the local embedded server in development and tests. */
  databaseUrl: string;
  /**
   * `host:port` of a WebSocket-to-TCP proxy (scripts/lib/ws-proxy.ts) for plain Postgres.
   * Empty for Neon, which accepts the driver's WebSocket directly.
   */
  wsProxy?: string;
  /** Used outside the Workers runtime (Node scripts and tests), where there is no global WebSocket on Node 20. */
  webSocketConstructor?: NeonConfig["webSocketConstructor"];
  connectionTimeoutMillis?: number;
}

/**
 * Builds a drizzle client over the Neon serverless driver for one request or one script run.
 * Proxy settings are applied per connection (not on the global `neonConfig`), so two pools with
 * different settings can live in one isolate.
 */
export function createDb(options: DbOptions): DbHandle {
  const { wsProxy, webSocketConstructor } = options;

  class ConfiguredClient extends Client {
    constructor(config?: ConstructorParameters<typeof Client>[0]) {
      super(config);
      const conf = this.neonConfig;
      if (webSocketConstructor) conf.webSocketConstructor = webSocketConstructor;
      if (wsProxy) {
        conf.wsProxy = (host, port) => `${wsProxy}/v2?address=${host}:${port}`;
        // Plain Postgres behind a local proxy: no TLS inside or outside the socket, and no
        // pipelined startup (that shortcut only works with Neon's cleartext-password auth).
        conf.useSecureWebSocket = false;
        conf.forceDisablePgSSL = true;
        conf.pipelineConnect = false;
        conf.pipelineTLS = false;
      }
    }
  }

  // Neon's Pool sets its own `Client` class field, which wins over a `Client` option.
  class ConfiguredPool extends Pool {
    override Client = ConfiguredClient;
  }

  const poolConfig: PoolConfig = {
    connectionString: options.databaseUrl,
    connectionTimeoutMillis: options.connectionTimeoutMillis ?? 5_000,
    max: 5,
  };
  const pool = new ConfiguredPool(poolConfig);
  // An idle connection that dies (database restart) must not become an unhandled error event.
  pool.on("error", () => undefined);
  const db = drizzle({ client: pool, schema });
  return { db, close: () => pool.end() };
}

const UNAVAILABLE_SQLSTATE = /^(08|57P0[1-3]|53300)/;

/**
 * Tells whether an error means "the database cannot be reached" (refused, reset, timed out,
 * shutting down) rather than "the query was wrong". Walks the `cause` chain because drizzle
 * wraps driver errors.
 */
export function isDbUnavailable(error: unknown): boolean {
  for (let current = error, depth = 0; current && depth < 6; depth++) {
    if (typeof current !== "object") return false;
    const code = "code" in current && typeof current.code === "string" ? current.code : undefined;
    const message = "message" in current && typeof current.message === "string" ? current.message : "";
    if (code && UNAVAILABLE_SQLSTATE.test(code)) return true;
    if (code && /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|ENOTFOUND)$/.test(code)) return true;
    // The driver rejects with the WebSocket's own ErrorEvent when the socket cannot open or drops.
    if ("type" in current && current.type === "error" && !(current instanceof Error)) return true;
    if (/connection (terminated|timeout|refused|ended|lost)|websocket|ECONNREFUSED|timeout exceeded when trying to connect/i.test(message)) {
      return true;
    }
    current = "cause" in current ? current.cause : undefined;
  }
  return false;
}

/** Runs `work` with a database handle of its own, closed afterwards: for workflows and Durable Objects. */
export async function withDb<T>(env: { DATABASE_URL: string; DB_WS_PROXY: string }, work: (db: Db) => Promise<T>): Promise<T> {
  const handle = createDb({ databaseUrl: env.DATABASE_URL, wsProxy: env.DB_WS_PROXY });
  try {
    return await work(handle.db);
  } finally {
    await handle.close().catch(() => undefined);
  }
}
