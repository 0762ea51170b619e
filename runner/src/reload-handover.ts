/**
 * Caddy listens with SO_REUSEPORT and, on every /load, opens new listening sockets and closes the old
 * ones. Linux resets the connections still queued on a closed socket (handshake done, not yet
 * accepted) unless net.ipv4.tcp_migrate_req is 1 (Linux 5.14+), which hands them to the new socket.
 * Measured against Caddy 2.6 with 8 clients opening connections non-stop: ~2 reset connections per
 * /load with it 0, none in 100 loads with it 1. A route switch is a /load, so without it a deploy's
 * "no failed request" holds only most of the time.
 *
 * provision.yml makes the setting survive a reboot; the runner sets it before each /load as well, so a
 * server prepared by hand (or rebooted without sysctl.d) still switches routes without resets. The
 * setting is per network namespace: the runner and Caddy share the host's.
 */
import { readFile, writeFile } from "node:fs/promises";

export const MIGRATE_REQ_SYSCTL = "/proc/sys/net/ipv4/tcp_migrate_req";

/** Turns the handover on; resolves with why not (for the job's log) when it is off and stays off. */
export async function ensureReloadHandover(path = MIGRATE_REQ_SYSCTL): Promise<string | undefined> {
  try {
    if ((await readFile(path, "utf8")).trim() === "1") return undefined;
    await writeFile(path, "1\n");
    return undefined;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "this kernel has no net.ipv4.tcp_migrate_req (Linux 5.14+ has it)" : `net.ipv4.tcp_migrate_req is 0 and the runner cannot set it (${code ?? String(error)}; run it as root, or run provision.yml)`;
    return `warning: a Caddy reload may reset connections that were waiting to be accepted: ${why}`;
  }
}
