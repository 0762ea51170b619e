import { createServer } from "node:net";

/** Asks the kernel for a free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
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
