/**
 * The ansible executors against the real ansible-playbook, on this machine (`-c local`). Only
 * check mode for provision.yml: a real run would reconfigure the host.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import Docker from "dockerode";
import type { z } from "zod";
import { ensureTestImage, TEST_IMAGE } from "../../scripts/lib/docker-engine.ts";
import { waitFor } from "../../scripts/lib/processes.ts";
import { STANDIN_HOST } from "../../scripts/lib/engineering-stack.ts";
import { ensureLocalCodingWorker } from "../../scripts/lib/images.ts";
import { GitHubServer } from "../../standins/github-server.ts";
import { PyPiServer } from "../../standins/pypi-registry.ts";
import { freePortIn, TEST_RELEASE_PORTS } from "../../scripts/lib/ports.ts";
import { AnsiblePlaybookPayload, describePayloadIssues, egressTarget, ProvisionPayload } from "../../src/shared/job-payloads.ts";
import { RUNNER_ROOT } from "../src/config.ts";
import { ansibleArgs, ansibleEnv, ansiblePlaybook, playbookPython, runPlaybook, secretMasker, varsFileContent } from "../src/executors/ansible.ts";
import type { ExecutorOutcome } from "../src/executors/types.ts";
import { recordingContext, testConfig, type RecordingContext } from "./context.ts";

const SHIPPED = join(RUNNER_ROOT, "ansible");
const run = promisify(execFile);

/** Playbooks that exist only for these tests, in their own playbook directory. */
const FIXTURES: Record<string, string> = {
  "fail.yml": `
- name: Fixture
  hosts: all
  gather_facts: false
  tasks:
    - name: Fine first
      ansible.builtin.debug: { msg: fine }
    - name: Break on purpose
      ansible.builtin.fail: { msg: broken on purpose }
    - name: Never reached
      ansible.builtin.debug: { msg: unreachable }
`,
  // Prints the secret everywhere it can, with no no_log: only the executor's masking hides it.
  "leak.yml": `
- name: Leaky
  hosts: all
  gather_facts: false
  tasks:
    - name: Show {{ job_secrets.token }}
      ansible.builtin.debug: { msg: "the token is {{ job_secrets.token }}" }
    - name: Report it
      ansible.builtin.set_stats: { data: { token: "{{ job_secrets.token }}" } }
    - name: Fail with it
      ansible.builtin.command: sh -c 'echo "out {{ job_secrets.token }}"; echo "err {{ job_secrets.token }}" >&2; exit 3'
`,
  "sleep.yml": `
- name: Sleeper
  hosts: all
  gather_facts: false
  tasks:
    - name: Sleep
      ansible.builtin.command: sleep 617
`,
  // A task that ignores SIGTERM: only the SIGKILL to the process group stops it.
  "stubborn.yml": `
- name: Stubborn
  hosts: all
  gather_facts: false
  tasks:
    - name: Ignore SIGTERM
      ansible.builtin.shell: trap '' TERM; while true; do sleep 0.1; done; echo stubborn-619
`,
  "pause.yml": `
- name: Pauser
  hosts: all
  gather_facts: false
  tasks:
    - name: Pause
      ansible.builtin.pause: { seconds: 60 }
`,
};

let fixtureDir: string;
let scratch: string;

beforeAll(async () => {
  fixtureDir = await mkdtemp(join(tmpdir(), "ansible-fixtures-"));
  for (const [name, text] of Object.entries(FIXTURES)) await writeFile(join(fixtureDir, name), text);
  // Named like a playbook, but points outside the playbook directory.
  await symlink(join(SHIPPED, "facts.yml"), join(fixtureDir, "escape.yml"));
  scratch = await mkdtemp(join(tmpdir(), "ansible-test-"));
});

afterAll(async () => {
  await rm(fixtureDir, { recursive: true, force: true });
  await rm(scratch, { recursive: true, force: true });
});

const shippedContext = () => recordingContext(testConfig());
const fixtureContext = () => recordingContext(testConfig({ ansible: { playbookDir: fixtureDir } }));

const playbook = (input: z.input<typeof AnsiblePlaybookPayload>) => AnsiblePlaybookPayload.parse(input);
/** A test-only playbook, run by the executor's core (jobs can name only the shipped ones). */
const fixture = (name: string, context: RecordingContext, secretVars: Record<string, string> = {}) =>
  runPlaybook({ playbook: name, extraVars: {}, secretVars, check: false }, context);

interface TaskRow {
  name: string;
  status: string;
  detail?: string;
}
const tasksOf = (outcome: ExecutorOutcome) => (outcome.data?.tasks ?? []) as TaskRow[];

/** Everything the executor reported, as one string to search. */
const everything = (context: RecordingContext, outcome: ExecutorOutcome) =>
  JSON.stringify({ lines: context.lines, steps: context.steps, outcome });

async function until(condition: () => boolean, timeoutMs: number): Promise<void> {
  const start = Date.now();
  while (!condition()) {
    if (Date.now() - start > timeoutMs) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Command lines and environments of every process, read from /proc while `during` runs. */
async function watchProcesses<T>(during: Promise<T>): Promise<{ result: T; seen: { cmdline: string; environ: string }[] }> {
  const watcher = processWatcher();
  try {
    return { result: await during, seen: watcher.seen() };
  } finally {
    await watcher.stop();
  }
}

/** Listens on a free port of `range` (another try when someone took it first). */
async function holdPortIn(range: { from: number; to: number }): Promise<{ server: Server; port: number }> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePortIn(range);
    const server = createServer();
    const listening = await new Promise<boolean>((resolve) => {
      server.once("error", () => resolve(false));
      server.listen(port, "127.0.0.1", () => resolve(true));
    });
    if (listening) return { server, port };
    if (attempt >= 10) throw new Error(`could not hold a port in ${range.from}-${range.to}`);
  }
}

