/**
 * `npm run bench -- deploy`: the deploy pipeline on the fixture project (test/fixtures/deploy-app),
 * through the real runner, Ansible, docker compose v2 and Caddy. One JSON line per case:
 *   first_healthy         POST …/deploy to the first healthy answer through Caddy, beside the same
 *                         steps by hand in the same run (check out, build, compose up, a Caddy load
 *                         and curl until it answers), and the ratio
 *   failed_requests       failed requests of a steady 20 requests/s client during a healthy
 *                         redeploy and during a bad one (goal: 0 and 0)
 *   unhealthy_to_failed   from the unhealthy verdict (the direct health check's result) to the
 *                         task's failure, with v1 answering throughout
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import Docker from "dockerode";
import { adminRequest } from "../runner/src/caddy-admin.ts";
import { renderCaddyConfig } from "../runner/src/executors/caddy-sync.ts";
import { startCaddy } from "../scripts/lib/caddy.ts";
import { DeployHarness, type Fixture, versionOf } from "../scripts/lib/deploy-harness.ts";
import { ensureDockerEngine, ensureTestImage, removeDataVolumes } from "../scripts/lib/docker-engine.ts";
import { ensureLocalCodingWorker, ensureReleaseBase } from "../scripts/lib/images.ts";
import { startLocalDatabase } from "../scripts/lib/local-db.ts";
import { freePortIn, TEST_RELEASE_PORTS } from "../scripts/lib/ports.ts";
import { nowMs, round } from "./stats.ts";

const run = promisify(execFile);

export async function deploy(): Promise<void> {
  const engine = await ensureDockerEngine();
  const docker = new Docker({ socketPath: engine.socketPath });
  await ensureTestImage(docker);
  const image = await ensureLocalCodingWorker(docker);
  await ensureReleaseBase(docker);
  const db = await startLocalDatabase("bench_deploy");
  const h = await DeployHarness.start({ databaseUrl: db.databaseUrl, dbWsProxy: db.wsProxy, adminKey: `ork_bench${randomBytes(16).toString("hex")}`, dockerSocket: engine.socketPath, image, handle: "bench-box" });
  try {
    const fixture = await h.newFixture("bench");
    const sha = await h.pushVersion(fixture, "v1");
    await h.putSecrets(fixture, { WEATHER_API_KEY: "bench-key" });

    // 1. The pipeline from POST to the first healthy answer, then the same by hand.
    const t0 = nowMs();
    const taskId = await h.start(fixture);
    await untilAnswers(h, fixture.domain, "v1", taskId);
    const pipelineMs = nowMs() - t0;
    const first = await h.ended(taskId);
    if (first.at(-1)?.type !== "task.completed") throw new Error(`the first deploy did not complete: ${first.at(-1)?.message ?? ""}`);
    const byHandMs = await byHand(h, fixture, sha);
    console.log(JSON.stringify({ bench: "deploy", case: "first_healthy", pipeline_ms: round(pipelineMs), by_hand_ms: round(byHandMs), ratio: round(pipelineMs / byHandMs), steps: stepTimes(first) }));

    // 2. Steady load through a healthy redeploy and a bad one.
    await h.pushVersion(fixture, "v2");
    const healthy = h.steadyLoad(fixture.domain);
    const second = await h.ended(await h.start(fixture));
    const healthyAnswers = await healthy.stop();
    if (second.at(-1)?.type !== "task.completed") throw new Error(`the healthy redeploy did not complete: ${second.at(-1)?.message ?? ""}`);
    await h.pushVersion(fixture, "v3-broken");
    const bad = h.steadyLoad(fixture.domain);
    const badTask = await h.start(fixture);
    const third = await h.ended(badTask);
    const badAnswers = await bad.stop();
    if (third.at(-1)?.type !== "task.failed") throw new Error("the bad release was not turned away");
    const failed = (answers: { status: number }[]) => answers.filter((answer) => answer.status !== 200).length;
    console.log(
      JSON.stringify({
        bench: "deploy",
        case: "failed_requests",
        requests_per_second: 20,
        healthy_redeploy: { requests: healthyAnswers.length, failed: failed(healthyAnswers) },
        bad_redeploy: { requests: badAnswers.length, failed: failed(badAnswers), served_by: [...new Set(badAnswers.map(versionOf))] },
        goal_failed: 0,
        meets_goal: failed(healthyAnswers) === 0 && failed(badAnswers) === 0,
      }),
    );

    // 3. From the unhealthy verdict to the task's end.
    const verdict = third.find((event) => event.step === "health.check" && /unhealthy/.test(event.message));
    const end = third.at(-1);
    if (!verdict || !end) throw new Error("the bad deploy's stream has no health verdict");
    console.log(
      JSON.stringify({
        bench: "deploy",
        case: "unhealthy_to_failed",
        ms: Date.parse(end.at) - Date.parse(verdict.at),
        v1_failed_requests_meanwhile: failed(badAnswers),
      }),
    );
  } finally {
    await h.stop();
    await removeBenchReleases(docker);
    await db.stop();
    await engine.stop();
  }
}

/** The releases a bench left (their database is gone with the bench's): they would hold release ports, and their images about 330 MB each. */
export async function removeBenchReleases(docker: Docker): Promise<void> {
  const left = await docker.listContainers({ all: true, filters: { label: ["orchestrator.release"] } });
  for (const container of left.filter((c) => (c.Labels["orchestrator.project"] ?? "").startsWith("bench-"))) await docker.getContainer(container.Id).remove({ force: true }).catch(() => undefined);
  const networks = await docker.listNetworks({ filters: { label: ["orchestrator.project"] } });
  for (const network of networks.filter((n) => (n.Labels?.["orchestrator.project"] ?? "").startsWith("bench-"))) await docker.getNetwork(network.Id).remove().catch(() => undefined);
  await removeDataVolumes(docker, (project) => project.startsWith("bench-"));
  const images = await docker.listImages({ filters: { reference: ["orchestrator-release/bench-*"] } });
  for (const image of images) await docker.getImage(image.Id).remove({ force: true }).catch(() => undefined);
}

