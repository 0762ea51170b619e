/**
 * A real Docker engine and a test image for tests and the benchmark. Nothing can be pulled on the
 * machines this runs on, so the test image is built FROM scratch out of Debian's static busybox.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, copyFileSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Docker from "dockerode";

export const DEFAULT_DOCKER_SOCKET = "/var/run/docker.sock";
const DOCKERD = "/usr/sbin/dockerd";
const BUSYBOX = "/bin/busybox";
const INSTALL_HINT = "run `bash scripts/install-system-deps.sh` (installs docker.io and busybox-static)";

export interface DockerEngine {
  socketPath: string;
  /** Whether this call started the engine (and `stop` will stop it). */
  started: boolean;
  stop(): Promise<void>;
}

/** Whether an engine answers on `socketPath`. */
export async function pingDocker(socketPath: string): Promise<boolean> {
  try {
    // A short timeout: a stale socket file must not hang the caller.
    await new Docker({ socketPath, timeout: 2000 }).ping();
    return true;
  } catch {
    return false;
  }
}

/**
 * Uses the engine on /var/run/docker.sock if it answers, else (as root) starts `dockerd` with the
 * flags this machine needs (no bridge: containers get loopback only, or the host's network).
 * Call it once per run (e.g. from a global setup): a second caller racing the first uses the first's
 * engine but cannot know when the first will stop it. `nice`: the niceness the engine it starts (and so
 * every container) runs at.
 */
export async function ensureDockerEngine(options: { nice?: number } = {}): Promise<DockerEngine> {
  const socketPath = DEFAULT_DOCKER_SOCKET;
  if (await pingDocker(socketPath)) return { socketPath, started: false, stop: () => Promise.resolve() };
  if (process.getuid?.() !== 0) {
    throw new Error(`no Docker engine answers on ${socketPath}, and only root can start one: start dockerd (or ${INSTALL_HINT})`);
  }
  if (!existsSync(DOCKERD)) throw new Error(`no Docker engine answers on ${socketPath} and ${DOCKERD} is not installed: ${INSTALL_HINT}`);

  const logDir = mkdtempSync(join(tmpdir(), "orchestrator-dockerd-"));
  const logPath = join(logDir, "dockerd.log");
  const logFd = openSync(logPath, "a");
  let child: ChildProcess;
  try {
    const argv = [DOCKERD, "--bridge=none", "--iptables=false", "--ip-masq=false"];
    // Through nice(1), which execs dockerd: every thread and child (containerd, the shims, the containers) starts at that niceness.
    const [command = DOCKERD, ...args] = options.nice === undefined ? argv : ["nice", "-n", String(options.nice), ...argv];
    child = spawn(command, args, { stdio: ["ignore", logFd, logFd] });
  } finally {
    closeSync(logFd); // the child has its own copy
  }
  let exitCode: number | null | undefined;
  let diedAt = 0;
  const exited = new Promise<void>((resolve) => {
    const died = (code: number | null) => {
      exitCode = code;
      diedAt = Date.now();
      resolve();
    };
    child.once("exit", (code) => died(code));
    child.once("error", () => died(-1));
  });

  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (await pingDocker(socketPath)) {
      // If our dockerd died while another process's engine came up (two callers racing), use theirs.
      const ours = exitCode === undefined;
      return {
        socketPath,
        started: ours,
        stop: async () => {
          if (!ours || exitCode !== undefined) return;
          child.kill("SIGTERM");
          // dockerd stops its containers first (10 s grace each, in parallel); give it a little more.
          const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
          await exited;
          clearTimeout(timer);
        },
      };
    }
    // Ours died (e.g. another caller's dockerd holds the pid file): give theirs a few seconds to answer.
    if (exitCode !== undefined && Date.now() - diedAt > 5000) break;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  if (exitCode === undefined) {
    child.kill("SIGKILL");
    await exited;
  }
  const tail = readLogTail(logPath);
  throw new Error(`dockerd did not answer on ${socketPath} within 30 s (exit code ${String(exitCode)}; log ${logPath}):\n${tail}\nIf Docker is not installed, ${INSTALL_HINT}`);
}

function readLogTail(path: string): string {
  try {
    return readFileSync(path, "utf8").split("\n").slice(-15).join("\n");
  } catch {
    return "(no log)";
  }
}

/** The image tests run: busybox's applets in /bin, nothing else. */
export const TEST_IMAGE = "orchestrator-test/busybox:1";
const [TEST_REPO = "", TEST_TAG = ""] = TEST_IMAGE.split(":");

