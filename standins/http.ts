// Small HTTP helpers the stand-in servers share (node:http, no framework: they must speak the real
// services' wire protocol byte for byte, including streaming and git's smart HTTP).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => (text += chunk));
    req.on("end", () => resolve(text));
    req.on("error", reject);
  });
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return void res.end();
  res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
}

/** Starts a server for `handle` on host:port (0: any free one); a handler's error becomes `onError`'s 500 body. */
export async function listen(handle: (req: IncomingMessage, res: ServerResponse) => Promise<void>, errorBody: (error: unknown) => unknown, port: number, host: string): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    void handle(req, res).catch((error: unknown) => sendJson(res, 500, errorBody(error)));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, resolve);
  });
  return { server, url: `http://${host}:${(server.address() as AddressInfo).port}` };
}

/** Closes a server and every connection it still has (keep-alive ones included). */
export async function close(server: Server | null): Promise<void> {
  if (!server) return;
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}
