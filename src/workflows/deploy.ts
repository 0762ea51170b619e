/**
 * DeployWorkflow: one release of a project, from a commit to `https://<project>.<domain>`, on one task.
 *
 *   Placement       the server (DeployParams), the domain, a release port of the server's range
 *   EnvAnalyzer     `.env.example` at the commit, each variable classified (a model call, cached per project)
 *   SecretResolver  infra secrets generated once, computed values filled, the bot from the pool,
 *                   user secrets asked for (task.needs_input) until they are there
 *   Release         deploy_project.yml: check out, env file, build, start beside the running release
 *   Health          the new release checked directly, then its acceptance checks (the spec's: what the
 *                   person asked for); only then the route moves (caddy.sync with the server's whole
 *                   route list), both checked again through Caddy; the old release stops after a drain.
 *                   An unhealthy release, or one that fails a check, never gets traffic and is stopped;
 *                   one that fails through Caddy gives the route back to the release before it.
 *
 * Rollback is the same from Release on, starting a kept release's image with no build; undeploy takes
 * the route away and removes every release. The outcome is recorded as the owner's notification.
 */
import { WorkflowEntrypoint, type WorkflowEvent, type WorkflowStep } from "cloudflare:workers";
import { NonRetryableError } from "cloudflare:workflows";
import { and, eq, isNotNull, isNull, ne, sql } from "drizzle-orm";
import { z } from "zod";
import { type Db, withDb } from "../db/client.ts";
import { changes, deployments, projects, servers, serviceDeployments } from "../db/schema.ts";
import { getRunnerHub } from "../runner-hub/client.ts";
import { settings } from "../lib/settings.ts";
import { type DeployParams, newDeploymentId, projectDomain, projectUrl, releaseOf, releaseProject, pointRoute, recordLive, reservePort, routeList, whileDeploying } from "../deploy/deploys.ts";
import { previewDomain, previewSecret } from "../deploy/previews.ts";
import { PreviewSettings } from "../shared/api.ts";
import { ChangeBrief, withChangeChecks } from "../shared/changes.ts";
import { classifyEnv, computedValue, EnvAnalysisFailed, generateSecret, parseEnvExample } from "../deploy/env-analyzer.ts";
import { fileAt, getRepository, installationOrg, Repository, repositoryFromUrl, resolveCommit } from "../projects/github.ts";
import { agentConfig, modelEndpoint, modelErrorMessage, openaiClient, recordUsage } from "../models/llm.ts";
import { openSecrets, putSecrets, putSecretsIfAbsent, secretViews } from "../projects/project-secrets.ts";
import { telegramApiRoot } from "../telegram/client.ts";
import { allocateBot, BOT_TOKEN_VAR, botTokenFor, releaseBots } from "../telegram/telegram-bots.ts";
import type { JobView } from "../shared/api.ts";
import { DEFAULT_HEALTH_PATH, type DeployNotification, EnvKind } from "../shared/deploys.ts";
import type { DeployProjectVars } from "../shared/playbooks.ts";
import { AcceptanceStats, type AcceptanceResult, DeployProjectStats } from "../shared/job-results.ts";
import { PackageRegistry } from "../shared/registries.ts";
import { type AcceptanceCheck, AcceptanceChecks, isMessageCheck } from "../shared/spec.ts";
import { templateRegistry } from "../shared/templates.ts";
import { inputEventType, type PendingInput } from "../shared/task-input.ts";
import { API_STEP, MODEL_STEP, PipelineFailure, PipelineRun } from "../pipeline/pipeline-run.ts";
import { runJob } from "../pipeline/run-job.ts";
import { configOf, managedOf, projectRepository } from "../projects/projects.ts";

/** The port the fixture and the python-http template listen on inside their container. */
const CONTAINER_PORT = 8000;
/** How often a deploy asks again for user secrets that are still missing. */
const MAX_SECRET_ASKS = 5;

/** Each env variable's kind, as the EnvAnalyzer found it (and the project remembers it). */
const EnvKinds = z.record(z.string(), z.object({ kind: EnvKind, reason: z.string() }));
type EnvKinds = z.infer<typeof EnvKinds>;

/** The "load" step's result. */
const Facts = z.object({
  project: z.object({
    id: z.string(),
    name: z.string(),
    ownerId: z.string(),
    repositoryUrl: z.string().nullable(),
    managed: z.object({ linkedRepository: z.string().optional() }),
    healthPath: z.string(),
    envKinds: EnvKinds,
    /** The package registry the release's dependencies install from (the project's kind says; absent: none). */
    registry: PackageRegistry.optional(),
  }),
  server: z.object({ id: z.string(), handle: z.string(), publicHttpPort: z.number().nullable() }),
  domain: z.string(),
  releasePorts: z.object({ from: z.number(), to: z.number() }),
  /** The release serving now, if any. */
  active: z.object({ id: z.string(), release: z.string(), port: z.number().nullable() }).nullable(),
  /** The spec's acceptance checks (none before the Architect wrote a spec); for a preview, with its change's own. */
  acceptance: AcceptanceChecks,
  /** A change's preview (src/deploy/previews.ts): its number, and what it may take of production's. */
  preview: z.object({ number: z.number(), settings: PreviewSettings }).nullable(),
  /** The name the release's files, image, network and data go under on the server (releaseProject). */
  releaseProject: z.string(),
});
type Facts = z.infer<typeof Facts>;

/** The project's route (or its change's preview's), as pointRoute takes it. */
const routeOf = (facts: Facts) => ({ projectId: facts.project.id, serverId: facts.server.id, domain: facts.domain, preview: facts.preview?.number ?? null });
/** "web-hello", or "the preview of change #2 of web-hello". */
const nameOf = (facts: Facts) => (facts.preview ? `the preview of change #${facts.preview.number} of ${facts.project.name}` : facts.project.name);

