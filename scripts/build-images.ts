/**
 * `npm run build:images`: builds the coding-worker image (runner/images/coding-worker/) and tags it
 * `orchestrator/coding-worker:latest` as well as by content. By default on `debian:bookworm-slim`
 * with the packages installed by apt (a machine that can pull images, e.g. a VPS); with `--local` on
 * a Debian root made here by debootstrap from Debian's packages, pulling nothing (how the tests and
 * `npm run dev` build it). The engineering pipeline runs the image named by CODING_WORKER_IMAGE.
 */
import Docker from "dockerode";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { buildCodingWorker, ensureDebianBase, ensureNodeBase, NODE_BASE_TAG } from "./lib/images.ts";

const local = process.argv.includes("--local");
const docker = new Docker({ socketPath: process.env.DOCKER_SOCKET ?? "/var/run/docker.sock" });
const started = Date.now();
const base = local ? await ensureDebianBase(docker) : "debian:bookworm-slim";
// The image the worker takes Node from: made here from node_modules with --local, else the official one, pulled.
if (local) await ensureNodeBase(docker);
else await promisify(execFile)("docker", ["pull", "--quiet", NODE_BASE_TAG]);
const tag = await buildCodingWorker(docker, { base, preinstalled: local });
await docker.getImage(tag).tag({ repo: "orchestrator/coding-worker", tag: "latest" });
console.log(`built ${tag} (also orchestrator/coding-worker:latest) on ${base} in ${Math.round((Date.now() - started) / 1000)} s`);
