import { Hono } from "hono";
import { html } from "hono/html";
import type { AppEnv } from "../lib/context.ts";
import { verifyViewToken } from "../lib/view-token.ts";
import { authFailed, limitByAddress } from "../platform/rate-limit.ts";

const PROBLEM = {
  missing: ["This link is incomplete", "The live view needs the signed link the chat or the CLI gave you."],
  malformed: ["This link is damaged", "Ask for a new link: `orchestrator … view <task>` or the chat's “watch live” button."],
  bad_signature: ["This link is not valid", "It was not issued by this Orchestrator. Ask for a new link."],
  expired: ["This link has expired", "Live view links are short-lived. Ask for a new one."],
  other_task: ["This link is for another task", "Open the link that was sent for this task."],
} as const;

function errorPage(title: string, detail: string) {
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>${title} · Orchestrator</title>
        <link rel="stylesheet" href="/task-view.css" />
      </head>
      <body>
        <main class="error-page" data-error="true">
          <h1>${title}</h1>
          <p>${detail}</p>
        </main>
      </body>
    </html>`;
}

/** The web console's pages. `/tasks/:id?token=…` is the live task view. */
export const webRoute = new Hono<AppEnv>().get("/tasks/:id", limitByAddress("view"), async (c) => {
  const token = c.req.query("token");
  const check = token ? await verifyViewToken(c.env.SECRETS_ENCRYPTION_KEY, token, c.req.param("id")) : ({ ok: false, reason: "missing" } as const);
  if (!check.ok) {
    await authFailed(c);
    const [title, detail] = PROBLEM[check.reason];
    return c.html(errorPage(title, detail), 401);
  }
  const page = await c.env.ASSETS.fetch(new Request(new URL("/task.html", c.req.url)));
  return new Response(page.body, { status: page.status, headers: { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" } });
});
