/**
 * `docker.run`: runs one container to completion through the Docker Engine API (dockerode, never the
 * CLI), streaming its output line by line and its lifecycle events as progress. The container is
 * confined (a network policy, CPU and memory limits, no capabilities, no privilege escalation) and
 * always removed afterwards. Images are never pulled: a server runs only images built or loaded on
 * it, so what runs is exactly what the operator put there.
 *
 * Networks (the payload's `network`): `none` gives loopback only; `egress` a network of the job's own
 * whose one way out is the runner's allow-listing proxy (../egress.ts); `host` the server's network,
 * refused unless the runner's configuration allows it. No policy reaches Caddy's admin API: it is a
 * unix socket, never mounted into a container.
 */
import { StringDecoder } from "node:string_decoder";
import Docker from "dockerode";
import tar from "tar-stream";
import { z } from "zod";
import type { JobPayload } from "../../../src/shared/job-payloads.ts";
import type { CollectedFile } from "../../../src/shared/job-results.ts";
import { parseJson } from "../../../src/shared/json.ts";
import { MAX_LOG_LINE_CHARS, MAX_SECRET_VALUE_CHARS } from "../../../src/shared/limits.ts";
import { EgressUnavailable, type EgressSession, removeJobNetworks } from "../egress.ts";
import { JOB_LABEL, MANAGED_LABEL } from "../labels.ts";
import { ensureCacheVolumes, type RegistryAccess, registryAccess } from "../registries.ts";
import type { ExecutorContext, ExecutorOutcome, Executor } from "./types.ts";

/** After the container exits, how long to wait for the rest of its output and its "die" event. */
const DRAIN_MS = 5000;

type Payload = JobPayload<"docker.run">;

