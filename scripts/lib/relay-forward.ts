/**
 * The model relay as job containers reach it on one machine. The worker listens on 127.0.0.1, which
 * inside a container is the container's own loopback (never proxied); so, like the stand-ins, the
 * worker is also offered on 127.0.0.2, through the job's egress proxy, by this plain TCP forwarder.
 * On a VPS the containers reach the worker at its public URL instead.
 */
import { connect, createServer, type Socket } from "node:net";

export const RELAY_HOST = "127.0.0.2";

export interface RelayForwarder {
  /** MODEL_RELAY_URL for the worker. */
  url: string;
  /** The `host:port` the runner lets egress containers reach (its egress.internalTargets). */
  target: string;
  close(): Promise<void>;
}

/** Forwards `RELAY_HOST:<port>` (the worker's port number where it is free, else any) to the worker on 127.0.0.1:`workerPort`. */
export async function startRelayForwarder(workerPort: number): Promise<RelayForwarder> {
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect({ host: "127.0.0.1", port: workerPort });
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  const listen = (port: number) =>
    new Promise<number>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, RELAY_HOST, () => {
        server.off("error", reject);
        const address = server.address();
        resolve(typeof address === "object" && address ? address.port : 0);
      });
    });
  const port = await listen(workerPort).catch(() => listen(0));
  return {
    url: `http://${RELAY_HOST}:${port}/relay/v1`,
    target: `${RELAY_HOST}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
