/**
 * Package registries jobs may install from, by name. A job names one; the runner's settings give its
 * URL (`registries` in runner/src/config.ts: the public registry, or a company mirror), let the job's
 * egress through to it, point the toolchain at it and mount the registry's package cache
 * (runner/src/registries.ts).
 */
import { z } from "zod";

export const PackageRegistry = z.enum(["npm"]);
export type PackageRegistry = z.infer<typeof PackageRegistry>;

/**
 * Whose package caches a job shares (a volume per registry and scope). A job can write into the cache
 * it mounts, so the control plane gives each tenant a scope of its own: no job reads what another
 * tenant's job wrote.
 */
export const CacheScope = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "must be 1-64 letters, digits, '_' or '-'");
