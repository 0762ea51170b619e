/**
 * Composition root: global middleware, the route tree, and the exported handlers.
 * Durable Object and Workflow classes are re-exported here as they are added.
 */
import { OpenAPIHono } from "@hono/zod-openapi";
import { requestId } from "hono/request-id";
import type { AppEnv } from "./lib/context.ts";
import { mountApiDocs } from "./platform/openapi.ts";
import { authenticate } from "./platform/auth.ts";
import { database } from "./platform/database.ts";
import { onError, onNotFound } from "./platform/errors.ts";
import { jsonBody } from "./platform/json-body.ts";
import { requestLog } from "./platform/request-log.ts";
import { traceContext } from "./platform/trace.ts";
import { deliverOutbox } from "./telegram/telegram-outbox.ts";
import { runScheduled } from "./scheduler/index.ts";
import { projectDeploysRoute, serverServicesRoute } from "./routes/deploys.ts";
import { health } from "./routes/health.ts";
import { keysRoute } from "./routes/keys.ts";
import { projectsRoute } from "./routes/projects.ts";
import { changesRoute } from "./routes/changes.ts";
import { checkpointsRoute } from "./routes/checkpoints.ts";
import { runnerRoute } from "./routes/runner.ts";
import { serversRoute } from "./routes/servers.ts";
import { tasksRoute } from "./routes/tasks.ts";
import { telegramOutboxRoute } from "./routes/telegram-outbox.ts";
import { telegramBotsRoute } from "./routes/telegram-bots.ts";
import { usageRoute } from "./routes/usage.ts";
import { incidentsRoute } from "./routes/incidents.ts";
import { chatLinkRoute, chatRoute } from "./routes/chat.ts";
import { telegramRoute } from "./routes/telegram.ts";
import { usersRoute } from "./routes/users.ts";
import { webRoute } from "./routes/web.ts";
import { ragRoute } from "./routes/rag.ts";
import { relayRoute } from "./routes/relay.ts";
import { consumeRagIngest, RAG_INGEST_DEAD_LETTERS, RAG_INGEST_QUEUE, recordDeadLetters } from "./rag/consumer.ts";

export { RunnerHub } from "./durable/runner-hub.ts";
export { TaskStream } from "./durable/task-stream.ts";
export { ProductOwner } from "./durable/product-owner.ts";
export { Lock } from "./durable/lock.ts";
export { ProvisionServerWorkflow } from "./workflows/provision-server.ts";
export { EngineeringWorkflow } from "./workflows/engineering.ts";
export { DeployWorkflow } from "./workflows/deploy.ts";
export { VectorStore } from "./durable/vector-store.ts";

// An OpenAPIHono, so that the /api routers' descriptions add up to the app's document.
export const app = new OpenAPIHono<AppEnv>();

app.use(requestId({ headerName: "x-request-id" }));
app.use(requestLog);
app.use(traceContext);
app.onError(onError);
app.notFound(onNotFound);

app.use("/healthz", database);
app.route("/healthz", health);

// The API's OpenAPI document and its docs page: documentation, so before the key check.
mountApiDocs(app);
app.use("/api/*", database, authenticate, jsonBody);
app.route("/api/users", usersRoute);
app.route("/api/usage", usageRoute);
app.route("/api/keys", keysRoute);
app.route("/api/projects", projectsRoute);
app.route("/api/projects", projectDeploysRoute);
app.route("/api/projects", changesRoute);
app.route("/api/projects", checkpointsRoute);
app.route("/api/tasks", tasksRoute);
app.route("/api/servers", serversRoute);
app.route("/api/servers", serverServicesRoute);
app.route("/api/telegram-bots", telegramBotsRoute);
app.route("/api/telegram/outbox", telegramOutboxRoute);
app.route("/api/chat", chatLinkRoute);
app.route("/api/incidents", incidentsRoute);
app.route("/api/rag", ragRoute);

// Telegram's updates (authorised by the webhook's secret token) and the chat WebSocket (by key or signed link).
app.use("/telegram/*", database);
app.route("/telegram", telegramRoute);
app.use("/chat/*", database);
app.route("/chat", chatRoute);

// The model relay for job containers: authorised by a job's own model credential (never an API key).
app.use("/relay/*", database);
app.route("/relay", relayRoute);

// The runner daemon's endpoints: authorised by the enrollment token, then by signed challenges.
app.use("/runner/*", database, jsonBody);
app.route("/runner", runnerRoute);
app.route("/", webRoute);

export default {
  fetch: app.fetch,
  // Each queue's consumer: telegram-outbox delivers messages to chats, rag-ingest fills the knowledge index.
  queue: async (batch, env) => {
    if (batch.queue === "telegram-outbox") return deliverOutbox(batch, env);
    if (batch.queue === RAG_INGEST_QUEUE) return consumeRagIngest(batch, env);
    if (batch.queue === RAG_INGEST_DEAD_LETTERS) return recordDeadLetters(batch, env);
    throw new Error(`no consumer for queue ${batch.queue}`);
  },
  // Cron Triggers: the scheduler's jobs, each under its lock (the run lasts as long as this promise).
  scheduled: async (controller, env) => {
    await runScheduled(controller.cron, env, controller.scheduledTime);
  },
} satisfies ExportedHandler<Env>;
