import { Hono } from "hono";
import { getRunnerHub, HUB_IDENTITY_HEADER } from "../runner-hub/client.ts";
import { z } from "zod";
import { AppError } from "../lib/app-error.ts";
import type { AppEnv } from "../lib/context.ts";
import { loadJobSigningKey } from "../runner-hub/job-signing.ts";
import { validate } from "../lib/validate.ts";
import { failingSlowly } from "../platform/auth.ts";
import { authFailed, limitByAddress } from "../platform/rate-limit.ts";
import { enrollRunner, hubIdentity, loadServerByRunner } from "../runner-hub/servers.ts";
import { EnrollRunner, type EnrollRunnerResponse } from "../shared/api.ts";
import { speaksThisProtocol } from "../shared/runner-protocol.ts";

const ConnectQuery = z.object({ runner: z.string().min(1).max(100) });

/**
 * `/runner/*`: what a runner daemon calls. Enrollment is authorised by the one-time token itself;
 * the WebSocket is authorised inside the RunnerHub, by a signature over a fresh challenge.
 */
export const runnerRoute = new Hono<AppEnv>()
  .post("/enroll", limitByAddress("enroll"), validate("json", EnrollRunner), async (c) => {
    const body = c.req.valid("json");
    // Before the token is used up: a misconfigured control plane must not burn enrollment tokens.
    const { publicKey } = await loadJobSigningKey(c.env);
    const row = await failingSlowly(c, () => enrollRunner(c.var.db, body.token, body.publicKey));
    // The hub learns its new runner now; connecting tells it again, should this call fail.
    await getRunnerHub(c.env, row.handle).setIdentity(hubIdentity(row)).catch((error: unknown) => c.var.log.warn("hub not told of the enrollment", { error }));
    c.var.log.info("runner enrolled", { server: row.handle, runnerId: row.runnerId, version: body.version });
    return c.json({ runnerId: row.runnerId ?? "", server: row.handle, controlPlanePublicKey: publicKey } satisfies EnrollRunnerResponse, 201);
  })
  .get("/connect", limitByAddress("connect"), validate("query", ConnectQuery), async (c) => {
    if (c.req.header("upgrade")?.toLowerCase() !== "websocket") {
      throw new AppError("invalid_request", "GET /runner/connect is a WebSocket endpoint for the runner daemon");
    }
    const row = await loadServerByRunner(c.var.db, c.req.valid("query").runner);
    if (!row) {
      await authFailed(c);
      throw new AppError("unauthorized", "Unknown runner id; enroll the runner again (`orchestrator-runner enroll`)");
    }
    if (row.status === "disabled") throw new AppError("forbidden", `Server ${row.handle} is disabled`);
    const agent = c.req.header("user-agent");
    if (!speaksThisProtocol(agent)) {
      c.var.log.warn("runner too old for this control plane", { server: row.handle, userAgent: agent ?? null });
      throw new AppError("conflict", `This runner (${agent ?? "unknown"}) speaks an older protocol than this control plane: install this release's runner bundle (npm run build:runner; runner/README.md) and start it again`);
    }
    const headers = new Headers(c.req.raw.headers);
    headers.set(HUB_IDENTITY_HEADER, JSON.stringify(hubIdentity(row)));
    return getRunnerHub(c.env, row.handle).fetch(new Request(c.req.raw.url, { headers }));
  });
