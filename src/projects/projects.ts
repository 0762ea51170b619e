/**
 * Projects: who may see which, creating and changing one (the API and the Product Owner alike), and
 * the two halves of a project's settings: `config`, its owner's, merged on every change, and
 * `managed`, the factory's (budget, server, domain: an admin's; the pipelines' own state: nobody's).
 */
import { and, eq, isNotNull, ne, or, type SQL, sql } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { isForeignKeyViolation, isUniqueViolation } from "../db/errors.ts";
import { projects, servers, serviceDeployments } from "../db/schema.ts";
import { AppError, notFound } from "../lib/app-error.ts";
import type { Principal } from "../lib/context.ts";
import { newId } from "../lib/crypto.ts";
import { ADMIN_SETTINGS, AdminSettings, type CreateProject, FACTORY_SETTINGS, PreviewSettings, ProjectConfig, ProjectManaged, type UpdateProject } from "../shared/api.ts";
import { EngineeringOverrides, isMessageCheck } from "../shared/spec.ts";
import { TemplateName } from "../shared/templates.ts";
import { getRepository, type GitHubAppConfig, installationOrg, type Repository, repositoryFromUrl, repositoryToken, status } from "./github.ts";

export type ProjectRow = typeof projects.$inferSelect;

/** Admins see every project; anyone else only their own. A caller with no user sees none: it fails closed. */
export function projectVisibleTo(principal: Principal): SQL | undefined {
  if (principal.projectId) return principal.userId ? and(eq(projects.id, principal.projectId), eq(projects.ownerId, principal.userId)) : sql`false`;
  if (principal.isAdmin) return undefined;
  return principal.userId ? eq(projects.ownerId, principal.userId) : sql`false`;
}

/** A project's managed settings as stored, each field that does not read right left out. */
export function managedOf(project: Pick<ProjectRow, "managed">): ProjectManaged {
  const parsed = ProjectManaged.safeParse(project.managed);
  if (parsed.success) return parsed.data;
  const fields = Object.entries(ProjectManaged.shape).flatMap(([key, schema]) => {
    const value = schema.safeParse(project.managed[key]);
    return value.success && value.data !== undefined ? [[key, value.data]] : [];
  });
  return Object.fromEntries(fields) as ProjectManaged;
}

/** A project's owner settings as stored, each field that does not read right left out. */
export function configOf(project: Pick<ProjectRow, "config">): { engineering: EngineeringOverrides; healthPath: string | null; previews: PreviewSettings } {
  const engineering = EngineeringOverrides.safeParse(project.config.engineering ?? {});
  const healthPath = ProjectConfig.shape.healthPath.safeParse(project.config.healthPath);
  const previews = PreviewSettings.safeParse(project.config.previews ?? {});
  return { engineering: engineering.success ? engineering.data : {}, healthPath: healthPath.success ? (healthPath.data ?? null) : null, previews: previews.success ? previews.data : PreviewSettings.parse({}) };
}

/**
 * Splits the `config` a request gives into the owner's settings and an admin's, checking each:
 * the pipelines' own keys are nobody's to set (403), the admin's are an admin's (403 for others), and
 * anything else must be an owner setting (400 for an unknown key or a bad value).
 */
export function splitConfig(principal: Principal, given: Record<string, unknown>): { config: ProjectConfig; admin: AdminSettings } {
  const keys = Object.keys(given);
  const factory = keys.filter((key) => (FACTORY_SETTINGS as readonly string[]).includes(key));
  if (factory.length) throw new AppError("forbidden", `${factory.join(", ")} ${factory.length === 1 ? "is" : "are"} kept by the factory's pipelines; no request sets ${factory.length === 1 ? "it" : "them"}`);
  const adminKeys = keys.filter((key) => (ADMIN_SETTINGS as readonly string[]).includes(key));
  if (adminKeys.length && !principal.isAdmin) {
    throw new AppError("forbidden", `${adminKeys.join(", ")} ${adminKeys.length === 1 ? "is" : "are"} managed by the factory: only an admin sets ${adminKeys.length === 1 ? "it" : "them"}`);
  }
  const admin = AdminSettings.safeParse(Object.fromEntries(adminKeys.map((key) => [key, given[key]])));
  const config = ProjectConfig.safeParse(Object.fromEntries(keys.filter((key) => !adminKeys.includes(key)).map((key) => [key, given[key]])));
  const issues = [...(admin.success ? [] : admin.error.issues), ...(config.success ? [] : config.error.issues)];
  if (!admin.success || !config.success) {
    throw new AppError("invalid_request", `config: ${issues.map((issue) => `${["config", ...issue.path].join(".")}: ${issue.message}`).join("; ")}`, { details: issues });
  }
  return { config: config.data, admin: admin.data };
}