/** Where a release's secret comes from: generated (a preview's: derived), the owner's, the bot pool's. */
type SecretKind = "infra" | "user" | "bot";

/** The "placement" step's result. */
const Release = z.object({
  id: z.string(),
  /** The release directory and image it runs (its own, or for a rollback the kept release's). */
  release: z.string(),
  port: z.number(),
  commit: z.string(),
});
type Release = z.infer<typeof Release>;

/** The "env analyzer" step's result: the kinds, and the variables the model was asked about. */
const AnalyzedEnv = z.object({ kinds: EnvKinds, asked: z.array(z.string()) });

/** The "secrets <ask>" step's result: the user secrets still missing. */
const MissingSecrets = z.array(z.object({ name: z.string(), reason: z.string() }));

/** The "rollback target" step's result. */
const RollbackTarget = z.object({ id: z.string(), release: z.string(), commit: z.string() });

/** A list of names ("releases", "forget releases"). */
const Names = z.array(z.string());

export class DeployWorkflow extends WorkflowEntrypoint<Env, DeployParams> {
  override async run(event: WorkflowEvent<DeployParams>, step: WorkflowStep): Promise<void> {
    await new DeployRun(this.env, step, event.instanceId, event.payload).run();
  }
}

class DeployRun extends PipelineRun<DeployParams> {
  constructor(env: Env, step: WorkflowStep, instanceId: string, params: DeployParams) {
    super("deploy", env, step, instanceId, params);
  }

  async run(): Promise<void> {
    let facts: Facts | undefined;
    try {
      facts = await this.facts();
      const verb = { deploy: "Deploying", rollback: "Rolling back", undeploy: facts.preview ? "Removing" : "Undeploying" }[this.params.mode];
      await this.say("announce", { type: "task.started", message: `${verb} ${nameOf(facts)} on ${facts.server.handle} (${facts.domain})` });
      if (this.params.mode === "undeploy") return await (facts.preview ? this.removePreview(facts, facts.preview.number, true) : this.undeploy(facts));
      // A preview leaves the project's status alone: production is what it says.
      if (!facts.preview) await this.setProjectStatus("start", "deploying");
      const release = this.params.mode === "deploy" ? await this.build(facts) : await this.rollback(facts);
      await this.goLive(facts, release);
    } catch (error) {
      const message = error instanceof PipelineFailure ? error.message : `the deploy stopped: ${error instanceof Error ? error.message : String(error)}`;
      const serving = facts?.active ? "deployed" : "failed";
      if (!facts?.preview) await this.setProjectStatus("failed", serving).catch(() => undefined);
      const notification: DeployNotification = { ok: false, message: `${facts ? nameOf(facts) : "The project"}: ${message}` };
      await this.say("failed", { type: "task.failed", message, data: { notification } }).catch(() => undefined);
    }
  }

  // ---- Placement ----

  private async facts(): Promise<Facts> {
    return this.jsonStep("load", API_STEP, Facts, async () => {
      const status = await getRunnerHub(this.env, this.params.handle).status();
      return withDb(this.env, async (db) => {
        const [project] = await db.select().from(projects).where(eq(projects.id, this.params.projectId));
        if (!project) throw new NonRetryableError(`project ${this.params.projectId} no longer exists`);
        const [server] = await db.select().from(servers).where(eq(servers.id, this.params.serverId));
        if (!server) throw new NonRetryableError(`server ${this.params.handle} no longer exists`);
        if (!status.releasePorts && this.params.mode !== "undeploy") throw new NonRetryableError(`the runner of ${server.handle} has not said which release ports it allots yet: is it connected?`);
        const [service] = await db.select().from(serviceDeployments).where(eq(serviceDeployments.projectId, project.id));
        const number = this.params.preview;
        const [change] = number ? await db.select().from(changes).where(and(eq(changes.projectId, project.id), eq(changes.number, number))) : [];
        if (number && !change) throw new NonRetryableError(`change #${number} of ${project.name} no longer exists`);
        if (change && this.params.mode === "deploy" && change.status !== "open") throw new NonRetryableError(`change #${change.number} is ${change.status}, so it gets no preview`);
        // A preview's live release is the one its change's route points at; production's, the project's.
        const activeId = change ? change.previewDeploymentId : service?.activeDeploymentId;
        const [active] = activeId ? await db.select().from(deployments).where(eq(deployments.id, activeId)) : [];
        const managed = managedOf(project);
        const spec = AcceptanceChecks.default([]).parse(project.spec?.acceptance);
        const brief = change ? ChangeBrief.safeParse(change.brief).data : undefined;
        const envKinds = managed.env ?? {};
        const facts: Facts = {
          project: {
            id: project.id,
            name: project.name,
            ownerId: project.ownerId,
            repositoryUrl: project.repositoryUrl,
            managed: managed.linkedRepository ? { linkedRepository: managed.linkedRepository } : {},
            healthPath: configOf(project).healthPath ?? DEFAULT_HEALTH_PATH,
            envKinds,
            registry: templateRegistry(project.spec?.template),
          },
          server: { id: server.id, handle: server.handle, publicHttpPort: server.publicHttpPort },
          domain: change ? previewDomain(project.name, change.number, server) : (service?.domain ?? projectDomain(project, server)),
          releasePorts: status.releasePorts ?? { from: 0, to: 0 },
          active: active ? { id: active.id, release: releaseOf(active), port: active.port } : null,
          // A preview is checked for what production will be checked for once the change ships.
          acceptance: brief ? withChangeChecks(spec, brief.acceptance) : spec,
          preview: change ? { number: change.number, settings: configOf(project).previews } : null,
          releaseProject: releaseProject(project.name, change?.number),
        };
        return facts;
      });
    });
  }

