/**
 * What each job type's payload may contain. The control plane validates a payload before signing it,
 * and the runner validates it again before running anything: the schema is the job type's contract
 * of what it may and may not do (runner/README.md lists it for operators).
 */
import { z } from "zod";
import type { JobType } from "./jobs.ts";
import { MAX_SECRET_VALUE_CHARS } from "./limits.ts";
import { EnvName, PLAYBOOKS, PlaybookName, ProvisionVars, ReleaseId, ReleaseProject } from "./playbooks.ts";
import { CacheScope, PackageRegistry } from "./registries.ts";
import { AcceptanceChecks, isMessageCheck } from "./spec.ts";
import { TemplateName, TemplateValues } from "./templates.ts";

const MAX_TIMEOUT_SECONDS = 6 * 3600;
const timeout = (fallback: number) => z.number().int().min(1).max(MAX_TIMEOUT_SECONDS).default(fallback);
/** A DNS name as a route's domain: labels of letters, digits and hyphens. */
export const Domain = z
  .string()
  .max(253)
  .regex(/^(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*$/i, "must be a DNS name such as app.example.com");

export const NoopPayload = z.strictObject({
  /** Echoed back in the result: the benchmark and liveness checks use it. */
  echo: z.string().max(1000).optional(),
  timeoutSeconds: timeout(30),
});

/**
 * Where a `docker.run` container may connect (runner/README.md "Networks"):
 * - `none`: nowhere; the container has loopback only (the default);
 * - `egress`: only the listed `host:port` destinations, through the runner's egress proxy, on a
 *   network of the job's own that the host's firewall confines to that proxy: what build, test and
 *   coding-agent containers get (the model endpoint, the git host, package registries);
 * - `host`: the server's own network, loopback included. For trusted operator jobs only: a runner
 *   refuses it unless its configuration allows it (`docker.allowHostNetwork`).
 */
export const DockerNetwork = z.enum(["none", "egress", "host"]);

/** `host:port` (or `*.domain:port` for a registry's hosts): one destination an egress container may reach. */
export const EgressTarget = z
  .string()
  .max(300)
  .regex(/^(\*\.)?([A-Za-z0-9-]+\.)*[A-Za-z0-9-]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, "must be host:port (or *.domain:port)")
  .refine((target) => {
    const port = Number(target.slice(target.lastIndexOf(":") + 1));
    return port >= 1 && port <= 65_535;
  }, "the port must be 1-65535");

/** `host:port` of a URL: the egress destination a container needs to reach it. */
export function egressTarget(url: string): string {
  const parsed = new URL(url);
  const port = parsed.port || (parsed.protocol === "https:" ? "443" : "80");
  return `${parsed.hostname}:${port}`;
}

export const DockerRunPayload = z
  .strictObject({
    image: z.string().min(1).max(300),
    cmd: z.array(z.string().max(10_000)).max(200).optional(),
    env: z.record(EnvName, z.string().max(100_000)).default({}),
    /** Like env, but the values are masked wherever the job's output is reported. */
    secretEnv: z.record(EnvName, z.string().max(MAX_SECRET_VALUE_CHARS)).default({}),
    network: DockerNetwork.default("none"),
    /** With `network: "egress"`: every destination the container may reach, and nothing else. */
    egress: z.array(EgressTarget).max(50).default([]),
    /** With `network: "egress"`: the package registries the container may install from, through the proxy too. */
    registries: z.array(PackageRegistry).max(PackageRegistry.options.length).default([]),
    /** Whose package caches the container shares (src/shared/registries.ts: one tenant's). */
    cacheScope: CacheScope.default("shared"),
    cpus: z.number().positive().max(64).default(1),
    memoryMb: z.number().int().min(6).max(65_536).default(512),
    workdir: z.string().max(1000).optional(),
    user: z.string().max(100).optional(),
    /**
     * The command starts as root with only the capabilities to become another user (SETUID, SETGID)
     * and runs what it does not trust (a coding agent, a test suite) as an unprivileged user, who can
     * then read neither its environment (the secrets) nor its memory. `user` must be left out.
     */
    dropsPrivileges: z.boolean().default(false),
    /** Files to read out of the container once it has exited, returned in `outcome.data.files` (text, capped). */
    collect: z.array(z.string().startsWith("/").max(500)).max(10).default([]),
    timeoutSeconds: timeout(600),
  })
  .refine((payload) => !(payload.dropsPrivileges && payload.user), { path: ["user"], message: "dropsPrivileges starts the command as root: leave user out" })
  .refine((payload) => payload.network === "egress" || payload.egress.length === 0, { path: ["egress"], message: 'egress destinations need network "egress"' })
  .refine((payload) => payload.network === "egress" || payload.registries.length === 0, { path: ["registries"], message: 'registries need network "egress"' })
  .refine((payload) => payload.network !== "egress" || payload.egress.length + payload.registries.length > 0, { path: ["egress"], message: 'network "egress" needs at least one destination (or use network "none")' });

export const CaddyRoute = z.strictObject({
  domain: Domain,
  upstreamPort: z.number().int().min(1).max(65_535),
});
/**
 * The routes of a caddy.sync that point outside a server's release ports, as a refusal, or undefined
 * when all are inside. The control plane checks it before signing, the runner again before syncing.
 */
export function outsideReleasePorts(routes: readonly z.infer<typeof CaddyRoute>[], range: { from: number; to: number }): string | undefined {
  const bad = routes.filter((route) => route.upstreamPort < range.from || route.upstreamPort > range.to);
  if (bad.length === 0) return undefined;
  const list = bad.slice(0, 5).map((route) => `${route.domain} → ${route.upstreamPort}`).join(", ");
  return `upstream ports must be this server's release ports ${range.from}-${range.to}; refused: ${list}${bad.length > 5 ? ` and ${bad.length - 5} more` : ""}`;
}

export const CaddySyncPayload = z.strictObject({
  /** The full list of routes this server should serve; anything not listed stops being served. */
  routes: z.array(CaddyRoute).max(1000),
  /**
   * Which version of the server's route list this is (the control plane counts them per server). A
   * sync older than the one Caddy already serves changes nothing: two deploys that read the list
   * at nearly the same time cannot leave the older list in place.
   */
  generation: z.number().int().min(0).optional(),
  timeoutSeconds: timeout(60),
});

export const HealthCheckPayload = z.strictObject({
  /** Checked through Caddy with this Host header, as a visitor would reach it. */
  domain: Domain,
  /**
   * Check a release directly on 127.0.0.1:<port> instead (still with the Host header), before it gets
   * any traffic. Must be one of the runner's release ports.
   */
  upstreamPort: z.number().int().min(1).max(65_535).optional(),
  path: z.string().startsWith("/").max(2000).default("/"),
  /** Statuses that count as healthy. */
  expectStatus: z.array(z.number().int().min(100).max(599)).min(1).max(20).default([200]),
  /** Optional text the body must contain. */
  expectBody: z.string().max(1000).optional(),
  attempts: z.number().int().min(1).max(1000).default(10),
  intervalMs: z.number().int().min(50).max(60_000).default(1000),
  timeoutSeconds: timeout(60),
});

export const AcceptanceCheckPayload = z.strictObject({
  /** Sent as the Host header, through Caddy (as a visitor would reach the app) or straight to upstreamPort. */
  domain: Domain,
  /** Check a release directly on 127.0.0.1:<port>, before it gets any traffic. Must be one of the runner's release ports. */
  upstreamPort: z.number().int().min(1).max(65_535).optional(),
  /** The release a bot's checks (those that send a message) talk to, through the runner's Bot API gateway. */
  release: ReleaseId.optional(),
  checks: AcceptanceChecks.min(1),
  timeoutSeconds: timeout(120),
}).refine((payload) => payload.release !== undefined || !payload.checks.some(isMessageCheck), { message: "checks that send a message need the release they talk to", path: ["release"] });

/**
 * Extra vars outrank everything in Ansible, connection settings included: `ansible_python_interpreter`
 * or `ansible_connection` from a payload would run commands or move the run to another host. So
 * `ansible_*` and Ansible's reserved names are refused as secret names too.
 */
const RESERVED_VARS = new Set(["hostvars", "vars", "environment", "omit", "playbook_dir", "inventory_hostname", "inventory_dir", "group_names", "groups", "role_path"]);
const VarName = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "must be a variable name")
  .refine((name) => !/^ansible_/i.test(name) && !RESERVED_VARS.has(name), "ansible_* and Ansible's reserved variable names cannot be set by a job");