/** `column || patch`, with the patch's null values removing their keys instead of storing null. */
function mergedJson(column: SQL | typeof projects.config | typeof projects.managed, patch: Record<string, unknown>): SQL {
  const removed = Object.keys(patch).filter((key) => patch[key] === null);
  const kept = Object.fromEntries(Object.entries(patch).filter(([, value]) => value !== null && value !== undefined));
  const without = removed.reduce<SQL>((acc, key) => sql`(${acc} - ${key}::text)`, sql`coalesce(${column}, '{}'::jsonb)`);
  return sql`(${without} || ${JSON.stringify(kept)}::jsonb)`;
}

/** The owner's settings merged in: `engineering` key by key (null there means "none", and stays). */
function mergedConfig(patch: ProjectConfig, engineering: EngineeringOverrides): SQL {
  const { engineering: given, ...rest } = patch;
  const merged = { ...given, ...engineering };
  const top = mergedJson(projects.config, rest);
  if (Object.keys(merged).length === 0) return top;
  return sql`jsonb_set(${top}, '{engineering}', coalesce(${projects.config}->'engineering', '{}'::jsonb) || ${JSON.stringify(merged)}::jsonb)`;
}

/**
 * Refuses a domain another project answers at (its own domain, or the route it is served on), and
 * any name under a server's base domain: those belong to the projects named so.
 */
export async function checkDomain(db: Db, projectId: string, domain: string): Promise<void> {
  const bases = await db.selectDistinct({ base: servers.baseDomain }).from(servers).where(isNotNull(servers.baseDomain));
  const under = bases.find(({ base }) => base && (domain === base || domain.endsWith(`.${base}`)));
  if (under?.base) throw new AppError("invalid_request", `${domain} is under the base domain ${under.base}, whose names belong to the projects named so; give a domain of the project's own`);
  if (domain.endsWith(".localhost") || domain === "localhost") throw new AppError("invalid_request", `${domain} is under localhost, where every project answers by its name`);
  const [taken] = await db
    .select({ name: projects.name })
    .from(projects)
    .where(and(ne(projects.id, projectId), sql`${projects.managed}->>'domain' = ${domain}`))
    .limit(1);
  const [served] = await db.select({ projectId: serviceDeployments.projectId }).from(serviceDeployments).where(and(eq(serviceDeployments.domain, domain), ne(serviceDeployments.projectId, projectId))).limit(1);
  if (taken || served) throw new AppError("invalid_request", `${domain} is another project's domain`);
}

export async function createProject(db: Db, principal: Principal, body: CreateProject): Promise<ProjectRow> {
  if (principal.projectId) throw new AppError("forbidden", "This key is limited to one project; it cannot create others");
  if (body.ownerId && !principal.isAdmin && body.ownerId !== principal.userId) {
    throw new AppError("forbidden", "Only an admin can create a project for another user");
  }
  const ownerId = body.ownerId ?? principal.userId;
  if (!ownerId) throw new AppError("invalid_request", "ownerId is required for this key");
  const { config, admin } = splitConfig(principal, body.config ?? {});
  const id = newId("prj");
  if (admin.domain) await checkDomain(db, id, admin.domain);
  const managed = Object.fromEntries(Object.entries(admin).filter(([, value]) => value !== null && value !== undefined));
  try {
    const [project] = await db
      .insert(projects)
      .values({ id, name: body.name, ownerId, description: body.description ?? "", spec: body.spec, config: withoutNulls(config), managed })
      .returning();
    if (!project) throw new Error("insert returned no row");
    return project;
  } catch (error) {
    if (isUniqueViolation(error)) throw new AppError("conflict", `A project named "${body.name}" already exists`);
    if (isForeignKeyViolation(error)) throw new AppError("invalid_request", `No user with id ${ownerId}`);
    throw error;
  }
}

function withoutNulls(value: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== null && v !== undefined));
}

/**
 * Changes a project: the owner's settings merged in, an admin's too; the status (pipelines') and the
 * repository (the Architect's) only by an admin. A refusal changes nothing.
 */