  /** The new release's row and port: made once, whatever replays. */
  private async createRelease(facts: Facts, commit: string, source: { id: string; release: string } | null): Promise<Release> {
    return this.jsonStep("placement", API_STEP, Release, async () =>
      withDb(this.env, async (db) => {
        const [existing] = await db.select().from(deployments).where(eq(deployments.taskId, this.params.taskId));
        const id = existing?.id ?? newDeploymentId();
        if (!existing) {
          await db.insert(deployments).values({
            id,
            projectId: facts.project.id,
            serverId: facts.server.id,
            taskId: this.params.taskId,
            commitSha: commit,
            image: `orchestrator-release/${facts.releaseProject}:${source?.release ?? id}`,
            domain: facts.domain,
            preview: facts.preview?.number ?? null,
            kind: source ? "rollback" : "build",
            sourceDeploymentId: source?.id ?? null,
            previousDeploymentId: facts.active?.id ?? null,
            status: "deploying",
          });
        }
        const port = existing?.port ?? (await reservePort(db, facts.server.id, facts.releasePorts, id));
        return { id, release: source?.release ?? id, port, commit };
      }),
    );
  }

  // ---- Deploy: commit, env, secrets, build ----

  private async build(facts: Facts): Promise<Release> {
    const repository = await this.repository(facts);
    const ref = this.params.ref ?? repository.defaultBranch;
    const commit = await this.doStep("resolve commit", API_STEP, async () => {
      const sha = await resolveCommit(this.github(), await this.repoToken(repository), repository, ref);
      if (!sha) throw new NonRetryableError(`${repository.fullName} has no ${ref}`);
      return sha;
    });
    const release = await this.createRelease(facts, commit, null);
    await this.say("placement", { type: "step.completed", step: "placement", message: `Placement: ${facts.server.handle}, release ${release.id} on port ${release.port}, ${facts.domain}`, data: { server: facts.server.handle, port: release.port, domain: facts.domain, deploymentId: release.id, commit } });

    const kinds = await this.analyzeEnv(facts, repository, commit);
    const env = await this.resolveSecrets(facts, kinds);

    await this.say("release started", { type: "step.started", step: "release", message: `Release: building ${commit.slice(0, 12)} and starting it on port ${release.port}, beside the running release` });
    const job = await runJob(this.jobs, "release", {
      type: "ansible.playbook",
      payload: async () => {
        const secretNames = Object.keys(env.secret);
        const values = facts.preview ? await this.previewValues(facts, env.secret) : await withDb(this.env, (db) => openSecrets(this.env, db, facts.project.id, secretNames));
        const missing = secretNames.filter((name) => !(name in values));
        if (missing.length) throw new NonRetryableError(`the project's secrets ${missing.join(", ")} are gone`);
        const vars: DeployProjectVars = { project: facts.releaseProject, release: release.release, operation: "build", commit, repo_url: repository.cloneUrl, host_port: release.port, container_port: CONTAINER_PORT, env_vars: env.plain, secret_env: secretNames };
        if (facts.preview?.settings.data === "copy") vars.copy_data_from = facts.project.name;
        // Each tenant's installs share a package cache of their own (src/shared/registries.ts).
        if (facts.project.registry) vars.install = { image: this.env.CODING_WORKER_IMAGE, registry: facts.project.registry, cache_scope: facts.project.ownerId };
        return { playbook: "deploy_project.yml", extraVars: vars, secretVars: { ...values, GIT_TOKEN: await this.repoToken(repository) } };
      },
      ttlSeconds: 900,
      timeoutSeconds: 1200,
      againIfInterrupted: 1,
      onAgain: async (interrupted, attempt) => {
        await this.say(`release again ${attempt}`, { type: "step.progress", step: "release", message: `Release: ${interrupted.outcome?.message ?? "the job was interrupted"}; running the release again (a fresh checkout, the same release)` });
      },
    });
    if (!job.outcome?.ok) {
      await this.stopRelease(facts, release, "failed", { job: job.outcome?.message ?? job.state });
      throw new PipelineFailure(`Release ${release.id}: the build or start failed: ${job.outcome?.message ?? job.state}`);
    }
    await this.say("release completed", { type: "step.completed", step: "release", message: `Release ${release.id}: built and started on 127.0.0.1:${release.port}`, data: { deploymentId: release.id, port: release.port, jobId: job.id } });
    return release;
  }

  private async repository(facts: Facts): Promise<Repository> {
    return this.jsonStep("repository", API_STEP, Repository, async () => {
      if (!repositoryFromUrl(facts.project.repositoryUrl)) throw new NonRetryableError(`project ${facts.project.name} has no repository to deploy from (${facts.project.repositoryUrl ?? "none"})`);
      // Only the repository the factory made for this project (or an admin linked): never one a URL merely names.
      const own = projectRepository(facts.project, await installationOrg(this.github()));
      if (!own) throw new NonRetryableError(`project ${facts.project.name}'s repository URL names a repository that is not its own (${facts.project.repositoryUrl ?? ""}); nothing was built from it`);
      const { owner, name } = own;
      const access = await this.repoToken({ fullName: `${owner}/${name}`, name });
      const repository = await getRepository(this.github(), access, owner, name);
      if (!repository) throw new NonRetryableError(`repository ${owner}/${name} is not reachable through the GitHub App`);
      return repository;
    });
  }

