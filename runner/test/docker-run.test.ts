/**
 * The docker.run executor against the real Docker engine, with an image built here FROM scratch out of
 * static busybox (nothing can be pulled). Fails, rather than skips, when no engine is available.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import Docker from "dockerode";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DockerEngine, ensureDockerEngine, ensureTestImage } from "../../scripts/lib/docker-engine.ts";
import { DockerRunPayload, type JobPayload } from "../../src/shared/job-payloads.ts";
import { dockerRun as runExecutor, removeJobContainers } from "../src/executors/docker-run.ts";
import type { ExecutorOutcome } from "../src/executors/types.ts";
import { JOB_LABEL } from "../src/labels.ts";
import { type RecordingContext, recordingContext, testConfig } from "./context.ts";

let engine: DockerEngine;
let docker: Docker;
let image: string;
let jobCounter = 0;

beforeAll(async () => {
  engine = await ensureDockerEngine();
  docker = new Docker({ socketPath: engine.socketPath });
  image = await ensureTestImage(docker);
});

afterAll(async () => {
  await engine?.stop();
});

function context(docker: { allowHostNetwork?: boolean; internalTargets?: string[] } = {}): RecordingContext {
  jobCounter += 1;
  const { internalTargets = [], ...rest } = docker;
  return recordingContext(testConfig({ docker: { socketPath: engine.socketPath, egress: { internalTargets }, ...rest } }), `job_dockerrun_${process.pid}_${Date.now()}_${jobCounter}`);
}

type Payload = JobPayload<"docker.run">;
type PayloadInput = Partial<Record<keyof Payload, unknown>>;

function payload(input: PayloadInput): Payload {
  return DockerRunPayload.parse({ image, ...input });
}

function shell(script: string, extra: PayloadInput = {}): Payload {
  return payload({ cmd: ["sh", "-c", script], ...extra });
}

/** The executor as the daemon runs it: the outcome, then (after the report) its tidying. */
async function dockerRun(job: Payload, ctx: RecordingContext): Promise<Omit<ExecutorOutcome, "afterReport">> {
  const { afterReport, ...outcome } = await runExecutor(job, ctx);
  await afterReport?.();
  return outcome;
}

async function containersOf(jobId: string): Promise<Docker.ContainerInfo[]> {
  return docker.listContainers({ all: true, filters: { label: [`${JOB_LABEL}=${jobId}`] } });
}

const linesOf = (ctx: RecordingContext, stream: string) => ctx.lines.filter((entry) => entry.stream === stream).map((entry) => entry.line);
const stepMessages = (ctx: RecordingContext) => ctx.steps.filter((entry) => entry.step === "docker").map((entry) => entry.message);

