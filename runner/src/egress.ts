/**
 * The `egress` network policy of docker.run: a container that may reach only the destinations its
 * job lists (the model endpoint, the git host, package registries), and nothing else on the server
 * or beyond it.
 *
 * Each such job gets a Docker network of its own (`--internal`, bridge `oe-<id>`), and an HTTP proxy
 * that listens on that network's gateway address and forwards only to the job's `host:port` list
 * (CONNECT for TLS, absolute URLs for plain HTTP). The host's firewall (nftables table
 * `inet orchestrator_egress`, applied before the first egress job) drops everything else from those
 * bridges: other host ports, forwarding out, and traffic between job networks. Without that table
 * in place no egress container runs: the policy fails closed.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { lookup } from "node:dns/promises";
import { Agent, createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from "node:http";
import { BlockList, connect, isIP, type Socket } from "node:net";
import { networkInterfaces } from "node:os";
import type Docker from "dockerode";
import { z } from "zod";
import type { RunnerConfig } from "./config.ts";
import { JOB_LABEL, MANAGED_LABEL } from "./labels.ts";
/** Interface names of egress bridges: what the firewall matches (`oe-*`). Linux allows 15 characters. */
export const BRIDGE_PREFIX = "oe-";
/** Interface names of the projects' release bridges (deploy_project.yml names them `or-<hash>`). */
export const RELEASE_BRIDGE_PREFIX = "or-";
export const FIREWALL_TABLE = "orchestrator_egress";

export class EgressUnavailable extends Error {}

/** What a container reaches without the proxy: its own loopback. */
const LOOPBACK_NAMES = "localhost,127.0.0.1,::1";

/** Connections one job's proxy takes at once. */
const MAX_CONNECTIONS = 256;

/** What Docker's network inspect says of the egress network, as far as it is read here: its gateway and subnet. */
const NetworkInfo = z.object({ IPAM: z.object({ Config: z.array(z.object({ Gateway: z.string().optional(), Subnet: z.string().optional() })).nullish() }).optional() });

export interface EgressSession {
  /** The Docker network the container joins. */
  network: string;
  /** Proxy settings for the container (HTTP_PROXY, HTTPS_PROXY and their lower-case forms). */
  env: Record<string, string>;
  /**
   * The container's DNS server: the network's gateway, where the firewall answers nothing but the
   * proxy port. Names are the proxy's to resolve; a lookup of the container's own goes nowhere, so no
   * data leaves as a DNS query (Docker's resolver would otherwise ask the server's upstream servers).
   */
  dns: string[];
  close(): Promise<void>;
}

/**
 * The nftables ruleset of the containers that run code a model wrote:
 * - egress bridges (`oe-*`: builds, tests, coding agents) reach the proxy port and nothing else;
 * - release bridges (`or-*`: projects' running releases) reach the internet, but not the server
 *   itself (its ports: the runner's, Caddy's admin, other releases'; only the runner's
 *   `releaseInternalTargets`, e.g. a local Bot API stand-in), nor private, shared, loopback or
 *   link-local addresses (cloud metadata at 169.254.169.254 among them), nor another project's bridge.
 *   Answers to connections made to them (Caddy's, through the published port) pass, and DNS passes
 *   (Docker's resolver asks the server's upstream servers from the container's own network).
 */
export function firewallRules(proxyPort: number, releaseTargets: readonly string[] = []): string {
  const release = `"${RELEASE_BRIDGE_PREFIX}*"`;
  const releaseAccepts = releaseTargets.map((target) => {
    const [address, port] = target.split(":");
    return `    iifname ${release} ip daddr ${address} ${port ? `tcp dport ${port}` : "meta l4proto tcp"} accept`;
  });
  const privateV4 = INTERNAL_V4.map(([network, prefix]) => `${network}/${prefix}`).join(", ");
  return [
    `table inet ${FIREWALL_TABLE}`,
    `delete table inet ${FIREWALL_TABLE}`,
    `table inet ${FIREWALL_TABLE} {`,
    `  chain input {`,
    `    type filter hook input priority filter - 10; policy accept;`,
    `    iifname "${BRIDGE_PREFIX}*" tcp dport ${proxyPort} accept`,
    `    iifname "${BRIDGE_PREFIX}*" drop`,
    `    iifname ${release} ct state established,related accept`,
    ...releaseAccepts,
    `    iifname ${release} drop`,
    `  }`,
    `  chain forward {`,
    `    type filter hook forward priority filter - 10; policy accept;`,
    `    iifname "${BRIDGE_PREFIX}*" drop`,
    `    oifname "${BRIDGE_PREFIX}*" drop`,
    `    iifname ${release} ct state established,related accept`,
    `    iifname ${release} meta l4proto { tcp, udp } th dport 53 accept`,
    `    iifname ${release} ip daddr { ${privateV4} } drop`,
    `    iifname ${release} ip6 daddr { ::/96, ::ffff:0:0/96, fc00::/7, fe80::/10 } drop`,
    `  }`,
    `}`,
    "",
  ].join("\n");
}