export async function updateProject(db: Db, principal: Principal, id: string, body: UpdateProject): Promise<ProjectRow> {
  const { testCommand, coverageThreshold, maxIterations, agentTimeoutSeconds, testTimeoutSeconds, decisionTimeoutSeconds, config: given, repositoryUrl, acceptance, ...fields } = body;
  // A project's status is the pipelines' to set; an admin may repair it by hand.
  if (fields.status !== undefined && !principal.isAdmin) {
    throw new AppError("forbidden", "A project's status is set by its pipelines (engineering, deploy); only an admin can change it by hand");
  }
  if (repositoryUrl !== undefined && !principal.isAdmin) {
    throw new AppError("forbidden", "A project's repository is the one the factory created for it; only an admin can link another");
  }
  const { config, admin } = splitConfig(principal, given ?? {});
  const engineering = withoutUndefined({ testCommand, coverageThreshold, maxIterations, agentTimeoutSeconds, testTimeoutSeconds, decisionTimeoutSeconds });
  const [current] = await db.select().from(projects).where(and(eq(projects.id, id), projectVisibleTo(principal)));
  if (!current) notFound("Project");
  // A bot's checks are messages; a project of another kind is checked with requests. (Before the
  // Architect has written a spec the kind is not known yet.)
  const spec = fields.spec ?? current.spec;
  const template = spec ? TemplateName.default("python-http").safeParse(spec.template).data : undefined;
  if (acceptance?.some(isMessageCheck) && template !== undefined && template !== "telegram-bot") {
    throw new AppError("invalid_request", `A check that sends a message is for a Telegram bot; ${current.name} is a ${template} project, checked with requests (method, path, expect)`);
  }
  if (admin.domain) await checkDomain(db, id, admin.domain);
  const managedPatch: Record<string, unknown> = { ...admin };
  if (repositoryUrl !== undefined) {
    const where = repositoryFromUrl(repositoryUrl);
    if (repositoryUrl !== null && !where) throw new AppError("invalid_request", `${repositoryUrl} does not name a repository (…/<owner>/<name>)`);
    // An admin's link is what lets the project read a repository not named after it.
    managedPatch.linkedRepository = where ? `${where.owner}/${where.name}` : null;
  }
  const [project] = await db
    .update(projects)
    .set({
      ...fields,
      // The checks replace the spec's (the spec given in the same request, or the stored one).
      ...(acceptance !== undefined ? { spec: fields.spec ? { ...fields.spec, acceptance } : sql`jsonb_set(coalesce(${projects.spec}, '{}'::jsonb), '{acceptance}', ${JSON.stringify(acceptance)}::jsonb)` } : {}),
      ...(repositoryUrl !== undefined ? { repositoryUrl } : {}),
      config: mergedConfig(config, engineering),
      managed: mergedJson(projects.managed, managedPatch),
      updatedAt: new Date(),
    })
    .where(and(eq(projects.id, id), projectVisibleTo(principal)))
    .returning();
  if (!project) notFound("Project");
  return project;
}

function withoutUndefined<T extends Record<string, unknown>>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** A project the caller may see, by id or by name; 404 otherwise. */
export async function findProject(db: Db, principal: Principal, idOrName: string): Promise<ProjectRow> {
  const [project] = await db
    .select()
    .from(projects)
    .where(and(or(eq(projects.id, idOrName), eq(projects.name, idOrName)), projectVisibleTo(principal)))
    .limit(1);
  if (!project) notFound("Project");
  return project;
}

/**
 * The repository a project may read, `{ owner, name }`: the one its URL names, when that is the
 * `<org>/<project name>` the factory made or the one an admin linked. Anything else (a URL written
 * into the row by other means) names no repository of this project's: null.
 */
export function projectRepository(project: Pick<ProjectRow, "name" | "repositoryUrl" | "managed">, org: string): { owner: string; name: string } | null {
  const where = repositoryFromUrl(project.repositoryUrl);
  if (!where) return null;
  const full = `${where.owner}/${where.name}`;
  if (where.owner === org && where.name === project.name) return where;
  return managedOf(project).linkedRepository === full ? where : null;
}

/** The project's own repository as GitHub has it now; "gone" when it no longer exists, "not own" when its URL names another. */
export async function ownRepository(config: GitHubAppConfig, project: Pick<ProjectRow, "name" | "repositoryUrl" | "managed">): Promise<Repository | "gone" | "not own"> {
  const where = projectRepository(project, await installationOrg(config));
  if (!where) return "not own";
  // GitHub refuses a token for a repository that does not exist (422; 404 for one the App cannot see); any other failure is GitHub's, and said as such.
  const { token } = await repositoryToken(config, where.name, { contents: "read", metadata: "read" }).catch((error: unknown) => {
    if (status(error) === 422 || status(error) === 404) return { token: "" };
    throw error;
  });
  return (token ? await getRepository(config, token, where.owner, where.name) : null) ?? "gone";
}
