/**
 * docker.run jobs that name a package registry, against the real Docker engine, the coding-worker
 * image's npm and the npm registry stand-in: the install goes through the job's egress proxy to the
 * registry the runner's settings name, and the package cache (a volume per registry and tenant) makes
 * a second install download nothing.
 */
import Docker from "dockerode";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DockerEngine, ensureDockerEngine } from "../../scripts/lib/docker-engine.ts";
import { STANDIN_HOST } from "../../scripts/lib/engineering-stack.ts";
import { ensureLocalCodingWorker } from "../../scripts/lib/images.ts";
import { NpmRegistryServer } from "../../standins/npm-registry.ts";
import { PyPiServer } from "../../standins/pypi-registry.ts";
import { DockerRunPayload, egressTarget, type JobPayload } from "../../src/shared/job-payloads.ts";
import { PIP_INSTALL } from "../../src/shared/registries.ts";
import { dockerRun as runExecutor } from "../src/executors/docker-run.ts";
import { CACHE_LABEL, cacheVolume } from "../src/registries.ts";
import { type RecordingContext, recordingContext, testConfig } from "./context.ts";

let engine: DockerEngine;
let docker: Docker;
let registry: NpmRegistryServer;
let pypi: PyPiServer;
let jobCounter = 0;
let image: string;
const tenant = (name: string) => `${name}${process.pid}x${Date.now().toString(36)}`;
const scopes = [tenant("a"), tenant("b")];

beforeAll(async () => {
  engine = await ensureDockerEngine();
  docker = new Docker({ socketPath: engine.socketPath });
  // Built by the run's global setup: found by its content tag here.
  image = await ensureLocalCodingWorker(docker);
  registry = await new NpmRegistryServer().start(0, STANDIN_HOST);
  pypi = await new PyPiServer().start(0, STANDIN_HOST);
});

afterAll(async () => {
  await Promise.all(scopes.flatMap((scope) => (["npm", "pypi"] as const).map((name) => docker?.getVolume(cacheVolume(name, scope)).remove().catch(() => undefined))));
  await registry?.stop();
  await pypi?.stop();
  await engine?.stop();
});

function context(): RecordingContext {
  jobCounter += 1;
  // The registry is on this machine: the runner's configuration names it as a destination inside the server it allows.
  const config = testConfig({
    docker: { socketPath: engine.socketPath, egress: { internalTargets: [egressTarget(registry.url), egressTarget(pypi.url)] } },
    registries: { npm: `${registry.url}/`, pypi: pypi.indexUrl, pypiFiles: null },
  });
  return recordingContext(config, `job_registries_${process.pid}_${Date.now()}_${jobCounter}`);
}

/** An install as a Developer round does one: a new project, `npm install <spec>`, as the image's unprivileged user. */
function install(spec: string, extra: Partial<Record<keyof JobPayload<"docker.run">, unknown>>): JobPayload<"docker.run"> {
  const script = `mkdir -p /work/app && cd /work/app && echo '{"name":"app","private":true}' > package.json && npm install --loglevel=error ${spec} && echo "installed $(node -p 'require("./node_modules/hono/package.json").version')"`;
  return DockerRunPayload.parse({ image, cmd: ["sh", "-c", script], user: "worker", network: "egress", timeoutSeconds: 120, ...extra });
}

async function run(job: JobPayload<"docker.run">): Promise<{ ok: boolean; out: string[]; ctx: RecordingContext }> {
  const ctx = context();
  const { afterReport, ...outcome } = await runExecutor(job, ctx);
  await afterReport?.();
  return { ok: outcome.ok, out: ctx.lines.map((entry) => entry.line), ctx };
}