export const dockerRun: Executor<Payload> = async (payload, context) => {
  const socketPath = context.config.docker.socketPath;
  const docker = new Docker({ socketPath });
  if (context.signal.aborted) return killed(context.signal);
  if (payload.network === "host" && !context.config.docker.allowHostNetwork) {
    return {
      ok: false,
      message: 'network "host" is refused: this runner keeps jobs off the server\'s own network (docker.allowHostNetwork is off); use "egress" with the destinations the job needs',
    };
  }

  // Events are read with `since` from just before creation: the engine flushes the events response
  // before it subscribes, so without it a fast container's "start" could slip through unseen.
  const since = Math.floor(Date.now() / 1000) - 1;
  const registries = registryAccess(payload.registries, context.config.registries, payload.cacheScope);
  const destinations = [...new Set([...payload.egress, ...registries.egress])];
  // The image check, the egress network and the package caches are independent: set them up side by side.
  const [image, opened, caches] = await Promise.all([
    docker
      .getImage(payload.image)
      .inspect()
      .then(
        () => ({ ok: true as const }),
        (error: unknown) => ({ ok: false as const, error }),
      ),
    payload.network === "egress"
      ? context.egress.open(context.jobId, destinations, (target) => context.log(`egress refused: ${target} is not among this job's destinations`, "system")).then(
          (session) => ({ ok: true as const, session }),
          (error: unknown) => ({ ok: false as const, error }),
        )
      : Promise.resolve({ ok: true as const, session: undefined }),
    ensureCacheVolumes(docker, registries.volumes).then(
      () => ({ ok: true as const }),
      (error: unknown) => ({ ok: false as const, error }),
    ),
  ]);
  const egress = opened.ok ? opened.session : undefined;
  if (!image.ok) {
    await egress?.close();
    if (statusCode(image.error) === 404) return { ok: false, message: missingImage(payload.image) };
    return engineFailure(image.error, socketPath, "checking the image");
  }
  if (!opened.ok) {
    if (opened.error instanceof EgressUnavailable) return { ok: false, message: opened.error.message };
    return engineFailure(opened.error, socketPath, "creating the job's egress network");
  }
  if (!caches.ok) {
    await egress?.close();
    return engineFailure(caches.error, socketPath, "making the package cache volumes");
  }
  if (egress) context.progress("network", `egress only to ${destinations.join(", ")}`, { egress: destinations });

  let container: Docker.Container;
  try {
    container = await docker.createContainer(containerSpec(payload, context.jobId, egress, registries));
  } catch (error) {
    await egress?.close();
    if (statusCode(error) === 404) return { ok: false, message: missingImage(payload.image) };
    if (statusCode(error) === 400) return { ok: false, message: `the engine refused to create the container: ${engineMessage(error)}` };
    return engineFailure(error, socketPath, "creating the container");
  }

  // Closes our long-lived requests (attach, wait) to the engine once the job is over, however it ends.
  const requests = new AbortController();
  const lines = new LineSplitter(context);
  let events: EventWatcher | undefined;
  const removeContainer = async () => {
    // Reported rather than thrown: throwing would replace the job's real outcome.
    await container.remove({ force: true, v: true }).catch((error: unknown) => {
      if (!isGone(error)) context.log(`could not remove container ${container.id}: ${engineMessage(error)}`, "system");
    });
    await egress?.close();
  };
  let removeLater = false;
  try {
    const [watcher, output] = await Promise.all([
      watchEvents(docker, container.id, since, context),
      container.attach({ stream: true, stdout: true, stderr: true, abortSignal: requests.signal }),
    ]);
    events = watcher;
    const outputDone = demultiplex(output, (stream, chunk) => lines.push(stream, chunk));

    if (context.signal.aborted) return killed(context.signal);
    try {
      await container.start();
    } catch (error) {
      if (context.signal.aborted) return killed(context.signal);
      // e.g. the command is not in the image, or the user does not exist in it.
      return { ok: false, message: `the container did not start: ${engineMessage(error)}` };
    }

    // The "die" event comes as the process exits; `wait` only once the engine has also torn down the
    // container's network namespace (tens of ms on a bridge). Whichever comes first gives the exit code.
    const exited = container.wait({ condition: "not-running", abortSignal: requests.signal }) as Promise<{ StatusCode: number }>;
    const first = await Promise.race([exited.then((result) => ({ exitCode: result.StatusCode })), events.exited, whenAborted(context.signal)]);
    if (!("exitCode" in first)) {
      // Failing to kill is not fatal here: the forced removal below kills it too.
      await container.kill().catch(() => undefined);
      await withDeadline(outputDone, 1000);
      return killed(context.signal);
    }

    await withDeadline(outputDone, DRAIN_MS);
    lines.flush();
    await events.settle(DRAIN_MS);
    const [state, files] = await Promise.all([container.inspect().then((info) => info.State), payload.collect.length ? collectFiles(container, payload.collect) : undefined]);
    const { exitCode } = first;
    const oomKilled = state.OOMKilled || events.oomKilled();
    // The container is over and its result known: removing it and its network need not hold up the report.
    removeLater = true;
    return {
      ok: exitCode === 0,
      exitCode,
      message: `exited with code ${exitCode}${oomKilled ? " (out of memory)" : ""}`,
      // How long the container itself ran, as the engine saw it: what a pipeline's overhead is measured against.
      data: { containerId: container.id, oomKilled, ranMs: Date.parse(state.FinishedAt) - Date.parse(state.StartedAt), ...(files ? { files } : {}) },
      afterReport: removeContainer,
    };
  } finally {
    requests.abort();
    events?.close();
    lines.flush();
    if (!removeLater) await removeContainer();
  }
};

