import { createRoute } from "@hono/zod-openapi";
import { z } from "zod";
import { changeOfTask, discardChange, getChange, changeView, listChanges } from "../changes/changes.ts";
import { shipChange } from "../changes/ship.ts";
import { startEngineering } from "../engineering/engineering.ts";
import { requireScope } from "../platform/auth.ts";
import { apiDoc, apiRouter, errors, jsonBody, jsonResponse, named, views } from "../platform/openapi.ts";
import { CatchUpStart, ChangeRequestBody, ChangeView } from "../shared/changes.ts";

const IdParam = z.object({ id: z.string().min(1).max(64) });
const NumberParam = IdParam.extend({ number: z.coerce.number().int().positive().max(1_000_000) });
const Change = named(ChangeView, "Change");
const doc = apiDoc("changes");

const create = createRoute({
  ...doc,
  method: "post",
  path: "/{id}/changes",
  summary: "Ask for a change to a built project: a change brief, Developer ⇄ Tester on a branch of its own, and a pull request once the tests pass (follow its task like any task)",
  request: { params: IdParam, body: jsonBody(ChangeRequestBody, "What should change, in the person's words") },
  responses: { 202: jsonResponse(z.object({ change: Change, task: views.Task }), "The change and its engineering task, queued"), ...errors(400, 402, 403, 404, 409, 413, 415) },
});
const list = createRoute({
  ...doc,
  method: "get",
  path: "/{id}/changes",
  summary: "The project's changes, newest first",
  request: { params: IdParam },
  responses: { 200: jsonResponse(z.object({ changes: z.array(Change) }), "The changes"), ...errors(400, 403, 404) },
});
const get = createRoute({
  ...doc,
  method: "get",
  path: "/{id}/changes/{number}",
  summary: "One change",
  request: { params: NumberParam },
  responses: { 200: jsonResponse(z.object({ change: Change }), "The change"), ...errors(400, 403, 404) },
});
const ship = createRoute({
  ...doc,
  method: "post",
  path: "/{id}/changes/{number}/ship",
  summary: "Ship an open change: its pull request merged, its acceptance checks added to the project's, production deployed from the merge commit (if the project is deployed); every other open change catches up (the default branch merged into it and tested again, a task each)",
  request: { params: NumberParam },
  responses: { 202: jsonResponse(z.object({ change: Change, catchingUp: z.array(CatchUpStart) }), "The change, shipped; its deploy's task is deployTaskId (null: the project is not deployed); the other open changes' catch-up tasks"), ...errors(400, 402, 403, 404, 409) },
});
const more = createRoute({
  ...doc,
  method: "post",
  path: "/{id}/changes/{number}/more",
  summary: "Change an open change more: another brief and Developer ⇄ Tester rounds on its branch, its pull request updated and its preview made again once the tests pass (follow its task like any task)",
  request: { params: NumberParam, body: jsonBody(ChangeRequestBody, "What else should change, in the person's words") },
  responses: { 202: jsonResponse(z.object({ change: Change, task: views.Task }), "The change, building again, and its engineering task"), ...errors(400, 402, 403, 404, 409, 413, 415) },
});
const discard = createRoute({
  ...doc,
  method: "post",
  path: "/{id}/changes/{number}/discard",
  summary: "Discard a change that is not shipped: its pull request closed and its branch deleted",
  request: { params: NumberParam },
  responses: { 200: jsonResponse(z.object({ change: Change }), "The change, discarded"), ...errors(400, 403, 404, 409) },
});

/** `/api/projects/:id/changes`: change requests on a project the key may see (its owner's, or any for an admin). */
export const changesRoute = apiRouter();
changesRoute.use(requireScope("user"));
changesRoute
  .openapi(create, async (c) => {
    const { request } = c.req.valid("json");
    const { traceparent } = c.var;
    const task = await startEngineering(c.var.db, c.env, c.var.principal, c.req.valid("param").id, { change: { request }, ...(traceparent ? { traceparent } : {}) });
    return c.json({ change: await changeOfTask(c.var.db, task.id), task }, 202);
  })
  .openapi(list, async (c) => c.json({ changes: await listChanges(c.var.db, c.var.principal, c.req.valid("param").id) }, 200))
  .openapi(get, async (c) => {
    const { id, number } = c.req.valid("param");
    return c.json({ change: changeView((await getChange(c.var.db, c.var.principal, id, number)).change) }, 200);
  })
  .openapi(ship, async (c) => {
    const { id, number } = c.req.valid("param");
    const { traceparent } = c.var;
    return c.json(await shipChange(c.var.db, c.env, c.var.principal, id, number, traceparent), 202);
  })
  .openapi(more, async (c) => {
    const { id, number } = c.req.valid("param");
    const { request } = c.req.valid("json");
    const { traceparent } = c.var;
    const task = await startEngineering(c.var.db, c.env, c.var.principal, id, { change: { request, more: number }, ...(traceparent ? { traceparent } : {}) });
    return c.json({ change: await changeOfTask(c.var.db, task.id), task }, 202);
  })
  .openapi(discard, async (c) => {
    const { id, number } = c.req.valid("param");
    return c.json({ change: await discardChange(c.var.db, c.env, c.var.principal, id, number) }, 200);
  });
