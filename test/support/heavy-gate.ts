/**
 * One Docker-heavy test file at a time, while light files run beside it.
 *
 * The heavy files (real builds, releases, coding containers) slow each other down far more than they
 * gain from running together on a 2-core machine: deploy and the end-to-end factory took 950 s each
 * side by side, against 417 s and 290 s one after the other. So the test run keeps a gate (a local TCP
 * server started in test/setup/global.ts): a heavy file holds a connection to it from its first hook
 * to its last, and the gate lets one connection in at a time. A worker that dies closes its
 * connection, which opens the gate for the next file.
 *
 * test/support/sequencer.ts orders the files so a worker seldom waits at the gate: light files between
 * the heavy ones.
 *
 * The heavy files one after another are the run's length, and the machine's two cores are busy
 * throughout: so the heavy file inside the gate runs at a higher priority (niceness HEAVY_NICENESS, with
 * what it starts from then on: wrangler, workerd, the runner, Ansible), as does the Docker engine the
 * run starts (test/setup/global.ts), and the light files take the CPU it leaves. As root only; anyone
 * else keeps the default niceness, and the run is just as correct.
 */
import { createConnection, createServer, type Socket } from "node:net";
import { setPriority } from "node:os";
import { afterAll, beforeAll, inject } from "vitest";

/** The niceness of the heavy file inside the gate and of the Docker engine (the default is 0). */
export const HEAVY_NICENESS = -5;

/** What the sequencer looks for in a file to call it heavy: the call below. */
export const HEAVY_MARK = "oneHeavyFileAtATime()";

/** Call at the top of a heavy test file, before its own hooks: they run once the gate lets it in. */
export function oneHeavyFileAtATime(): void {
  let held: Socket | undefined;
  beforeAll(async () => {
    held = await enter(inject("heavyGatePort"));
    try {
      // This process's main thread, from which the file's processes are started.
      setPriority(HEAVY_NICENESS);
    } catch {
      // Not root: the default niceness.
    }
  }, 3_600_000);
  afterAll(() => {
    held?.end();
    // In case vitest runs another file in this process.
    try {
      setPriority(0);
    } catch {
      // Never raised.
    }
  });
}

function enter(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: "127.0.0.1", port });
    socket.once("error", reject);
    socket.once("data", () => resolve(socket));
  });
}

/** The gate: connections queue, the first is let in ("go"), the next when it closes. */
export async function startHeavyGate(): Promise<{ port: number; close(): Promise<void> }> {
  const waiting: Socket[] = [];
  let inside: Socket | null = null;
  const next = () => {
    while (!inside && waiting.length) {
      const socket = waiting.shift();
      if (!socket || socket.destroyed) continue;
      inside = socket;
      socket.write("go\n");
    }
  };
  const server = createServer((socket) => {
    socket.on("error", () => undefined);
    socket.on("close", () => {
      if (inside === socket) inside = null;
      next();
    });
    waiting.push(socket);
    next();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (!address || typeof address === "string") throw new Error("the heavy-file gate has no port");
  return {
    port: address.port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of [inside, ...waiting]) socket?.destroy();
        server.close(() => resolve());
      }),
  };
}
