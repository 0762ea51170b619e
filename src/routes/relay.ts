/**
 * The model relay, `/relay/v1/…`: an OpenAI-compatible endpoint for the containers a model drives
 * (the Developer's coding agent). They hold a job's model credential, never the factory's key: the
 * relay checks the credential (its job not over, its spend cap and the project's budget not used
 * up), sends the call on with the real key, and records what it cost, the way an AI gateway does.
 * Its errors are in OpenAI's shape, which the agents' clients understand.
 */
import { EventSourceParserStream } from "eventsource-parser/stream";
import { Hono } from "hono";
import type { Context } from "hono";
import { z } from "zod";
import { withDb } from "../db/client.ts";
import { AppError } from "../lib/app-error.ts";
import type { AppEnv } from "../lib/context.ts";
import { authFailed, limitByAddress } from "../platform/rate-limit.ts";
import { chargeCredential, credentialOfModelKey, type JobCredentialRow } from "../models/job-credentials.ts";
import { type AgentName, AGENT_NAMES, modelEndpoint, recordUsage } from "../models/llm.ts";
import { checkBudget } from "../models/usage.ts";

type RelayContext = Context<AppEnv>;

/** OpenAI's error body: `{ error: { message, type, code } }`. */
function openaiError(c: RelayContext, status: 400 | 401 | 402 | 404 | 502 | 503, message: string, code: string) {
  const type = status === 401 ? "invalid_request_error" : status === 402 ? "insufficient_quota" : status >= 500 ? "server_error" : "invalid_request_error";
  return c.json({ error: { message, type, code } }, status);
}

/** The call's body: what the relay reads of it (the rest is passed on untouched). */
const CompletionRequest = z.looseObject({
  model: z.string().optional(),
  stream: z.boolean().optional(),
  stream_options: z.looseObject({}).optional(),
});

const Usage = z.object({ prompt_tokens: z.number().int().nonnegative(), completion_tokens: z.number().int().nonnegative() });
const WithUsage = z.object({ usage: Usage.nullish() });

async function credentialOf(c: RelayContext): Promise<JobCredentialRow | null> {
  const presented = /^Bearer\s+(\S+)\s*$/i.exec(c.req.header("authorization") ?? "")?.[1];
  return presented ? credentialOfModelKey(c.var.db, presented) : null;
}

const agentOf = (name: string): AgentName => ((AGENT_NAMES as readonly string[]).includes(name) ? (name as AgentName) : "developer");

/** Records a call's tokens as the credential's agent, and charges the credential. Never throws: the caller has its answer already. */
async function record(env: Env, credential: JobCredentialRow, usage: z.infer<typeof Usage> | null | undefined, log: AppEnv["Variables"]["log"]): Promise<void> {
  if (!usage) return;
  try {
    await withDb(env, async (db) => {
      const cost = await recordUsage(db, env, {
        agent: agentOf(credential.agent),
        model: credential.model,
        promptTokens: usage.prompt_tokens,
        completionTokens: usage.completion_tokens,
        projectId: credential.projectId,
        taskId: credential.taskId,
        userId: credential.userId,
      });
      await chargeCredential(db, credential.id, cost);
    });
  } catch (error) {
    log.error("model relay: usage not recorded", { credential: credential.id, error: error instanceof Error ? error.message : String(error) });
  }
}

/** The usage a streamed answer reports in its last chunk (asked for with stream_options.include_usage). */
async function usageOfStream(body: ReadableStream): Promise<z.infer<typeof Usage> | null> {
  let usage: z.infer<typeof Usage> | null = null;
  const events = body.pipeThrough(new TextDecoderStream()).pipeThrough(new EventSourceParserStream());
  for await (const event of events) {
    if (event.data === "[DONE]") continue;
    try {
      const parsed = WithUsage.safeParse(JSON.parse(event.data));
      if (parsed.success && parsed.data.usage) usage = parsed.data.usage;
    } catch {
      // Not JSON: nothing to count in it.
    }
  }
  return usage;
}

export const relayRoute = new Hono<AppEnv>()
  .get("/v1/models", limitByAddress("relay"), async (c) => {
    const credential = await credentialOf(c);
    if (!credential) {
      await authFailed(c);
      return openaiError(c, 401, "This model credential is not valid, or its job has ended", "invalid_api_key");
    }
    return c.json({ object: "list", data: [{ id: credential.model, object: "model", created: 0, owned_by: "orchestrator" }] }, 200);
  })
  .post("/v1/chat/completions", limitByAddress("relay"), async (c) => {
    const credential = await credentialOf(c);
    if (!credential) {
      await authFailed(c);
      return openaiError(c, 401, "This model credential is not valid, or its job has ended", "invalid_api_key");
    }
    if (Number(credential.spentUsd) >= Number(credential.spendCapUsd)) {
      return openaiError(c, 402, `This job's model budget of $${Number(credential.spendCapUsd).toFixed(2)} is used up`, "budget_exceeded");
    }
    try {
      await checkBudget(c.var.db, c.env, { projectId: credential.projectId, userId: credential.userId });
    } catch (error) {
      if (error instanceof AppError && error.code === "budget_exceeded") return openaiError(c, 402, error.message, "budget_exceeded");
      throw error;
    }
    let json: unknown;
    try {
      json = await c.req.json();
    } catch {
      return openaiError(c, 400, "The body is not JSON", "invalid_json");
    }
    const parsed = CompletionRequest.safeParse(json);
    if (!parsed.success) return openaiError(c, 400, `The body is not a chat completion request: ${parsed.error.issues[0]?.message ?? "invalid"}`, "invalid_request");
    // The credential is for one model; a streamed answer is asked to end with its usage, so that it can be counted.
    const body = { ...parsed.data, model: credential.model, ...(parsed.data.stream ? { stream_options: { ...parsed.data.stream_options, include_usage: true } } : {}) };
    const endpoint = modelEndpoint(c.env);
    let upstream: Response;
    try {
      upstream = await fetch(`${endpoint.baseUrl}/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${endpoint.apiKey}`, "content-type": "application/json", accept: c.req.header("accept") ?? "application/json" },
        body: JSON.stringify(body),
        signal: c.req.raw.signal,
      });
    } catch (error) {
      c.var.log.warn("model relay: the model endpoint could not be reached", { error: error instanceof Error ? error.message : String(error) });
      return openaiError(c, 502, "The model endpoint could not be reached", "upstream_unavailable");
    }
    const headers = { "content-type": upstream.headers.get("content-type") ?? "application/json", "cache-control": "no-store" };
    if (body.stream && upstream.ok && upstream.body) {
      const [toClient, toCount] = upstream.body.tee();
      c.executionCtx.waitUntil(usageOfStream(toCount).then((usage) => record(c.env, credential, usage, c.var.log)));
      return new Response(toClient, { status: upstream.status, headers });
    }
    const text = await upstream.text();
    if (upstream.ok) {
      try {
        const parsedUsage = WithUsage.safeParse(JSON.parse(text));
        await record(c.env, credential, parsedUsage.success ? parsedUsage.data.usage : null, c.var.log);
      } catch {
        // An answer that is not JSON carries no usage.
      }
    }
    return new Response(text, { status: upstream.status, headers });
  });
