/**
 * acceptance.check: runs a project's acceptance checks (src/shared/spec.ts) against a release, once each,
 * in order: requests straight to its port before it gets traffic, or through Caddy with the project's
 * Host header as a visitor would; a bot's messages through the runner's Bot API gateway, as a person
 * writing to the bot would (runner/src/bot-gateway.ts). Unlike health.check nothing is retried: the
 * release answered healthy already, and a check either holds or it does not. The job is ok when every
 * check holds; each check's result is in its data, and the first failure is its message.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { JobPayload } from "../../../src/shared/job-payloads.ts";
import type { AcceptanceResult as CheckResult } from "../../../src/shared/job-results.ts";
import { type HttpCheck, isMessageCheck, type MessageCheck } from "../../../src/shared/spec.ts";
import type { BotGateway } from "../bot-gateway.ts";
import { caddyUrl, describe, readBody, send } from "./health-check.ts";
import type { Executor } from "./types.ts";

/** One check may take this long: a hung app fails its check, not the whole job. */
const CHECK_TIMEOUT_MS = 10_000;
/**
 * A bot's reply may take this long: a release that is not yet the one polling Telegram asks for its
 * updates again only after a pause (the template's is 5 s), and the check's message is its next answer.
 */
const REPLY_TIMEOUT_MS = 20_000;
/** Of an answer's body, this much is kept as a failed check's evidence. */
const EVIDENCE_CHARS = 300;


export const acceptanceCheck: Executor<JobPayload<"acceptance.check">> = async (payload, context) => {
  const { releasePorts, caddy } = context.config;
  if (payload.upstreamPort !== undefined && (payload.upstreamPort < releasePorts.from || payload.upstreamPort > releasePorts.to)) {
    return { ok: false, message: `port ${payload.upstreamPort} is not one of this runner's release ports ${releasePorts.from}-${releasePorts.to}` };
  }
  const base = payload.upstreamPort !== undefined ? `http://127.0.0.1:${payload.upstreamPort}` : caddyUrl(caddy);
  const where = payload.upstreamPort !== undefined ? `the release on port ${payload.upstreamPort}` : `${payload.domain} through Caddy`;
  context.progress("check", `${payload.checks.length} acceptance check${payload.checks.length === 1 ? "" : "s"} against ${where}`);
  const results: CheckResult[] = [];
  for (const check of payload.checks) {
    if (context.signal.aborted) break;
    const result = isMessageCheck(check) ? await converse(context.botGateway, payload.release, check, context.signal) : await run(new URL(`${base}${check.path}`), payload.domain, check, context.signal);
    results.push(result);
    context.log(`${result.ok ? "✓" : "✗"} ${check.name}: ${isMessageCheck(check) ? JSON.stringify(check.send) : `${check.method} ${check.path}`} → ${result.detail}`, "system");
    // A moment between requests, so a burst of checks cannot look like a flood to the app.
    await sleep(20, undefined, { signal: context.signal }).catch(() => undefined);
  }
  if (context.signal.aborted) return { ok: false, message: `stopped after ${results.length} of ${payload.checks.length} checks (${String(context.signal.reason)})`, data: { results } };
  const failed = results.filter((result) => !result.ok);
  if (failed.length === 0) return { ok: true, message: `${results.length} of ${results.length} acceptance checks pass on ${where}`, data: { results } };
  const [first] = failed;
  return {
    ok: false,
    message: `${failed.length} of ${results.length} acceptance checks fail on ${where}; the first, "${first?.name ?? ""}": ${first?.detail ?? ""}`,
    data: { results },
  };
};

/** A bot's check: its message to the release's bot, and the bot's replies held against what it expects. */
async function converse(gateway: BotGateway | null, release: string | undefined, check: MessageCheck, signal: AbortSignal): Promise<CheckResult> {
  const fail = (detail: string): CheckResult => ({ name: check.name, ok: false, status: null, detail });
  if (!gateway) return fail("this runner has no Bot API gateway (botGateway in its config), so no message can be sent to its bots");
  if (!release) return fail("the job does not name the release to send the message to");
  const { replies, polled } = await gateway.converse(release, check.send, REPLY_TIMEOUT_MS, signal);
  if (signal.aborted) return fail("stopped");
  const quoted = replies.map((text) => JSON.stringify(text.length > 200 ? `${text.slice(0, 200)}…` : text)).join(", ");
  if (!replies.length) {
    return fail(
      polled
        ? `the bot took the message but sent no reply within ${REPLY_TIMEOUT_MS / 1000} s`
        : `the bot did not ask for its updates within ${REPLY_TIMEOUT_MS / 1000} s (is it running, and does it reach Telegram through TELEGRAM_API_URL?)`,
    );
  }
  if (!replies.some((text) => text.includes(check.expect.replyContains))) return { ...fail(`the bot replied ${quoted}, none of which contains ${JSON.stringify(check.expect.replyContains)}`), body: replies.join("\n").slice(0, EVIDENCE_CHARS) };
  return { name: check.name, ok: true, status: null, detail: `the bot replied ${quoted}` };
}

