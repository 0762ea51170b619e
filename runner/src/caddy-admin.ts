/**
 * Caddy's admin API, reached only through a unix socket: a loopback TCP port would be open to every
 * process on the server, containers with the host's network included, and whoever can POST /load
 * serves any domain. The socket's file permissions decide who may talk to Caddy.
 */
import { stat } from "node:fs/promises";
import { request } from "node:http";

/** The Host Caddy's admin endpoint accepts (its `origins`): requests over the socket must name it. */
export const ADMIN_HOST = "caddy-admin";

/** Caddy's `admin` config for a socket path: what every config the runner writes starts with. */
export function adminConfig(socketPath: string): { listen: string; origins: string[] } {
  return { listen: `unix/${socketPath}`, origins: [ADMIN_HOST] };
}

export class AdminSocketError extends Error {}

/** Refuses a socket any user could write to (connect needs write permission on a unix socket). */
export async function checkAdminSocket(socketPath: string): Promise<void> {
  let info;
  try {
    info = await stat(socketPath);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new AdminSocketError(`Caddy's admin socket ${socketPath} is not there (${code ?? "error"}): is Caddy running with the runner's config (runner/README.md)?`);
  }
  if (!info.isSocket()) throw new AdminSocketError(`${socketPath} is not a socket`);
  if (info.mode & 0o002) throw new AdminSocketError(`Caddy's admin socket ${socketPath} is writable by every user; run Caddy with UMask=0007 (provision.yml does) so only Caddy and the runner can reach it`);
}

/** One request to the admin API; resolves with the status and body, rejects when the socket cannot be reached. */
export function adminRequest(socketPath: string, method: string, path: string, body?: string, timeoutMs = 30_000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { socketPath, method, path, headers: { host: ADMIN_HOST, ...(body !== undefined ? { "content-type": "application/json", "content-length": Buffer.byteLength(body) } : {}) }, timeout: timeoutMs },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (text += chunk));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs / 1000} s`)));
    req.on("error", reject);
    req.end(body);
  });
}
