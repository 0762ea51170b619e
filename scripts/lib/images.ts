/**
 * The job images the engineering pipeline runs, built from local files: nothing is pulled.
 *
 * - A Debian 12 base, from Debian's own packages (debootstrap, minbase) imported into Docker. Its tag
 *   carries a hash of the package list, so it is built once per machine.
 * - The coding-worker image (runner/images/coding-worker/Dockerfile) on that base, with the opencode
 *   binary from node_modules. Its tag carries a hash of everything that goes into it.
 *
 * `npm run build:images` (scripts/build-images.ts) builds the same Dockerfile for production, on a
 * normal base image with the packages installed by apt.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type Docker from "dockerode";
import { ROOT } from "./local-stack.ts";

const run = promisify(execFile);

/** What the coding-worker needs from Debian (the Dockerfile's apt line, for the local base). */
export const WORKER_PACKAGES = ["git", "ca-certificates", "python3", "python3-pytest", "python3-pytest-cov", "ripgrep", "passwd"];
const DEBIAN_MIRROR = process.env.DEBIAN_MIRROR ?? "http://deb.debian.org/debian";
const WORKER_DIR = join(ROOT, "runner", "images", "coding-worker");
export const OPENCODE_BINARY = join(ROOT, "node_modules", "opencode-linux-x64", "bin", "opencode");

async function hasImage(docker: Docker, tag: string): Promise<boolean> {
  try {
    await docker.getImage(tag).inspect();
    return true;
  } catch {
    return false;
  }
}

/** A Debian 12 base image holding `packages`, made with debootstrap (needs root) and `docker import`. */
export async function ensureDebianBase(docker: Docker, packages: readonly string[] = WORKER_PACKAGES): Promise<string> {
  const tag = `orchestrator-local/debian:bookworm-${createHash("sha256").update(packages.join(",")).digest("hex").slice(0, 12)}`;
  if (await hasImage(docker, tag)) return tag;
  if (!existsSync("/usr/sbin/debootstrap")) throw new Error("debootstrap is not installed: run `bash scripts/install-system-deps.sh`");
  const root = mkdtempSync(join(tmpdir(), "debian-base-"));
  try {
    await run("debootstrap", ["--variant=minbase", `--include=${packages.join(",")}`, "bookworm", root, DEBIAN_MIRROR], { maxBuffer: 64 * 1024 * 1024 });
    // Apt's caches are of no use in the image.
    rmSync(join(root, "var", "cache", "apt", "archives"), { recursive: true, force: true });
    await run("sh", ["-c", `tar -C '${root}' -c . | docker import - '${tag}'`], { maxBuffer: 64 * 1024 * 1024 });
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  return tag;
}

/** The content hash of the worker's build context: its files and the opencode binary's size and version. */
function workerHash(base: string): string {
  const hash = createHash("sha256").update(base);
  for (const name of readdirSync(WORKER_DIR).sort()) hash.update(name).update(readFileSync(join(WORKER_DIR, name)));
  hash.update(String(statSync(OPENCODE_BINARY).size)).update(readFileSync(join(ROOT, "node_modules", "opencode-linux-x64", "package.json")));
  return hash.digest("hex").slice(0, 12);
}

/**
 * Builds the coding-worker image on `base` (installing its packages unless `preinstalled`), tagged by
 * content, and returns the tag; an image already built from the same content is reused.
 */
export async function buildCodingWorker(docker: Docker, options: { base: string; preinstalled: boolean; tag?: string }): Promise<string> {
  if (!existsSync(OPENCODE_BINARY)) throw new Error(`${OPENCODE_BINARY} is missing: run npm ci (opencode-linux-x64 is an optional dependency, for linux x64 only)`);
  const tag = options.tag ?? `orchestrator/coding-worker:${workerHash(options.base)}`;
  if (await hasImage(docker, tag)) return tag;
  const context = mkdtempSync(join(tmpdir(), "coding-worker-"));
  try {
    for (const name of readdirSync(WORKER_DIR)) copyFileSync(join(WORKER_DIR, name), join(context, name));
    copyFileSync(OPENCODE_BINARY, join(context, "opencode"));
    const args = ["build", "--quiet", "--network", "host", "--tag", tag, "--build-arg", `BASE=${options.base}`, "--build-arg", `INSTALL_PACKAGES=${options.preinstalled ? "0" : "1"}`, context];
    await run("docker", args, { maxBuffer: 64 * 1024 * 1024, env: { ...process.env, DOCKER_BUILDKIT: "0" } });
  } finally {
    rmSync(context, { recursive: true, force: true });
  }
  return tag;
}

/** The coding-worker image for tests and `npm run dev`: on the local Debian base, offline. */
export async function ensureLocalCodingWorker(docker: Docker): Promise<string> {
  const base = await ensureDebianBase(docker);
  return buildCodingWorker(docker, { base, preinstalled: true });
}

/** The base the deploy fixture's Dockerfile names (`FROM orchestrator-local/python:3`): the local Debian base, which has python3. */
export const RELEASE_BASE_TAG = "orchestrator-local/python:3";

export async function ensureReleaseBase(docker: Docker): Promise<string> {
  const base = await ensureDebianBase(docker);
  const [repo = "", tag = ""] = RELEASE_BASE_TAG.split(":");
  await docker.getImage(base).tag({ repo, tag });
  return RELEASE_BASE_TAG;
}

/** The base the project templates' Dockerfiles name (runner/templates/python-http: `FROM python:3.12-slim`). */
export const TEMPLATE_BASE_TAG = "python:3.12-slim";

/**
 * On a machine that cannot pull, the templates' base is made from the local Debian base (python3,
 * and `python` for the templates' commands) under the same name, so that a project built from a
 * template deploys here as it would on a VPS. A real image of that name, pulled before, is kept.
 */
export async function ensureTemplateBase(docker: Docker): Promise<{ tag: string; built: boolean }> {
  if (await hasImage(docker, TEMPLATE_BASE_TAG)) return { tag: TEMPLATE_BASE_TAG, built: false };
  const base = await ensureDebianBase(docker);
  const context = mkdtempSync(join(tmpdir(), "template-base-"));
  try {
    writeFileSync(join(context, "Dockerfile"), `FROM ${base}\nRUN ln -sf /usr/bin/python3 /usr/local/bin/python\nLABEL orchestrator.local-stand-in="${TEMPLATE_BASE_TAG}"\n`);
    await run("docker", ["build", "--quiet", "--network", "host", "--tag", TEMPLATE_BASE_TAG, context], { maxBuffer: 16 * 1024 * 1024, env: { ...process.env, DOCKER_BUILDKIT: "0" } });
  } finally {
    rmSync(context, { recursive: true, force: true });
  }
  return { tag: TEMPLATE_BASE_TAG, built: true };
}
