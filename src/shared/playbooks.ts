/**
 * The Ansible playbooks a job may run, each with the variables it takes. The control plane checks
 * a job's variables against these before signing it, and the runner again before running it; a
 * playbook that is not listed here cannot be run by an `ansible.playbook` job at all, and a playbook
 * takes no variable its schema does not name. `provision.yml` is reachable only through the
 * `provision` job type (ProvisionVars): its variables end up in root's systemd units.
 *
 * Variables the runner sets from its own configuration (where files go, who owns them) are not in
 * these schemas, so no payload can set them.
 */
import { z } from "zod";
import { CacheScope, PackageRegistry } from "./registries.ts";

export const EnvName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "must be a variable name (letters, digits, _)");
/** A project's directory under the runner's deployments root: a DNS label, like a project name (or a preview's, `<project>--<n>`: up to 48 characters). */
/** A project's directory and compose name on a server: its name, or a preview's (<project>--<n>). */
export const ReleaseProject = z.string().regex(/^[a-z][a-z0-9-]{1,46}[a-z0-9]$/, "must be a project name (3-40 characters of a-z, 0-9 and '-'), or a preview's (<project>--<n>)");
/** A file name inside that directory: no slashes, no leading dot-dot. */
const FileName = z.string().regex(/^(?!\.\.?$)[A-Za-z0-9._-]{1,100}$/, "must be a plain file name (letters, digits, '.', '_', '-')");

/** write-env.yml: one env file for a project, `<deployments root>/<project>/<file>`, mode 0600. */
export const WriteEnvVars = z.strictObject({
  project: ReleaseProject,
  file: FileName.default(".env"),
  /** Plain values. */
  env_vars: z.record(EnvName, z.string().max(100_000)).default({}),
  /** Names of the job's secretVars to write too (a secret is written only where it is named). */
  secret_env: z.array(EnvName).max(500).default([]),
});

/** A release of a project: the deployment's id, which also names its compose project and image tag. */
export const ReleaseId = z.string().regex(/^[a-z0-9][a-z0-9_]{2,40}$/, "must be a release id (3-41 characters of a-z, 0-9 and _)");
const CommitSha = z.string().regex(/^[0-9a-f]{40}$/, "must be a full 40-character commit SHA");
const Port = z.number().int().min(1).max(65_535);

/**
 * deploy_project.yml: one release of a project under `<deployments root>/<project>/releases/<release>/`.
 *   build  check out `commit`, write the env file (0600), build the image, start it on 127.0.0.1:`host_port`
 *   start  start a release built before (a rollback): same image, a fresh port, no build
 *   stop   stop it; its image, compose file and env file stay for a rollback
 *   remove stop it and delete its image and files (undeploy); the project's data too with delete_data
 * Every release of a project mounts the project's data at /data (the volume or-data-<project>), which
 * outlives releases: redeploys, rollbacks and an undeploy keep it, unless the undeploy deletes it.
 * The compose file is the runner's own (hardened: no capabilities, limits, the project's network), not
 * the repository's: a model-written compose file could mount the host or join its network.
 * The release port must be one of the runner's release ports (checked by the runner, which knows them).
 */
const ReleaseBase = { project: ReleaseProject, release: ReleaseId };
/** The memory a release may take (its container's limit), unless a job says otherwise: what placement counts. */
export const RELEASE_MEMORY_MB = 512;
export const DeployProjectVars = z.discriminatedUnion("operation", [
  z.strictObject({
    ...ReleaseBase,
    operation: z.literal("build"),
    commit: CommitSha,
    repo_url: z.url({ protocol: /^https?$/ }),
    host_port: Port,
    container_port: Port.default(8000),
    memory_mb: z.number().int().min(32).max(65_536).default(RELEASE_MEMORY_MB),
    env_vars: z.record(EnvName, z.string().max(100_000)).default({}),
    /** Names of the job's secretVars that go into the env file; GIT_TOKEN (the clone's) never does. */
    secret_env: z.array(EnvName).max(500).default([]),
    /**
     * The project's dependencies, installed before the image builds (the build has no network): as its
     * lockfile says, in `image` (the coding worker: it has the toolchains, and its unprivileged user
     * owns the package caches), with only the manifest and the lockfile, on a network of the job's own
     * whose one way out is the runner's egress proxy to the registry named; what the install leaves
     * (node_modules) goes into the checkout, for the Dockerfile to copy. Absent: nothing to install.
     */
    install: z
      .strictObject({
        image: z.string().min(1).max(300),
        registry: PackageRegistry,
        cache_scope: CacheScope,
      })
      .optional(),
    /**
     * A preview's data: when its data directory does not exist yet, it starts as a copy of this
     * project's (production's) data directory (src/deploy/previews.ts); absent: it starts empty.
     */
    copy_data_from: ReleaseProject.optional(),
  }),
  z.strictObject({ ...ReleaseBase, operation: z.literal("start"), host_port: Port, container_port: Port.default(8000), memory_mb: z.number().int().min(32).max(65_536).default(512) }),
  z.strictObject({ ...ReleaseBase, operation: z.literal("stop") }),
  /**
   * Undeploy: every listed release of the project, in one run (containers, images, files), then the
   * project's network; then, with delete_data, the project's data (none listed: the data alone).
   */
  z
    .strictObject({ project: ReleaseProject, operation: z.literal("remove"), releases: z.array(ReleaseId).max(500), delete_data: z.boolean().default(false) })
    .refine((vars) => vars.releases.length > 0 || vars.delete_data, { message: "remove needs releases, or delete_data", path: ["releases"] }),
]);
export type DeployProjectVars = z.input<typeof DeployProjectVars>;

/** facts.yml reports what the server runs; it takes nothing. */
export const FactsVars = z.strictObject({});

/** provision.yml, through the `provision` job type only: the firewall's settings and nothing else. */
export const ProvisionVars = z.strictObject({
  firewall_enabled: z.boolean().optional(),
  firewall_ssh_port: z.number().int().min(1).max(65_535).optional(),
  firewall_extra_tcp_ports: z.array(z.number().int().min(1).max(65_535)).max(50).optional(),
});

interface PlaybookContract {
  vars: z.ZodType<Record<string, unknown>>;
  /** The variable listing which secretVars the playbook uses; absent: it takes no secrets. */
  secretsNamedBy?: string;
  /** Secrets the playbook takes besides those it names (e.g. the clone's token). */
  alsoSecrets?: readonly string[];
}

/** The playbooks an `ansible.playbook` job may name, by file name. */
export const PLAYBOOKS = {
  "facts.yml": { vars: FactsVars },
  "write-env.yml": { vars: WriteEnvVars, secretsNamedBy: "secret_env" },
  "deploy_project.yml": { vars: DeployProjectVars, secretsNamedBy: "secret_env", alsoSecrets: ["GIT_TOKEN"] },
} as const satisfies Record<string, PlaybookContract>;

export const PlaybookName = z.enum(Object.keys(PLAYBOOKS) as [keyof typeof PLAYBOOKS, ...(keyof typeof PLAYBOOKS)[]], {
  error: () => `must be one of the playbooks a job may run: ${Object.keys(PLAYBOOKS).join(", ")} (provision.yml runs through the provision job type)`,
});
export type PlaybookName = z.infer<typeof PlaybookName>;