/** One check: its request, and its answer held against what it expects. Network failures are answers too. */
async function run(url: URL, host: string, check: HttpCheck, jobSignal: AbortSignal): Promise<CheckResult> {
  const signal = AbortSignal.any([jobSignal, AbortSignal.timeout(CHECK_TIMEOUT_MS)]);
  const fail = (status: number | null, detail: string, body?: string): CheckResult => ({ name: check.name, ok: false, status, detail, ...(body !== undefined ? { body: body.slice(0, EVIDENCE_CHARS) } : {}) });
  let status: number | null = null;
  try {
    const response = await send(url, host, signal, { method: check.method, ...(check.body !== undefined ? { body: check.body, contentType: isJson(check.body) ? "application/json" : "text/plain" } : {}), userAgent: "orchestrator-runner acceptance.check" });
    status = response.statusCode ?? 0;
    const body = await readBody(response);
    if (status !== check.expect.status) return fail(status, `expected status ${check.expect.status}, got ${status}`, body);
    if (check.expect.bodyContains !== undefined && !body.includes(check.expect.bodyContains)) return fail(status, `status ${status}, but the body lacks ${JSON.stringify(check.expect.bodyContains)}`, body);
    if (check.expect.json) {
      const { pointer, equals } = check.expect.json;
      let parsed: unknown;
      try {
        parsed = JSON.parse(body);
      } catch {
        return fail(status, `status ${status}, but the body is not JSON`, body);
      }
      const found = atPointer(parsed, pointer);
      if (!found.present) return fail(status, `status ${status}, but the body has nothing at ${pointer || "(the root)"}`, body);
      if (!sameJson(found.value, equals)) return fail(status, `status ${status}, but ${pointer || "the body"} is ${JSON.stringify(found.value)}, not ${JSON.stringify(equals)}`, body);
    }
    return { name: check.name, ok: true, status, detail: `status ${status}${check.expect.bodyContains !== undefined ? `, the body contains ${JSON.stringify(check.expect.bodyContains)}` : ""}${check.expect.json ? `, ${check.expect.json.pointer || "the body"} is ${JSON.stringify(check.expect.json.equals)}` : ""}` };
  } catch (error) {
    if (jobSignal.aborted) return fail(status, "stopped");
    if (signal.aborted) return fail(status, `no answer within ${CHECK_TIMEOUT_MS / 1000} s`);
    return fail(status, describe(error));
  }
}

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/** The value a JSON Pointer (RFC 6901) names: "" is the whole document, "~1" a "/" and "~0" a "~" in a key. */
export function atPointer(document: unknown, pointer: string): { present: true; value: unknown } | { present: false } {
  if (pointer === "") return { present: true, value: document };
  let value = document;
  for (const raw of pointer.slice(1).split("/")) {
    const key = raw.replaceAll("~1", "/").replaceAll("~0", "~");
    const member = value !== null && typeof value === "object" && (!Array.isArray(value) || /^(0|[1-9][0-9]*)$/.test(key)) ? own(value, key) : undefined;
    if (!member) return { present: false };
    value = member.value;
  }
  return { present: true, value };
}

/** Deep equality of two JSON values (object keys in any order). */
export function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) || Array.isArray(b)) return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((item, i) => sameJson(item, b[i]));
  if (a === null || b === null || typeof a !== "object" || typeof b !== "object") return false;
  const keysA = Object.keys(a);
  return keysA.length === Object.keys(b).length && keysA.every((key) => {
    const other = own(b, key);
    return other !== undefined && sameJson(own(a, key)?.value, other.value);
  });
}

/** An object's own member (an array's element by its index), or undefined: never one it inherits. */
function own(object: object, key: string): { value: unknown } | undefined {
  const descriptor = Object.getOwnPropertyDescriptor(object, key);
  return descriptor && !(Array.isArray(object) && key === "length") ? { value: descriptor.value as unknown } : undefined;
}
