/**
 * Shipping a change: merged and deployed (mergeChange), then every other open change of the project
 * catches up with the default branch it moved: an engineering task each (src/workflows/engineering.ts,
 * catch-up mode) merges it into the change's branch (the Developer resolves a conflict in a round of
 * its own), tests it again, updates its pull request and makes its preview again. A catch-up that
 * cannot start (a build running, the budget) is said; the change stays open as it was.
 */
import { and, eq, ne } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { changes } from "../db/schema.ts";
import { startEngineering } from "../engineering/engineering.ts";
import { AppError } from "../lib/app-error.ts";
import type { Principal } from "../lib/context.ts";
import type { CatchUpStart, ChangeView } from "../shared/changes.ts";
import { mergeChange } from "./changes.ts";

export async function shipChange(db: Db, env: Env, principal: Principal, projectId: string, number: number, traceparent?: string): Promise<{ change: ChangeView; catchingUp: CatchUpStart[] }> {
  const change = await mergeChange(db, env, principal, projectId, number, traceparent);
  return { change, catchingUp: await catchUpOpenChanges(db, env, principal, change.projectId, number, traceparent) };
}

/** Starts a catch-up of each open change of the project but the one shipped. */
async function catchUpOpenChanges(db: Db, env: Env, principal: Principal, projectId: string, shipped: number, traceparent?: string): Promise<CatchUpStart[]> {
  const open = await db
    .select({ number: changes.number })
    .from(changes)
    .where(and(eq(changes.projectId, projectId), eq(changes.status, "open"), ne(changes.number, shipped)))
    .orderBy(changes.number);
  const started: CatchUpStart[] = [];
  for (const { number } of open) {
    try {
      const task = await startEngineering(db, env, principal, projectId, { change: { request: "", more: number, catchUp: `change #${shipped} was shipped` }, ...(traceparent ? { traceparent } : {}) });
      started.push({ number, taskId: task.id });
    } catch (error) {
      if (!(error instanceof AppError)) throw error;
      started.push({ number, notStarted: error.message });
    }
  }
  return started;
}
