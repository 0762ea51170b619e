/**
 * `health_checker`: every active deployment is checked through its server's runner (a health.check
 * job through Caddy, as a visitor reaches it). A failure opens a `deployment_unhealthy` incident (one
 * per service while it lasts); recovery resolves it. After REPEATED_FAILURES failed checks in a row the
 * owner is told through their Product Owner chat, once per incident.
 */
import { and, eq, isNotNull, isNull, sql } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { incidents, projects, servers, serviceDeployments, users } from "../db/schema.ts";
import { getProductOwner } from "../product-owner/client.ts";
import { getRunnerHub } from "../runner-hub/client.ts";
import { newId } from "../lib/crypto.ts";
import type { Logger } from "../lib/log.ts";
import { DEFAULT_HEALTH_PATH } from "../shared/deploys.ts";
import { projectUrl } from "../deploy/deploys.ts";
import { configOf } from "../projects/projects.ts";

export const REPEATED_FAILURES = 3;
/** How long the checker waits for the runners' answers before it counts a check as failed. */
const WAIT_MS = 45_000;

export interface HealthCheckResult {
  checked: number;
  /** Services on servers whose runner is not connected: not checked (server_sync reports the runner). */
  unreachable: string[];
  healthy: number;
  unhealthy: { project: string; message: string; failures: number }[];
  opened: number;
  resolved: number;
  notified: number;
}

export async function healthChecker(db: Db, env: Env, log: Logger, runId: string): Promise<HealthCheckResult> {
  const services = await db
    .select({ service: serviceDeployments, project: projects, server: servers, owner: users })
    .from(serviceDeployments)
    .innerJoin(projects, eq(projects.id, serviceDeployments.projectId))
    .innerJoin(servers, eq(servers.id, serviceDeployments.serverId))
    .innerJoin(users, eq(users.id, projects.ownerId))
    .where(and(eq(serviceDeployments.status, "active"), isNotNull(servers.runnerId)));
  const result: HealthCheckResult = { checked: 0, unreachable: [], healthy: 0, unhealthy: [], opened: 0, resolved: 0, notified: 0 };
  await Promise.all(
    services.map(async ({ service, project, server, owner }) => {
      const hub = getRunnerHub(env, server.handle);
      // No runner to ask: not the deployment's failure; a runner gone quiet is server_sync's incident.
      if (!(await hub.status()).connected) {
        result.unreachable.push(project.name);
        return;
      }
      result.checked++;
      const path = configOf(project).healthPath ?? DEFAULT_HEALTH_PATH;
      const queued = await hub.submit({
        type: "health.check",
        payload: { domain: service.domain, path, attempts: 3, intervalMs: 1000, timeoutSeconds: 20 },
        ttlSeconds: 60,
        finishTask: false,
        idempotencyKey: `health:${service.id}:${runId}`,
      });
      const job = queued.ok ? await hub.wait(queued.job.id, WAIT_MS) : null;
      const ok = job?.outcome?.ok === true;
      const message = job?.outcome?.message ?? (queued.ok ? `no answer from the runner of ${server.handle} within ${WAIT_MS / 1000} s` : queued.message);
      const [open] = await db.select().from(incidents).where(and(eq(incidents.projectId, project.id), eq(incidents.kind, "deployment_unhealthy"), isNull(incidents.resolvedAt)));
      if (ok) {
        result.healthy++;
        if (open) {
          await db.update(incidents).set({ resolvedAt: new Date() }).where(eq(incidents.id, open.id));
          result.resolved++;
          log.info("deployment healthy again", { project: project.name, domain: service.domain });
        }
        return;
      }
      const failures = Number(open?.data?.failures ?? 0) + 1;
      result.unhealthy.push({ project: project.name, message, failures });
      log.warn("deployment unhealthy", { project: project.name, domain: service.domain, failures, message });
      if (!open) {
        await db.insert(incidents).values({ id: newId("inc"), projectId: project.id, serverId: server.id, kind: "deployment_unhealthy", severity: "critical", message: `${service.domain}: ${message}`, data: { failures, domain: service.domain } });
        result.opened++;
      } else {
        await db.update(incidents).set({ message: `${service.domain}: ${message}`, data: sql`${incidents.data} || ${JSON.stringify({ failures })}::jsonb` }).where(eq(incidents.id, open.id));
      }
      if (failures === REPEATED_FAILURES) {
        const chat = owner.telegramId ? `tg:${owner.telegramId}` : `web:${owner.id}`;
        const text = `⚠️ ${project.name} (${projectUrl(service.domain, server)}) has failed its last ${failures} health checks: ${message}\nAsk me to roll it back, or what failed.`;
        try {
          await (await getProductOwner(env, chat)).notify(text, owner.telegramId ?? undefined);
          result.notified++;
        } catch (error) {
          log.warn("could not tell the owner about an unhealthy deployment", { project: project.name, error: error instanceof Error ? error.message : String(error) });
        }
      }
    }),
  );
  return result;
}