/** Looks at every process's command line and environment, again and again, until stopped. */
function processWatcher(): { seen(): { cmdline: string; environ: string }[]; stop(): Promise<void> } {
  const seen = new Map<string, { cmdline: string; environ: string }>();
  let done = false;
  const looking = (async () => {
    while (!done) {
      for (const pid of await readdir("/proc")) {
        if (!/^\d+$/.test(pid) || pid === String(process.pid)) continue;
        try {
          const cmdline = (await readFile(`/proc/${pid}/cmdline`, "utf8")).replaceAll("\0", " ");
          const environ = (await readFile(`/proc/${pid}/environ`, "utf8")).replaceAll("\0", " ");
          if (cmdline) seen.set(`${pid} ${cmdline}`, { cmdline, environ });
        } catch {
          // Exited while being read.
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  })();
  return {
    seen: () => [...seen.values()],
    async stop() {
      done = true;
      await looking;
    },
  };
}

/** The executor's private work directories whose vars file holds `text` (other tests may run some too). */
async function workDirsHolding(text: string): Promise<string[]> {
  const dirs = (await readdir(tmpdir())).filter((name) => name.startsWith("orchestrator-ansible-")).map((name) => join(tmpdir(), name));
  const holding: string[] = [];
  for (const dir of dirs) if ((await readFile(join(dir, "vars.yml"), "utf8").catch(() => "")).includes(text)) holding.push(dir);
  return holding;
}

/** Processes (not zombies) whose command line contains `text`. */
async function processesWith(text: string): Promise<string[]> {
  const found: string[] = [];
  for (const pid of await readdir("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    const cmdline = (await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).replaceAll("\0", " ");
    const state = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
    if (cmdline.includes(text) && !/^\d+ \(.*\) Z /.test(state)) found.push(cmdline);
  }
  return found;
}

/** A private repository of the GitHub stand-in holding `files` in one commit on main. */
async function pushedRepo(github: GitHubServer, name: string, files: Record<string, string>): Promise<{ token: string; repo: { clone_url: string }; commit: string }> {
  const token = github.issueToken();
  const created = await fetch(`${github.url}/orgs/${github.org}/repos`, { method: "POST", headers: { authorization: `token ${token}`, "content-type": "application/json" }, body: JSON.stringify({ name, private: true }) });
  const repo = (await created.json()) as { clone_url: string };
  const work = await mkdtemp(join(scratch, `${name}-`));
  const header = `Authorization: Basic ${Buffer.from(`x-access-token:${token}`).toString("base64")}`;
  const git = (...args: string[]) => run("git", ["-C", work, "-c", `http.extraHeader=${header}`, ...args]);
  for (const [file, content] of Object.entries(files)) await writeFile(join(work, file), content);
  await git("init", "-q", "-b", "main");
  await git("add", "-A");
  await git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one");
  const commit = (await git("rev-parse", "HEAD")).stdout.trim();
  await git("push", "-q", repo.clone_url, "HEAD:main");
  return { token, repo, commit };
}

describe("ansible.playbook", () => {
  it("runs facts.yml and reports parsed stats, tasks and the facts", async () => {
    const context = shippedContext();
    const outcome = await ansiblePlaybook(playbook({ playbook: "facts.yml" }), context);

    expect(outcome.ok, outcome.message).toBe(true);
    expect(outcome.exitCode).toBe(0);
    expect(outcome.message).toMatch(/^playbook facts\.yml: ok=\d+ changed=0 failed=0$/);
    expect(outcome.data?.check).toBe(false);
    expect(outcome.data?.stats).toEqual({
      localhost: { ok: 5, changed: 0, failed: 0, unreachable: 0, skipped: 0, rescued: 0, ignored: 0 },
    });
    expect(tasksOf(outcome).map((t) => [t.name, t.status])).toEqual([
      ["Gathering Facts", "ok"],
      ["Docker client version", "ok"],
      ["Docker engine version", "ok"],
      ["Caddy version", "ok"],
      ["Report", "ok"],
    ]);
    const facts = outcome.data?.customStats as Record<string, unknown>;
    expect(facts.os).toMatch(/^Debian 12/);
    expect(facts.caddy).toMatch(/^v?2\./);
    expect(facts.memory_mb).toMatchObject({ total: expect.any(Number) as number });
    expect((facts.disk as { free_mb: number }).free_mb).toBeGreaterThan(0);
    // Live: one progress report per task as it finished, stderr and task starts as log lines.
    expect(context.steps.map((s) => s.message)).toContain("Report server facts / Report: ok");
    expect(context.steps.every((s) => s.step === "task")).toBe(true);
    expect(context.lines).toContainEqual({ stream: "system", line: "TASK [Report server facts / Caddy version]" });
    // A clean run says nothing on stderr (no warnings about HOME, temp dirs or the interpreter).
    expect(context.lines.filter((l) => l.stream === "stderr")).toEqual([]);
  });

  it("writes an env file with a secret under the deployments root, which appears nowhere in what is reported or on any command line", async () => {
    const secret = `s3cr3t-"quoted"\\back-${Date.now()}`;
    const root = await mkdtemp(join(scratch, "deployments-"));
    const context = recordingContext(testConfig({ deploymentsRoot: root }));
    const { result: outcome, seen } = await watchProcesses(
      ansiblePlaybook(
        playbook({
          playbook: "write-env.yml",
          // A Jinja expression in a payload is data, not code: it is written as is.
          extraVars: { project: "weather-bot", env_vars: { NODE_ENV: "production", LITERAL: "{{ lookup('pipe', 'id') }}" }, secret_env: ["API_TOKEN"] },
          secretVars: { API_TOKEN: secret },
        }),
        context,
      ),
    );

    expect(outcome.ok, outcome.message).toBe(true);
    expect(outcome.message).toMatch(/^playbook write-env\.yml: ok=\d+ changed=\d+ failed=0$/);
    const dest = join(root, "weather-bot", ".env");
    expect(((await stat(dest)).mode & 0o777).toString(8)).toBe("600");
    expect(((await stat(join(root, "weather-bot"))).mode & 0o777).toString(8)).toBe("700");
    expect(await readFile(dest, "utf8")).toBe(`NODE_ENV=production\nLITERAL={{ lookup('pipe', 'id') }}\nAPI_TOKEN=${secret}\n`);
    expect(tasksOf(outcome)).toContainEqual(expect.objectContaining({ name: "Write the env file", status: "changed" }));

    expect(everything(context, outcome)).not.toContain(secret);
    expect(everything(context, outcome)).not.toContain(JSON.stringify(secret).slice(1, -1));
    // The watcher did see the run, and no process had the secret in its arguments or environment.
    expect(seen.some((p) => p.cmdline.includes("ansible-playbook") && p.cmdline.includes("write-env.yml"))).toBe(true);
    expect(seen.filter((p) => p.cmdline.includes(secret) || p.environ.includes(secret))).toEqual([]);
    // The variables file (and Ansible's temp files) went with the private work directory.
    expect(await workDirsHolding(secret)).toEqual([]);
  });

  it("lets no secret stand in for another variable: where the file goes stays the runner's to say", async () => {
    const root = await mkdtemp(join(scratch, "shadow-"));
    const outside = await mkdtemp(join(scratch, "shadow-outside-"));
    const context = recordingContext(testConfig({ deploymentsRoot: root }));
    // Named like the playbook's own variables and the runner's: read only as job_secrets.<name>.
    const names = ["dest", "deployments_root", "deployments_owner", "project_dir"];
    const outcome = await ansiblePlaybook(
      playbook({
        playbook: "write-env.yml",
        extraVars: { project: "app", env_vars: { A: "1" }, secret_env: names },
        secretVars: Object.fromEntries(names.map((name) => [name, join(outside, "x.sh")])),
      }),
      context,
    );
    expect(outcome.ok, outcome.message).toBe(true);
    expect(await readdir(outside)).toEqual([]);
    expect(await readFile(join(root, "app", ".env"), "utf8")).toContain(`dest=${join(outside, "x.sh")}`);
  });

  it("writes env files only inside the deployments root: paths, the root itself and symlinks are refused", async () => {
    const root = await mkdtemp(join(scratch, "confined-"));
    const outside = await mkdtemp(join(scratch, "outside-"));
    // What a job might try: a path of its own, a project or file that climbs out, or the root itself.
    for (const extraVars of [
      { dest: join(outside, "x.env"), project: "app" },
      { project: "../etc" },
      { project: "app", file: "../../x.env" },
      { project: "app", file: "sub/x.env" },
      { project: "app", deployments_root: outside },
    ]) {
      expect(AnsiblePlaybookPayload.safeParse({ playbook: "write-env.yml", extraVars }).success, JSON.stringify(extraVars)).toBe(false);
    }
    // A symlink planted where the project's directory goes (by a release, say) is not followed.
    await symlink(outside, join(root, "planted"));
    const context = recordingContext(testConfig({ deploymentsRoot: root }));
    const outcome = await ansiblePlaybook(playbook({ playbook: "write-env.yml", extraVars: { project: "planted", env_vars: { A: "1" } } }), context);
    expect(outcome.ok).toBe(false);
    expect(outcome.message).toContain("refusing to write through a symlink");
    expect(await readdir(outside)).toEqual([]);
  });

  it("works on a release only inside the deployments root: a symlink on its path is refused", async () => {
    const root = await mkdtemp(join(scratch, "releases-"));
    const outside = await mkdtemp(join(scratch, "outside-"));
    await writeFile(join(outside, "keep"), "x");
    // A symlink planted where the project's directory goes: a remove must not delete through it.
    await symlink(outside, join(root, "planted"));
    const context = recordingContext(testConfig({ deploymentsRoot: root }));
    const outcome = await ansiblePlaybook(playbook({ playbook: "deploy_project.yml", extraVars: { project: "planted", releases: ["rel_planted1"], operation: "remove" } }), context);
    expect(outcome.ok).toBe(false);
    expect(outcome.message).toContain(`refusing to work through a symlink: ${join(root, "planted")}`);
    expect(await readdir(outside)).toEqual(["keep"]);
    // Nor through one planted where the project's data goes, when the data is deleted.
    await mkdir(join(root, "datalink"), { mode: 0o700 });
    await symlink(outside, join(root, "datalink", "data"));
    const data = await ansiblePlaybook(playbook({ playbook: "deploy_project.yml", extraVars: { project: "datalink", releases: [], operation: "remove", delete_data: true } }), context);
    expect(data.ok).toBe(false);
    expect(data.message).toContain(`refusing to work through a symlink: ${join(root, "datalink", "data")}`);
    expect(await readdir(outside)).toEqual(["keep"]);
  });

  it("copies data into a preview only from the project the preview is of: another project's data is refused before anything runs", async () => {
    const root = await mkdtemp(join(scratch, "copy-"));
    await mkdir(join(root, "victim", "data"), { recursive: true });
    await writeFile(join(root, "victim", "data", "secret.db"), "another tenant's");
    const context = recordingContext(testConfig({ deploymentsRoot: root }));
    const build = (project: string, from: string) =>
      ansiblePlaybook(playbook({ playbook: "deploy_project.yml", extraVars: { project, release: "rel_copy1", operation: "build", commit: "a".repeat(40), repo_url: "http://127.0.0.1:9/x.git", host_port: TEST_RELEASE_PORTS.from, copy_data_from: from } }), context);
    for (const [project, from] of [["shop--1", "victim"], ["victim", "victim"], ["shop--1x", "shop"]] as const) {
      const outcome = await build(project, from);
      expect(outcome.ok, `${project} from ${from}`).toBe(false);
      expect(tasksOf(outcome).find((task) => task.status === "failed")?.name, `${project} from ${from}`).toBe("Check the request");
    }
    // The preview of this project's own change passes the request's checks (and fails later, at the checkout of a repository that is not there).
    const own = await build("shop--1", "shop");
    expect(own.ok).toBe(false);
    expect(tasksOf(own).find((task) => task.name === "Check the request")?.status).toBe("ok");
    expect(await readFile(join(root, "victim", "data", "secret.db"), "utf8")).toBe("another tenant's");
    expect(await readdir(join(root, "victim", "data"))).toEqual(["secret.db"]);
  });

  it("refuses to start a release whose image is gone, or on a port something else holds", async () => {
    const docker = new Docker();
    const image = await ensureTestImage(docker);
    const root = await mkdtemp(join(scratch, "releases-"));
    const context = recordingContext(testConfig({ deploymentsRoot: root }));
    const start = (release: string, port: number) =>
      ansiblePlaybook(playbook({ playbook: "deploy_project.yml", extraVars: { project: "startcheck", release, operation: "start", host_port: port } }), context);

    const gone = await start("rel_gone1", await freePortIn(TEST_RELEASE_PORTS));
    expect(gone.ok).toBe(false);
    expect(gone.message).toContain("release rel_gone1 has no image (orchestrator-release/startcheck:rel_gone1) on this server any more");

    // An image of its own, and a port taken by a server that is not a release.
    const [repo = "", tag = ""] = "orchestrator-release/startcheck:rel_held1".split(":");
    await docker.getImage(image).tag({ repo, tag });
    // A port of the release range that nothing holds, then held (other files' upstreams take random ones there).
    const { server: holder, port } = await holdPortIn(TEST_RELEASE_PORTS);
    try {
      const held = await start("rel_held1", port);
      expect(held.ok).toBe(false);
      expect(held.message).toContain(`port ${port} on 127.0.0.1 is already in use on this server, by something the control plane did not give it to`);
      expect(await docker.listContainers({ all: true, filters: { label: ["orchestrator.project=startcheck"] } })).toEqual([]);
    } finally {
      holder.close();
      await docker.getImage(`${repo}:${tag}`).remove().catch(() => undefined);
      await docker.getNetwork("or-startcheck").remove().catch(() => undefined);
      await docker.getVolume("or-data-startcheck").remove().catch(() => undefined);
    }
  });

  it("writes a release's compose file 0600 in place of a symlink, never through it", async () => {
    const docker = new Docker();
    const image = await ensureTestImage(docker);
    const root = await mkdtemp(join(scratch, "releases-"));
    const context = recordingContext(testConfig({ deploymentsRoot: root }));
    const release = "rel_comp1";
    const composePort = await freePortIn(TEST_RELEASE_PORTS);
    const run = (operation: "start" | "stop") =>
      ansiblePlaybook(playbook({ playbook: "deploy_project.yml", extraVars: { project: "composecheck", release, operation, ...(operation === "start" ? { host_port: composePort } : {}) } }), context);
    const dir = join(root, "composecheck", "releases", release);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    // What a build leaves beside it: the env file compose reads.
    await writeFile(join(dir, ".env"), "", { mode: 0o600 });
    const outside = join(scratch, "not-a-compose-file");
    await writeFile(outside, "keep");
    await symlink(outside, join(dir, "compose.yml"));
    const [repo = "", tag = ""] = `orchestrator-release/composecheck:${release}`.split(":");
    // The test image has no command of its own: a release image gets one, as a Dockerfile would give it.
    const base = await docker.createContainer({ Image: image, Cmd: ["true"] });
    await base.commit({ repo, tag, changes: 'CMD ["sleep", "3600"]' });
    await base.remove();
    // A data volume left naming a directory that is gone (another deployments root, say): made again.
    await docker.createVolume({ Name: "or-data-composecheck", Driver: "local", DriverOpts: { type: "none", o: "bind", device: join(scratch, "gone") }, Labels: { "orchestrator.project": "composecheck" } });
    try {
      const started = await run("start");
      expect(started.ok, started.message).toBe(true);
      const written = await lstat(join(dir, "compose.yml"));
      expect(written.isSymbolicLink()).toBe(false);
      expect((written.mode & 0o777).toString(8)).toBe("600");
      expect(await readFile(join(dir, "compose.yml"), "utf8")).toContain(`orchestrator.release: "${release}"`);
      expect(await readFile(outside, "utf8")).toBe("keep");
      expect((await readdir(dir)).filter((name) => name.startsWith(".compose."))).toEqual([]);
      // The project's data: a directory any user of the image may write, behind the volume /data mounts.
      expect(((await lstat(join(root, "composecheck", "data"))).mode & 0o777).toString(8)).toBe("777");
      const volume = await docker.getVolume("or-data-composecheck").inspect();
      expect(volume).toMatchObject({ Labels: { "orchestrator.project": "composecheck" }, Options: { type: "none", o: "bind", device: join(root, "composecheck", "data") } });
    } finally {
      await run("stop");
      await docker.getImage(`${repo}:${tag}`).remove().catch(() => undefined);
      await docker.getNetwork("or-composecheck").remove().catch(() => undefined);
      await docker.getVolume("or-data-composecheck").remove().catch(() => undefined);
    }
  });

  it("checks out a release with the repository token on no command line, and writes its env file 0600 in place of a symlink", async () => {
    const github = new GitHubServer();
    await github.start(0, "127.0.0.1");
    try {
      // A Dockerfile docker refuses at once: the build stops there, after the checkout and the env file.
      const { token, repo, commit } = await pushedRepo(github, "tokencheck", { Dockerfile: "NOT A DOCKERFILE\n" });

      const root = await mkdtemp(join(scratch, "checkout-"));
      const release = "rel_tok1";
      const dir = join(root, "tokencheck", "releases", release);
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const outside = join(scratch, "not-an-env-file");
      await writeFile(outside, "keep");
      await symlink(outside, join(dir, ".env"));
      const context = recordingContext(testConfig({ deploymentsRoot: root }));
      // The checkout's fetch is answered only once the watcher has seen it (its shell, which lives as
      // long as the fetch): a fetch from this machine is faster than a look at every process.
      const watcher = processWatcher();
      const fetching = () => watcher.seen().some((p) => p.cmdline.includes("git fetch -q --depth 1"));
      // Past the wait, the fetch goes on and the assertion below says what was missing.
      github.beforeGit = () => waitFor(() => (fetching() ? true : undefined), 30_000, () => "no fetch seen").catch(() => undefined);
      let outcome: ExecutorOutcome;
      try {
        outcome = await ansiblePlaybook(
          playbook({
            playbook: "deploy_project.yml",
            extraVars: { project: "tokencheck", release, operation: "build", commit, repo_url: repo.clone_url, host_port: await freePortIn(TEST_RELEASE_PORTS), env_vars: { MODE: "test" }, secret_env: ["API_KEY"] },
            secretVars: { GIT_TOKEN: token, API_KEY: "key-1234567890" },
          }),
          context,
        );
      } finally {
        await watcher.stop();
      }
      const seen = watcher.seen();

      expect(outcome.ok).toBe(false);
      expect(tasksOf(outcome).find((task) => task.status === "failed")?.name).toBe("Build the image, within the time and size limits, and start the release");
      expect((await run("git", ["-C", join(dir, "src"), "rev-parse", "HEAD"])).stdout.trim()).toBe(commit);
      const env = await lstat(join(dir, ".env"));
      expect(env.isSymbolicLink()).toBe(false);
      expect((env.mode & 0o777).toString(8)).toBe("600");
      expect(await readFile(join(dir, ".env"), "utf8")).toBe("MODE=test\nAPI_KEY=key-1234567890\n");
      expect(await readFile(outside, "utf8")).toBe("keep");
      expect((await readdir(dir)).filter((name) => name.startsWith(".env."))).toEqual([]);
      // The watcher saw the checkout; the token, raw or as git's header, was on no command line, and in
      // no environment but git's own header.
      expect(seen.some((p) => p.cmdline.includes("git fetch -q --depth 1"))).toBe(true);
      const basic = Buffer.from(`x-access-token:${token}`).toString("base64");
      expect(seen.filter((p) => p.cmdline.includes(token) || p.cmdline.includes(basic)).map((p) => p.cmdline)).toEqual([]);
      expect(seen.filter((p) => p.environ.includes(token)).map((p) => p.cmdline)).toEqual([]);
      expect(everything(context, outcome)).not.toContain(token);
      expect(everything(context, outcome)).not.toContain("key-1234567890");
    } finally {
      await github.stop();
    }
  });

  it("installs a release's dependencies only as a committed lockfile says: a repository without one is refused before anything installs, and the install's network goes with the job", async () => {
    const github = new GitHubServer();
    await github.start(0, "127.0.0.1");
    try {
      const { token, repo, commit } = await pushedRepo(github, "lockcheck", {
        "package.json": JSON.stringify({ name: "lockcheck", private: true, dependencies: { hono: "^4.13.0" } }),
        Dockerfile: "FROM scratch\nCOPY node_modules /node_modules\n",
      });

      const root = await mkdtemp(join(scratch, "lockcheck-root-"));
      const context = recordingContext(testConfig({ deploymentsRoot: root }));
      // Refused before the install runs: the image is never started.
      const install = { image: TEST_IMAGE, registry: "npm", cache_scope: "lockcheck" };
      const outcome = await ansiblePlaybook(
        playbook({
          playbook: "deploy_project.yml",
          extraVars: { project: "lockcheck", release: "rel_lock1", operation: "build", commit, repo_url: repo.clone_url, host_port: await freePortIn(TEST_RELEASE_PORTS), install },
          secretVars: { GIT_TOKEN: token },
        }),
        context,
      );
      expect(outcome.ok).toBe(false);
      const failed = tasksOf(outcome).find((task) => task.status === "failed");
      expect(failed?.name).toBe("Build the image, within the time and size limits, and start the release");
      expect(everything(context, outcome)).toContain("the repository has no package-lock.json, and a release installs its dependencies only as its lockfile says (package.json package-lock.json)");
      // Nothing was built, and the job's network for the install is gone with it.
      expect(existsSync(join(root, "lockcheck", "releases", "rel_lock1", "src", "node_modules"))).toBe(false);
      expect(await new Docker().listNetworks({ filters: { label: [`orchestrator.job=${context.jobId}`] } })).toEqual([]);
    } finally {
      await github.stop();
      await new Docker().getVolume("orchestrator-cache-npm-lockcheck").remove().catch(() => undefined);
    }
  });

  it("installs a Python release's packages as its requirements.txt pins them, into the checkout's .pydeps; without the file (or with comments only), .pydeps is there and empty", { timeout: 240_000 }, async () => {
    const github = new GitHubServer();
    await github.start(0, "127.0.0.1");
    const pypi = await new PyPiServer().start(0, STANDIN_HOST);
    const scope = `pydeps${process.pid}`;
    try {
      const image = await ensureLocalCodingWorker(new Docker());
      const root = await mkdtemp(join(scratch, "pydeps-root-"));
      const config = testConfig({ deploymentsRoot: root, docker: { egress: { internalTargets: [egressTarget(pypi.url)] } }, registries: { pypi: pypi.indexUrl, pypiFiles: null } });
      // The image's build copies .pydeps, then fails at once (no shell in scratch): what was installed stays in the checkout to look at.
      const dockerfile = "FROM scratch\nCOPY .pydeps /pydeps\nRUN true\n";
      const build = async (name: string, files: Record<string, string>) => {
        const { token, repo, commit } = await pushedRepo(github, name, { Dockerfile: dockerfile, ...files });
        const context = recordingContext(config);
        const outcome = await ansiblePlaybook(
          playbook({
            playbook: "deploy_project.yml",
            extraVars: { project: name, release: "rel_py1", operation: "build", commit, repo_url: repo.clone_url, host_port: await freePortIn(TEST_RELEASE_PORTS), install: { image, registry: "pypi", cache_scope: scope } },
            secretVars: { GIT_TOKEN: token },
          }),
          context,
        );
        return { reported: everything(context, outcome), src: join(root, name, "releases", "rel_py1", "src") };
      };

      const pinned = await build("pydeps", { "requirements.txt": "# pinned\nJinja2==3.1.2\nMarkupSafe==2.1.2\n" });
      expect(pinned.reported).toContain("dependencies installed");
      expect(pinned.reported).not.toContain("not found");
      expect(existsSync(join(pinned.src, ".pydeps", "jinja2", "__init__.py"))).toBe(true);
      expect(existsSync(join(pinned.src, ".pydeps", "markupsafe", "__init__.py"))).toBe(true);
      expect(pypi.downloads).toEqual(["Jinja2==3.1.2", "MarkupSafe==2.1.2"]);

      const none = await build("nopydeps", {});
      expect(none.reported).toContain("no dependencies to install (requirements.txt: none)");
      expect(none.reported).not.toContain("not found");
      expect(await readdir(join(none.src, ".pydeps"))).toEqual([]);
      // The template's requirements.txt, comments only: nothing to install either, and no container runs for it.
      const comments = await build("commentpydeps", { "requirements.txt": "# The service's packages, pinned.\n\n" });
      expect(comments.reported).toContain("no dependencies to install");
      expect(comments.reported).not.toContain("dependencies installed");
      expect(await readdir(join(comments.src, ".pydeps"))).toEqual([]);
      expect(pypi.downloads).toHaveLength(2);

      // Not a lockfile: a range, or a line that points pip elsewhere, installs nothing.
      const loose = await build("loosepydeps", { "requirements.txt": "MarkupSafe==2.1.2\nJinja2>=3\n--extra-index-url http://elsewhere/\n" });
      expect(loose.reported).toContain("2:Jinja2>=3");
      expect(loose.reported).toContain("3:--extra-index-url http://elsewhere/");
      expect(loose.reported).toContain("requirements.txt must pin each package to one version (name==1.2.3), and name nothing else");
      expect(existsSync(join(loose.src, ".pydeps"))).toBe(false);

      const broken = await build("badpydeps", { "requirements.txt": "Jinja2==9.9.9\n" });
      expect(broken.reported).toContain("the dependencies did not install (exit 1)");
      expect(existsSync(join(broken.src, ".pydeps"))).toBe(false);
    } finally {
      await github.stop();
      await pypi.stop();
      await new Docker().getVolume(`orchestrator-cache-pypi-${scope}`).remove().catch(() => undefined);
    }
  });

  it("masks secrets that a playbook prints, in logs, progress, failure details and set_stats", async () => {
    const secret = `leaky-${Date.now()}`;
    const context = fixtureContext();
    const outcome = await fixture("leak.yml", context, { token: secret });

    expect(outcome.ok).toBe(false);
    const reported = everything(context, outcome);
    expect(reported).not.toContain(secret);
    expect(outcome.data?.customStats).toEqual({ token: "[secret]" });
    expect(outcome.message).toContain("failed: Fail with it: non-zero return code: err [secret]");
    expect(context.lines).toContainEqual({ stream: "stdout", line: "the token is [secret]" });
    expect(context.lines).toContainEqual({ stream: "stdout", line: "out [secret]" });
    expect(context.lines).toContainEqual({ stream: "stderr", line: "err [secret]" });
  });

  it("puts variables only in the vars file, and secrets nowhere in the arguments or environment", () => {
    const args = ansibleArgs({ playbookPath: "/p/write-env.yml", varsFile: "/w/vars.yml", check: true });
    expect(args).toEqual(["-i", "localhost,", "-c", "local", "--extra-vars", "@/w/vars.yml", "--check", "/p/write-env.yml"]);
    expect(ansibleArgs({ playbookPath: "/p/x.yml", varsFile: "/w/v.yml", check: false })).not.toContain("--check");

    const env = ansibleEnv("/w", { PATH: "/usr/bin", DATABASE_URL: "postgres://secret", https_proxy: "http://proxy:3128" });
    expect(env).toMatchObject({ PATH: "/usr/bin", HOME: "/w/home", ANSIBLE_LOCAL_TEMP: "/w/tmp", ANSIBLE_STDOUT_CALLBACK: "ansible.posix.jsonl" });
    expect(env.https_proxy).toBe("http://proxy:3128");
    expect(JSON.stringify(env)).not.toContain("postgres://secret");

    expect(env.ANSIBLE_PYTHON_INTERPRETER).toBe("auto_silent");
    expect(ansibleEnv("/w", { PATH: "/usr/bin" }, "/usr/bin/python3").ANSIBLE_PYTHON_INTERPRETER).toBe("/usr/bin/python3");

    expect(varsFileContent({ a: "{{ x }}", n: 2, list: [true, null, "y"], nested: { "k\"": "v\n" } })).toBe(
      '{!unsafe "a": !unsafe "{{ x }}", !unsafe "n": 2, !unsafe "list": [true, null, !unsafe "y"], !unsafe "nested": {!unsafe "k\\"": !unsafe "v\\n"}}\n',
    );
  });

  it("masks a token in the forms output shows it in: base64, base64url, URL-encoded, git's Basic header", () => {
    const token = "ghs_Ab+cd/ef=gh12345678";
    const mask = secretMasker([token]);
    expect(mask(`Authorization: Basic ${Buffer.from(`x-access-token:${token}`).toString("base64")}`)).toBe("Authorization: Basic [secret]");
    expect(mask(`https://x-access-token:${encodeURIComponent(token)}@github.com/o/r.git`)).toBe("https://x-access-token:[secret]@github.com/o/r.git");
    expect(mask(`echo ${Buffer.from(token).toString("base64")}`)).toBe("echo [secret]");
    expect(mask(Buffer.from(token).toString("base64url"))).toBe("[secret]");
    // Too short for its derived forms to be told from ordinary text: only the value itself is masked.
    expect(secretMasker(["short"])("short c2hvcnQ=")).toBe("[secret] c2hvcnQ=");
  });

  it("masks longer secrets first, their JSON-escaped form, and the lines of multi-line secrets", () => {
    const mask = secretMasker(["abc", "abcdef", 'q"t', "-----BEGIN KEY-----\nMIIBVwIBADANBgkqhkiG9w0BAQEFAASC\n-----END KEY-----", ""]);
    expect(mask("x abcdef y abc")).toBe("x [secret] y [secret]");
    expect(mask('{"v":"q\\"t"}')).toBe('{"v":"[secret]"}');
    expect(mask("line: MIIBVwIBADANBgkqhkiG9w0BAQEFAASC")).toBe("line: [secret]");
    expect(secretMasker([])("unchanged")).toBe("unchanged");
  });

  it("refuses playbook paths in the schema, and unknown or escaping playbooks before running anything", async () => {
    for (const name of ["../facts.yml", "/etc/passwd", "sub/facts.yml", "facts.yml/..", ".hidden.yml", "facts.sh"]) {
      expect(AnsiblePlaybookPayload.safeParse({ playbook: name }).success, name).toBe(false);
    }

    // A binary that would leave a mark if it were ever started.
    const marker = join(scratch, "ran");
    const fakeBinary = join(scratch, "fake-ansible-playbook");
    await writeFile(fakeBinary, `#!/bin/sh\ntouch ${marker}\n`);
    await chmod(fakeBinary, 0o755);

    const refused = async (playbookDir: string, name: string, run: typeof ansiblePlaybook | typeof fixture) => {
      const context = recordingContext(testConfig({ ansible: { playbookDir, binary: fakeBinary } }));
      const outcome =
        run === ansiblePlaybook
          ? // Straight to the executor, as if the schema had been bypassed.
            await ansiblePlaybook({ playbook: name as "facts.yml", extraVars: {}, secretVars: {}, check: false, timeoutSeconds: 60 }, context)
          : await fixture(name, context);
      expect(outcome.ok).toBe(false);
      expect(context.lines).toEqual([]);
      expect(context.steps).toEqual([]);
      return outcome;
    };
    // A job names only the playbooks with a variable schema: provision.yml is the provision job's alone.
    for (const name of ["provision.yml", "nope.yml"]) {
      expect((await refused(SHIPPED, name, ansiblePlaybook)).message).toContain("not a playbook an ansible.playbook job may run (facts.yml, write-env.yml, deploy_project.yml)");
    }
    const missing = await refused(SHIPPED, "nope.yml", fixture);
    expect(missing.message).toBe(`playbook nope.yml: no playbook "nope.yml"; available playbooks in ${SHIPPED}: deploy_project.yml, facts.yml, provision.yml, write-env.yml`);
    expect(missing.data?.available).toEqual(["deploy_project.yml", "facts.yml", "provision.yml", "write-env.yml"]);
    expect((await refused(SHIPPED, "../ansible/facts.yml", fixture)).message).toContain('"../ansible/facts.yml" is not a playbook file name');
    expect((await refused(fixtureDir, "escape.yml", fixture)).message).toContain('"escape.yml" leads outside the playbook directory');
    expect((await refused(join(scratch, "no-such-dir"), "facts.yml", fixture)).message).toContain("the playbook directory does not exist");
    expect(existsSync(marker)).toBe(false);
  });

  it("takes for each playbook only the variables its schema names, and no secret it does not use", () => {
    const refusal = (input: unknown) => {
      const parsed = AnsiblePlaybookPayload.safeParse(input);
      return parsed.success ? "accepted" : describePayloadIssues(parsed.error);
    };
    // provision.yml's variables end up in root's systemd units: reachable through the provision job only.
    expect(refusal({ playbook: "provision.yml", extraVars: { caddy_binary: "/bin/sh -c id" } })).toContain("provision.yml runs through the provision job type");
    expect(refusal({ playbook: "facts.yml", extraVars: { anything: 1 } })).toContain("extraVars");
    expect(refusal({ playbook: "facts.yml", secretVars: { TOKEN: "x" } })).toContain("secretVars.TOKEN: unused secret: facts.yml takes no secrets");
    expect(refusal({ playbook: "write-env.yml", extraVars: { project: "app" }, secretVars: { TOKEN: "x" } })).toContain("it is not listed in extraVars.secret_env");
    expect(refusal({ playbook: "write-env.yml", extraVars: { project: "app", secret_env: ["TOKEN"] } })).toContain("names a secret that is not in secretVars");
    expect(refusal({ playbook: "write-env.yml", extraVars: { project: "app", secret_env: ["TOKEN"] }, secretVars: { TOKEN: "x" } })).toBe("accepted");
    expect(refusal({ playbook: "write-env.yml", extraVars: { project: "app" }, secretVars: { ansible_python_interpreter: "x" } })).toContain("ansible_* and Ansible's reserved variable names");
    expect(ProvisionPayload.safeParse({ extraVars: { runner_node_path: "/tmp/evil" } }).success).toBe(false);
  });

  it("reports a failing task by name, with ok false", async () => {
    const context = fixtureContext();
    const outcome = await fixture("fail.yml", context);

    expect(outcome.ok).toBe(false);
    expect(outcome.exitCode).toBe(2);
    expect(outcome.message).toBe("playbook fail.yml: ok=1 changed=0 failed=1; failed: Break on purpose: broken on purpose");
    expect(tasksOf(outcome).map((t) => [t.name, t.status])).toEqual([
      ["Fine first", "ok"],
      ["Break on purpose", "failed"],
    ]);
    expect(context.steps.map((s) => s.message)).toEqual(["Fixture / Fine first: ok", "Fixture / Break on purpose: failed: broken on purpose"]);
  });

  it("explains a playbook Ansible cannot load", async () => {
    const dir = await mkdtemp(join(scratch, "broken-"));
    await writeFile(join(dir, "broken.yml"), "- name: No hosts\n  tasks: []\n");
    const outcome = await fixture("broken.yml", recordingContext(testConfig({ ansible: { playbookDir: dir } })));
    expect(outcome.ok).toBe(false);
    expect(outcome.exitCode).toBe(4);
    expect(outcome.message).toMatch(/^playbook broken\.yml: ansible-playbook exited with code 4: ERROR! the field 'hosts' is required/);
  });

  it("says so when ansible-playbook is not installed", async () => {
    const config = testConfig({ ansible: { playbookDir: SHIPPED, binary: join(scratch, "no-ansible-here") } });
    const outcome = await ansiblePlaybook(playbook({ playbook: "facts.yml" }), recordingContext(config));
    expect(outcome.ok).toBe(false);
    expect(outcome.message).toContain("not found; install Debian's ansible package");
  });

  it("names ansible-playbook's own Python for modules when its #! line names one, and leaves it to Ansible's discovery otherwise", async () => {
    const python = await playbookPython("ansible-playbook");
    expect(python).toMatch(/^\/.*\/python3(\.\d+)?$/);
    const viaEnv = join(scratch, "ansible-playbook-env");
    await writeFile(viaEnv, "#!/usr/bin/env python3\n", { mode: 0o755 });
    expect(await playbookPython(viaEnv)).toBeUndefined();
    expect(await playbookPython(join(scratch, "no-ansible-here"))).toBeUndefined();
  });

  it.each([
    ["sleep.yml", "Sleeper / Sleep", "sleep 617"],
    ["stubborn.yml", "Stubborn / Ignore SIGTERM", "stubborn-619"],
    ["pause.yml", "Pauser / Pause", undefined],
  ])("stops %s promptly when aborted, leaving no process behind", async (name, task, processMarker) => {
    const context = fixtureContext();
    const running = fixture(name, context);
    await until(() => context.lines.some((l) => l.line === `TASK [${task}]`), 30_000);
    if (processMarker) {
      // Wait for the module's own process: the abort must reach Ansible's children too.
      const started = Date.now();
      while ((await processesWith(processMarker)).length === 0) {
        if (Date.now() - started > 30_000) throw new Error(`${processMarker} never started`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    } else {
      await new Promise((resolve) => setTimeout(resolve, 500));
    }

    const abortedAt = Date.now();
    context.abort("cancelled");
    const outcome = await running;
    const took = Date.now() - abortedAt;

    expect(outcome.ok).toBe(false);
    expect(outcome.message).toBe(`playbook ${name}: stopped (cancelled) after 0 tasks`);
    expect(took).toBeLessThan(5000);
    if (processMarker) expect(await processesWith(processMarker)).toEqual([]);
    expect(await processesWith(fixtureDir)).toEqual([]);
  });

  it("keeps the variables in a 0600 file in a private 0700 directory while it runs", async () => {
    const marker = `marker-${Date.now()}`;
    const context = fixtureContext();
    const running = fixture("sleep.yml", context, { unused: marker });
    await until(() => context.lines.some((l) => l.line === "TASK [Sleeper / Sleep]"), 30_000);
    const [dir, ...others] = await workDirsHolding(marker);
    expect(others).toEqual([]);
    if (!dir) throw new Error("no work directory while the playbook runs");
    expect(((await stat(dir)).mode & 0o777).toString(8)).toBe("700");
    expect(((await stat(join(dir, "vars.yml"))).mode & 0o777).toString(8)).toBe("600");
    expect(await readFile(join(dir, "vars.yml"), "utf8")).toBe(`{!unsafe "job_secrets": {!unsafe "unused": !unsafe "${marker}"}}\n`);
    context.abort("cancelled");
    await running;
    expect(existsSync(dir)).toBe(false);
  });

  it("does not start a job that was aborted before it began", async () => {
    const context = fixtureContext();
    context.abort("shutdown");
    const outcome = await fixture("sleep.yml", context);
    expect(outcome).toEqual({ ok: false, message: "playbook sleep.yml: not started (shutdown)" });
    expect(context.lines).toEqual([]);
  });
});