function containerSpec(payload: Payload, jobId: string, egress: EgressSession | undefined, registries: RegistryAccess): Docker.ContainerCreateOptions {
  const memory = payload.memoryMb * 1024 * 1024;
  return {
    Image: payload.image,
    Cmd: payload.cmd,
    // The registries' and the proxy's settings last: the way out is the proxy, to the registries this
    // runner names, whatever the job says.
    Env: Object.entries({ ...payload.env, ...payload.secretEnv, ...registries.env, ...egress?.env }).map(([name, value]) => `${name}=${value}`),
    WorkingDir: payload.workdir || undefined,
    User: payload.dropsPrivileges ? "0:0" : payload.user || undefined,
    Labels: { [JOB_LABEL]: jobId, [MANAGED_LABEL]: "true" },
    AttachStdin: false,
    AttachStdout: true,
    AttachStderr: true,
    Tty: false,
    OpenStdin: false,
    HostConfig: {
      NanoCpus: Math.round(payload.cpus * 1e9),
      Memory: memory,
      // Equal to Memory: no swap on top, so the limit is the limit.
      MemorySwap: memory,
      Binds: registries.binds,
      NetworkMode: egress ? egress.network : payload.network === "host" ? "host" : "none",
      ...(egress ? { Dns: egress.dns, DnsSearch: [] } : {}),
      Privileged: false,
      CapDrop: ["ALL"],
      // Only to become the unprivileged user it runs the untrusted part as (no-new-privileges stays).
      CapAdd: payload.dropsPrivileges ? ["SETUID", "SETGID"] : [],
      SecurityOpt: ["no-new-privileges"],
      // A fork bomb stays inside the container.
      PidsLimit: 512,
      AutoRemove: false,
    },
  };
}

/**
 * Removes (forcefully) every container of a job and its egress network, e.g. ones left by a runner
 * that restarted. Takes an engine client or its socket path. Returns how many containers it removed.
 */
export async function removeJobContainers(engine: Docker | string, jobId: string): Promise<number> {
  const docker = typeof engine === "string" ? new Docker({ socketPath: engine }) : engine;
  const containers = await docker.listContainers({ all: true, filters: { label: [`${JOB_LABEL}=${jobId}`] } });
  for (const info of containers) {
    await docker
      .getContainer(info.Id)
      .remove({ force: true, v: true })
      .catch((error: unknown) => {
        if (!isGone(error)) throw error;
      });
  }
  await removeJobNetworks(docker, jobId);
  return containers.length;
}

function missingImage(image: string): string {
  return `image ${image} is not present on this server; images are built or loaded on the server, never pulled implicitly`;
}

function killed(signal: AbortSignal): ExecutorOutcome {
  return { ok: false, message: `killed: ${String(signal.reason)}` };
}

function engineFailure(error: unknown, socketPath: string, doing: string): ExecutorOutcome {
  const code = typeof error === "object" && error !== null && "code" in error ? String(error.code) : undefined;
  if (code === "ENOENT" || code === "ECONNREFUSED" || code === "EACCES") {
    return { ok: false, message: `cannot reach the Docker engine at ${socketPath} (${code}) while ${doing}: is dockerd running, and may the runner use its socket?` };
  }
  throw error;
}

// --- Output: the engine multiplexes stdout and stderr into frames of [type, 0, 0, 0, size(4, BE)] + data.

type OutputStream = "stdout" | "stderr";

/** Reads a multiplexed attach stream, handing each frame's data on in order. Resolves when the stream ends. */
function demultiplex(stream: NodeJS.ReadableStream, onData: (stream: OutputStream, chunk: Buffer) => void): Promise<void> {
  let pending: Buffer = Buffer.alloc(0);
  stream.on("data", (chunk: Buffer) => {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    while (pending.length >= 8) {
      const size = pending.readUInt32BE(4);
      if (pending.length < 8 + size) break;
      const type = pending[0];
      const data = pending.subarray(8, 8 + size);
      pending = pending.subarray(8 + size);
      if (type === 1) onData("stdout", data);
      else if (type === 2) onData("stderr", data);
    }
  });
  return new Promise((resolve) => {
    // An aborted request ends in an error: the output is over either way.
    stream.once("end", resolve);
    stream.once("close", resolve);
    stream.once("error", () => resolve());
  });
}

/**
 * Turns chunks into complete lines per stream (UTF-8 safe across chunk boundaries), reporting each as
 * it completes. Of a line longer than a task event can hold, only the start is kept (and how much was
 * dropped), so memory stays bounded however long a process prints without a newline. The start kept is
 * longer than an event by a secret's length: the daemon masks before it cuts, so a secret across the
 * cut is masked whole, never shown in part.
 */
const KEEP_CHARS = MAX_LOG_LINE_CHARS + MAX_SECRET_VALUE_CHARS;