export class EgressGateway {
  private readonly docker: Docker;
  private readonly settings: RunnerConfig["docker"]["egress"];
  private firewall: Promise<void> | null = null;

  constructor(docker: Docker, settings: RunnerConfig["docker"]["egress"]) {
    this.docker = docker;
    this.settings = settings;
  }

  /** Applies the firewall table once per runner; throws EgressUnavailable when it cannot. */
  ensureFirewall(): Promise<void> {
    this.firewall ??= applyRules(this.settings.nftBinary, firewallRules(this.settings.proxyPort, this.settings.releaseInternalTargets)).catch((error: unknown) => {
      this.firewall = null;
      throw error;
    });
    return this.firewall;
  }

  /** A network and proxy for one job, allowing exactly `allow`. `onRefused` hears of each refused attempt. */
  async open(jobId: string, allow: readonly string[], onRefused: (target: string) => void): Promise<EgressSession> {
    await this.ensureFirewall();
    const bridge = `${BRIDGE_PREFIX}${createHash("sha256").update(jobId).digest("hex").slice(0, 12)}`;
    const name = `orchestrator-egress-${jobId}`;
    const network = await this.docker.createNetwork({
      Name: name,
      Driver: "bridge",
      Internal: true,
      CheckDuplicate: true,
      Labels: { [JOB_LABEL]: jobId, [MANAGED_LABEL]: "true" },
      Options: { "com.docker.network.bridge.name": bridge },
    });
    let proxy: Proxy | undefined;
    try {
      const info = NetworkInfo.safeParse(await network.inspect()).data;
      const { Gateway: gateway, Subnet: subnet } = info?.IPAM?.Config?.[0] ?? {};
      if (!gateway || !subnet) throw new EgressUnavailable(`the egress network ${name} has no gateway address`);
      proxy = await startProxy(gateway, this.settings.proxyPort, subnet, allowList(allow), new Set(this.settings.internalTargets.map(normalizeTarget)), onRefused);
      const url = `http://${gateway}:${this.settings.proxyPort}`;
      const running = proxy;
      return {
        network: name,
        // The container's own loopback is never the proxy's: a test suite talking to the service it
        // started must reach it directly.
        env: { HTTP_PROXY: url, HTTPS_PROXY: url, http_proxy: url, https_proxy: url, NO_PROXY: LOOPBACK_NAMES, no_proxy: LOOPBACK_NAMES },
        dns: [gateway],
        close: async () => {
          await running.close();
          await network.remove().catch(() => undefined);
        },
      };
    } catch (error) {
      if (proxy) await proxy.close();
      await network.remove().catch(() => undefined);
      throw error;
    }
  }
}

/** Removes the egress networks of a job (one a crashed runner left behind). */
export async function removeJobNetworks(docker: Docker, jobId: string): Promise<void> {
  const networks = await docker.listNetworks({ filters: { label: [`${JOB_LABEL}=${jobId}`] } });
  for (const info of networks) await docker.getNetwork(info.Id).remove().catch(() => undefined);
}

function applyRules(nft: string, rules: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = execFile(nft, ["-f", "-"], { timeout: 15_000 }, (error, _stdout, stderr) => {
      if (!error) return resolve();
      const why = (error as NodeJS.ErrnoException).code === "ENOENT" ? `${nft} is not installed (Debian: apt install nftables)` : stderr.trim() || error.message;
      reject(new EgressUnavailable(`the egress policy cannot be enforced on this server (${why}), so no egress container runs; the runner needs nftables and root (provision.yml sets both up)`));
    });
    child.stdin?.end(rules);
  });
}

interface Allowed {
  /** `host:port` exactly, or a suffix `.domain:port` for `*.domain:port`. */
  exact: Set<string>;
  wildcards: { suffix: string; port: number }[];
}

function allowList(targets: readonly string[]): Allowed {
  const allowed: Allowed = { exact: new Set(), wildcards: [] };
  for (const target of targets) {
    const { host, port } = splitTarget(target);
    if (host.startsWith("*.")) allowed.wildcards.push({ suffix: host.slice(1), port });
    else allowed.exact.add(`${host}:${port}`);
  }
  return allowed;
}

function normalizeTarget(target: string): string {
  const { host, port } = splitTarget(target);
  return `${host}:${port}`;
}