describe("docker.run", () => {
  it("streams stdout and stderr as lines, reports the exit code and events, and removes the container", async () => {
    const ctx = context();
    const outcome = await dockerRun(shell("for i in 1 2 3 4 5; do echo line $i; done; echo err >&2; exit 3"), ctx);

    expect(outcome).toMatchObject({ ok: false, exitCode: 3, message: "exited with code 3" });
    expect(linesOf(ctx, "stdout")).toEqual(["line 1", "line 2", "line 3", "line 4", "line 5"]);
    expect(linesOf(ctx, "stderr")).toEqual(["err"]);
    expect(stepMessages(ctx)).toEqual(["container started", "container died (exit 3)"]);
    expect(ctx.steps.find((s) => s.message.startsWith("container died"))?.data).toMatchObject({ exitCode: 3 });
    expect(await containersOf(ctx.jobId)).toEqual([]);
  });

  it("succeeds on exit 0 and flushes a last line that has no newline", async () => {
    const ctx = context();
    const outcome = await dockerRun(shell("printf 'first\\nsecond without newline'; printf 'partial err' >&2"), ctx);

    expect(outcome).toMatchObject({ ok: true, exitCode: 0, message: "exited with code 0" });
    expect(linesOf(ctx, "stdout")).toEqual(["first", "second without newline"]);
    expect(linesOf(ctx, "stderr")).toEqual(["partial err"]);
  });

  it("keeps a line whole when the engine delivers it in several frames", async () => {
    const ctx = context();
    // Separate writes with a pause in between reach the engine, and us, as separate frames.
    await dockerRun(shell("printf 'abc'; sleep 0.3; printf 'def\\nghi'; sleep 0.3; echo jkl"), ctx);
    expect(linesOf(ctx, "stdout")).toEqual(["abcdef", "ghijkl"]);
  });

  it("kills the container promptly when the job is aborted", async () => {
    const ctx = context();
    const started = Date.now();
    const running = dockerRun(shell("sleep 30"), ctx);
    await expect.poll(() => stepMessages(ctx), { timeout: 10_000 }).toContain("container started");
    ctx.abort("timeout");
    const outcome = await running;

    expect(outcome).toEqual({ ok: false, message: "killed: timeout" });
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(await containersOf(ctx.jobId)).toEqual([]);
  });

  it("creates nothing when the job is already aborted", async () => {
    const ctx = context();
    ctx.abort("cancelled");
    expect(await dockerRun(shell("echo never"), ctx)).toEqual({ ok: false, message: "killed: cancelled" });
    expect(ctx.lines).toEqual([]);
    expect(await containersOf(ctx.jobId)).toEqual([]);
  });

  describe("network", () => {
    let server: Server;
    let other: Server;
    let port = 0;
    let otherPort = 0;
    let requests = 0;
    let otherRequests = 0;

    const listen = async (handler: () => void, host: string) => {
      const created = createServer((_req, res) => {
        handler();
        res.end("hello-from-host\n");
      });
      await new Promise<void>((resolve) => created.listen(0, host, resolve));
      return { server: created, port: (created.address() as AddressInfo).port };
    };

    beforeAll(async () => {
      ({ server, port } = await listen(() => (requests += 1), "127.0.0.1"));
      // On every address, the egress networks' gateways included: only the firewall keeps containers off it.
      ({ server: other, port: otherPort } = await listen(() => (otherRequests += 1), "0.0.0.0"));
    });

    afterAll(async () => {
      await new Promise((resolve) => server.close(resolve));
      await new Promise((resolve) => other.close(resolve));
    });

    // nc, not wget: Debian's static busybox wget segfaults (exit 139) even outside a container.
    const fetchFromHost = () => `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 127.0.0.1 ${port}`;
    /** The proxy's address from HTTP_PROXY, as the container sees it. */
    const proxyAddress = `p=\${HTTP_PROXY#http://}; gw=\${p%:*}; pp=\${p##*:}`;
    // The sleep keeps nc's side open until the answer is in (busybox nc half-closes on end of input).
    const viaProxy = (target: string) => `${proxyAddress}; (printf 'GET http://${target}/ HTTP/1.0\\r\\n\\r\\n'; sleep 1) | nc -w 3 $gw $pp`;

    it('has no way out by default ("none": loopback only)', async () => {
      const ctx = context();
      const before = requests;
      const outcome = await dockerRun(shell(fetchFromHost()), ctx);

      expect(outcome.ok).toBe(false);
      expect(outcome.exitCode).toBe(1);
      expect(linesOf(ctx, "stdout")).toEqual([]);
      expect(linesOf(ctx, "stderr")).toEqual(["nc: can't connect to remote host (127.0.0.1): Connection refused"]);
      expect(requests).toBe(before);
    });

    it('refuses network "host" unless the runner allows it, creating nothing', async () => {
      const ctx = context();
      const outcome = await dockerRun(shell(fetchFromHost(), { network: "host" }), ctx);
      expect(outcome.ok).toBe(false);
      expect(outcome.message).toContain('network "host" is refused');
      expect(await containersOf(ctx.jobId)).toEqual([]);
    });

    it('reaches the host\'s loopback with network "host" on a runner that allows it', async () => {
      const ctx = context({ allowHostNetwork: true });
      const before = requests;
      const outcome = await dockerRun(shell(fetchFromHost(), { network: "host" }), ctx);

      expect(outcome).toMatchObject({ ok: true, exitCode: 0 });
      expect(linesOf(ctx, "stdout")[0]).toBe("HTTP/1.1 200 OK");
      expect(linesOf(ctx, "stdout")).toContain("hello-from-host");
      expect(requests).toBe(before + 1);
    });

    it('"egress" reaches its listed destinations through the proxy, and nothing else', { timeout: 60_000 }, async () => {
      // The listed server is on this machine's loopback: the runner's configuration must allow that too.
      const ctx = context({ internalTargets: [`127.0.0.1:${port}`] });
      const before = { requests, otherRequests };
      const script = [
        // Listed: plain HTTP through the proxy, and a CONNECT tunnel.
        `echo "== allowed"; ${viaProxy(`127.0.0.1:${port}`)}`,
        `echo "== tunnel"; ${proxyAddress}; (printf 'CONNECT 127.0.0.1:${port} HTTP/1.1\\r\\n\\r\\nGET / HTTP/1.0\\r\\n\\r\\n'; sleep 1) | nc -w 3 $gw $pp`,
        // Not listed: another port of the same host, through the proxy.
        `echo "== refused"; ${viaProxy(`127.0.0.1:${otherPort}`)}`,
        // Around the proxy: the host's other ports on the gateway address, dropped by the firewall.
        `echo "== direct"; ${proxyAddress}; printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 $gw ${otherPort} || echo "direct failed"`,
      ].join("; ");
      const outcome = await dockerRun(shell(script, { network: "egress", egress: [`127.0.0.1:${port}`], timeoutSeconds: 30 }), ctx);

      expect(outcome.ok, JSON.stringify(ctx.lines)).toBe(true);
      const out = linesOf(ctx, "stdout");
      const section = (name: string) => out.slice(out.indexOf(`== ${name}`) + 1, out.findIndex((line, i) => i > out.indexOf(`== ${name}`) && line.startsWith("== ")) >>> 0);
      expect(section("allowed")).toContain("hello-from-host");
      expect(section("tunnel")).toEqual(expect.arrayContaining(["HTTP/1.1 200 Connection Established", "hello-from-host"]));
      expect(section("refused")[0]).toBe("HTTP/1.1 403 Forbidden");
      expect(section("refused")).toContain(`egress to 127.0.0.1:${otherPort} is not allowed for this job`);
      expect(section("direct")).toEqual(["direct failed"]);
      expect(requests).toBe(before.requests + 2);
      expect(otherRequests).toBe(before.otherRequests);
      expect(linesOf(ctx, "system")).toContain(`egress refused: 127.0.0.1:${otherPort} is not among this job's destinations`);
      expect(ctx.steps).toContainEqual(expect.objectContaining({ step: "network", message: `egress only to 127.0.0.1:${port}` }));
      // The job's network went with it.
      expect(await docker.listNetworks({ filters: { label: [`${JOB_LABEL}=${ctx.jobId}`] } })).toEqual([]);
    });

    it('"egress" never leads inside the server unless the runner names the destination, whatever the job lists', { timeout: 60_000 }, async () => {
      const ctx = context();
      const before = requests;
      const outcome = await dockerRun(shell(viaProxy(`127.0.0.1:${port}`), { network: "egress", egress: [`127.0.0.1:${port}`, `localhost:${port}`], timeoutSeconds: 30 }), ctx);
      expect(outcome.ok).toBe(true);
      const out = linesOf(ctx, "stdout");
      expect(out[0]).toBe("HTTP/1.1 403 Forbidden");
      expect(out.join("\n")).toContain("it leads inside the server (127.0.0.1), which this runner allows only for nothing");
      expect(requests).toBe(before);
    });

    it('needs destinations for "egress", and takes them for nothing else', () => {
      expect(DockerRunPayload.safeParse({ image, network: "egress" }).success).toBe(false);
      expect(DockerRunPayload.safeParse({ image, egress: ["example.org:443"] }).success).toBe(false);
      expect(DockerRunPayload.safeParse({ image, network: "egress", egress: ["example.org"] }).success).toBe(false);
      expect(DockerRunPayload.safeParse({ image, network: "egress", egress: ["*.npmjs.org:443", "[::1]:8080", "model.local:8788"] }).success).toBe(true);
    });
  });

  describe("memory limit", () => {
    // The shell holds a 50 MB string in memory: fine with room, killed under a 6 MiB limit.
    const hog = "x=$(head -c 50000000 /dev/zero | tr '\\0' a); echo done ${#x}";

    it("lets the process finish when the limit allows it", async () => {
      const ctx = context();
      const outcome = await dockerRun(shell(hog, { memoryMb: 512 }), ctx);
      expect(outcome).toMatchObject({ ok: true, exitCode: 0 });
      expect(linesOf(ctx, "stdout")).toEqual(["done 50000000"]);
    });

    it("reports a container killed for using more memory than its limit", async () => {
      const ctx = context();
      const outcome = await dockerRun(shell(hog, { memoryMb: 6 }), ctx);

      expect(outcome).toMatchObject({ ok: false, exitCode: 137, message: "exited with code 137 (out of memory)", data: { oomKilled: true } });
      expect(linesOf(ctx, "stdout")).toEqual([]);
      expect(stepMessages(ctx)).toContain("container ran out of memory");
      expect(stepMessages(ctx)).toContain("container died (exit 137)");
      expect(await containersOf(ctx.jobId)).toEqual([]);
    });
  });

  it("passes env and secretEnv, and runs as the given user in the given directory", async () => {
    const ctx = context();
    const outcome = await dockerRun(
      shell('echo "$PLAIN|$TOKEN"; id -u; id -g; pwd', { env: { PLAIN: "visible" }, secretEnv: { TOKEN: "s3cret value" }, user: "1234:4321", workdir: "/work/dir" }),
      ctx,
    );

    expect(outcome.ok).toBe(true);
    expect(linesOf(ctx, "stdout")).toEqual(["visible|s3cret value", "1234", "4321", "/work/dir"]);
  });

  it("drops every capability and forbids gaining privileges", async () => {
    const ctx = context();
    await dockerRun(shell("grep -E '^(CapEff|CapBnd|NoNewPrivs):' /proc/self/status"), ctx);
    expect(linesOf(ctx, "stdout")).toEqual(["CapEff:\t0000000000000000", "CapBnd:\t0000000000000000", "NoNewPrivs:\t1"]);
  });

  it("caps the number of processes (a fork bomb stays inside)", async () => {
    const ctx = context();
    await dockerRun(shell("cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max"), ctx);
    expect(linesOf(ctx, "stdout")).toEqual(["512"]);
  });

  it("refuses an image that is not on the server, without pulling it or creating a container", async () => {
    const ctx = context();
    const missing = "orchestrator-test/not-here:1";
    const outcome = await dockerRun(payload({ image: missing, cmd: ["true"] }), ctx);

    expect(outcome).toEqual({
      ok: false,
      message: `image ${missing} is not present on this server; images are built or loaded on the server, never pulled implicitly`,
    });
    expect(await containersOf(ctx.jobId)).toEqual([]);
    await expect(docker.getImage(missing).inspect()).rejects.toMatchObject({ statusCode: 404 });
  });

  it("fails clearly when the command cannot start, and removes the container", async () => {
    const ctx = context();
    const outcome = await dockerRun(payload({ cmd: ["/no/such/program"] }), ctx);

    expect(outcome.ok).toBe(false);
    expect(outcome.message).toMatch(/^the container did not start: .*\/no\/such\/program/);
    expect(await containersOf(ctx.jobId)).toEqual([]);
  });

  it("fails clearly when the engine is not reachable", async () => {
    const ctx = recordingContext(testConfig({ docker: { socketPath: "/nonexistent/docker.sock" } }));
    const outcome = await dockerRun(shell("true"), ctx);
    expect(outcome).toEqual({ ok: false, message: expect.stringContaining("cannot reach the Docker engine at /nonexistent/docker.sock") as unknown });
  });

  it("removeJobContainers removes every container of a job, running or not", async () => {
    const jobId = `job_leftover_${process.pid}_${Date.now()}`;
    const labels = { [JOB_LABEL]: jobId, "orchestrator.managed": "true" };
    const running = await docker.createContainer({ Image: image, Cmd: ["sleep", "60"], Labels: labels, HostConfig: { NetworkMode: "none" } });
    await running.start();
    await docker.createContainer({ Image: image, Cmd: ["true"], Labels: labels, HostConfig: { NetworkMode: "none" } });
    const other = await docker.createContainer({ Image: image, Cmd: ["true"], Labels: { [JOB_LABEL]: `${jobId}_other` }, HostConfig: { NetworkMode: "none" } });

    try {
      expect(await containersOf(jobId)).toHaveLength(2);
      expect(await removeJobContainers(docker, jobId)).toBe(2);
      expect(await containersOf(jobId)).toEqual([]);
      expect(await containersOf(`${jobId}_other`)).toHaveLength(1);
      // The daemon passes the socket path from its config.
      expect(await removeJobContainers(engine.socketPath, jobId)).toBe(0);
      expect(await removeJobContainers(engine.socketPath, `${jobId}_other`)).toBe(1);
      expect(await containersOf(`${jobId}_other`)).toEqual([]);
    } finally {
      await other.remove({ force: true }).catch(() => undefined);
    }
  });
});
