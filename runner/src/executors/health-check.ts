/**
 * health.check: asks Caddy for a site the way a visitor would (its Host header on Caddy's listener)
 * until it answers as expected or the attempts run out. Going through Caddy rather than straight to
 * the upstream checks the route as well as the app.
 */
import { type IncomingMessage, request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { setTimeout as sleep } from "node:timers/promises";
import type { JobPayload } from "../../../src/shared/job-payloads.ts";
import type { RunnerConfig } from "../config.ts";
import type { Executor } from "./types.ts";

/** One try may take this long; a hung upstream must not eat the whole job. */
const ATTEMPT_TIMEOUT_MS = 5_000;
/** Enough of the body to look for `expectBody`; the rest is not read. */
const MAX_BODY_BYTES = 1024 * 1024;

/** Of a failed answer's body, this much is kept as evidence. */
const EVIDENCE_CHARS = 500;

interface Answer {
  status: number | null;
  /** The start of the body of an answer that was not healthy. */
  body?: string;
  /** "502 Bad Gateway", "connect ECONNREFUSED 127.0.0.1:80", "200 OK, body lacks "ready"". */
  summary: string;
  healthy: boolean;
}

export const healthCheck: Executor<JobPayload<"health.check">> = async (payload, context) => {
  const { releasePorts, caddy } = context.config;
  if (payload.upstreamPort !== undefined && (payload.upstreamPort < releasePorts.from || payload.upstreamPort > releasePorts.to)) {
    return { ok: false, message: `port ${payload.upstreamPort} is not one of this runner's release ports ${releasePorts.from}-${releasePorts.to}` };
  }
  const base = payload.upstreamPort !== undefined ? `http://127.0.0.1:${payload.upstreamPort}` : caddyUrl(caddy);
  const url = new URL(`${base}${payload.path}`);
  context.progress("check", `GET ${url.href} with Host ${payload.domain}, up to ${payload.attempts} attempts`);
  let last: Answer | undefined;
  let attempts = 0;
  try {
    for (let attempt = 1; attempt <= payload.attempts; attempt++) {
      if (attempt > 1) await sleep(payload.intervalMs, undefined, { signal: context.signal });
      attempts = attempt;
      last = await probe(url, payload, context.signal);
      context.log(`attempt ${attempt}/${payload.attempts}: ${last.summary}`, "system");
      if (last.healthy) {
        return {
          ok: true,
          message: `healthy after ${attempt} attempt${attempt === 1 ? "" : "s"} (status ${String(last.status)})`,
          data: { attempts: attempt, status: last.status, url: url.href },
        };
      }
    }
  } catch (error) {
    if (!context.signal.aborted) throw error;
    return {
      ok: false,
      message: `stopped after ${attempts} attempt${attempts === 1 ? "" : "s"} (${String(context.signal.reason)})`,
      data: { attempts, status: last?.status ?? null },
    };
  }
  return {
    ok: false,
    message: `unhealthy after ${attempts} attempt${attempts === 1 ? "" : "s"}: last ${last?.summary ?? "no answer"}`,
    data: { attempts, status: last?.status ?? null, url: url.href, ...(last?.body !== undefined ? { body: last.body } : {}) },
  };
};

/**
 * Where Caddy's listener is reached: the configured URL, else HTTPS on 443 when Caddy serves TLS (plain
 * HTTP there only redirects), else HTTP on 80.
 */
export function caddyUrl(caddy: RunnerConfig["caddy"]): string {
  if (caddy.httpUrl) return caddy.httpUrl.replace(/\/+$/, "");
  return caddy.disableTls ? "http://127.0.0.1:80" : "https://127.0.0.1:443";
}

/** One GET. Network failures and timeouts are answers too; only the job's abort throws. */
async function probe(url: URL, payload: JobPayload<"health.check">, jobSignal: AbortSignal): Promise<Answer> {
  const signal = AbortSignal.any([jobSignal, AbortSignal.timeout(ATTEMPT_TIMEOUT_MS)]);
  try {
    const response = await send(url, payload.domain, signal);
    const status = response.statusCode ?? 0;
    const line = `${status} ${response.statusMessage ?? ""}`.trim();
    if (!payload.expectStatus.includes(status)) {
      const body = (await readBody(response, EVIDENCE_CHARS * 4).catch(() => "")).slice(0, EVIDENCE_CHARS);
      return { status, summary: line, healthy: false, body };
    }
    if (payload.expectBody === undefined) {
      response.destroy();
      return { status, summary: line, healthy: true };
    }
    const body = await readBody(response);
    if (!body.includes(payload.expectBody)) {
      return { status, summary: `${line}, body lacks ${JSON.stringify(payload.expectBody)}`, healthy: false, body: body.slice(0, EVIDENCE_CHARS) };
    }
    return { status, summary: line, healthy: true };
  } catch (error) {
    if (jobSignal.aborted) throw error;
    if (signal.aborted) return { status: null, summary: `no answer within ${ATTEMPT_TIMEOUT_MS / 1000} s`, healthy: false };
    return { status: null, summary: describe(error), healthy: false };
  }
}

/** Connecting to "localhost" can fail with an AggregateError whose own message is empty. */
export function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  if (error.message) return error.message;
  const code = (error as NodeJS.ErrnoException).code;
  return code ?? error.name;
}

/**
 * node:http rather than fetch: fetch will not send a Host header of our choosing. A fresh
 * connection per try (agent: false), so a pooled socket to a since-restarted Caddy cannot fail a try.
 * A GET unless `what` names another method (and a body, sent with its content type).
 */
export function send(url: URL, host: string, signal: AbortSignal, what: { method: string; body?: string; contentType?: string; userAgent: string } = { method: "GET", userAgent: "orchestrator-runner health.check" }): Promise<IncomingMessage> {
  const request = url.protocol === "https:" ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(url, {
      method: what.method,
      headers: { host, "user-agent": what.userAgent, ...(what.body !== undefined ? { "content-type": what.contentType ?? "text/plain", "content-length": String(Buffer.byteLength(what.body)) } : {}) },
      agent: false,
      signal,
      // Over HTTPS, ask for the site's certificate, as a browser visiting the domain would. Whether
      // the certificate is valid yet (ACME may still be at work) is not what this checks: the route is.
      ...(url.protocol === "https:" ? { servername: host, rejectUnauthorized: false } : {}),
    });
    req.once("response", resolve);
    req.once("error", reject);
    req.end(what.body);
  });
}

export async function readBody(response: IncomingMessage, limit = MAX_BODY_BYTES): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of response as AsyncIterable<Buffer>) {
    chunks.push(chunk);
    size += chunk.length;
    if (size >= limit) break; // leaving the loop destroys the stream
  }
  return Buffer.concat(chunks).toString("utf8");
}
