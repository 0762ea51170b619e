/**
 * Custom spans in Workers' own tracing (`tracing` from cloudflare:workers), where the automatic
 * spans (fetch, Durable Object calls, Workflows, Queues, subrequests) do not say enough: a Product
 * Owner turn, a scheduler job. Each carries the work's W3C trace id as `orchestrator.trace_id`, the
 * id every log line and the runner's spans carry, so the worker's spans are found by the same id.
 * Where the runtime has no tracing (older workerd), the work simply runs.
 */
import * as workers from "cloudflare:workers";
import { traceIdOf } from "../shared/trace.ts";

type Attributes = Record<string, string | number | boolean | undefined>;

export async function inSpan<T>(name: string, attributes: Attributes & { traceparent?: string | undefined }, work: () => Promise<T>): Promise<T> {
  const tracing = (workers as { tracing?: Tracing }).tracing;
  if (!tracing?.startActiveSpan) return work();
  const { traceparent, ...rest } = attributes;
  return tracing.startActiveSpan(name, async (span) => {
    span.setAttributes({ ...rest, ...(traceparent ? { "orchestrator.trace_id": traceIdOf(traceparent) } : {}) });
    try {
      const result = await work();
      span.setStatus({ code: "ok" });
      return result;
    } catch (error) {
      span.setStatus({ code: "error", message: error instanceof Error ? error.message.slice(0, 300) : String(error).slice(0, 300) });
      throw error;
    } finally {
      span.end();
    }
  });
}
