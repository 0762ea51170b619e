/**
 * Package registries for docker.run jobs that name them (`registries: ["npm"]`): where each one is
 * (the runner's settings), what the container's toolchain is told, and the package cache it shares.
 *
 * The cache is a Docker volume per registry and cache scope (`orchestrator-cache-npm-<scope>`), kept
 * between jobs: a project's second install downloads nothing it downloaded before. The job's payload
 * names the scope (the control plane gives each tenant its own), because a job can write into the
 * cache it mounts: a cache shared across tenants would let one tenant's code plant packages another
 * tenant's install then trusts.
 */
import type Docker from "dockerode";
import { egressTarget } from "../../src/shared/job-payloads.ts";
import { PIP_INSTALL, type PackageRegistry, PYTHON_PACKAGES_DIR } from "../../src/shared/registries.ts";
import type { RunnerConfig } from "./config.ts";

/** Where the coding-worker image has each registry's cache directory (owned by its `worker` user). */
const CACHE_DIRS: Record<PackageRegistry, string> = { npm: "/var/cache/orchestrator/npm", pypi: "/var/cache/orchestrator/pypi" };
/** On each cache volume, with its registry: what an operator lists or prunes them by. */
export const CACHE_LABEL = "orchestrator.package-cache";

export interface RegistryAccess {
  /** host:port destinations the job's egress proxy lets through. */
  egress: string[];
  /** The toolchains' settings, into the container's environment. */
  env: Record<string, string>;
  /** `volume:path` binds of the package caches. */
  binds: string[];
  /** The volumes, to make (labelled) before the container mounts them. */
  volumes: { name: string; registry: PackageRegistry }[];
}

export function registryAccess(registries: readonly PackageRegistry[], settings: RunnerConfig["registries"], cacheScope: string): RegistryAccess {
  const access: RegistryAccess = { egress: [], env: {}, binds: [], volumes: [] };
  for (const registry of registries) {
    const volume = cacheVolume(registry, cacheScope);
    access.volumes.push({ name: volume, registry });
    access.binds.push(`${volume}:${CACHE_DIRS[registry]}`);
    if (registry === "npm") {
      access.egress.push(egressTarget(settings.npm));
      Object.assign(access.env, {
        npm_config_registry: settings.npm,
        // A lockfile's tarball URLs name the registry it was made against: fetch them from this one.
        npm_config_replace_registry_host: "always",
        npm_config_cache: CACHE_DIRS.npm,
        npm_config_update_notifier: "false",
        npm_config_fund: "false",
        npm_config_audit: "false",
      });
    } else {
      const hosts = [settings.pypi, ...(settings.pypiFiles ? [settings.pypiFiles] : [])];
      access.egress.push(...hosts.map(egressTarget));
      Object.assign(access.env, {
        PIP_INDEX_URL: settings.pypi,
        // pip refuses an index over plain HTTP unless told the host is trusted (a mirror on the server's own network).
        ...(settings.pypi.startsWith("http:") ? { PIP_TRUSTED_HOST: [...new Set(hosts.map((url) => new URL(url).hostname))].join(" ") } : {}),
        PIP_CACHE_DIR: CACHE_DIRS.pypi,
        // Wheels only: a source package runs its own setup code to build, with the job's network.
        PIP_ONLY_BINARY: ":all:",
        PIP_DISABLE_PIP_VERSION_CHECK: "1",
        PIP_NO_INPUT: "1",
        PIP_PROGRESS_BAR: "off",
      });
    }
  }
  return access;
}

export function cacheVolume(registry: PackageRegistry, cacheScope: string): string {
  return `orchestrator-cache-${registry}-${cacheScope}`;
}

/** Makes the cache volumes that do not exist yet (making one that exists is a no-op for the engine). */
export async function ensureCacheVolumes(docker: Docker, volumes: RegistryAccess["volumes"]): Promise<void> {
  await Promise.all(volumes.map(({ name, registry }) => docker.createVolume({ Name: name, Labels: { [CACHE_LABEL]: registry } })));
}

/** Fails, naming them, when requirements.txt has lines that are neither a comment nor `name[extras]==version`. */
const UNPINNED_REFUSED = `! grep -nvE '^[[:space:]]*(#.*)?$|^[[:space:]]*[A-Za-z0-9._-]+(\\[[A-Za-z0-9,._-]*\\])?[[:space:]]*==[[:space:]]*[A-Za-z0-9.+!_-]+[[:space:]]*(#.*)?$' requirements.txt >&2 || { echo 'requirements.txt must pin each package to one version (name==1.2.3), and name nothing else: the lines above do not' >&2; exit 1; }`;

interface InstallRecipe {
  files: string[];
  /** The files may all be absent (a project without packages): nothing installs, and `output` is an empty directory. */
  optional?: boolean;
  command: string[];
  output: string;
}

/**
 * How a release's dependencies are installed from each registry (deploy_project.yml's install step):
 * the files it needs from the checkout (the manifest and the lockfile, which must be there: a release
 * installs what the tests ran with; or, for Python, requirements.txt if the project has packages), the
 * command, and what it leaves for the image's build.
 */
export const INSTALL_RECIPES: Record<PackageRegistry, InstallRecipe> = {
  npm: { files: ["package.json", "package-lock.json"], command: ["npm", "ci", "--omit=dev", "--loglevel=error"], output: "node_modules" },
  // A Python project without requirements.txt has no packages; the release still gets an empty directory, which its Dockerfile copies.
  // A release installs what the tests ran with: every line of requirements.txt pins a version (`name==1.2.3`), or nothing installs.
  pypi: { files: ["requirements.txt"], optional: true, command: ["sh", "-c", `${UNPINNED_REFUSED} && mkdir -p ${PYTHON_PACKAGES_DIR} && ${PIP_INSTALL}`], output: PYTHON_PACKAGES_DIR },
};