class LineSplitter {
  private readonly context: ExecutorContext;
  private readonly streams = new Map<OutputStream, { decoder: StringDecoder; partial: string; dropped: number }>();

  constructor(context: ExecutorContext) {
    this.context = context;
  }

  push(stream: OutputStream, chunk: Buffer): void {
    let state = this.streams.get(stream);
    if (!state) {
      state = { decoder: new StringDecoder("utf8"), partial: "", dropped: 0 };
      this.streams.set(stream, state);
    }
    const pieces = state.decoder.write(chunk).split("\n");
    pieces.forEach((piece, index) => {
      if (!state) return;
      // Beyond the longest line reported, only the length is kept.
      const room = KEEP_CHARS - state.partial.length;
      if (piece.length <= room) state.partial += piece;
      else {
        state.partial += piece.slice(0, Math.max(0, room));
        state.dropped += piece.length - Math.max(0, room);
      }
      if (index < pieces.length - 1) this.emitLine(stream, state);
    });
  }

  /** Reports what is left of unfinished lines. Safe to call more than once. */
  flush(): void {
    for (const [stream, state] of this.streams) {
      const rest = state.decoder.end();
      if (rest) this.push(stream, Buffer.from(rest));
      if (state.partial || state.dropped) this.emitLine(stream, state);
    }
  }

  private emitLine(stream: OutputStream, state: { partial: string; dropped: number }): void {
    const line = state.partial.endsWith("\r") ? state.partial.slice(0, -1) : state.partial;
    this.context.log(line, stream, state.dropped);
    state.partial = "";
    state.dropped = 0;
  }
}

// --- Events: the container's start, oom and die, reported as progress.

interface EventWatcher {
  /** Resolves once the "die" event was reported, or after `ms`. */
  settle(ms: number): Promise<void>;
  /** Resolves with the exit code the "die" event carries (never, if it carries none). */
  exited: Promise<{ exitCode: number }>;
  /** Whether an "oom" event came: the engine's inspect can lag behind it in saying OOMKilled. */
  oomKilled(): boolean;
  close(): void;
}

/** A line of Docker's event stream, as far as it is read here. */
const DockerEvent = z.object({
  status: z.string().optional(),
  Action: z.string().optional(),
  Actor: z.object({ Attributes: z.record(z.string(), z.string()).optional() }).optional(),
});
type DockerEvent = z.infer<typeof DockerEvent>;

async function watchEvents(docker: Docker, containerId: string, since: number, context: ExecutorContext): Promise<EventWatcher> {
  const stream = (await docker.getEvents({ since, filters: { type: ["container"], container: [containerId] } })) as NodeJS.ReadableStream & { destroy(): void };
  let died = false;
  let oom = false;
  let onDie: (() => void) | undefined;
  let onExit: ((result: { exitCode: number }) => void) | undefined;
  const exited = new Promise<{ exitCode: number }>((resolve) => (onExit = resolve));
  const data = { containerId };
  const handle = (event: DockerEvent) => {
    const action = event.Action ?? event.status;
    if (action === "start") context.progress("docker", "container started", data);
    else if (action === "oom") {
      oom = true;
      context.progress("docker", "container ran out of memory", data);
    }
    else if (action === "die") {
      const exitCode = Number(event.Actor?.Attributes?.exitCode);
      context.progress("docker", `container died (exit ${Number.isNaN(exitCode) ? "unknown" : exitCode})`, { ...data, exitCode });
      died = true;
      onDie?.();
      if (!Number.isNaN(exitCode) && event.Actor?.Attributes?.exitCode !== undefined) onExit?.({ exitCode });
    }
  };
  let buffered = "";
  stream.on("data", (chunk: Buffer) => {
    buffered += chunk.toString("utf8");
    const parts = buffered.split("\n");
    buffered = parts.pop() ?? "";
    for (const part of parts) {
      if (!part.trim()) continue;
      const event = parseJson(DockerEvent, part);
      try {
        if (event.success) handle(event.data);
      } catch {
        // Events are informative (one not understood is skipped): the outcome does not depend on them.
      }
    }
  });
  stream.on("error", () => undefined); // destroyed at the end of the job, or the engine went away: nothing to report
  return {
    settle: (ms) =>
      died
        ? Promise.resolve()
        : withDeadline(
            new Promise<void>((resolve) => (onDie = resolve)),
            ms,
          ),
    exited,
    oomKilled: () => oom,
    close: () => stream.destroy(),
  };
}

