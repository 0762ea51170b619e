/**
 * release.logs: the last lines a running release wrote, for a person (or the Product Owner) asking why
 * an app misbehaves. Read from the Docker engine (the release's container, found by its labels), both
 * streams, oldest first, each line cut to MAX_LINE_CHARS. Every value of the release's env file is
 * masked but the plain ones the job names: the runner wrote that file, so it knows every secret the
 * release holds, and none of them leaves the server in a log line.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import Docker from "dockerode";
import type { JobPayload } from "../../../src/shared/job-payloads.ts";
import { MAX_EVENT_DATA_CHARS } from "../../../src/shared/limits.ts";
import type { Executor } from "./types.ts";

const MAX_LINE_CHARS = 2000;
/** What the lines of one result may take, within what a task event's data holds. */
const MAX_RESULT_CHARS = MAX_EVENT_DATA_CHARS - 4096;
/** Shorter values are not masked: "1", "true", "8000" would blank out half of every line. */
const MIN_MASKED_CHARS = 6;
export const MASK = "[masked]";

export const releaseLogs: Executor<JobPayload<"release.logs">> = async (payload, context) => {
  const docker = new Docker({ socketPath: context.config.docker.socketPath });
  const [container] = await docker.listContainers({ all: true, filters: { label: [`orchestrator.project=${payload.project}`, `orchestrator.release=${payload.release}`] } });
  if (!container) return { ok: false, message: `release ${payload.release} of ${payload.project} has no container on this server` };
  const secrets = await envSecrets(join(context.config.deploymentsRoot, payload.project, "releases", payload.release, ".env"), new Set(payload.plain));
  const raw = await docker.getContainer(container.Id).logs({ stdout: true, stderr: true, tail: payload.tail, timestamps: true, follow: false });
  const all = demux(raw)
    .map((line) => mask(line, secrets))
    .map((line) => (line.length > MAX_LINE_CHARS ? `${line.slice(0, MAX_LINE_CHARS)}… [cut]` : line));
  // The newest lines that fit a result (the hub stores it, a task event carries it); older ones are counted.
  const lines: string[] = [];
  let size = 0;
  for (const line of [...all].reverse()) {
    size += line.length + 4;
    if (size > MAX_RESULT_CHARS) break;
    lines.unshift(line);
  }
  const omitted = all.length - lines.length;
  return {
    ok: true,
    message: `${lines.length} line${lines.length === 1 ? "" : "s"} of ${payload.project}'s release ${payload.release} (${container.State})${omitted ? `; ${omitted} older ones did not fit` : ""}`,
    data: { lines, omitted, state: container.State },
  };
};

/** The values of the env file's variables but the plain ones, longest first (so a value inside another is masked whole). */
export async function envSecrets(path: string, plain: Set<string>): Promise<string[]> {
  const text = await readFile(path, "utf8").catch(() => "");
  const values = text
    .split("\n")
    .map((line) => /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line))
    .filter((match): match is RegExpExecArray => match !== null && !plain.has(match[1] ?? ""))
    .map((match) => match[2] ?? "")
    .filter((value) => value.length >= MIN_MASKED_CHARS);
  return [...new Set(values)].sort((a, b) => b.length - a.length);
}

export function mask(line: string, secrets: string[]): string {
  let out = line;
  for (const secret of secrets) out = out.split(secret).join(MASK);
  // A secret in a URL is often percent-encoded.
  for (const secret of secrets) {
    const encoded = encodeURIComponent(secret);
    if (encoded !== secret) out = out.split(encoded).join(MASK);
  }
  return out;
}

/** Docker's log stream of a container without a TTY (frames of stdout and stderr, in the order written), as text lines. */
export function demux(raw: Buffer | string): string[] {
  const buffer = typeof raw === "string" ? Buffer.from(raw) : raw;
  const frames: Buffer[] = [];
  // A frame: 8 bytes of header (the stream, three zeros, the size as a big-endian uint32), then its bytes.
  let offset = 0;
  while (offset + 8 <= buffer.length) {
    const size = buffer.readUInt32BE(offset + 4);
    frames.push(buffer.subarray(offset + 8, offset + 8 + size));
    offset += 8 + size;
  }
  return Buffer.concat(frames)
    .toString("utf8")
    .split("\n")
    .filter((line) => line.length > 0);
}
