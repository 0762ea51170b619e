/**
 * The runner's configuration file (JSON, mode 0600: it holds the runner's private key).
 * `orchestrator-runner enroll` writes it; `orchestrator-runner run` reads it. Everything but the
 * enrollment fields has a default that suits a VPS prepared by the provision playbook.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { z } from "zod";
import { PortRange } from "../../src/shared/api.ts";

/** The runner's own files: beside the bundle (`dist/runner/ansible`), or the source tree's `runner/`. */
export const RUNNER_ROOT = existsSync(join(import.meta.dirname, "ansible")) ? import.meta.dirname : resolve(import.meta.dirname, "..");
/** Whether this runner runs from the bundle (`npm run build:runner`), which provision.yml can install. */
export const RUNNER_BUNDLE = existsSync(join(RUNNER_ROOT, "orchestrator-runner.mjs")) ? join(RUNNER_ROOT, "orchestrator-runner.mjs") : null;

export const RunnerConfig = z.strictObject({
  /** The control plane's origin, e.g. https://orchestrator.example.workers.dev */
  edge: z.url(),
  runnerId: z.string().min(1),
  server: z.string().min(1),
  /** The runner's Ed25519 private key: base64url of the 32-byte seed. */
  privateKey: z.string().length(43),
  publicKey: z.string().length(43),
  /** The control plane's job-signing public key (base64url raw), received at enrollment. */
  controlPlanePublicKey: z.string().length(43),
  /** Where the runner keeps its journal of seen jobs and unacknowledged results. */
  stateDir: z.string().default("/var/lib/orchestrator-runner"),
  /** Jobs run at once. */
  concurrency: z.number().int().min(1).max(64).default(2),
  /** Where jobs may write files (write-env.yml, releases): `<root>/<project>/…`. Never set by a job. */
  deploymentsRoot: z.string().startsWith("/", "must be an absolute path").default("/srv/orchestrator"),
  /** The internal ports releases listen on (127.0.0.1 only, never opened in the firewall): all caddy.sync may route to. */
  releasePorts: PortRange.default({ from: 20_000, to: 29_999 }),
  docker: z
    .strictObject({
      socketPath: z.string().default("/var/run/docker.sock"),
      /**
       * Whether docker.run may use the server's own network (`network: "host"`): loopback services
       * included. Only for a runner whose operator trusts every job it is sent.
       */
      allowHostNetwork: z.boolean().default(false),
      egress: z
        .strictObject({
          /** The port of the egress proxy on each egress network's gateway address. */
          proxyPort: z.number().int().min(1).max(65_535).default(3128),
          /** The nft binary that confines egress networks (provision.yml installs nftables). */
          nftBinary: z.string().default("nft"),
          /**
           * Destinations inside the server (loopback, private and link-local addresses, the server's own
           * addresses) that egress jobs may still be sent to, as `host:port`: e.g. a model server on
           * this machine. Anything else inside is refused, whatever a job lists.
           */
          internalTargets: z.array(z.string().regex(/^.+:\d{1,5}$/, "must be host:port")).default([]),
          /**
           * Addresses of this server (IPv4 `address:port`, or `address` for any TCP port) that running
           * releases may connect to, e.g. a local Bot API stand-in: the firewall lets releases open
           * connections to these alone of all the server's. Empty on a real server, whose releases reach
           * Telegram over the internet.
           */
          releaseInternalTargets: z.array(z.string().regex(/^\d{1,3}(\.\d{1,3}){3}(:\d{1,5})?$/, "must be an IPv4 address, or address:port")).default([]),
        })
        .prefault({}),
    })
    .prefault({}),
  caddy: z
    .strictObject({
      /** Caddy's admin API, as a unix socket (Caddy's `admin.listen: unix/<path>`): never a TCP port. */
      adminSocket: z.string().startsWith("/", "must be an absolute path").default("/run/orchestrator-caddy/admin.sock"),
      /**
       * The JSON config Caddy is started with (`caddy run --config <path>`). caddy.sync writes it only
       * with a config Caddy validated and loaded, so a restarted Caddy serves the last good routes.
       */
      configPath: z.string().default("/var/lib/orchestrator-runner/caddy/caddy.json"),
      /** Where health checks reach Caddy's listener; unset: https://127.0.0.1:443, or http://127.0.0.1:80 with disableTls. */
      httpUrl: z.url().optional(),
      /** The addresses Caddy's server listens on. */
      listen: z.array(z.string()).min(1).default([":80", ":443"]),
      /** Plain HTTP only (tests, or a server behind another TLS terminator); otherwise Caddy gets certificates. */
      disableTls: z.boolean().default(false),
      binary: z.string().default("caddy"),
    })
    .prefault({}),
  /**
   * The package registries jobs install from (a job names one, e.g. "npm"; runner/src/registries.ts).
   * A company mirror replaces the public one here; the job's egress is let through to it alone.
   */
  registries: z
    .strictObject({
      npm: z.url().default("https://registry.npmjs.org/"),
      /** A PyPI index (PEP 503's simple API): pip's index URL. */
      pypi: z.url().default("https://pypi.org/simple/"),
      /**
       * Where that index's files are, when another host serves them (PyPI's are on
       * files.pythonhosted.org); null for a mirror that serves them from the index's host.
       */
      pypiFiles: z.url().nullable().default("https://files.pythonhosted.org/"),
    })
    .prefault({}),
  /**
   * The Bot API gateway the bots of this server's releases reach Telegram through (runner/src/bot-gateway.ts),
   * so that a deploy can send a new release's bot the messages of its acceptance checks. `host` must be
   * an address of this server that containers can reach: by default Docker's default bridge
   * (docker0, 172.17.0.1 on a standard install); the firewall lets releases through to that address and
   * port alone. null, or an address the runner cannot listen on: bots call the Bot API directly, and a
   * check that sends a message fails, saying why.
   */
  botGateway: z
    .strictObject({
      host: z.ipv4(),
      /** 0: any free port (tests; the firewall must then let releases to the whole address). */
      port: z.number().int().min(0).max(65_535).default(3129),
    })
    .nullable()
    .default({ host: "172.17.0.1", port: 3129 }),
  /** The project templates repo.scaffold renders (one directory each). */
  templatesDir: z.string().default(join(RUNNER_ROOT, "templates")),
  /** Where the runner's spans go (OTLP/HTTP, JSON): each job is a span in the trace that started it. */
  tracing: z
    .strictObject({
      /** e.g. http://127.0.0.1:4318/v1/traces (a collector), https://api.honeycomb.io/v1/traces. Unset: no spans. */
      otlpEndpoint: z.url().optional(),
      /** Sent with each export (an API key header, say). */
      headers: z.record(z.string(), z.string()).default({}),
      serviceName: z.string().min(1).default("orchestrator-runner"),
      /** A slow or dead endpoint is given up on after this; the spans are dropped, the jobs never wait. */
      exportTimeoutMs: z.number().int().min(100).max(60_000).default(2000),
      flushIntervalMs: z.number().int().min(100).max(60_000).default(1000),
    })
    .prefault({}),
  ansible: z
    .strictObject({
      /** Playbooks the runner may run; jobs name a file in here. */
      playbookDir: z.string().default(join(RUNNER_ROOT, "ansible")),
      binary: z.string().default("ansible-playbook"),
    })
    .prefault({}),
});
export type RunnerConfig = z.infer<typeof RunnerConfig>;
export type RunnerConfigInput = z.input<typeof RunnerConfig>;

/** /etc/orchestrator-runner/config.json for root (the systemd service), else under ~/.config. */
export function defaultConfigPath(): string {
  if (process.env.ORCHESTRATOR_RUNNER_CONFIG) return process.env.ORCHESTRATOR_RUNNER_CONFIG;
  return process.getuid?.() === 0 ? "/etc/orchestrator-runner/config.json" : join(homedir(), ".config", "orchestrator-runner", "config.json");
}

export class ConfigError extends Error {}

export function loadConfig(path: string): RunnerConfig {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    throw new ConfigError(`no runner config at ${path}; run \`orchestrator-runner enroll --edge <url> --token <token>\` first`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new ConfigError(`${path} is not valid JSON`);
  }
  const parsed = RunnerConfig.safeParse(json);
  if (!parsed.success) {
    throw new ConfigError(`${path}: ${parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ")}`);
  }
  return parsed.data;
}

/** Writes the config atomically with mode 0600 (it holds the private key). */
export function saveConfig(path: string, config: RunnerConfigInput): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const temp = `${path}.${process.pid}.tmp`;
  writeFileSync(temp, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  chmodSync(temp, 0o600);
  renameSync(temp, path);
}
