/**
 * The worker's side of tracing, in workerd: every request belongs to a trace (the caller's
 * traceparent, or a new one), tells it back, and logs it on every line; work it starts carries it
 * (a job's envelope, a task's events); custom spans run the work inside them, results and errors alike.
 */
import { env } from "cloudflare:workers";
import { Hono } from "hono";
import { requestId } from "hono/request-id";
import { describe, expect, it, vi } from "vitest";
import type { AppEnv } from "../../src/lib/context.ts";
import { requestLog } from "../../src/platform/request-log.ts";
import { traceContext } from "../../src/platform/trace.ts";
import { inSpan } from "../../src/lib/spans.ts";
import { traceparentIn } from "../../src/shared/trace.ts";
import { adminKey, call } from "./helpers.ts";
import { enrolledRunner } from "./runner-helpers.ts";

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/;

describe("a request's trace", () => {
  it("keeps the caller's trace id, or starts a trace, and says which in the response", async () => {
    const given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const kept = await call("/api/projects", { key: adminKey(), headers: { traceparent: given } });
    expect(kept.headers.get("traceparent")).toBe(given);
    const fresh = await call("/api/projects", { key: adminKey() });
    expect(fresh.headers.get("traceparent")).toMatch(TRACEPARENT);
    expect(fresh.headers.get("traceparent")).not.toBe(given);
    // A malformed one is replaced, not an error.
    const replaced = await call("/api/projects", { key: adminKey(), headers: { traceparent: "00-zzzz" } });
    expect(replaced.status).toBe(200);
    expect(replaced.headers.get("traceparent")).toMatch(TRACEPARENT);
  });

  it("logs the trace id on every line of the request", async () => {
    // The app's own middleware, at info level (the tests' worker logs warnings only).
    const probe = new Hono<AppEnv>();
    probe.use(requestId(), requestLog, traceContext);
    probe.get("/probe", (c) => {
      c.var.log.info("inside the handler");
      return c.text("ok");
    });
    const lines: string[] = [];
    const spy = vi.spyOn(console, "log").mockImplementation((line: string) => void lines.push(line));
    try {
      await probe.request("/probe", { headers: { traceparent: "00-11111111111111111111111111111111-2222222222222222-01" } }, { ...env, LOG_LEVEL: "info" });
    } finally {
      spy.mockRestore();
    }
    const records = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(records.map((record) => record.msg)).toEqual(["inside the handler", "request"]);
    expect(records.every((record) => record.traceId === "11111111111111111111111111111111")).toBe(true);
  });

  it("carries a generated trace into the job it starts", async () => {
    const runner = await enrolledRunner();
    const res = await call(`/api/servers/${runner.handle}/jobs`, { method: "POST", key: adminKey(), json: { type: "noop" } });
    expect(res.status).toBe(201);
    const traceparent = res.headers.get("traceparent") ?? "";
    const { job } = await res.json<{ job: { traceparent?: string } }>();
    expect(job.traceparent).toBe(traceparent);
  });
});

describe("custom spans", () => {
  it("run the work inside them and hand back its result or its error", async () => {
    expect(await inSpan("test.ok", { "orchestrator.test": true, traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" }, () => Promise.resolve(42))).toBe(42);
    await expect(inSpan("test.fails", {}, () => Promise.reject(new Error("boom")))).rejects.toThrow("boom");
    expect(env.LOG_LEVEL).toBeDefined();
  });
});

describe("a span in a task's trace", () => {
  it("continues the trace a task event names, and starts a new one for an event without a valid one", () => {
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const inTask = traceparentIn(traceId);
    expect(inTask).toMatch(TRACEPARENT);
    expect(TRACEPARENT.exec(inTask)?.[1]).toBe(traceId);
    expect(traceparentIn(traceId)).not.toBe(inTask);
    for (const missing of [undefined, "0".repeat(32), "not-a-trace-id"]) {
      const fresh = traceparentIn(missing);
      expect(fresh).toMatch(TRACEPARENT);
      expect(TRACEPARENT.exec(fresh)?.[1]).not.toBe(missing);
    }
  });
});
