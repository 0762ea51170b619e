/**
 * A WebSocket-to-TCP proxy that lets the Neon serverless driver reach plain Postgres, as Neon's
 * own proxy does in production. The driver connects to `ws://<proxy>/v2?address=<host>:<port>`;
 * each WebSocket becomes one TCP connection. Only the configured addresses (Postgres, and the pooler in
 * front of it: scripts/lib/pooler.ts) are allowed, so the proxy cannot be used to reach anything else.
 */
import { createServer, type Server } from "node:http";
import { connect } from "node:net";
import { WebSocketServer, type WebSocket } from "ws";

export interface WsProxy {
  /** `127.0.0.1:<port>`: the value for DB_WS_PROXY. */
  address: string;
  port: number;
  close(): Promise<void>;
}

export async function startWsProxy(options: { port: number; targets: { host: string; port: number }[] }): Promise<WsProxy> {
  const allowed = new Map<string, { host: string; port: number }>();
  for (const target of options.targets) {
    allowed.set(`${target.host}:${target.port}`, target);
    allowed.set(`localhost:${target.port}`, target);
  }
  const http: Server = createServer((_req, res) => res.writeHead(426).end("WebSocket only\n"));
  const wss = new WebSocketServer({ server: http });
  const sockets = new Set<WebSocket>();

  wss.on("connection", (ws, req) => {
    const address = new URL(req.url ?? "/", "http://proxy").searchParams.get("address") ?? "";
    const target = allowed.get(address);
    if (!target) {
      ws.close(1008, "address not allowed");
      return;
    }
    sockets.add(ws);
    const tcp = connect({ host: target.host, port: target.port });
    tcp.setNoDelay(true);
    tcp.on("data", (chunk) => ws.send(chunk));
    tcp.on("close", () => ws.close());
    tcp.on("error", () => ws.terminate());
    ws.on("message", (data: Buffer) => tcp.write(data));
    ws.on("close", () => {
      sockets.delete(ws);
      tcp.destroy();
    });
    ws.on("error", () => tcp.destroy());
  });

  await new Promise<void>((resolve, reject) => {
    http.once("error", reject);
    http.listen(options.port, "127.0.0.1", resolve);
  });
  const addr = http.address();
  const port = typeof addr === "object" && addr ? addr.port : options.port;
  return {
    address: `127.0.0.1:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const ws of sockets) ws.terminate();
        wss.close();
        http.close(() => resolve());
      }),
  };
}
