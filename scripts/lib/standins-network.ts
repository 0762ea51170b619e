import type Docker from "dockerode";

/**
 * Where the projects' releases reach the stand-ins on this machine. A release may not connect to the
 * server itself (the runner's firewall), nor reach 127.0.0.2 (its loopback is its own); so a stand-in
 * a release calls (the Telegram Bot API's) listens also on the gateway of a Docker network made for
 * it, `orchestrator-standins` (192.0.2.0/24: a documentation range no real network uses), an address
 * of this machine that a container on any bridge can route to. Every runner the repository's scripts
 * and tests start lets releases through to that address (`releaseInternalTargets`): the runners of
 * one machine share one firewall table, and each applies it whole, so they must agree on it.
 */
export const STANDINS_NETWORK = { name: "orchestrator-standins", bridge: "orch-standins", subnet: "192.0.2.0/24", gateway: "192.0.2.1" };

/** Makes the network if it is missing (it holds no container, and is kept for the next start). */
export async function ensureStandinsNetwork(docker: Docker): Promise<void> {
  if (await docker.getNetwork(STANDINS_NETWORK.name).inspect().catch(() => null)) return;
  await docker
    .createNetwork({ Name: STANDINS_NETWORK.name, Driver: "bridge", Internal: true, IPAM: { Config: [{ Subnet: STANDINS_NETWORK.subnet, Gateway: STANDINS_NETWORK.gateway }] }, Options: { "com.docker.network.bridge.name": STANDINS_NETWORK.bridge } })
    // Another process made it meanwhile.
    .catch(async (error: unknown) => {
      if (!(await docker.getNetwork(STANDINS_NETWORK.name).inspect().catch(() => null))) throw error;
    });
}

/** The runner setting every local runner has. */
export const LOCAL_RELEASE_TARGETS = [STANDINS_NETWORK.gateway];

/**
 * Where a local runner's Bot API gateway listens (runner/src/bot-gateway.ts): on that same address,
 * which releases may reach on any port, so each runner takes a free port of its own.
 */
export const LOCAL_BOT_GATEWAY = { host: STANDINS_NETWORK.gateway, port: 0 };
