/**
 * Tracing across the control plane and the runner: a provision started by an HTTP request with a
 * `traceparent` runs its jobs on a real runner, whose spans reach an OTLP/HTTP receiver (the stand-in)
 * as children of that request's span, in the same trace. A runner whose span endpoint is dead runs its
 * jobs as fast as ever, and none fails.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { enrolledRunner, finishedJob, registerServer, submitJob, type TestRunner } from "../../scripts/lib/local-runner.ts";
import { type StackClient } from "../../scripts/lib/local-stack.ts";
import { sharedStack } from "../support/shared.ts";
import { freePort } from "../../scripts/lib/ports.ts";
import { waitFor } from "../../scripts/lib/processes.ts";
import type { TaskEvent } from "../../src/shared/events.ts";
import { OtlpServer } from "../../standins/otlp-server.ts";

let stack: StackClient;
let otlp: OtlpServer;
let traced: TestRunner;
let blind: TestRunner;
const TRACED = "traced-box";
const BLIND = "blind-box";

beforeAll(async () => {
  otlp = new OtlpServer();
  await otlp.start();
  stack = sharedStack();
  const docker = { socketPath: inject("dockerSocket") };
  traced = await enrolledRunner(stack, (await registerServer(stack, TRACED)).enrollment.token, { docker, tracing: { otlpEndpoint: otlp.tracesUrl, flushIntervalMs: 200 } });
  // Nothing listens on this port: every export fails.
  const dead = `http://127.0.0.1:${await freePort()}/v1/traces`;
  blind = await enrolledRunner(stack, (await registerServer(stack, BLIND)).enrollment.token, { docker, tracing: { otlpEndpoint: dead, flushIntervalMs: 100, exportTimeoutMs: 2000 } });
  await traced.start();
  await blind.start();
}, 120_000);

afterAll(async () => {
  await traced?.stop();
  await blind?.stop();
  await otlp?.stop();
});

const newTraceparent = () => {
  const traceId = randomBytes(16).toString("hex");
  const spanId = randomBytes(8).toString("hex");
  return { traceId, spanId, traceparent: `00-${traceId}-${spanId}-01` };
};

describe("a trace from the HTTP request to the runner's jobs", () => {
  it("exports the provision's job spans as children of the request that started it", async () => {
    const { traceId, spanId, traceparent } = newTraceparent();
    const res = await fetch(`${stack.url}/api/servers/${TRACED}/provision`, {
      method: "POST",
      headers: { authorization: `Bearer ${stack.adminKey}`, "content-type": "application/json", traceparent },
      body: JSON.stringify({ check: true }),
    });
    expect(res.status).toBe(202);
    const { task } = (await res.json()) as { task: { id: string } };
    const events = await waitFor(
      async () => {
        const page = (await stack.api<{ events: TaskEvent[] }>(`/api/tasks/${task.id}/events?limit=1000`)).body.events;
        return page.some((e) => e.type === "task.completed" || e.type === "task.failed") ? page : undefined;
      },
      120_000,
      () => `provision ${task.id} did not end`,
    );
    expect(events.at(-1)?.type, events.map((e) => e.message).join("\n")).toBe("task.completed");
    // The task's events carry the trace too.
    expect(events.filter((e) => !e.traceparent?.includes(traceId)).map((e) => `${e.type} ${e.step ?? ""} ${e.message.slice(0, 80)}`)).toEqual([]);
    const spans = await waitFor(() => {
      const mine = otlp.spans.filter((span) => span.traceId === traceId);
      return mine.length >= 2 ? mine : undefined;
    }, 15_000, () => `spans received: ${JSON.stringify(otlp.spans.map((s) => [s.name, s.traceId]))}`);
    expect(spans.map((span) => span.name).sort()).toEqual(["job ansible.playbook", "job provision"]);
    for (const span of spans) {
      expect(span.parentSpanId).toBe(spanId);
      expect(span.resource).toMatchObject({ "service.name": "orchestrator-runner", "orchestrator.server": TRACED });
      expect(span.attributes["orchestrator.job.ok"]).toBe(true);
      expect(typeof span.attributes["orchestrator.job.id"]).toBe("string");
    }
  });

  it("marks a failed job's span as an error", async () => {
    const { traceId, traceparent } = newTraceparent();
    const job = await submitJob(stack, TRACED, { type: "docker.run", payload: { image: "orchestrator/does-not-exist:never", cmd: ["true"], timeoutSeconds: 30 }, traceparent });
    expect((await finishedJob(stack, TRACED, job.id)).state).toBe("failed");
    const span = await waitFor(() => otlp.spans.find((s) => s.traceId === traceId), 15_000, () => "no span for the failed job");
    expect(span.status.code).toBe(2);
    expect(span.attributes["orchestrator.job.ok"]).toBe(false);
  });

  it("never slows or fails a job when the span endpoint is dead", async () => {
    const started = Date.now();
    const jobs = await Promise.all(Array.from({ length: 6 }, () => submitJob(stack, BLIND, { type: "noop", payload: {}, traceparent: newTraceparent().traceparent })));
    const done = await Promise.all(jobs.map((job) => finishedJob(stack, BLIND, job.id)));
    expect(done.map((job) => job.state)).toEqual(Array(6).fill("succeeded"));
    for (const job of done) expect(Date.parse(job.finishedAt ?? "") - Date.parse(job.startedAt ?? "")).toBeLessThan(1000);
    expect(Date.now() - started).toBeLessThan(20_000);
  });
});