describe("docker.run with a package registry", () => {
  it("installs from the registry the runner names, through the proxy; a second install from the tenant's cache downloads nothing, another tenant's does", { timeout: 180_000 }, async () => {
    const spec = "hono@^4.13.0 @hono/node-server@^2";
    const first = await run(install(spec, { registries: ["npm"], cacheScope: scopes[0] }));
    expect(first.ok, first.out.join("\n")).toBe(true);
    expect(first.out).toContain("installed 4.13.19");
    expect(first.ctx.steps).toContainEqual(expect.objectContaining({ step: "network", message: `egress only to ${egressTarget(registry.url)}` }));
    const downloaded = registry.downloads.length;
    expect(registry.downloads).toEqual(expect.arrayContaining(["hono@4.13.19", "@hono/node-server@2.1.11"]));

    // Another job of the same tenant (another project, a new container): the tarballs come from the cache.
    const second = await run(install(spec, { registries: ["npm"], cacheScope: scopes[0] }));
    expect(second.ok, second.out.join("\n")).toBe(true);
    expect(registry.downloads.length).toBe(downloaded);

    // Another tenant's cache is its own: what the first tenant's jobs put in theirs is not read here.
    const other = await run(install(spec, { registries: ["npm"], cacheScope: scopes[1] }));
    expect(other.ok, other.out.join("\n")).toBe(true);
    expect(registry.downloads.length).toBe(downloaded + 2);
    const volumes = await docker.listVolumes({ filters: { label: [`${CACHE_LABEL}=npm`] } });
    expect(volumes.Volumes.map((volume) => volume.Name)).toEqual(expect.arrayContaining(scopes.map((scope) => cacheVolume("npm", scope))));
  });

  it("keeps a Developer round's node_modules per lockfile in the tenant's cache: the next round's checkout gets them before npm runs; another lockfile or tenant does not", { timeout: 120_000 }, async () => {
    // As orchestrator-develop does: restore after the checkout, save once the agent is done.
    const round = (lockfile: string, then: string) =>
      DockerRunPayload.parse({
        image,
        cmd: ["sh", "-c", `mkdir -p /work/repo && cd /work/repo && echo '{"name":"app"}' > package.json && echo '${lockfile}' > package-lock.json && orchestrator-packages restore /work/repo && ${then}`],
        user: "worker",
        network: "egress",
        registries: ["npm"],
        cacheScope: scopes[0],
        timeoutSeconds: 60,
      });
    const first = await run(round("lock-a", "mkdir -p node_modules/marker && echo round-one > node_modules/marker/file && orchestrator-packages save /work/repo"));
    expect(first.ok, first.out.join("\n")).toBe(true);
    expect(first.out.some((line) => line.startsWith("== packages: node_modules kept for the next round"))).toBe(true);
    const second = await run(round("lock-a", "cat node_modules/marker/file"));
    expect(second.out.some((line) => /^== packages: node_modules for this lockfile restored from the cache in \d+ ms$/.test(line)), second.out.join("\n")).toBe(true);
    expect(second.out).toContain("round-one");
    const changed = await run(round("lock-b", "ls node_modules 2>&1 || true"));
    expect(changed.out.join("\n")).toContain("No such file or directory");
    const otherTenant = await run({ ...round("lock-a", "ls node_modules 2>&1 || true"), cacheScope: scopes[1] ?? "" });
    expect(otherTenant.out.join("\n")).toContain("No such file or directory");
  });

  it("installs a Python project's packages as requirements.txt pins them, from the index the runner names, into .pydeps; the tenant's cache serves the next install", { timeout: 180_000 }, async () => {
    // As the Tester's command does (the python-http kind's): install, then the code imports them.
    const pinned = async (requirements: string, scope: string) => {
      const script = `mkdir -p /work/app && cd /work/app && printf '${requirements}' > requirements.txt && ${PIP_INSTALL} && PYTHONPATH=.pydeps python3 -c 'import jinja2; print(jinja2.Template("rendered {{ v }}").render(v="<b>"))'`;
      return run(DockerRunPayload.parse({ image, cmd: ["sh", "-c", script], user: "worker", network: "egress", registries: ["pypi"], cacheScope: scope, timeoutSeconds: 120 }));
    };
    const first = await pinned("Jinja2==3.1.2\\nMarkupSafe==2.1.2\\n", scopes[0] ?? "");
    expect(first.ok, first.out.join("\n")).toBe(true);
    expect(first.out).toContain("rendered <b>");
    expect(first.ctx.steps).toContainEqual(expect.objectContaining({ step: "network", message: `egress only to ${egressTarget(pypi.url)}` }));
    expect(pypi.downloads).toEqual(["Jinja2==3.1.2", "MarkupSafe==2.1.2"]);

    const second = await pinned("Jinja2==3.1.2\\nMarkupSafe==2.1.2\\n", scopes[0] ?? "");
    expect(second.ok, second.out.join("\n")).toBe(true);
    expect(pypi.downloads).toHaveLength(2);
    const other = await pinned("Jinja2==3.1.2\\nMarkupSafe==2.1.2\\n", scopes[1] ?? "");
    expect(other.ok, other.out.join("\n")).toBe(true);
    expect(pypi.downloads).toHaveLength(4);

    // Only what the file pins: a dependency it leaves out is not fetched, and the import fails here, in the tests.
    const forgot = await pinned("Jinja2==3.1.2\\n", scopes[0] ?? "");
    expect(forgot.ok).toBe(false);
    expect(forgot.out.join("\n")).toContain("No module named 'markupsafe'");
    // A version the index does not have is refused by name.
    const missing = await pinned("Jinja2==9.9.9\\n", scopes[0] ?? "");
    expect(missing.ok).toBe(false);
    expect(missing.out.join("\n")).toContain("No matching distribution found for Jinja2==9.9.9");
  });

  it("a job that names no registry does not reach it", { timeout: 120_000 }, async () => {
    const before = registry.downloads.length;
    // Egress to somewhere else only (the registry's own host, another port): the proxy refuses the registry.
    const job = await run(install("hono@^4.13.0", { egress: [`${STANDIN_HOST}:9`], env: { npm_config_registry: `${registry.url}/`, npm_config_fetch_retries: "0" } }));
    expect(job.ok).toBe(false);
    expect(job.ctx.lines.filter((entry) => entry.stream === "system").map((entry) => entry.line)).toContain(`egress refused: ${egressTarget(registry.url)} is not among this job's destinations`);
    expect(registry.downloads.length).toBe(before);
  });

  it("takes registries only on an egress network", () => {
    expect(DockerRunPayload.safeParse({ image, registries: ["npm"] }).success).toBe(false);
    expect(DockerRunPayload.safeParse({ image, network: "egress", registries: ["npm"] }).success).toBe(true);
    expect(DockerRunPayload.safeParse({ image, network: "egress", registries: ["pip"] }).success).toBe(false);
    expect(DockerRunPayload.safeParse({ image, network: "egress", registries: ["npm", "pypi"] }).success).toBe(true);
    expect(DockerRunPayload.safeParse({ image, network: "egress", registries: ["npm"], cacheScope: "../etc" }).success).toBe(false);
  });
});