  /** Each `.env.example` variable's kind: those this project has had classified before, and the rest from the model. */
  private async analyzeEnv(facts: Facts, repository: Repository, commit: string): Promise<EnvKinds> {
    await this.say("env started", { type: "step.started", step: "env_analyzer", message: "EnvAnalyzer: reading .env.example" });
    const kinds = await this.jsonStep("env analyzer", MODEL_STEP, AnalyzedEnv, async () => {
      const text = await fileAt(this.github(), await this.repoToken(repository), repository, ".env.example", commit);
      const vars = parseEnvExample(text ?? "");
      const known = facts.project.envKinds;
      const unknown = vars.filter((v) => !known[v.name] && v.name !== BOT_TOKEN_VAR);
      const result: EnvKinds = {};
      for (const v of vars) {
        const stored = known[v.name];
        if (v.name === BOT_TOKEN_VAR) result[v.name] = { kind: "bot", reason: "from the Telegram bot pool" };
        else if (stored) result[v.name] = stored;
      }
      if (unknown.length) {
        await withDb(this.env, async (db) => {
          await this.withinBudget(db, { projectId: facts.project.id, userId: facts.project.ownerId });
          const config = await agentConfig(db, "env_analyzer");
          const usage = (tokens: { promptTokens: number; completionTokens: number }) =>
            recordUsage(db, this.env, { agent: "env_analyzer", model: config.model, ...tokens, projectId: facts.project.id, taskId: this.params.taskId, userId: facts.project.ownerId });
          let classified;
          try {
            classified = await classifyEnv(openaiClient(modelEndpoint(this.env)), config.model, unknown);
          } catch (error) {
            if (error instanceof EnvAnalysisFailed) {
              await usage(error.usage);
              throw new NonRetryableError(error.message);
            }
            throw new Error(modelErrorMessage(error), { cause: error });
          }
          await usage(classified.usage);
          Object.assign(result, classified.kinds);
          // Remembered with the project: the next deploy does not ask the model about these again.
          await db
            .update(projects)
            .set({ managed: sql`jsonb_set(${projects.managed}, '{env}', coalesce(${projects.managed}->'env', '{}'::jsonb) || ${JSON.stringify(classified.kinds)}::jsonb)`, updatedAt: new Date() })
            .where(eq(projects.id, facts.project.id));
        });
      }
      return { kinds: result, asked: unknown.map((v) => v.name) };
    });
    const summary = Object.entries(kinds.kinds).map(([name, { kind }]) => `${name} (${kind})`).join(", ") || "no variables";
    await this.say("env completed", {
      type: "step.completed",
      step: "env_analyzer",
      message: `EnvAnalyzer: ${summary}${kinds.asked.length ? `; asked the model about ${kinds.asked.length}` : "; all known already"}`,
      data: { variables: Object.fromEntries(Object.entries(kinds.kinds).map(([name, { kind }]) => [name, kind])), classifiedNow: kinds.asked },
    });
    return kinds.kinds;
  }

  /**
   * The env file's contents, as names: plain computed values, and the names of the project's secrets
   * to put in (their values are read only inside the release job's step). Asks for missing user secrets.
   */
  private async resolveSecrets(facts: Facts, kinds: EnvKinds): Promise<{ plain: Record<string, string>; secret: Record<string, SecretKind> }> {
    const plain: Record<string, string> = {};
    const asked: { name: string; reason: string }[] = [];
    for (const [name, { kind, reason }] of Object.entries(kinds)) {
      const value = kind === "computed" ? computedValue(name, { domain: facts.domain, url: projectUrl(facts.domain, facts.server), containerPort: CONTAINER_PORT, projectName: facts.project.name, telegramApiUrl: telegramApiRoot({ TELEGRAM_API_URL: this.env.RELEASE_TELEGRAM_API_URL }) }) : undefined;
      if (value !== undefined) plain[name] = value;
      else if (kind === "user" || kind === "computed") asked.push({ name, reason: kind === "computed" ? `${reason || "derived from the deployment"}; this pipeline cannot derive it` : reason });
    }
    const generated = Object.entries(kinds).filter(([, { kind }]) => kind === "infra").map(([name]) => name);
    const needsBot = BOT_TOKEN_VAR in kinds;
    if (facts.preview) return this.previewSecrets(facts, plain, generated, asked, needsBot);
    for (let ask = 1; ; ask++) {
      const missing = await this.jsonStep(`secrets ${ask}`, API_STEP, MissingSecrets, async () =>
        withDb(this.env, async (db) => {
          await putSecretsIfAbsent(this.env, db, facts.project.id, Object.fromEntries(generated.map((name) => [name, generateSecret()])), "infra");
          if (needsBot) await this.ensureBot(db, facts);
          const have = new Set((await secretViews(db, facts.project.id)).map((view) => view.name));
          return asked.filter((field) => !have.has(field.name));
        }),
      );
      if (missing.length === 0) break;
      if (ask > MAX_SECRET_ASKS) throw new PipelineFailure(`SecretResolver: still missing ${missing.map((f) => f.name).join(", ")} after asking ${MAX_SECRET_ASKS} times`);
      await this.askForSecrets(ask, missing);
    }
    await this.say("secrets resolved", {
      type: "step.completed",
      step: "secret_resolver",
      message: `SecretResolver: ${generated.length} generated, ${Object.keys(plain).length} computed, ${asked.length} from the owner${needsBot ? ", the bot from the pool" : ""}`,
      data: { generated, computed: Object.keys(plain), user: asked.map((field) => field.name), bot: needsBot },
    });
    return { plain, secret: { ...Object.fromEntries(generated.map((name) => [name, "infra" as const])), ...(needsBot ? { [BOT_TOKEN_VAR]: "bot" as const } : {}), ...Object.fromEntries(asked.map((field) => [field.name, "user" as const])) } };
  }