/** A shipped playbook, its own variables (PLAYBOOKS in ./playbooks.ts) and the secrets it names. */
export const AnsiblePlaybookPayload = z
  .strictObject({
    playbook: PlaybookName,
    extraVars: z.record(z.string(), z.unknown()).default({}),
    /** Passed through a 0600 file, never on the command line, and masked in everything reported. */
    secretVars: z.record(VarName, z.string().max(MAX_SECRET_VALUE_CHARS)).default({}),
    check: z.boolean().default(false),
    timeoutSeconds: timeout(1800),
  })
  .transform((payload, ctx) => {
    const contract: { vars: z.ZodType<Record<string, unknown>>; secretsNamedBy?: string; alsoSecrets?: readonly string[] } = PLAYBOOKS[payload.playbook];
    const vars = contract.vars.safeParse(payload.extraVars);
    if (!vars.success) {
      for (const issue of vars.error.issues) ctx.addIssue({ ...issue, path: ["extraVars", ...issue.path] });
      return z.NEVER;
    }
    const named = contract.secretsNamedBy ? (vars.data[contract.secretsNamedBy] as string[] | undefined) ?? [] : [];
    for (const name of Object.keys(payload.secretVars)) {
      if (!named.includes(name) && !contract.alsoSecrets?.includes(name)) {
        const why = contract.secretsNamedBy ? `it is not listed in extraVars.${contract.secretsNamedBy}` : `${payload.playbook} takes no secrets`;
        ctx.addIssue({ code: "custom", path: ["secretVars", name], message: `unused secret: ${why}` });
      }
    }
    for (const name of named) {
      if (!(name in payload.secretVars)) ctx.addIssue({ code: "custom", path: ["extraVars", contract.secretsNamedBy ?? "", name], message: "names a secret that is not in secretVars" });
    }
    return { ...payload, extraVars: vars.data };
  });

