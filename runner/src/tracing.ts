/**
 * The runner's spans, exported over OTLP/HTTP (JSON) to the endpoint its config names (Grafana
 * Tempo, Honeycomb, an OpenTelemetry Collector…). Each job is one span, a child of the `traceparent`
 * its signed envelope carries, so it joins the trace of the HTTP request or Telegram update that
 * started the work. Spans are batched and sent in the background: an endpoint that is down or slow
 * costs dropped spans, never a slower or failed job. Without an endpoint, nothing is set up at all.
 */
import { context, propagation, type Span, SpanStatusCode, trace, type Tracer } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BatchSpanProcessor, NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import type { RunnerConfig } from "./config.ts";
import { RUNNER_VERSION } from "./version.ts";

export interface JobTracing {
  /** Starts a job's span under its traceparent (a root span when there is none). */
  startJob(job: { id: string; type: string; traceparent?: string | undefined }): Span;
  /** Sends what is still buffered; waits at most a few seconds. */
  shutdown(): Promise<void>;
}

const propagator = new W3CTraceContextPropagator();

/** Does nothing: no endpoint is configured. */
const NO_TRACING: JobTracing = {
  startJob: () => trace.wrapSpanContext({ traceId: "0".repeat(32), spanId: "0".repeat(16), traceFlags: 0 }),
  shutdown: () => Promise.resolve(),
};

export function jobTracing(config: RunnerConfig): JobTracing {
  const settings = config.tracing;
  if (!settings?.otlpEndpoint) return NO_TRACING;
  const exporter = new OTLPTraceExporter({ url: settings.otlpEndpoint, headers: settings.headers, timeoutMillis: settings.exportTimeoutMs });
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ "service.name": settings.serviceName, "service.version": RUNNER_VERSION, "orchestrator.server": config.server, "orchestrator.runner_id": config.runnerId }),
    // Bounded: a dead endpoint drops spans past maxQueueSize instead of holding memory.
    spanProcessors: [new BatchSpanProcessor(exporter, { maxQueueSize: 2048, scheduledDelayMillis: settings.flushIntervalMs, exportTimeoutMillis: settings.exportTimeoutMs })],
  });
  const tracer: Tracer = provider.getTracer("orchestrator-runner", RUNNER_VERSION);
  return {
    startJob(job) {
      const carrier: Record<string, string> = job.traceparent ? { traceparent: job.traceparent } : {};
      const parent = propagator.extract(context.active(), carrier, { get: (from: Record<string, string>, key) => from[key], keys: (from: Record<string, string>) => Object.keys(from) });
      return tracer.startSpan(`job ${job.type}`, { attributes: { "orchestrator.job.id": job.id, "orchestrator.job.type": job.type } }, parent);
    },
    async shutdown() {
      await Promise.race([provider.shutdown(), new Promise((resolve) => setTimeout(resolve, settings.exportTimeoutMs + 1000))]).catch(() => undefined);
    },
  };
}

/** Ends a job's span with what became of the job. */
export function endJobSpan(span: Span, outcome: { ok: boolean; reason?: string | undefined; exitCode?: number | undefined; message: string }, ms: number): void {
  span.setAttributes({ "orchestrator.job.ok": outcome.ok, "orchestrator.job.ms": ms, ...(outcome.reason ? { "orchestrator.job.reason": outcome.reason } : {}), ...(outcome.exitCode !== undefined ? { "process.exit.code": outcome.exitCode } : {}) });
  span.setStatus(outcome.ok ? { code: SpanStatusCode.OK } : { code: SpanStatusCode.ERROR, message: outcome.message.slice(0, 500) });
  span.end();
}

// Keep the global propagator in line with ours for anything else that reads it.
propagation.setGlobalPropagator(propagator);
