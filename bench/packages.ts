/**
 * `npm run bench -- packages [--rounds 2]`: what the package cache saves a TypeScript project's
 * Developer rounds.
 *
 * Each round is the install a Developer round of the typescript-http kind does (`npm install` in a new
 * checkout of the template's package.json, in a new coding-worker container), run by the runner's own
 * docker.run executor with `registries: ["npm"]`: through the job's egress proxy to the npm registry
 * stand-in (node_modules' packages), with the owner's package cache mounted, and node_modules restored
 * and kept per lockfile as orchestrator-develop does (runner/images/coding-worker/orchestrator-packages).
 * Round 1 of an owner starts with an empty cache; the later rounds of the same owner find its packages,
 * and the tree round 1 installed, there. Printed per round:
 * the install's own time (measured inside the container), the tarballs the registry sent, and the
 * ratio to round 1. The baselines, in the same run: round 2 with the cache of tarballs alone (no kept
 * node_modules), and round 2 for another owner (an empty cache).
 * Goal: a second round spends at most half of the first's time installing.
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import Docker from "dockerode";
import { ensureDockerEngine } from "../scripts/lib/docker-engine.ts";
import { STANDIN_HOST } from "../scripts/lib/engineering-stack.ts";
import { LOCAL_RELEASE_TARGETS } from "../scripts/lib/standins-network.ts";
import { ensureLocalCodingWorker } from "../scripts/lib/images.ts";
import { ROOT } from "../scripts/lib/local-stack.ts";
import { NpmRegistryServer } from "../standins/npm-registry.ts";
import { DockerRunPayload, egressTarget } from "../src/shared/job-payloads.ts";
import { RunnerConfig } from "../runner/src/config.ts";
import { EgressGateway } from "../runner/src/egress.ts";
import { dockerRun } from "../runner/src/executors/docker-run.ts";
import { cacheVolume } from "../runner/src/registries.ts";
import { round } from "./stats.ts";

const GOAL_RATIO = 0.5;

export async function packages(options: { rounds: number }): Promise<void> {
  const engine = await ensureDockerEngine();
  const docker = new Docker({ socketPath: engine.socketPath });
  const image = await ensureLocalCodingWorker(docker);
  const registry = await new NpmRegistryServer().start(0, STANDIN_HOST);
  const key = "A".repeat(43);
  const config = RunnerConfig.parse({
    edge: "http://127.0.0.1:1",
    runnerId: "run_bench",
    server: "bench",
    privateKey: key,
    publicKey: key,
    controlPlanePublicKey: key,
    docker: { socketPath: engine.socketPath, egress: { internalTargets: [egressTarget(registry.url)], releaseInternalTargets: LOCAL_RELEASE_TARGETS } },
    registries: { npm: `${registry.url}/` },
  });
  const egress = new EgressGateway(docker, config.docker.egress);
  // The template's manifest, with a name: what a new checkout holds before the Developer's install.
  const manifest = readFileSync(join(ROOT, "runner", "templates", "typescript-http", "package.json"), "utf8").replace("{{project_name}}", "bench-app");
  const owners = [0, 1, 2].map(() => `bench${randomBytes(4).toString("hex")}`);

  /** One Developer round's install: a new container and checkout (with the lockfile of a round before, if any), `npm install`. */
  /** `trees`: as orchestrator-develop does, node_modules restored for the lockfile before the install (timed with it) and kept after. */
  const install = async (owner: string, lockfile: string | null, trees = true): Promise<{ installMs: number; tarballs: number; lockfile: string }> => {
    const before = registry.downloads.length;
    const script = [
      "mkdir -p /work/repo && cd /work/repo",
      `printf '%s' "$MANIFEST" > package.json`,
      ...(lockfile ? [`printf '%s' "$LOCKFILE" > package-lock.json`] : []),
      "start=$(date +%s%N)",
      ...(trees ? ["orchestrator-packages restore /work/repo >/dev/null"] : []),
      "npm install --loglevel=error >/dev/null",
      'echo "install-ms $(( ($(date +%s%N) - start) / 1000000 ))"',
      ...(trees ? ["orchestrator-packages save /work/repo >/dev/null"] : []),
    ].join(" && ");
    const payload = DockerRunPayload.parse({
      image,
      cmd: ["sh", "-c", script],
      user: "worker",
      network: "egress",
      registries: ["npm"],
      cacheScope: owner,
      env: { MANIFEST: manifest, ...(lockfile ? { LOCKFILE: lockfile } : {}) },
      cpus: 1,
      memoryMb: 2048,
      collect: ["/work/repo/package-lock.json"],
      timeoutSeconds: 300,
    });
    const lines: string[] = [];
    const jobId = `job_bench_packages_${randomBytes(6).toString("hex")}`;
    const outcome = await dockerRun(payload, { jobId, signal: new AbortController().signal, config, egress, botGateway: null, log: (line) => lines.push(line), progress: () => undefined });
    await outcome.afterReport?.();
    const measured = lines.map((line) => /^install-ms (\d+)$/.exec(line)?.[1]).find(Boolean);
    const files = (outcome.data?.files ?? {}) as Record<string, { content?: string }>;
    const written = files["/work/repo/package-lock.json"]?.content;
    if (!outcome.ok || !measured || !written) throw new Error(`the install failed: ${outcome.message}\n${lines.slice(-20).join("\n")}`);
    return { installMs: Number(measured), tarballs: registry.downloads.length - before, lockfile: written };
  };

  try {
    // The stand-in packs each tarball once, on its first request: done before anything is measured, as a real registry has them packed.
    const warm = await install(owners[2] ?? "", null);
    console.log(JSON.stringify({ bench: "packages", case: "the registry stand-in's warm-up (not counted)", installMs: warm.installMs, tarballs: warm.tarballs }));
    const first = await install(owners[0] ?? "", null);
    console.log(JSON.stringify({ bench: "packages", case: "round 1: the scaffold's package.json, an empty cache", installMs: first.installMs, tarballs: first.tarballs }));
    for (let index = 2; index <= options.rounds; index += 1) {
      const later = await install(owners[0] ?? "", first.lockfile);
      const ratio = round(later.installMs / first.installMs, 2);
      console.log(JSON.stringify({ bench: "packages", case: `round ${index}: round 1's lockfile, the owner's cache and the node_modules kept for it`, installMs: later.installMs, tarballs: later.tarballs, ratioToRound1: ratio, goalRatio: GOAL_RATIO, met: ratio <= GOAL_RATIO }));
    }
    // What each part saves: the tarballs' cache alone, then no cache.
    const tarballsOnly = await install(owners[0] ?? "", first.lockfile, false);
    console.log(JSON.stringify({ bench: "packages", case: "baseline: round 2 with the owner's cache of tarballs alone (no kept node_modules)", installMs: tarballsOnly.installMs, tarballs: tarballsOnly.tarballs, ratioToRound1: round(tarballsOnly.installMs / first.installMs, 2) }));
    const uncached = await install(owners[1] ?? "", first.lockfile, false);
    console.log(JSON.stringify({ bench: "packages", case: "baseline: round 2 with an empty cache (another owner)", installMs: uncached.installMs, tarballs: uncached.tarballs, ratioToRound1: round(uncached.installMs / first.installMs, 2) }));
  } finally {
    await Promise.all(owners.map((owner) => docker.getVolume(cacheVolume("npm", owner)).remove().catch(() => undefined)));
    await registry.stop();
    await engine.stop();
  }
}
