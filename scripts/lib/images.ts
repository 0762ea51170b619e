/**
 * The job images the engineering pipeline runs, built from local files: nothing is pulled.
 *
 * - A Debian 12 base, from Debian's own packages (debootstrap, minbase) imported into Docker. Its tag
 *   carries a hash of the package list, so it is built once per machine.
 * - A Node base under the official image's name (`node:22-bookworm-slim`): the Debian base with the
 *   node binary and npm from node_modules, laid out as the official image lays them out. The Node
 *   kinds' Dockerfiles start from it, and the coding worker takes Node from it.
 * - The coding-worker image (runner/images/coding-worker/Dockerfile) on that base, with the opencode
 *   binary from node_modules. Its tag carries a hash of everything that goes into it.
 *
 * `npm run build:images` (scripts/build-images.ts) builds the same Dockerfile for production, on a
 * normal base image with the packages installed by apt.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type Docker from "dockerode";
import { ROOT } from "./local-stack.ts";

const run = promisify(execFile);

/** What the coding-worker needs from Debian (the Dockerfile's apt line, for the local base). */
export const WORKER_PACKAGES = ["git", "ca-certificates", "python3", "python3-pip", "python3-pytest", "python3-pytest-cov", "ripgrep", "passwd"];
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

/** The image the Node kinds' Dockerfiles start from (`FROM node:22-bookworm-slim`), and where the coding worker takes Node from. */
export const NODE_BASE_TAG = "node:22-bookworm-slim";
const NODE_BINARY = join(ROOT, "node_modules", "node", "bin", "node");
const NPM_PACKAGE = join(ROOT, "node_modules", "npm");
/** The label that marks a Node base made here, with the node and npm versions it holds. */
const NODE_STAND_IN_LABEL = "orchestrator.local-stand-in";

function nodeStandInVersion(): string {
  const version = (dir: string) => (JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { version: string }).version;
  return `node ${version(join(ROOT, "node_modules", "node"))}, npm ${version(NPM_PACKAGE)}`;
}

/**
 * On a machine that cannot pull, `node:22-bookworm-slim` is made from the local Debian base with the
 * node binary (the `node` package) and npm (the `npm` package) from node_modules, where the official
 * image has them (/usr/local/bin/node, /usr/local/lib/node_modules/npm). A real image of that name,
 * pulled before, is kept; one made here from other versions is made again.
 */
export async function ensureNodeBase(docker: Docker): Promise<{ tag: string; built: boolean }> {
  const wanted = nodeStandInVersion();
  const existing = await docker
    .getImage(NODE_BASE_TAG)
    .inspect()
    .catch(() => null);
  const label = existing?.Config.Labels?.[NODE_STAND_IN_LABEL];
  if (existing && (label === undefined || label === wanted)) return { tag: NODE_BASE_TAG, built: false };
  for (const path of [NODE_BINARY, NPM_PACKAGE]) if (!existsSync(path)) throw new Error(`${path} is missing: run npm ci`);
  const base = await ensureDebianBase(docker);
  const context = mkdtempSync(join(tmpdir(), "node-base-"));
  try {
    copyFileSync(NODE_BINARY, join(context, "node"));
    cpSync(NPM_PACKAGE, join(context, "npm"), { recursive: true });
    writeFileSync(
      join(context, "Dockerfile"),
      [
        `FROM ${base}`,
        "COPY node /usr/local/bin/node",
        "COPY npm /usr/local/lib/node_modules/npm",
        "RUN chmod 0755 /usr/local/bin/node && ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx",
        `LABEL ${NODE_STAND_IN_LABEL}=${JSON.stringify(wanted)}`,
        'CMD ["node"]',
        "",
      ].join("\n"),
    );
    await run("docker", ["build", "--quiet", "--network", "none", "--tag", NODE_BASE_TAG, context], { maxBuffer: 16 * 1024 * 1024, env: { ...process.env, DOCKER_BUILDKIT: "0" } });
  } finally {
    rmSync(context, { recursive: true, force: true });
  }
  return { tag: NODE_BASE_TAG, built: true };
}

/** The content hash of the worker's build context: its files, the opencode binary's size and version, and the Node image's id. */
async function workerHash(docker: Docker, base: string, nodeImage: string): Promise<string> {
  const hash = createHash("sha256").update(base).update((await docker.getImage(nodeImage).inspect()).Id);
  for (const name of readdirSync(WORKER_DIR).sort()) hash.update(name).update(readFileSync(join(WORKER_DIR, name)));
  hash.update(String(statSync(OPENCODE_BINARY).size)).update(readFileSync(join(ROOT, "node_modules", "opencode-linux-x64", "package.json")));
  return hash.digest("hex").slice(0, 12);
}

/**
 * Builds the coding-worker image on `base` (installing its packages unless `preinstalled`), tagged by
 * content, and returns the tag; an image already built from the same content is reused.
 */
export async function buildCodingWorker(docker: Docker, options: { base: string; preinstalled: boolean; nodeImage?: string; tag?: string }): Promise<string> {
  if (!existsSync(OPENCODE_BINARY)) throw new Error(`${OPENCODE_BINARY} is missing: run npm ci (opencode-linux-x64 is an optional dependency, for linux x64 only)`);
  const nodeImage = options.nodeImage ?? NODE_BASE_TAG;
  const tag = options.tag ?? `orchestrator/coding-worker:${await workerHash(docker, options.base, nodeImage)}`;
  if (await hasImage(docker, tag)) return tag;
  const context = mkdtempSync(join(tmpdir(), "coding-worker-"));
  try {
    for (const name of readdirSync(WORKER_DIR)) copyFileSync(join(WORKER_DIR, name), join(context, name));
    copyFileSync(OPENCODE_BINARY, join(context, "opencode"));
    const args = ["build", "--quiet", "--network", "host", "--tag", tag, "--build-arg", `BASE=${options.base}`, "--build-arg", `NODE_IMAGE=${nodeImage}`, "--build-arg", `INSTALL_PACKAGES=${options.preinstalled ? "0" : "1"}`, context];
    await run("docker", args, { maxBuffer: 64 * 1024 * 1024, env: { ...process.env, DOCKER_BUILDKIT: "0" } });
  } finally {
    rmSync(context, { recursive: true, force: true });
  }
  return tag;
}

/** The coding-worker image for tests and `npm run dev`: on the local Debian base and Node base, offline. */
export async function ensureLocalCodingWorker(docker: Docker): Promise<string> {
  const base = await ensureDebianBase(docker);
  await ensureNodeBase(docker);
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