const DOCKERFILE = `FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
`;

/**
 * Builds TEST_IMAGE if the engine lacks it and returns its name. Safe to call from parallel test
 * files: each build gets its own temporary tag and is then tagged TEST_IMAGE (the last one wins; a
 * container already created from an earlier build keeps its image).
 */
export async function ensureTestImage(docker: Docker): Promise<string> {
  if (await imageExists(docker, TEST_IMAGE)) return TEST_IMAGE;
  if (!existsSync(BUSYBOX)) throw new Error(`${BUSYBOX} is missing (Debian's busybox-static provides it): ${INSTALL_HINT}`);

  const context = mkdtempSync(join(tmpdir(), "orchestrator-test-image-"));
  const buildTag = `build-${process.pid}-${randomBytes(4).toString("hex")}`;
  try {
    copyFileSync(BUSYBOX, join(context, "busybox"));
    writeFileSync(join(context, "Dockerfile"), DOCKERFILE);
    // The RUN step needs no network, and the engine here may have no bridge network to give it.
    const stream = await docker.buildImage({ context, src: ["Dockerfile", "busybox"] }, { t: `${TEST_REPO}:${buildTag}`, networkmode: "none", rm: true, forcerm: true });
    await followBuild(docker, stream);
    const built = docker.getImage(`${TEST_REPO}:${buildTag}`);
    await built.tag({ repo: TEST_REPO, tag: TEST_TAG });
    // Untag only; if a parallel build took TEST_IMAGE over, this may delete our copy, which nobody uses yet.
    await built.remove().catch(() => undefined);
  } finally {
    rmSync(context, { recursive: true, force: true });
  }
  return TEST_IMAGE;
}

async function imageExists(docker: Docker, name: string): Promise<boolean> {
  try {
    await docker.getImage(name).inspect();
    return true;
  } catch (error) {
    if (statusCode(error) === 404) return false;
    throw error;
  }
}

/** The build endpoint answers 200 and reports failures inside its JSON stream: surface them. */
function followBuild(docker: Docker, stream: NodeJS.ReadableStream): Promise<void> {
  return new Promise((resolve, reject) => {
    docker.modem.followProgress(stream, (error: Error | null, output: { error?: string; stream?: string }[]) => {
      if (error) return reject(error);
      const failed = output.find((entry) => entry.error);
      if (failed) {
        const log = output.map((entry) => entry.stream ?? "").join("");
        return reject(new Error(`building ${TEST_IMAGE} failed: ${failed.error}\n${log}`));
      }
      resolve();
    });
  });
}

function statusCode(error: unknown): number | undefined {
  return typeof error === "object" && error !== null && "statusCode" in error && typeof error.statusCode === "number" ? error.statusCode : undefined;
}

/**
 * Removes the release containers published on a port in `range` (they restart by themselves, so a
 * failed or killed test's releases outlive it) and the networks of their projects.
 */
export async function removeReleasesIn(docker: Docker, range: { from: number; to: number }): Promise<void> {
  const releases = await docker.listContainers({ all: true, filters: { label: ["orchestrator.release"] } });
  const inRange = releases.filter((c) => c.Ports.some((p) => p.PublicPort >= range.from && p.PublicPort <= range.to));
  const projects = new Set(inRange.map((c) => c.Labels["orchestrator.project"]).filter((name): name is string => Boolean(name)));
  for (const container of inRange) await docker.getContainer(container.Id).remove({ force: true }).catch(() => undefined);
  const networks = await docker.listNetworks({ filters: { label: ["orchestrator.project"] } });
  for (const network of networks.filter((n) => projects.has(n.Labels?.["orchestrator.project"] ?? ""))) await docker.getNetwork(network.Id).remove().catch(() => undefined);
  await removeDataVolumes(docker, (project) => projects.has(project));
}

/**
 * Removes the data volumes (or-data-<project>, runner/ansible/deploy_project.yml) of the projects a test
 * made: a server keeps a project's data after its releases are gone, and so would this machine.
 */
export async function removeDataVolumes(docker: Docker, mine: (project: string) => boolean): Promise<void> {
  const { Volumes: volumes } = await docker.listVolumes({ filters: { label: ["orchestrator.project"] } });
  for (const volume of (volumes ?? []).filter((v) => mine(v.Labels?.["orchestrator.project"] ?? ""))) await docker.getVolume(volume.Name).remove().catch(() => undefined);
}