export const ProvisionPayload = z.strictObject({
  /** Check mode: report what would change and change nothing. */
  check: z.boolean().default(false),
  extraVars: ProvisionVars.default({}),
  timeoutSeconds: timeout(3600),
});

/** A git branch name, as refs allow it (no "..", no leading "-"). */
export const BranchName = z.string().regex(/^(?!-)(?!.*\.\.)[A-Za-z0-9._/-]{1,100}$/, "must be a branch name");

/**
 * repo.scaffold: renders a template from runner/templates/ with `values` and pushes it as the first
 * commit of an empty repository. A branch that already exists is left as it is (its head is reported),
 * so a retried job changes nothing.
 */
export const RepoScaffoldPayload = z.strictObject({
  template: TemplateName,
  repoUrl: z.url({ protocol: /^https?$/ }),
  branch: BranchName.default("main"),
  values: TemplateValues.default({}),
  /** The git host's token: sent as an HTTP header, never in a URL or an argument, and masked in reports. */
  secrets: z.strictObject({ GIT_TOKEN: z.string().min(1).max(MAX_SECRET_VALUE_CHARS) }),
  author: z.strictObject({ name: z.string().min(1).max(100), email: z.string().min(3).max(200) }).default({ name: "Orchestrator Preparer", email: "preparer@orchestrator.invalid" }),
  message: z.string().min(1).max(500).default("Scaffold from the template"),
  timeoutSeconds: timeout(120),
});

/** The most lines release.logs reads back at once. */
export const MAX_LOG_LINES = 2000;

/**
 * release.logs: the last lines a running release wrote (stdout and stderr, oldest first), read from the
 * Docker engine. Every value of the release's env file is masked in them, but those of the variables
 * named in `plain` (computed, not secret: PORT, DOMAIN…): a secret the app printed, or a URL that
 * carried one, never leaves the server.
 */
export const ReleaseLogsPayload = z.strictObject({
  project: ReleaseProject,
  release: ReleaseId,
  tail: z.number().int().min(1).max(MAX_LOG_LINES).default(200),
  plain: z.array(EnvName).max(100).default([]),
  timeoutSeconds: timeout(30),
});

export const JobPayloads = {
  noop: NoopPayload,
  "docker.run": DockerRunPayload,
  "caddy.sync": CaddySyncPayload,
  "health.check": HealthCheckPayload,
  "acceptance.check": AcceptanceCheckPayload,
  "ansible.playbook": AnsiblePlaybookPayload,
  provision: ProvisionPayload,
  "repo.scaffold": RepoScaffoldPayload,
  "release.logs": ReleaseLogsPayload,
} as const satisfies Record<JobType, z.ZodType>;

export type JobPayload<T extends JobType> = z.infer<(typeof JobPayloads)[T]>;

/** The payload field holding each job type's secret values (name → value). */
const SECRET_FIELD: Partial<Record<string, string>> = { "docker.run": "secretEnv", "ansible.playbook": "secretVars", "repo.scaffold": "secrets" };

function secretsOf(type: string, payload: Record<string, unknown>): { field: string; secrets: Record<string, unknown> } | null {
  const field = SECRET_FIELD[type];
  const secrets = field ? payload[field] : undefined;
  return field && secrets && typeof secrets === "object" ? { field, secrets: secrets as Record<string, unknown> } : null;
}

/** Every secret value a payload carries, so that reports can mask them. */
export function payloadSecrets(type: JobType, payload: Record<string, unknown>): string[] {
  const found = secretsOf(type, payload);
  return found ? Object.values(found.secrets).filter((value): value is string => typeof value === "string" && value.length > 0) : [];
}

/** The payload with secret values replaced, for API responses and stored copies shown to people. */
export function redactPayload(type: string, payload: Record<string, unknown>): Record<string, unknown> {
  const found = secretsOf(type, payload);
  if (!found) return payload;
  return { ...payload, [found.field]: Object.fromEntries(Object.keys(found.secrets).map((name) => [name, "[redacted]"])) };
}

/** One line naming each problem in a payload; a bad record key (zod's `invalid_key`) names why. */
export function describePayloadIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) => {
      const path = issue.path.join(".") || "payload";
      const inner = issue.code === "invalid_key" ? issue.issues.map((i) => i.message).join(", ") : "";
      return `${path}: ${inner || issue.message}`;
    })
    .join("; ");
}
