/**
 * `npm run bench -- changes`: the change loop's two moments a person waits for, on the deploy fixture
 * (test/fixtures/deploy-app), through the real runner, Ansible, Docker and Caddy. One JSON line per case:
 *   ship   from "Ship it" (POST …/changes/1/ship: the pull request merged, production deployed from
 *          the merge) to production answering with the change, beside a plain deploy of the same
 *          merge commit (POST …/deploy {ref}) in the same run; goal: ship ≤ 1.2× the plain deploy.
 *          Both build on a warm cache: the change's files are built once by hand before (as its
 *          preview's build does), so neither pays for the first build of new files and the ratio is
 *          the ship's own overhead (the merge, the checks, the checkpoint).
 *   undo   from POST …/undo to production answering as before the change: a revert commit and the kept
 *          release started again, no image build; goal ≤ 10 s on this machine.
 * The change itself (its branch, pull request and record) is put in place as a passing change
 * request leaves it, without the engineering rounds, which `npm run bench -- engineering` measures.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import Docker from "dockerode";
import ws from "ws";
import { createDb } from "../src/db/client.ts";
import { changes as changeRows, checkpoints } from "../src/db/schema.ts";
import { changeBranch } from "../src/shared/changes.ts";
import type { TaskEvent } from "../src/shared/events.ts";
import { DeployHarness, type Fixture } from "../scripts/lib/deploy-harness.ts";
import { ensureDockerEngine, ensureTestImage } from "../scripts/lib/docker-engine.ts";
import { ensureLocalCodingWorker, ensureReleaseBase } from "../scripts/lib/images.ts";
import { startLocalDatabase } from "../scripts/lib/local-db.ts";
import { removeBenchReleases, stepTimes, untilAnswers } from "./deploy.ts";
import { nowMs, round } from "./stats.ts";

const run = promisify(execFile);
const SHIP_GOAL_RATIO = 1.2;
const UNDO_GOAL_MS = 10_000;

export async function changes(): Promise<void> {
  const id = () => randomBytes(6).toString("hex");
  const engine = await ensureDockerEngine();
  const docker = new Docker({ socketPath: engine.socketPath });
  await ensureTestImage(docker);
  const image = await ensureLocalCodingWorker(docker);
  await ensureReleaseBase(docker);
  const db = await startLocalDatabase("bench_changes");
  const handle = createDb({ databaseUrl: db.databaseUrl, wsProxy: db.wsProxy, webSocketConstructor: ws });
  const h = await DeployHarness.start({ databaseUrl: db.databaseUrl, dbWsProxy: db.wsProxy, adminKey: `ork_bench${randomBytes(16).toString("hex")}`, dockerSocket: engine.socketPath, image, handle: "bench-box" });
  try {
    const fixture = await h.newFixture("bench");
    await h.putSecrets(fixture, { WEATHER_API_KEY: "bench-key" });
    // v1: built, its tests passed (a checkpoint), deployed.
    const v1 = await h.pushVersion(fixture, "v1");
    await handle.db.insert(checkpoints).values({ id: `ckp_${id()}`, projectId: fixture.projectId, number: 1, kind: "build", summary: "v1", commitSha: v1, tests: "bench", acceptance: [] });
    const first = await h.ended(await h.start(fixture));
    if (first.at(-1)?.type !== "task.completed") throw new Error(`v1 did not deploy: ${first.at(-1)?.message ?? ""}`);

    // Change #1 as a passing change request leaves it: v2 on its branch, a pull request open, main untouched.
    const change = { number: 1, branch: changeBranch(1, "answer v2") };
    await warmBuildCache(h, fixture, await h.pushVersion(fixture, "v2", change.branch));
    const token = h.env.github.issueToken();
    const opened = await fetch(`${h.env.github.url}/repos/${h.env.github.org}/${fixture.projectName}/pulls`, {
      method: "POST",
      headers: { authorization: `token ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ title: "v2", head: change.branch, base: "main" }),
    });
    if (opened.status !== 201) throw new Error(`opening the pull request: ${opened.status} ${await opened.text()}`);
    const pull = (await opened.json()) as { number: number; html_url: string };
    await handle.db.insert(changeRows).values({ id: `chg_${id()}`, projectId: fixture.projectId, number: 1, request: "answer v2", branch: change.branch, status: "open", taskId: `eng_${id()}`, pullRequest: { number: pull.number, url: pull.html_url } });

    // 1. Ship it, then a plain deploy of the same merge commit: each from its POST to its "Live:" event (the route moved, checked through Caddy).
    const t0 = nowMs();
    const shipped = await h.env.stack.api<{ change: { deployTaskId: string; mergeSha: string } }>(`/api/projects/${fixture.projectId}/changes/${change.number}/ship`, { method: "POST" });
    if (shipped.status !== 202) throw new Error(`ship: ${shipped.status} ${JSON.stringify(shipped.body)}`);
    await untilLive(h, shipped.body.change.deployTaskId);
    const shipMs = nowMs() - t0;
    await untilAnswers(h, fixture.domain, "v2", shipped.body.change.deployTaskId);
    const shipEvents = await h.ended(shipped.body.change.deployTaskId);
    if (shipEvents.at(-1)?.type !== "task.completed") throw new Error(`the ship's deploy did not complete: ${shipEvents.at(-1)?.message ?? ""}`);
    const t1 = nowMs();
    const plainTask = await h.start(fixture, "deploy", { ref: shipped.body.change.mergeSha });
    await untilLive(h, plainTask);
    const plainMs = nowMs() - t1;
    const plainEvents = await h.ended(plainTask);
    console.log(
      JSON.stringify({
        bench: "changes",
        case: "ship",
        ship_to_live_ms: round(shipMs),
        plain_deploy_to_live_ms: round(plainMs),
        ratio: round(shipMs / plainMs),
        goal_ratio: SHIP_GOAL_RATIO,
        meets_goal: shipMs / plainMs <= SHIP_GOAL_RATIO,
        note: "both on a warm build cache: the change's files were built once before, as its preview's build does",
        ship_steps: stepTimes(shipEvents),
        plain_steps: stepTimes(plainEvents),
      }),
    );

    // 2. Undo: back to v1 with its kept release, no build.
    const t2 = nowMs();
    const undone = await h.env.stack.api<{ deployTaskId: string | null; production: string }>(`/api/projects/${fixture.projectId}/undo`, { json: {} });
    if (undone.status !== 202 || !undone.body.deployTaskId) throw new Error(`undo: ${undone.status} ${JSON.stringify(undone.body)}`);
    const apiMs = nowMs() - t2;
    await untilAnswers(h, fixture.domain, "v1", undone.body.deployTaskId);
    const undoMs = nowMs() - t2;
    const undoEvents = await h.ended(undone.body.deployTaskId);
    const built = undoEvents.some((event) => /building [0-9a-f]{12}/.test(event.message));
    console.log(
      JSON.stringify({
        bench: "changes",
        case: "undo",
        undo_to_answering_ms: round(undoMs),
        undo_api_ms: round(apiMs),
        production: undone.body.production,
        image_built: built,
        goal_ms: UNDO_GOAL_MS,
        meets_goal: undoMs <= UNDO_GOAL_MS && !built,
        steps: stepTimes(undoEvents),
      }),
    );
  } finally {
    await h.stop();
    await handle.close();
    await removeBenchReleases(docker);
    await db.stop();
    await engine.stop();
  }
}

/** Waits for a deploy's "Live:" event (the route moved and checked through Caddy); the events so far. */
async function untilLive(h: DeployHarness, taskId: string): Promise<TaskEvent[]> {
  for (const deadline = Date.now() + 300_000; Date.now() < deadline; ) {
    const events = await h.events(taskId);
    if (events.some((event) => event.step === "health" && event.message.startsWith("Live:"))) return events;
    const end = events.find((event) => event.type === "task.failed" || event.type === "task.cancelled");
    if (end) throw new Error(`the deploy ended without going live: ${end.message}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`task ${taskId} did not go live within 5 minutes`);
}

/** Builds a commit's files once by hand (a throwaway tag), so the release builds after it find their layers cached. */
async function warmBuildCache(h: DeployHarness, fixture: Fixture, sha: string): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "bench-warm-"));
  const tag = `bench-warm/${fixture.projectName}:latest`;
  try {
    await h.git(["init", "-q", dir], tmpdir());
    await h.git(["fetch", "-q", "--depth", "1", `${h.env.github.url}/${h.env.github.org}/${fixture.projectName}.git`, sha], dir, h.env.github.issueToken());
    await h.git(["checkout", "-q", "FETCH_HEAD"], dir);
    await run("docker", ["build", "--quiet", "--tag", tag, dir]);
  } finally {
    await run("docker", ["image", "rm", "--force", tag]).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}
