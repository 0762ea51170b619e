/**
 * Model spend: the usage report (`GET /api/usage`), and budgets. A project's budget is its
 * `config.budgetUsd`; a user's is USER_BUDGET_USD across everything they own. Past a budget, no
 * further model call is made for it; from 80% on, callers are told so they can warn.
 */
import { and, eq, gte, lte, type SQL, sql } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { llmUsage, projects } from "../db/schema.ts";
import { AppError } from "../lib/app-error.ts";
import type { Principal } from "../lib/context.ts";
import type { UsageRow } from "../shared/usage.ts";
import { managedOf } from "../projects/projects.ts";

const GROUP_COLUMNS = { user: llmUsage.userId, project: llmUsage.projectId, agent: llmUsage.agent, model: llmUsage.model } as const;

/** Spend grouped by user, project, agent or model, between `from` and `to`; a non-admin sees only their own calls. */
export async function usageReport(db: Db, principal: Principal, query: { by: keyof typeof GROUP_COLUMNS; from?: string; to?: string }): Promise<UsageRow[]> {
  const column = GROUP_COLUMNS[query.by];
  const filters: (SQL | undefined)[] = [
    query.from ? gte(llmUsage.createdAt, new Date(query.from)) : undefined,
    query.to ? lte(llmUsage.createdAt, new Date(query.to)) : undefined,
    principal.isAdmin ? undefined : eq(llmUsage.userId, principal.userId ?? ""),
  ];
  const rows = await db
    .select({
      key: column,
      calls: sql<number>`count(*)::int`,
      promptTokens: sql<number>`coalesce(sum(${llmUsage.promptTokens}), 0)::int`,
      completionTokens: sql<number>`coalesce(sum(${llmUsage.completionTokens}), 0)::int`,
      costUsd: sql<string>`coalesce(sum(${llmUsage.costUsd}), 0)`,
    })
    .from(llmUsage)
    .where(and(...filters))
    .groupBy(column)
    .orderBy(sql`coalesce(sum(${llmUsage.costUsd}), 0) desc`);
  return rows.map((row) => ({ ...row, costUsd: Number(row.costUsd) }));
}

export interface BudgetState {
  /** Set from 80% of a budget on: what to tell the person. */
  warning?: string;
}

async function spent(db: Db, where: SQL): Promise<number> {
  const [row] = await db.select({ total: sql<string>`coalesce(sum(${llmUsage.costUsd}), 0)` }).from(llmUsage).where(where);
  return Number(row?.total ?? 0);
}

const usd = (value: number) => `$${value.toFixed(2)}`;

/**
 * Throws `budget_exceeded` (402) when the project's or the user's budget is used up, before any model
 * call is made; otherwise says whether one is past 80%.
 */
export async function checkBudget(db: Db, env: { USER_BUDGET_USD?: string }, who: { projectId?: string | null; userId?: string | null }): Promise<BudgetState> {
  const limits: { what: string; budget: number; used: number }[] = [];
  if (who.projectId) {
    const [project] = await db.select({ name: projects.name, managed: projects.managed }).from(projects).where(eq(projects.id, who.projectId));
    const budget = project ? managedOf(project).budgetUsd : undefined;
    if (project && budget !== undefined && Number.isFinite(budget) && budget >= 0) {
      limits.push({ what: `project ${project.name}`, budget, used: await spent(db, eq(llmUsage.projectId, who.projectId)) });
    }
  }
  const userBudget = env.USER_BUDGET_USD ? Number(env.USER_BUDGET_USD) : Number.NaN;
  if (who.userId && Number.isFinite(userBudget)) limits.push({ what: "your account", budget: userBudget, used: await spent(db, eq(llmUsage.userId, who.userId)) });
  const over = limits.find((limit) => limit.used >= limit.budget);
  if (over) throw new AppError("budget_exceeded", `The model budget of ${over.what} is used up (${usd(over.used)} of ${usd(over.budget)}); an admin can raise it${over.what.startsWith("project") ? " (the project's config.budgetUsd)" : " (USER_BUDGET_USD)"}`);
  const near = limits.find((limit) => limit.used >= 0.8 * limit.budget);
  return near ? { warning: `${near.what} has used ${usd(near.used)} of its ${usd(near.budget)} model budget` } : {};
}