/**
 * Where a deploy's time went: each stretch between two events of its stream, named by the event that
 * opened it (its step and the start of its message), in order; a step's stretches add up to its time.
 */
export function stepTimes(events: { at: string; step?: string | null; message: string }[]): { step: string; ms: number }[] {
  const stretches: { step: string; ms: number }[] = [];
  for (let i = 0; i + 1 < events.length; i++) {
    const [from, to] = [events[i], events[i + 1]];
    if (!from || !to) continue;
    stretches.push({ step: `${from.step ?? "-"}: ${from.message.slice(0, 50)}`, ms: Date.parse(to.at) - Date.parse(from.at) });
  }
  return stretches;
}

/** Polls through Caddy until `version` answers; gives up when the task ends without it, or after 5 minutes. */
export async function untilAnswers(h: DeployHarness, host: string, version: string, taskId: string): Promise<void> {
  const deadline = Date.now() + 300_000;
  for (let poll = 0; Date.now() < deadline; poll++) {
    const answer = await h.visit(host);
    if (answer.status === 200 && versionOf(answer) === version) return;
    if (poll % 20 === 19) {
      const end = (await h.events(taskId)).find((event) => event.type === "task.failed" || event.type === "task.cancelled");
      if (end) throw new Error(`the deploy ended without answering: ${end.message}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`${host} did not answer ${version} within 5 minutes`);
}

/** The same release by hand: fetch the commit, build, compose up, load a Caddy route, curl until it answers. */
async function byHand(h: DeployHarness, fixture: Fixture, sha: string): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), "deploy-by-hand-"));
  const caddy = await startCaddy();
  const port = await freePortIn(TEST_RELEASE_PORTS);
  const tag = `bench-by-hand/${fixture.projectName}:latest`;
  const composeProject = `byhand-${randomBytes(3).toString("hex")}`;
  try {
    const t0 = nowMs();
    await h.git(["init", "-q", join(dir, "src")], dir);
    await h.git(["fetch", "-q", "--depth", "1", `${h.env.github.url}/${h.env.github.org}/${fixture.projectName}.git`, sha], join(dir, "src"), h.env.github.issueToken());
    await h.git(["checkout", "-q", "FETCH_HEAD"], join(dir, "src"));
    await run("docker", ["build", "--quiet", "--tag", tag, join(dir, "src")]);
    writeFileSync(join(dir, ".env"), "WEATHER_API_KEY=bench-key\n");
    writeFileSync(join(dir, "compose.yml"), `services:\n  app:\n    image: ${tag}\n    env_file: [.env]\n    ports: ["127.0.0.1:${port}:8000"]\n`);
    await run("docker", ["compose", "--project-name", composeProject, "--project-directory", dir, "up", "--detach"]);
    const config = renderCaddyConfig([{ domain: fixture.domain, upstreamPort: port }], { adminSocket: caddy.adminSocket, configPath: caddy.configPath, listen: [`127.0.0.1:${caddy.httpPort}`], disableTls: true, binary: "caddy" });
    const loaded = await adminRequest(caddy.adminSocket, "POST", "/load", JSON.stringify(config));
    if (loaded.status !== 200) throw new Error(`caddy /load: ${loaded.status} ${loaded.body}`);
    for (;;) {
      const status = await get(`${caddy.httpUrl}/`, fixture.domain);
      if (status === 200) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return nowMs() - t0;
  } finally {
    await run("docker", ["compose", "--project-name", composeProject, "--project-directory", dir, "down", "--timeout", "1"]).catch(() => undefined);
    await run("docker", ["image", "rm", "--force", tag]).catch(() => undefined);
    await caddy.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

function get(url: string, host: string): Promise<number> {
  return new Promise((resolve) => {
    const req = request(url, { headers: { host }, agent: false, timeout: 2000 }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", () => resolve(0));
    req.on("timeout", () => req.destroy());
    req.end();
  });
}
