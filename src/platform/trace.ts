/**
 * Every request belongs to a trace: the caller's (a valid `traceparent` header) or a new one. Work the
 * request starts (a pipeline, a job, a Product Owner turn) carries it on, so one trace id follows it
 * from here through Durable Objects, Workflows and Queues to the runner's job; every log line of the
 * request has it, and the response tells it back in `traceparent`.
 */
import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../lib/context.ts";
import { newTraceparent, parseTraceparent, traceIdOf } from "../shared/trace.ts";

export const traceContext = createMiddleware<AppEnv>(async (c, next) => {
  const traceparent = parseTraceparent(c.req.header("traceparent")) ?? newTraceparent();
  c.set("traceparent", traceparent);
  c.set("log", c.var.log.child({ traceId: traceIdOf(traceparent) }));
  await next();
  c.header("traceparent", traceparent);
});