/** `host:port` → lower-case host (IPv6 without brackets) and port. */
function splitTarget(target: string): { host: string; port: number } {
  const at = target.lastIndexOf(":");
  const host = target.slice(0, at).replace(/^\[|\]$/g, "").toLowerCase();
  return { host, port: Number(target.slice(at + 1)) };
}

/** Whether the job lists a destination, exactly or by wildcard. */
function listed(allowed: Allowed, host: string, port: number): boolean {
  return allowed.exact.has(`${host}:${port}`) || allowed.wildcards.some((w) => w.port === port && host.endsWith(w.suffix) && host.length > w.suffix.length);
}

/** IPv4 ranges inside a server's reach: "this" network, private, shared (CGNAT), loopback, link-local (cloud metadata). */
const INTERNAL_V4: [string, number][] = [
  ["0.0.0.0", 8],
  ["10.0.0.0", 8],
  ["100.64.0.0", 10],
  ["127.0.0.0", 8],
  ["169.254.0.0", 16],
  ["172.16.0.0", 12],
  ["192.168.0.0", 16],
];

/**
 * Every address inside the server's reach, compared by the address's parsed bytes (net.BlockList), so
 * that no spelling of it (`0:0:0:0:0:0:0:1`, `::ffff:7f00:1`, `::ffff:127.0.0.1`) gets past: IPv4's
 * internal ranges, also as IPv4-mapped and IPv4-compatible IPv6; IPv6 loopback, unspecified,
 * unique-local and link-local.
 */
export const INTERNAL_ADDRESSES = (() => {
  const list = new BlockList();
  for (const [network, prefix] of INTERNAL_V4) {
    list.addSubnet(network, prefix, "ipv4");
    list.addSubnet(`::ffff:${network}`, 96 + prefix, "ipv6");
  }
  // IPv4-compatible (deprecated) addresses, `::` and `::1` among them.
  list.addSubnet("::", 96, "ipv6");
  list.addSubnet("fc00::", 7, "ipv6");
  list.addSubnet("fe80::", 10, "ipv6");
  return list;
})();

/** Whether an address is inside the server: an internal range, or one of the server's own addresses. Not an address at all: refused rather than guessed at. */
export function isInternal(address: string, own: BlockList = new BlockList()): boolean {
  const family = isIP(address);
  if (family === 0) return true;
  const type = family === 6 ? "ipv6" : "ipv4";
  return INTERNAL_ADDRESSES.check(address, type) || own.check(address, type);
}

/** The server's own addresses, which count as inside it. */
function ownAddresses(): BlockList {
  const own = new BlockList();
  for (const info of Object.values(networkInterfaces()).flatMap((list) => list ?? [])) own.addAddress(info.address.replace(/%.*$/, ""), info.family === "IPv6" ? "ipv6" : "ipv4");
  return own;
}

/**
 * The address to connect to for a listed destination: resolved once here (so a name cannot be
 * rebound between the check and the connection), and refused when it lies inside the server unless
 * the runner's configuration names it (`internalTargets`).
 */
async function resolveTarget(host: string, port: number, internalAllowed: ReadonlySet<string>, own: BlockList): Promise<{ address: string } | { refused: string }> {
  const address = isIP(host) ? host : (await lookup(host)).address;
  if (isInternal(address, own) && !internalAllowed.has(`${host}:${port}`)) {
    return { refused: `it leads inside the server (${address}), which this runner allows only for ${[...internalAllowed].join(", ") || "nothing"}` };
  }
  return { address };
}