  /**
   * A preview's secrets, by kind: its infra secrets derived for it (previewValues), the owner's user
   * secrets only where the project allows it, none of production's bot. Nothing is asked or stored.
   */
  private async previewSecrets(facts: Facts, plain: Record<string, string>, generated: string[], asked: { name: string }[], needsBot: boolean): Promise<{ plain: Record<string, string>; secret: Record<string, SecretKind> }> {
    if (needsBot) throw new PipelineFailure(`${nameOf(facts)}: a bot's preview would need a Telegram bot of its own (production's answers its users), and previews take none from the pool yet`);
    const allowed = facts.preview?.settings.userSecrets === true;
    const users = asked.map((field) => field.name);
    await this.say("secrets resolved", {
      type: "step.completed",
      step: "secret_resolver",
      message: `SecretResolver: ${generated.length} generated for the preview, ${Object.keys(plain).length} computed${users.length ? allowed ? `, ${users.length} of the owner's (previews may have them: config.previews.userSecrets)` : `; the owner's ${users.join(", ")} left empty (production's credentials go to a preview only with config.previews.userSecrets)` : ""}`,
      data: { generated, computed: Object.keys(plain), user: allowed ? users : [], withheld: allowed ? [] : users },
    });
    return { plain, secret: { ...Object.fromEntries(generated.map((name) => [name, "infra" as const])), ...Object.fromEntries(users.map((name) => [name, "user" as const])) } };
  }

  /** The values of a preview's secrets, read only inside the release job's payload (never in a step's result). */
  private async previewValues(facts: Facts, kinds: Record<string, unknown>): Promise<Record<string, string>> {
    const number = facts.preview?.number ?? 0;
    const users = Object.entries(kinds).filter(([, kind]) => kind === "user").map(([name]) => name);
    const allowed = facts.preview?.settings.userSecrets === true;
    const owner = allowed && users.length ? await withDb(this.env, (db) => openSecrets(this.env, db, facts.project.id, users)) : {};
    const values: Record<string, string> = {};
    for (const [name, kind] of Object.entries(kinds)) {
      values[name] = kind === "infra" ? await previewSecret(this.env.SECRETS_ENCRYPTION_KEY, facts.project.id, number, name) : (owner[name] ?? "");
    }
    return values;
  }

  /** TELEGRAM_BOT_TOKEN from the pool, once per project (kept as the project's secret of kind "bot"). */
  private async ensureBot(db: Db, facts: Facts): Promise<void> {
    const have = (await secretViews(db, facts.project.id)).some((view) => view.name === BOT_TOKEN_VAR);
    if (have) return;
    await allocateBot(db, null, facts.project.id).catch((error: unknown) => {
      throw new NonRetryableError(`SecretResolver: the project needs ${BOT_TOKEN_VAR} and the Telegram bot pool has none to give (${error instanceof Error ? error.message : String(error)}); an admin adds bots with POST /api/telegram-bots`);
    });
    const token = await botTokenFor(this.env, db, facts.project.id);
    if (!token) throw new NonRetryableError("SecretResolver: the allocated bot's token could not be read");
    await putSecrets(this.env, db, facts.project.id, { [BOT_TOKEN_VAR]: token }, "bot");
  }

  private async askForSecrets(ask: number, missing: { name: string; reason: string }[]): Promise<void> {
    const inputId = `secrets-${ask}`;
    const timeout = settings(this.env).DEPLOY_SECRETS_TIMEOUT_SECONDS;
    const expiresAt = await this.doStep(`secrets ${ask} deadline`, API_STEP, () => Promise.resolve(new Date(Date.now() + timeout * 1000).toISOString()));
    const names = missing.map((field) => field.name).join(", ");
    const question: PendingInput = {
      kind: "secrets",
      inputId,
      question: `The deploy needs ${names}: give ${missing.length === 1 ? "its value" : "their values"} (PUT /api/projects/:id/secrets, or answer this task)`,
      fields: missing,
      expiresAt,
    };
    await this.say(`secrets ${ask} asked`, { type: "task.needs_input", message: question.question, data: { ...question } });
    try {
      await this.step.waitForEvent(`secrets ${ask} given`, { type: inputEventType(inputId), timeout: `${timeout} seconds` });
    } catch {
      throw new PipelineFailure(`SecretResolver: ${names} ${missing.length === 1 ? "was" : "were"} not given within ${timeout} s, so the deploy stopped`);
    }
    await this.say(`secrets ${ask} taken`, { type: "step.progress", step: "secret_resolver", message: "SecretResolver: secrets received; checking again" });
  }

  // ---- Rollback ----

  private async rollback(facts: Facts): Promise<Release> {
    const target = await this.jsonStep("rollback target", API_STEP, RollbackTarget, async () =>
      withDb(this.env, async (db) => {
        const [row] = await db.select().from(deployments).where(eq(deployments.id, this.params.targetDeploymentId ?? ""));
        if (!row) throw new NonRetryableError(`release ${this.params.targetDeploymentId ?? "(none)"} no longer exists`);
        return { id: row.id, release: releaseOf(row), commit: this.params.commit ?? row.commitSha };
      }),
    );
    const release = await this.createRelease(facts, target.commit, target);
    await this.say("rollback started", { type: "step.started", step: "release", message: `Rollback: starting release ${target.release} (${target.commit.slice(0, 12)}) again on port ${release.port}, no rebuild`, data: { deploymentId: release.id, source: target.id, port: release.port } });
    const job = await runJob(this.jobs, "restart", {
      type: "ansible.playbook",
      payload: { playbook: "deploy_project.yml", extraVars: { project: facts.releaseProject, release: target.release, operation: "start", host_port: release.port, container_port: CONTAINER_PORT } satisfies DeployProjectVars },
      ttlSeconds: 900,
      timeoutSeconds: 300,
    });
    if (!job.outcome?.ok) {
      await this.stopRelease(facts, release, "failed", { job: job.outcome?.message ?? job.state });
      throw new PipelineFailure(`Rollback to ${target.id}: the release did not start: ${job.outcome?.message ?? job.state}`);
    }
    return release;
  }

  // ---- Health gate, route switch, drain ----

  private async goLive(facts: Facts, release: Release): Promise<void> {
    await this.say("health started", { type: "step.started", step: "health", message: `Health: checking the new release on 127.0.0.1:${release.port}${facts.project.healthPath} before it gets traffic` });
    // Every 500 ms for DEPLOY_HEALTH_SECONDS: the time a release has to come up.
    const healthSeconds = settings(this.env).DEPLOY_HEALTH_SECONDS;
    const direct = await runJob(this.jobs, "health direct", {
      type: "health.check",
      payload: { domain: facts.domain, upstreamPort: release.port, path: facts.project.healthPath, attempts: healthSeconds * 2, intervalMs: 500, timeoutSeconds: healthSeconds + 45 },
      ttlSeconds: 300,
      timeoutSeconds: healthSeconds + 45,
    });
    if (!direct.outcome?.ok) {
      const evidence = await this.stopRelease(facts, release, "unhealthy", healthEvidence(direct));
      throw new PipelineFailure(
        `Release ${release.id} is unhealthy, so it got no traffic${facts.active ? ` and ${facts.active.id} keeps serving` : ""}: ${direct.outcome?.message ?? direct.state}${evidence.body ? `\nIt answered: ${evidence.body.slice(0, 300)}` : ""}${evidence.logTail?.length ? `\nIts last log lines:\n${evidence.logTail.slice(-10).join("\n")}` : ""}`,
      );
    }
    // A rollback brings back what served before, whatever the spec asks now.
    const checks = this.params.mode === "deploy" ? facts.acceptance : [];
    await this.say("health direct ok", { type: "step.progress", step: "health", message: `Health: the new release answers (${direct.outcome.message}); ${checks.length ? "checking what was asked of it" : "moving the route"}`, data: { jobId: direct.id } });
    if (checks.length) {
      const accepted = await this.acceptance(facts, checks, "direct", release);
      if (!accepted.ok) {
        await this.stopRelease(facts, release, "unhealthy", { acceptance: accepted.results });
        throw new PipelineFailure(`Release ${release.id} failed its acceptance checks, so it got no traffic${facts.active ? ` and ${facts.active.id} keeps serving` : ""}: ${accepted.message}`);
      }
      await this.say("acceptance direct ok", { type: "step.progress", step: "health", message: "Health: the new release answers and does what was asked of it; moving the route" });
    }

    const routed = await this.doStep("route to new", API_STEP, () => withDb(this.env, (db) => whileDeploying(db, release.id, (tx) => pointRoute(tx, routeOf(facts), { id: release.id, port: release.port }))));
    if (!routed) throw new PipelineFailure(`Release ${release.id} was stopped before it got the route (the deploy was cancelled); ${facts.active ? `${facts.active.id} keeps serving` : "nothing was routed"}`);
    const synced = await this.syncRoutes(facts, "new");
    if (!synced.ok) {
      await this.revertRoute(facts, "caddy refused");
      await this.stopRelease(facts, release, "failed", { caddy: synced.message });
      throw new PipelineFailure(`Routes: Caddy did not take the new route (${synced.message}); ${facts.active ? "the previous release keeps serving" : "nothing was routed"}`);
    }
    const visitor = await runJob(this.jobs, "health caddy", {
      type: "health.check",
      payload: { domain: facts.domain, path: facts.project.healthPath, attempts: 10, intervalMs: 500 },
      ttlSeconds: 300,
      timeoutSeconds: 60,
    });
    if (!visitor.outcome?.ok) {
      await this.revertRoute(facts, "unreachable through caddy");
      await this.stopRelease(facts, release, "unhealthy", healthEvidence(visitor));
      throw new PipelineFailure(`Release ${release.id} answered directly but not through Caddy for ${facts.domain} (${visitor.outcome?.message ?? visitor.state}); the route went back`);
    }
    // A bot's messages never pass Caddy: its message checks ran on the release, before it took over.
    const visitorChecks = checks.filter((check) => !isMessageCheck(check));
    if (visitorChecks.length) {
      const accepted = await this.acceptance(facts, visitorChecks, "caddy");
      if (!accepted.ok) {
        await this.revertRoute(facts, "acceptance failed through caddy");
        await this.stopRelease(facts, release, "unhealthy", { acceptance: accepted.results });
        throw new PipelineFailure(`Release ${release.id} passed its acceptance checks directly but not through Caddy for ${facts.domain} (${accepted.message}); the route went back${facts.active ? ` to ${facts.active.id}, which keeps serving` : ""}`);
      }
    }
    const previousStatus = this.params.mode === "rollback" ? "rolled_back" : "superseded";
    const live = await this.doStep("mark active", API_STEP, () =>
      withDb(this.env, (db) =>
        whileDeploying(db, release.id, (tx) => recordLive(tx, release.id, { direct: healthEvidence(direct), visitor: healthEvidence(visitor) }, facts.active ? { id: facts.active.id, status: previousStatus } : null)),
      ),
    );
    // Stopped meanwhile: the cancel that stopped it put the route back.
    if (!live) throw new PipelineFailure(`Release ${release.id} was stopped before it went live (the deploy was cancelled)`);
    if (!facts.preview) await this.setProjectStatus("deployed", "deployed");
    const url = projectUrl(facts.domain, facts.server);
    await this.say("live", { type: "step.completed", step: "health", message: `Live: ${url} is served by release ${release.id}`, data: { url, deploymentId: release.id } });
    if (facts.preview) await this.doStep("preview url", API_STEP, () => withDb(this.env, (db) => db.update(changes).set({ previewUrl: url, updatedAt: new Date() }).where(and(eq(changes.projectId, facts.project.id), eq(changes.number, facts.preview?.number ?? 0)))).then(() => url));

    if (facts.active && facts.active.port !== null) {
      const drain = settings(this.env).DEPLOY_DRAIN_SECONDS;
      await this.say("drain", { type: "step.progress", step: "drain", message: `Drain: the previous release ${facts.active.id} keeps running ${drain} s for requests in flight, then stops` });
      await this.step.sleep("drain", `${drain} seconds`);
      await this.stopRelease(facts, { id: facts.active.id, release: facts.active.release }, previousStatus, undefined);
    }
    // A change shipped: its preview goes once production serves the change. Production is live whatever
    // becomes of that: a removal that fails is said, and discarding the change again removes the preview.
    if (this.params.removePreview && !facts.preview) {
      const number = this.params.removePreview;
      await this.removePreview(facts, number, false).catch(async (error: unknown) => {
        await this.say(`preview ${number} left`, { type: "step.progress", step: "preview", message: `The preview of change #${number} could not be removed (${error instanceof Error ? error.message : String(error)}); “discard change ${number} of ${facts.project.name}” removes it` });
      });
    }
    const accepted = checks.length ? ` (${checks.length === 1 ? "its acceptance check passes" : `all ${checks.length} acceptance checks pass`})` : "";
    const next = facts.preview ? `: ship it or discard it (“ship change ${facts.preview.number} of ${facts.project.name}”)` : "";
    const notification: DeployNotification = facts.preview
      ? { ok: true, message: `The preview of change #${facts.preview.number} of ${facts.project.name} is live at ${url}${accepted}${next}`, url, preview: facts.preview.number }
      : { ok: true, message: `${facts.project.name} is live at ${url}${accepted}`, url };
    await this.say("completed", { type: "task.completed", message: notification.message, data: { url, deploymentId: release.id, commit: release.commit, notification } });
  }

  /**
   * The acceptance checks, straight to the new release (requests to its port, a bot's messages through
   * the runner's Bot API gateway) or through Caddy; each check's result goes into the task's stream.
   */
  private async acceptance(facts: Facts, checks: AcceptanceCheck[], via: "direct" | "caddy", release?: { release: string; port: number }): Promise<{ ok: boolean; message: string; results: AcceptanceResult[] }> {
    const job = await runJob(this.jobs, `acceptance ${via}`, {
      type: "acceptance.check",
      payload: { domain: facts.domain, checks, ...(release ? { upstreamPort: release.port, release: release.release } : {}) },
      ttlSeconds: 300,
      timeoutSeconds: 120,
    });
    const results = AcceptanceStats.safeParse(job.outcome?.data).data?.results ?? [];
    const ok = job.outcome?.ok === true;
    const message = job.outcome?.message ?? job.state;
    await this.say(`acceptance ${via}`, {
      type: "step.progress",
      step: "acceptance",
      message: `Acceptance ${via === "direct" ? "on the new release" : "through Caddy"}: ${message}${results.length ? `\n${results.map((result) => `${result.ok ? "✓" : "✗"} ${result.name}: ${result.detail}`).join("\n")}` : ""}`,
      data: { via, ok, results, jobId: job.id },
    });
    return { ok, message, results };
  }

  /** Back to the release that served before (or no route), in the database and in Caddy. */
  private async revertRoute(facts: Facts, why: string): Promise<void> {
    await this.doStep(`route back (${why})`, API_STEP, () =>
      withDb(this.env, (db) => pointRoute(db, routeOf(facts), facts.active && facts.active.port !== null ? { id: facts.active.id, port: facts.active.port } : null)),
    );
    await this.syncRoutes(facts, `back (${why})`);
  }

  /** Sends Caddy the server's whole route list as the database has it now. */
  private async syncRoutes(facts: Facts, name: string): Promise<{ ok: boolean; message: string }> {
    const job = await runJob(this.jobs, `routes ${name}`, {
      type: "caddy.sync",
      payload: async () => withDb(this.env, (db) => routeList(db, facts.server.id)),
      ttlSeconds: 300,
      timeoutSeconds: 60,
    });
    return { ok: job.outcome?.ok === true, message: job.outcome?.message ?? job.state };
  }

  /**
   * Stops a release (its image and files stay for a rollback), frees its port and records why.
   * Returns what the release left as evidence (its last log lines). Never throws: it runs on the way
   * to a failure whose reason matters more.
   */
  private async stopRelease(facts: Facts, release: { id: string; release: string }, status: "failed" | "unhealthy" | "superseded" | "rolled_back", evidence: Record<string, unknown> | undefined): Promise<{ body?: string; logTail?: string[] }> {
    let logTail: string[];
    try {
      const job = await runJob(this.jobs, `stop ${release.id}`, {
        type: "ansible.playbook",
        payload: { playbook: "deploy_project.yml", extraVars: { project: facts.releaseProject, release: release.release, operation: "stop" } satisfies DeployProjectVars },
        ttlSeconds: 600,
        timeoutSeconds: 180,
      });
      const stats = DeployProjectStats.safeParse(job.outcome?.data?.customStats).data;
      logTail = stats ? stats.release.logTail.map(String) : [];
    } catch (error) {
      logTail = [`(the release could not be stopped: ${error instanceof Error ? error.message : String(error)})`];
    }
    const recorded = { ...evidence, ...(logTail.length ? { logTail } : {}) };
    await this.doStep(`stopped ${release.id}`, API_STEP, () =>
      withDb(this.env, async (db) => {
        const final = status === "failed" || status === "unhealthy";
        await db
          .update(deployments)
          .set({ port: null, stoppedAt: new Date(), ...(final ? { status, health: recorded, finishedAt: new Date() } : {}) })
          .where(eq(deployments.id, release.id));
      }),
    ).catch(() => undefined);
    return { ...(typeof evidence?.body === "string" ? { body: evidence.body } : {}), logTail };
  }

  // ---- A change's preview removed ----

  /**
   * Removes change #n's preview: its route, then every release it had and its data (all under
   * `<project>--<n>`). `alone`: this task is the removal (a discard), and ends with it; otherwise it is
   * the end of the deploy that shipped the change.
   */
  private async removePreview(facts: Facts, number: number, alone: boolean): Promise<void> {
    const project = releaseProject(facts.project.name, number);
    await this.doStep(`preview ${number} route away`, API_STEP, () => withDb(this.env, (db) => pointRoute(db, { ...routeOf(facts), preview: number }, null)));
    const synced = await this.syncRoutes(facts, `without preview ${number}`);
    if (!synced.ok) throw new PipelineFailure(`The preview of change #${number}: Caddy did not take the route list without it: ${synced.message}`);
    const releases = await this.jsonStep(`preview ${number} releases`, API_STEP, Names, () =>
      withDb(this.env, async (db) => {
        const rows = await db.select().from(deployments).where(and(eq(deployments.projectId, facts.project.id), eq(deployments.preview, number), ne(deployments.status, "removed")));
        return [...new Set(rows.map(releaseOf))];
      }),
    );
    const job = await runJob(this.jobs, `remove preview ${number}`, {
      type: "ansible.playbook",
      payload: { playbook: "deploy_project.yml", extraVars: { project, releases, operation: "remove", delete_data: true } satisfies DeployProjectVars },
      ttlSeconds: 600,
      timeoutSeconds: 300,
    });
    if (!job.outcome?.ok) throw new PipelineFailure(`The preview of change #${number} could not be removed: ${job.outcome?.message ?? job.state}`);
    await this.doStep(`preview ${number} removed`, API_STEP, () =>
      withDb(this.env, async (db) => {
        await db.update(deployments).set({ status: "removed", port: null, stoppedAt: new Date() }).where(and(eq(deployments.projectId, facts.project.id), eq(deployments.preview, number)));
        await db.update(changes).set({ previewUrl: null, updatedAt: new Date() }).where(and(eq(changes.projectId, facts.project.id), eq(changes.number, number)));
      }),
    );
    const message = `The preview of change #${number} of ${facts.project.name} is removed: its route, ${releases.length} release${releases.length === 1 ? "" : "s"} and its data`;
    if (alone) await this.say("completed", { type: "task.completed", message, data: { releases, notification: { ok: true, message } satisfies DeployNotification } });
    else await this.say(`preview ${number} gone`, { type: "step.completed", step: "preview", message, data: { releases } });
  }

  // ---- Undeploy ----

  private async undeploy(facts: Facts): Promise<void> {
    await this.doStep("route away", API_STEP, () => withDb(this.env, (db) => pointRoute(db, routeOf(facts), null)));
    const synced = await this.syncRoutes(facts, "without");
    if (!synced.ok) throw new PipelineFailure(`Undeploy: Caddy did not take the route list without ${facts.domain}: ${synced.message}`);
    const releases = await this.jsonStep("releases", API_STEP, Names, async () =>
      withDb(this.env, async (db) => {
        // Production's releases: a change's preview goes when the change is shipped or discarded.
        const rows = await db.select().from(deployments).where(and(eq(deployments.projectId, facts.project.id), eq(deployments.serverId, facts.server.id), ne(deployments.status, "removed"), isNull(deployments.preview)));
        return [...new Set(rows.map(releaseOf))];
      }),
    );
    // The project's previews go with it: a change's preview of a project that is offline would serve on.
    const previews = await this.jsonStep("previews", API_STEP, z.array(z.number()), () =>
      withDb(this.env, async (db) => {
        const rows = await db.selectDistinct({ preview: deployments.preview }).from(deployments).where(and(eq(deployments.projectId, facts.project.id), eq(deployments.serverId, facts.server.id), ne(deployments.status, "removed"), isNotNull(deployments.preview)));
        return rows.flatMap((row) => (row.preview ? [row.preview] : []));
      }),
    );
    for (const number of previews) await this.removePreview(facts, number, false);
    const deleteData = this.params.deleteData === true;
    if (releases.length || deleteData) {
      // One run for them all: a playbook run costs seconds of CPU on a small server, however little it does.
      const job = await runJob(this.jobs, "remove releases", {
        type: "ansible.playbook",
        payload: { playbook: "deploy_project.yml", extraVars: { project: facts.project.name, releases, operation: "remove", delete_data: deleteData } satisfies DeployProjectVars },
        ttlSeconds: 600,
        timeoutSeconds: 300,
      });
      if (!job.outcome?.ok) throw new PipelineFailure(`Undeploy: ${releases.length ? `the releases ${releases.join(", ")}` : "the project's data"} could not be removed: ${job.outcome?.message ?? job.state}`);
    }
    const freed = await this.jsonStep("forget releases", API_STEP, Names, () =>
      withDb(this.env, async (db) => {
        await db.update(deployments).set({ status: "removed", port: null, stoppedAt: new Date() }).where(and(eq(deployments.projectId, facts.project.id), eq(deployments.serverId, facts.server.id), isNull(deployments.preview)));
        const bots = await releaseBots(db, facts.project.id);
        await db.update(projects).set({ status: "ready", updatedAt: new Date() }).where(eq(projects.id, facts.project.id));
        return bots.map((bot) => bot.username);
      }),
    );
    const data = deleteData ? "its data (/data) deleted" : "its data (/data) kept for its next deploy (undeploy with deleteData to delete it)";
    const message = `${facts.project.name} is undeployed from ${facts.server.handle}: route, ${releases.length} release${releases.length === 1 ? "" : "s"} and ${freed.length ? `bot @${freed.join(", @")}` : "no bot"} removed; ${data}`;
    await this.say("completed", { type: "task.completed", message, data: { releases, bots: freed, dataDeleted: deleteData, notification: { ok: true, message } satisfies DeployNotification } });
  }
}

/** What a health check found, for the release's history. */
function healthEvidence(job: JobView): Record<string, unknown> {
  const data = job.outcome?.data ?? {};
  return { ok: job.outcome?.ok ?? false, message: job.outcome?.message ?? job.state, status: data.status ?? null, attempts: data.attempts ?? null, ...(data.body !== undefined ? { body: data.body } : {}), ...(data.url ? { url: data.url } : {}) };
}
