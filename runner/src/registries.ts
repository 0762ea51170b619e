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
import type { PackageRegistry } from "../../src/shared/registries.ts";
import type { RunnerConfig } from "./config.ts";

/** Where the coding-worker image has each registry's cache directory (owned by its `worker` user). */
const CACHE_DIRS: Record<PackageRegistry, string> = { npm: "/var/cache/orchestrator/npm" };
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
    const url = settings[registry];
    const volume = cacheVolume(registry, cacheScope);
    access.egress.push(egressTarget(url));
    access.volumes.push({ name: volume, registry });
    access.binds.push(`${volume}:${CACHE_DIRS[registry]}`);
    if (registry === "npm") {
      Object.assign(access.env, {
        npm_config_registry: url,
        // A lockfile's tarball URLs name the registry it was made against: fetch them from this one.
        npm_config_replace_registry_host: "always",
        npm_config_cache: CACHE_DIRS.npm,
        npm_config_update_notifier: "false",
        npm_config_fund: "false",
        npm_config_audit: "false",
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

/**
 * How a release's dependencies are installed from each registry (deploy_project.yml's install step):
 * the files it needs from the checkout (the manifest and the lockfile, which must be there: a release
 * installs what the tests ran with), the command, and what it leaves for the image's build.
 */
export const INSTALL_RECIPES: Record<PackageRegistry, { files: string[]; command: string[]; output: string }> = {
  npm: { files: ["package.json", "package-lock.json"], command: ["npm", "ci", "--omit=dev", "--loglevel=error"], output: "node_modules" },
};