/** Request headers that belong to one connection and are not passed on. */
const HOP_BY_HOP = ["connection", "keep-alive", "proxy-authorization", "proxy-authenticate", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"];

interface Proxy {
  /** Stops listening and cuts every connection still open. */
  close(): Promise<void>;
}

/** Whether an IPv4 address is inside a CIDR block. */
export function inSubnet(address: string, cidr: string): boolean {
  const [base = "", bits = "32"] = cidr.split("/");
  const toNumber = (ip: string) => ip.split(".").reduce((n, part) => (n << 8) + Number(part), 0) >>> 0;
  if (isIP(base) !== 4 || isIP(address.replace(/^::ffff:/, "")) !== 4) return false;
  const mask = Number(bits) === 0 ? 0 : (~0 << (32 - Number(bits))) >>> 0;
  return (toNumber(address.replace(/^::ffff:/, "")) & mask) === (toNumber(base) & mask);
}

/**
 * The job's proxy. It answers only its own network's containers: another job's container could
 * reach this address too (the host owns every gateway address), and must not use this allow-list.
 */
function startProxy(listenHost: string, port: number, subnet: string, allowed: Allowed, internalAllowed: ReadonlySet<string>, onRefused: (target: string) => void): Promise<Proxy> {
  const sockets = new Set<Socket>();
  // The job's own upstream connections: Node's global agent would keep them alive for any job's proxy to
  // reuse, and one job's proxy, closing, would cut a connection another job had just picked up (seen as
  // a Tester's clone failing as the Developer's job ended).
  const agent = new Agent({ keepAlive: true, maxSockets: MAX_CONNECTIONS });
  const own = ownAddresses();
  const track = (socket: Socket) => {
    // Once per socket: the job's agent keeps sockets alive and hands the same one to request after request.
    if (sockets.has(socket)) return;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  };
  const refuse = (target: string) => {
    onRefused(target);
    return `egress to ${target} is not allowed for this job`;
  };

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    // Plain HTTP through a proxy: the request line holds the absolute URL.
    let url: URL;
    try {
      url = new URL(req.url ?? "");
      if (url.protocol !== "http:") throw new Error("not http");
    } catch {
      res.writeHead(400, { "content-type": "text/plain" }).end("this is an egress proxy: send absolute http:// URLs, or CONNECT for https\n");
      return;
    }
    const host = url.hostname.replace(/^\[|\]$/g, "").toLowerCase();
    const targetPort = Number(url.port || 80);
    if (!listed(allowed, host, targetPort)) {
      res.writeHead(403, { "content-type": "text/plain" }).end(`${refuse(`${host}:${targetPort}`)}\n`);
      return;
    }
    void resolveTarget(host, targetPort, internalAllowed, own).then(
      (target) => {
        if ("refused" in target) {
          res.writeHead(403, { "content-type": "text/plain" }).end(`${refuse(`${host}:${targetPort}`)}: ${target.refused}\n`);
          return;
        }
        const headers = Object.fromEntries(Object.entries(req.headers).filter(([name]) => !HOP_BY_HOP.includes(name)));
        // The Host is the destination's, whatever the client said: no reaching other sites behind the same address.
        headers.host = url.host;
        const upstream = httpRequest({ host: target.address, port: targetPort, method: req.method, path: `${url.pathname}${url.search}`, headers, agent }, (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        });
        upstream.on("socket", track);
        upstream.on("error", (error) => {
          if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" });
          res.end(`egress proxy: ${host}:${targetPort}: ${error.message}\n`);
        });
        req.pipe(upstream);
      },
      (error: unknown) => res.writeHead(502, { "content-type": "text/plain" }).end(`egress proxy: cannot resolve ${host}: ${String(error)}\n`),
    );
  });

  server.on("connect", (req: IncomingMessage, client: Socket, head: Buffer) => {
    track(client);
    client.on("error", () => client.destroy());
    const { host, port: targetPort } = splitTarget(req.url ?? "");
    if (!(Number.isInteger(targetPort) && targetPort > 0 && listed(allowed, host, targetPort))) {
      client.end(`HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\n\r\n${refuse(`${host}:${targetPort}`)}\n`);
      return;
    }
    void resolveTarget(host, targetPort, internalAllowed, own).then(
      (target) => {
        if ("refused" in target) {
          client.end(`HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\n\r\n${refuse(`${host}:${targetPort}`)}: ${target.refused}\n`);
          return;
        }
        const upstream = connect(targetPort, target.address, () => {
          client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
          if (head.length) upstream.write(head);
          upstream.pipe(client);
          client.pipe(upstream);
        });
        track(upstream);
        upstream.on("close", () => client.destroy());
        upstream.on("error", (error) => {
          if (client.writable && !upstream.readable) client.end(`HTTP/1.1 502 Bad Gateway\r\n\r\negress proxy: ${host}:${targetPort}: ${error.message}\n`);
          else client.destroy();
        });
        client.on("close", () => upstream.destroy());
      },
      () => client.end(`HTTP/1.1 502 Bad Gateway\r\n\r\negress proxy: cannot resolve ${host}\n`),
    );
  });
  server.on("connection", (socket: Socket) => {
    if (!inSubnet(socket.remoteAddress ?? "", subnet)) {
      socket.destroy();
      return;
    }
    track(socket);
  });
  // A container cannot use up the runner's file descriptors.
  server.maxConnections = MAX_CONNECTIONS;
  const close = (): Promise<void> => {
    agent.destroy();
    for (const socket of sockets) socket.destroy();
    return new Promise((resolve) => server.close(() => resolve()));
  };
  return new Promise((resolve, reject) => {
    server.once("error", (error) => reject(new EgressUnavailable(`the egress proxy could not listen on ${listenHost}:${port}: ${error.message}`)));
    server.listen(port, listenHost, () => resolve({ close }));
  });
}
