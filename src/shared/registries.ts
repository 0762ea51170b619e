/**
 * Package registries jobs may install from, by name. A job names one; the runner's settings give its
 * URL (`registries` in runner/src/config.ts: the public registry, or a company mirror), let the job's
 * egress through to it, point the toolchain at it and mount the registry's package cache
 * (runner/src/registries.ts).
 */
import { z } from "zod";

export const PackageRegistry = z.enum(["npm", "pypi"]);
export type PackageRegistry = z.infer<typeof PackageRegistry>;

/**
 * Whose package caches a job shares (a volume per registry and scope). A job can write into the cache
 * it mounts, so the control plane gives each tenant a scope of its own: no job reads what another
 * tenant's job wrote.
 */
export const CacheScope = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "must be 1-64 letters, digits, '_' or '-'");

/**
 * Where a Python project's packages go: a directory in the checkout (left out of git by the templates'
 * .gitignore), on the tests' path (pytest.ini `pythonpath`) and the release's (the Dockerfile's
 * PYTHONPATH). Not a virtualenv: the toolchain is the image's Python, and a directory moves into the
 * release image with one COPY.
 */
export const PYTHON_PACKAGES_DIR = ".pydeps";

/**
 * How a Python project's packages install, the same for the Developer, the Tester and the release:
 * exactly what requirements.txt pins (its lockfile: every package with its `==` version, dependencies
 * included, as `pip freeze --path .pydeps` prints them) and nothing it does not name (`--no-deps`, so
 * a package the file forgot fails the tests, not the live app), replacing what an earlier install left
 * there (`--upgrade`); wheels only (the runner sets
 * PIP_ONLY_BINARY: a source package would run its own setup code to build).
 */
export const PIP_INSTALL = `python3 -m pip install --quiet --no-deps --upgrade --target ${PYTHON_PACKAGES_DIR} -r requirements.txt`;