// --- Files out of the container: what a job leaves in /out for the pipeline to read.

/** Per file and in all: what fits in one result message with room to spare. */
const MAX_FILE_BYTES = 128 * 1024;
const MAX_COLLECTED_BYTES = 256 * 1024;
/** A file larger than this is not read through at all. */
const MAX_SCANNED_BYTES = 64 * 1024 * 1024;

async function collectFiles(container: Docker.Container, paths: readonly string[]): Promise<Record<string, CollectedFile>> {
  // Read side by side, each up to the per-file limit; the budget for all is then spent in the payload's order.
  const read = await Promise.all(paths.map((path) => container.getArchive({ path }).then((archive) => tailOfFirstFile(archive, MAX_FILE_BYTES), () => null)));
  const files: Record<string, CollectedFile> = {};
  let budget = MAX_COLLECTED_BYTES;
  paths.forEach((path, index) => {
    const file = read[index];
    if (!file) {
      files[path] = { missing: true };
      return;
    }
    const tail = file.tail.length > budget ? file.tail.subarray(file.tail.length - budget) : file.tail;
    budget -= tail.length;
    files[path] = { content: tail.toString("utf8"), bytes: file.size, ...(tail.length < file.size ? { truncated: true as const } : {}) };
  });
  return files;
}

/** The last `keep` bytes of the first regular file in a tar stream (Docker's archive of one path), or null. */
export async function tailOfFirstFile(archive: NodeJS.ReadableStream, keep: number): Promise<{ tail: Buffer; size: number } | null> {
  const extract = tar.extract();
  let found: { tail: Buffer; size: number } | null = null;
  const done = new Promise<void>((resolve, reject) => {
    extract.on("entry", (header, stream, next) => {
      if (found || header.type !== "file" || (header.size ?? 0) > MAX_SCANNED_BYTES) {
        stream.on("end", next).resume();
        return;
      }
      let tail = Buffer.alloc(0);
      stream.on("data", (data: unknown) => {
        const chunk = Buffer.isBuffer(data) ? data : Buffer.from(String(data));
        tail = Buffer.concat([tail, chunk]);
        if (tail.length > keep) tail = tail.subarray(tail.length - keep);
      });
      stream.on("end", () => {
        found = { tail: keep > 0 ? tail : Buffer.alloc(0), size: header.size ?? tail.length };
        next();
      });
    });
    extract.on("finish", resolve);
    extract.on("error", reject);
  });
  (archive as NodeJS.ReadableStream & { pipe: (target: NodeJS.WritableStream) => void }).pipe(extract);
  await done;
  return found;
}

// --- Small helpers.

function whenAborted(signal: AbortSignal): Promise<{ aborted: true }> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve({ aborted: true });
    signal.addEventListener("abort", () => resolve({ aborted: true }), { once: true });
  });
}

/** Waits for `promise`, but no longer than `ms`; either way resolves. */
async function withDeadline(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([promise.catch(() => undefined), new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}

/** A container that is already gone, or already being removed, is what we wanted. */
function isGone(error: unknown): boolean {
  const status = statusCode(error);
  return status === 404 || status === 409;
}

function statusCode(error: unknown): number | undefined {
  return typeof error === "object" && error !== null && "statusCode" in error && typeof error.statusCode === "number" ? error.statusCode : undefined;
}

/** The engine's own message (dockerode wraps it in "(HTTP code 400) unexpected - …"). */
function engineMessage(error: unknown): string {
  if (typeof error === "object" && error !== null && "json" in error) {
    const json = error.json;
    if (typeof json === "object" && json !== null && "message" in json && typeof json.message === "string") return json.message.trim();
  }
  return error instanceof Error ? error.message : String(error);
}
