import { createServer } from "node:net";

/**
 * Where freePort() looks: below the kernel's ephemeral ports (32768-60999), which every outgoing
 * connection takes its local port from, and below a runner's default release ports (20000-29999).
 * A port the kernel hands out for bind(0) is an ephemeral one: in the seconds between freePort() and the
 * server's own bind (a wrangler dev start), an outgoing connection could take it. (This alone did not end
 * the "Address already in use" a bench's wrangler dev met; startStack retries on another port for that.)
 */
const LISTEN_PORTS = { from: 10_000, to: 19_999 } as const;

/** A free TCP port on 127.0.0.1 for a server of ours to listen on. */
export function freePort(): Promise<number> {
  return freePortIn(LISTEN_PORTS);
}

/**
 * The release ports test runners are configured with (the runner's `releasePorts`): the apps that
 * tests put behind Caddy listen in here, since caddy.sync routes only to these.
 */
export const TEST_RELEASE_PORTS = { from: 43_000, to: 43_999 } as const;

/**
 * The deploy pipeline's test and benchmark runners: reservations start at the bottom of the range, so
 * it sits below the kernel's ephemeral ports (32768+) and apart from TEST_RELEASE_PORTS, where other
 * tests bind at random.
 */
export const DEPLOY_RELEASE_PORTS = { from: 21_000, to: 21_999 } as const;

/** A free port on 127.0.0.1 inside `range`, tried at random so parallel tests rarely collide. */
export async function freePortIn(range: { from: number; to: number }): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = range.from + Math.floor(Math.random() * (range.to - range.from + 1));
    const free = await new Promise<boolean>((resolve) => {
      const server = createServer();
      server.once("error", () => resolve(false));
      server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
    });
    if (free) return port;
  }
  throw new Error(`no free port in ${range.from}-${range.to}`);
}
