/**
 * The Product Owner outside Telegram: the web console (`GET /chat`) and `orchestrator chat` talk to
 * the same agent over one WebSocket, `GET /chat/ws`. The CLI signs in with its API key
 * (`Authorization: Bearer`); a browser cannot send that header on a WebSocket, so the console trades
 * the key for a signed chat link first (`POST /api/chat/link`) and connects with `?token=`.
 */
import { createRoute } from "@hono/zod-openapi";
import { Hono } from "hono";
import { z } from "zod";
import { CHAT_SESSION_HEADER, getProductOwner } from "../product-owner/client.ts";
import { AppError } from "../lib/app-error.ts";
import type { AppEnv, Principal } from "../lib/context.ts";
import { apiDoc, apiRouter, errors, jsonResponse } from "../platform/openapi.ts";
import { signChatToken, verifyChatToken } from "../lib/view-token.ts";
import { principalOfKeyId, requireAdmin, requireScope, resolvePrincipal } from "../platform/auth.ts";
import { authFailed, limitByAddress } from "../platform/rate-limit.ts";
import { assertMayChat, userById } from "../product-owner/chat-users.ts";
import { ChatLink, type ChatSession, SessionState } from "../shared/chat.ts";

/** A chat link lasts a working day; the console asks for a new one (with the key) after that. */
const CHAT_TOKEN_TTL_SECONDS = 12 * 3600;

const doc = apiDoc("chat");
const agentStats = createRoute({
  ...doc,
  method: "get",
  path: "/agents/{name}",
  summary: "A Product Owner agent's storage (admin)",
  middleware: [requireAdmin],
  // Any name matches here: the handler checks it (and answers 400 naming the two forms).
  request: { params: z.object({ name: z.string().describe("tg:<chat id> or web:<user id>") }) },
  responses: {
    200: jsonResponse(z.object({ bytes: z.number().int(), turns: z.number().int(), entries: z.number().int(), state: SessionState, summary: z.boolean() }), "The agent's storage"),
    ...errors(400, 403),
  },
});
const link = createRoute({
  ...doc,
  method: "post",
  path: "/link",
  summary: "A signed link to the web console for the caller (valid for 12 hours, or until the key is revoked)",
  description: "Needs a person's key: not a runner key, and not one limited to a project (403).",
  middleware: [requireScope("user")],
  responses: { 200: jsonResponse(ChatLink, "The link"), ...errors(403) },
});

/** `POST /api/chat/link`: a signed link to the web console for the caller; `GET /api/chat/agents/:name`: an agent's storage, for admins. */
export const chatLinkRoute = apiRouter();
chatLinkRoute
  .openapi(agentStats, async (c) => {
    const name = c.req.param("name");
    if (!/^(tg:-?\d{1,20}|web:[A-Za-z0-9_-]{1,64})$/.test(name)) throw new AppError("invalid_request", "An agent is named tg:<chat id> or web:<user id>");
    return c.json(await (await getProductOwner(c.env, name)).stats(), 200);
  })
  .openapi(link, async (c) => {
    const { principal } = c.var;
    assertMayChat(principal);
    // Bound to the key: the chat acts with its reach, and the link dies with it.
    const { token, expiresAt } = await signChatToken(c.env.SECRETS_ENCRYPTION_KEY, principal.userId, principal.keyId, CHAT_TOKEN_TTL_SECONDS);
    const url = new URL("/chat", c.req.url);
    url.searchParams.set("token", token);
    return c.json({ token, expiresAt: expiresAt.toISOString(), url: url.toString() } satisfies ChatLink, 200);
  });

const TOKEN_PROBLEM = { malformed: "The chat link is malformed", bad_signature: "The chat link is not valid", expired: "The chat link has expired: sign in again" } as const;

export const chatRoute = new Hono<AppEnv>()
  .get("/", async (c) => {
    const page = await c.env.ASSETS.fetch(new Request(new URL("/chat.html", c.req.url)));
    return new Response(page.body, { status: page.status, headers: { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" } });
  })
  .get("/ws", limitByAddress("chat"), async (c) => {
    const header = /^Bearer\s+(\S+)\s*$/i.exec(c.req.header("authorization") ?? "")?.[1];
    const token = c.req.query("token");
    let principal: Principal | null;
    if (header) {
      principal = await resolvePrincipal(c.env, header, c.var.db);
      if (!principal) {
        await authFailed(c);
        throw new AppError("unauthorized", "Invalid, revoked or expired API key");
      }
    } else if (token) {
      const check = await verifyChatToken(c.env.SECRETS_ENCRYPTION_KEY, token);
      if (!check.ok) {
        await authFailed(c);
        throw new AppError("unauthorized", TOKEN_PROBLEM[check.reason]);
      }
      // The link lives only as long as the key it was made with.
      principal = await principalOfKeyId(c.var.db, check.keyId);
      if (!principal || principal.userId !== check.userId) {
        await authFailed(c);
        throw new AppError("unauthorized", "The key this chat link was made with has been revoked or has expired: sign in again");
      }
    } else {
      await authFailed(c);
      throw new AppError("unauthorized", "Sign in: send `Authorization: Bearer <key>`, or open the chat with its signed link (?token=)");
    }
    assertMayChat(principal);
    const user = await userById(c.var.db, principal.userId);
    if (!user) throw new AppError("forbidden", "This key has no user to chat as");
    // Checked after signing in, so that the console can tell an expired link (401) from a network problem.
    if (c.req.header("upgrade")?.toLowerCase() !== "websocket") throw new AppError("invalid_request", "This is the chat's WebSocket: connect with an Upgrade: websocket request");
    const headers = new Headers(c.req.raw.headers);
    // What the chat shows of its reach is the key's, not the user row's.
    headers.set(CHAT_SESSION_HEADER, JSON.stringify({ user: { ...user, isAdmin: principal.isAdmin }, keyId: principal.keyId } satisfies ChatSession));
    const agent = await getProductOwner(c.env, `web:${user.userId}`);
    return agent.fetch(new Request(c.req.raw.url, { method: "GET", headers }));
  });
