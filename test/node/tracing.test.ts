/**
 * Tracing on the runner: a failed job's span is an error, and a runner whose span endpoint is dead
 * runs its jobs as fast as ever, and none fails. (That a request's trace reaches the runner's job
 * spans through a Workflow is asserted by runner-bundle.test.ts's provisioning, which runs that workflow anyway.)
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { enrolledRunner, finishedJob, registerServer, submitJob, type TestRunner } from "../../scripts/lib/local-runner.ts";
import { type StackClient } from "../../scripts/lib/local-stack.ts";
import { sharedStack } from "../support/shared.ts";
import { freePort } from "../../scripts/lib/ports.ts";
import { waitFor } from "../../scripts/lib/processes.ts";
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
