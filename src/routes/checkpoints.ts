import { createRoute } from "@hono/zod-openapi";
import { z } from "zod";
import { listCheckpoints, undoToCheckpoint } from "../checkpoints/checkpoints.ts";
import { requireScope } from "../platform/auth.ts";
import { apiDoc, apiRouter, errors, jsonBody, jsonResponse, named } from "../platform/openapi.ts";
import { CheckpointView, UndoBody, UndoView } from "../shared/checkpoints.ts";

const IdParam = z.object({ id: z.string().min(1).max(64) });
const Checkpoint = named(CheckpointView, "Checkpoint");
// Checkpoints are the other half of the change loop: what a shipped change can be undone to.
const doc = apiDoc("changes");

const list = createRoute({
  ...doc,
  method: "get",
  path: "/{id}/checkpoints",
  summary: "The project's checkpoints, newest first: each commit its default branch reached with its tests passing (a build, a change shipped, an undo), with its tests and the release that served it",
  request: { params: IdParam },
  responses: { 200: jsonResponse(z.object({ checkpoints: z.array(Checkpoint) }), "The checkpoints"), ...errors(400, 403, 404) },
});
const undo = createRoute({
  ...doc,
  method: "post",
  path: "/{id}/undo",
  summary:
    "Go back to a checkpoint (default: the one before the latest, 'undo the last change'): a revert commit on the default branch (history is kept), the checkpoint's acceptance checks back, and its kept release live again with no rebuild. The app's data directory is not rolled back.",
  request: { params: IdParam, body: jsonBody(UndoBody, "Which checkpoint: a number, a time (the newest checkpoint at or before it), or none for the one before the latest") },
  responses: { 202: jsonResponse(named(UndoView, "Undo"), "Done in the repository; production follows on deployTaskId's task"), ...errors(400, 402, 403, 404, 409, 413, 415) },
});

/** `/api/projects/:id/checkpoints` and `/api/projects/:id/undo`: on a project the key may see (its owner's, or any for an admin). */
export const checkpointsRoute = apiRouter();
checkpointsRoute.use(requireScope("user"));
checkpointsRoute
  .openapi(list, async (c) => c.json({ checkpoints: await listCheckpoints(c.var.db, c.var.principal, c.req.valid("param").id) }, 200))
  .openapi(undo, async (c) => {
    const { traceparent } = c.var;
    return c.json(await undoToCheckpoint(c.var.db, c.env, c.var.principal, c.req.valid("param").id, c.req.valid("json"), traceparent), 202);
  });
