/**
 * EngineeringWorkflow: one project from its description to code whose tests pass, on one task.
 *
 *   Architect  the spec (a model call, zod-checked) and the GitHub repository (the App's installation)
 *   Preparer   a repo.scaffold job: the template rendered with the spec, pushed as the first commit
 *   Developer  a coding agent in the coding-worker container: TASK.md in, a pushed commit out
 *   Tester     the spec's test command in a container at that commit, its results parsed
 *
 * Failing tests go back to the Developer with the parsed failures, for at most `maxIterations`
 * rounds; then a person decides (task.needs_input → POST /api/tasks/:id/input) whether to go on.
 * Every step reports to the task's stream; the containers' output arrives there as log events.
 */
import { WorkflowEntrypoint, type WorkflowEvent, type WorkflowStep } from "cloudflare:workers";
import { NonRetryableError } from "cloudflare:workflows";
import { and, eq } from "drizzle-orm";
import { z } from "zod";
import { codingAgent } from "../engineering/coding-agents/index.ts";
import { withDb } from "../db/client.ts";
import { changes, projects } from "../db/schema.ts";
import { ingestRepositoryDocs, ingestTaskLog } from "../rag/sources.ts";
import { Declined, draftSpec, SpecRejected } from "../engineering/architect.ts";
import { commitExists, ensureRepository, fastForward, fileAt, installationAccess, mergeBranch, Repository, repositoryToken, resetBranch, resolveCommit } from "../projects/github.ts";
import { openPullRequest } from "../projects/pull-requests.ts";
import { agentConfig, modelEndpoint, modelErrorMessage, modelRelayUrl, openaiClient, recordUsage } from "../models/llm.ts";
import { settings as workerSettings } from "../lib/settings.ts";
import { taskBrief } from "../engineering/task-brief.ts";
import { AcceptanceChecks, EngineeringOverrides, type EngineeringSettings, engineeringSettings, ProjectSpec } from "../shared/spec.ts";
import { DecisionAnswer, inputEventType, type PendingInput } from "../shared/task-input.ts";
import type { TestResults } from "../shared/test-results.ts";
import { AGENT_OUTPUT, collected, DEVELOP_ERROR, developPayload, developResult, type DevelopResult, scaffoldPayload, tailLines, testPayload, testResults } from "../engineering/engineering-jobs.ts";
import { API_STEP, MODEL_STEP, PipelineFailure, PipelineRun } from "../pipeline/pipeline-run.ts";
import { configOf, ownRepository } from "../projects/projects.ts";
import { recordChangeBrief, recordChangeCurrent, recordChangeFailed, recordChangeOpen } from "../changes/changes.ts";
import { recordCheckpoint } from "../checkpoints/checkpoints.ts";
import { draftChangeBrief } from "../engineering/change-brief.ts";
import { ChangeBrief, withChangeChecks } from "../shared/changes.ts";
import type { EngineeringParams } from "../engineering/engineering.ts";
import { deployStartedAfter, startDeployTask } from "../deploy/deploys.ts";
import { DeployAfterBuild } from "../shared/deploys.ts";
import { AppError } from "../lib/app-error.ts";
import { type Caller, principalOfCaller } from "../platform/auth.ts";

/** The "load project" step's result. */
const ProjectFacts = z.object({ id: z.string(), name: z.string(), description: z.string(), ownerId: z.string(), overrides: EngineeringOverrides, repositoryUrl: z.string().nullable(), managed: z.record(z.string(), z.unknown()) });
type ProjectFacts = z.infer<typeof ProjectFacts>;

/** The "architect spec" step's result. */
const DraftedSpec = z.object({ spec: ProjectSpec, reused: z.boolean(), attempts: z.number() });

/** The "architect repository" step's result. */
const EnsuredRepository = z.object({ repository: Repository, created: z.boolean() });

/** The "pull request" step's result. */
const PullRequestRef = z.object({ number: z.number().int(), url: z.string() });
type PullRequestRef = z.infer<typeof PullRequestRef>;

/** The "developer <round> setup" step's result. */
const DeveloperSetup = z.object({ model: z.string(), agent: z.string() });
/** A "preview" step's result: its deploy started, or why not (busy: a deploy of the project runs, so it waits). */
const PreviewStart = z.union([z.object({ taskId: z.string() }), z.object({ notDeployed: z.string(), busy: z.boolean().optional() })]);
/** A "catch up" step's result: the default branch merged into the change's branch (its new head), already in it, or in conflict (nothing moved). */
const CaughtUp = z.union([z.object({ sha: z.string() }), z.literal("up to date"), z.literal("conflict")]);
type CaughtUp = z.infer<typeof CaughtUp>;
/** How long, and how many times, a change's preview waits for a deploy of it that is running (a round of "change more" after another). */
const PREVIEW_WAIT = "15 seconds";
const PREVIEW_WAITS = 80;


export class EngineeringWorkflow extends WorkflowEntrypoint<Env, EngineeringParams> {
  override async run(event: WorkflowEvent<EngineeringParams>, step: WorkflowStep): Promise<void> {
    await new EngineeringRun(this.env, step, event.instanceId, event.payload).run();
  }
}

class EngineeringRun extends PipelineRun<EngineeringParams> {
  /** A change request's words and brief, once the Architect wrote it (change mode only). */
  private change: (NonNullable<EngineeringParams["change"]> & { brief: ChangeBrief }) | null = null;

  constructor(env: Env, step: WorkflowStep, instanceId: string, params: EngineeringParams) {
    super("engineering", env, step, instanceId, params);
  }

  async run(): Promise<void> {
    try {
      const project = await this.loadProject();
      if (this.params.change) {
        await this.runChange(project, this.params.change);
      } else {
        await this.say("announce", { type: "task.started", message: `Engineering ${project.name}: Architect → Preparer → Developer ⇄ Tester on ${this.params.handle}` });
        await this.setProjectStatus("start", "engineering");
        const spec = await this.architect(project);
        const settings = engineeringSettings(spec, project.overrides);
        const repository = await this.repository(project, spec);
        const base = await this.prepare(project, spec, settings, repository);
        await this.rounds(project, spec, settings, repository, base);
      }
    } catch (error) {
      const why = error instanceof PipelineFailure ? error.message : `the engineering pipeline stopped: ${error instanceof Error ? error.message : String(error)}`;
      // Another round of an open change that failed leaves the change open, as it was before the round.
      const change = this.params.change;
      const message = change?.more ? `${why}. Change #${change.number} stays open as it was${change.catchUp ? ` (without what its default branch has now: ship it as it is, change it more to try the merge again, or discard it)` : ""}` : why;
      // A change that fails leaves the project as it was (production serves on); only its record says so.
      if (this.params.change?.more) await this.doStep("change reset", API_STEP, () => this.resetChange()).catch(() => undefined);
      if (this.params.change) await this.doStep("change failed", API_STEP, () => withDb(this.env, (db) => recordChangeFailed(db, this.params.taskId, Boolean(this.params.change?.more))).then(() => "recorded")).catch(() => undefined);
      else await this.setProjectStatus("failed", "failed").catch(() => undefined);
      // A task cancelled meanwhile has its end already: its stream takes no second one.
      await this.say("failed", { type: "task.failed", message }).catch(() => undefined);
    }
    // However it ended: the repository's docs and code, and this run's log, into the knowledge index
    // (queued only; the rag-ingest consumer does the work and retries it).
    await this.doStep("index knowledge", API_STEP, async () => {
      await ingestRepositoryDocs(this.env, { projectId: this.params.projectId });
      await ingestTaskLog(this.env, this.params.taskId);
      return "queued";
    }).catch(() => undefined);
  }

  // ---- Steps ----

  private async loadProject(): Promise<ProjectFacts> {
    return this.jsonStep("load project", API_STEP, ProjectFacts, async () =>
      withDb(this.env, async (db) => {
        const [row] = await db.select().from(projects).where(eq(projects.id, this.params.projectId));
        if (!row) throw new NonRetryableError(`project ${this.params.projectId} no longer exists`);
        return { id: row.id, name: row.name, description: row.description, ownerId: row.ownerId, overrides: configOf(row).engineering, repositoryUrl: row.repositoryUrl, managed: row.managed };
      }),
    );
  }

  private async architect(project: ProjectFacts): Promise<ProjectSpec> {
    await this.say("architect started", { type: "step.started", step: "architect", message: "Architect: writing the spec from the project's description" });
    const drafted = await this.jsonStep("architect spec", MODEL_STEP, DraftedSpec, async () =>
      withDb(this.env, async (db) => {
        const [row] = await db.select({ spec: projects.spec }).from(projects).where(eq(projects.id, project.id));
        const stored = ProjectSpec.safeParse(row?.spec);
        if (row?.spec && stored.success) return { spec: stored.data, reused: true, attempts: 0 };
        await this.withinBudget(db, { projectId: project.id, userId: project.ownerId });
        const config = await agentConfig(db, "architect");
        const usage = (tokens: { promptTokens: number; completionTokens: number }) =>
          recordUsage(db, this.env, { agent: "architect", model: config.model, ...tokens, projectId: project.id, taskId: this.params.taskId, userId: project.ownerId });
        let endpoint;
        try {
          endpoint = modelEndpoint(this.env);
        } catch (error) {
          throw new NonRetryableError(error instanceof Error ? error.message : String(error));
        }
        try {
          const result = await draftSpec(openaiClient(endpoint), config, project);
          await usage(result.usage);
          // Acceptance checks the owner set before there was a spec (PATCH acceptance) are theirs: they stay, in place of the Architect's.
          const owners = AcceptanceChecks.safeParse(row?.spec?.acceptance);
          const spec = owners.success && owners.data.length ? { ...result.spec, acceptance: owners.data } : result.spec;
          await db.update(projects).set({ spec, updatedAt: new Date() }).where(eq(projects.id, project.id));
          return { spec, reused: false, attempts: result.attempts };
        } catch (error) {
          if (error instanceof SpecRejected || error instanceof Declined) {
            await usage(error.usage);
            throw new NonRetryableError(error.message);
          }
          throw new Error(modelErrorMessage(error), { cause: error });
        }
      }),
    );
    const { spec } = drafted;
    const how = drafted.reused ? "the stored spec is used" : `spec written${drafted.attempts > 1 ? " (the first reply was rejected and the model asked again)" : ""}`;
    await this.say("architect spec ready", {
      type: "step.progress",
      step: "architect",
      message: `Architect: ${how}: ${spec.summary} (${spec.modules.length} modules, ${spec.routes.length} routes, ${spec.env.length} env vars, template ${spec.template})`,
      data: { spec },
    });
    return spec;
  }

  private async repository(project: ProjectFacts, spec: ProjectSpec): Promise<Repository> {
    const { repository, created } = await this.jsonStep("architect repository", API_STEP, EnsuredRepository, async () => {
      const config = this.github();
      const access = await installationAccess(config);
      const result = await ensureRepository(config, access, project.name, spec.summary);
      await withDb(this.env, (db) => db.update(projects).set({ repositoryUrl: result.repository.htmlUrl, updatedAt: new Date() }).where(eq(projects.id, project.id)));
      return result;
    });
    await this.say("architect completed", {
      type: "step.completed",
      step: "architect",
      message: `Architect: repository ${repository.fullName} ${created ? "created" : "already there, reused"}`,
      data: { repository: repository.htmlUrl, created },
    });
    return repository;
  }

  private async prepare(project: ProjectFacts, spec: ProjectSpec, settings: EngineeringSettings, repository: Repository): Promise<string> {
    await this.say("preparer started", { type: "step.started", step: "preparer", message: `Preparer: scaffolding ${repository.fullName} from the ${spec.template} template` });
    const job = await this.runJobWithCredentials("scaffold", {
      type: "repo.scaffold",
      userId: project.ownerId,
      payload: async (issue) => scaffoldPayload(spec, project, settings, { cloneUrl: repository.cloneUrl, token: (await issue({ repository })).gitToken }),
      ttlSeconds: 900,
      timeoutSeconds: 300,
    });
    const sha = job.outcome?.ok ? job.outcome.data?.sha : undefined;
    if (typeof sha !== "string") throw new PipelineFailure(`Preparer: scaffolding ${repository.fullName} failed: ${job.outcome?.message ?? job.state}`);
    await this.say("preparer completed", { type: "step.completed", step: "preparer", message: `Preparer: ${job.outcome?.message ?? "scaffolded"}`, data: { sha, jobId: job.id } });
    return sha;
  }

  /**
   * Developer ⇄ Tester until the tests pass. A change's passing branch then takes in the default branch
   * (another change may have shipped meanwhile): merged cleanly, it is tested again; in conflict, the
   * next Developer round resolves the merge. `catchUp`: a change that starts there (src/changes/changes.ts, after a ship).
   */
  private async rounds(project: ProjectFacts, spec: ProjectSpec, settings: EngineeringSettings, repository: Repository, base: string, catchUp = false): Promise<void> {
    const branch = this.change?.branch ?? `orchestrator/${this.params.taskId}`;
    let limit = settings.maxIterations;
    let previous: TestResults | null = null;
    let sha = base;
    // What the next round starts with: the Developer (on the failures so far, or resolving a merge), or the Tester alone (a clean merge).
    let next: { developer: boolean; merging?: string } = { developer: true };
    if (catchUp) {
      const caught = await this.catchUp(0, repository, branch, sha);
      if (caught === "up to date") return this.changeCurrent(project, sha);
      next = caught === "conflict" ? { developer: true, merging: repository.defaultBranch } : { developer: false };
      if (caught !== "conflict") sha = caught.sha;
    }
    for (let round = 1; ; round++) {
      if (round > limit && previous) limit += await this.askToContinue(round - 1, previous, settings);
      if (next.developer) sha = (await this.develop(project, spec, settings, repository, { round, branch, ref: sha, previous, ...(next.merging ? { merging: next.merging } : {}) })).sha;
      const results = await this.test(project, spec, settings, repository, round, sha);
      if (!results.passed) {
        previous = results;
        next = { developer: true };
        continue;
      }
      if (this.change) {
        const caught = await this.catchUp(round, repository, branch, sha);
        if (caught === "up to date") {
          await this.offerChange(project, repository, this.change, { sha, round, results });
          return;
        }
        previous = null;
        next = caught === "conflict" ? { developer: true, merging: repository.defaultBranch } : { developer: false };
        if (caught !== "conflict") sha = caught.sha;
        continue;
      }
      // The default branch moves to the passing commit, so the next run (and a deploy) starts there.
      const merged = await this.doStep("merge", API_STEP, async () => {
        return fastForward(this.github(), { token: await this.repoToken(repository) }, repository, repository.defaultBranch, sha);
      });
      // Moved on meanwhile (someone pushed): the work goes to a pull request, for a person to merge.
      const pullRequest = merged ? null : await this.pullRequest(project, spec, repository, branch, { round, summary: results.summary });
      // The default branch reached a tested commit: a checkpoint an undo can come back to.
      if (merged) {
        await this.doStep("checkpoint", API_STEP, () =>
          withDb(this.env, (db) => recordCheckpoint(db, { projectId: project.id, kind: "build", summary: spec.summary, commitSha: sha, taskId: this.params.taskId, tests: results.summary, acceptance: spec.acceptance })).then((row) => row.number),
        );
      }
      await this.setProjectStatus("ready", "ready");
      const deploy = this.params.deployAs ? await this.deployTested(project, sha, this.params.deployAs) : undefined;
      await this.say("completed", {
        type: "task.completed",
        message: `${project.name}: the tests pass at ${sha.slice(0, 12)} after ${round} round${round === 1 ? "" : "s"} (${results.summary}); ${merged ? `${repository.defaultBranch} is there now` : `${repository.defaultBranch} has moved on meanwhile, so the work is in pull request #${pullRequest?.number ?? "?"} (${pullRequest?.url ?? branch})`}${deploy ? `; ${"taskId" in deploy ? `deploying it now (task ${deploy.taskId})` : `not deployed: ${deploy.notDeployed}`}` : ""}`,
        data: { sha, branch, merged, defaultBranch: repository.defaultBranch, repository: repository.htmlUrl, kind: spec.template, rounds: round, tests: results, ...(pullRequest ? { pullRequest } : {}), ...(deploy ? { deploy } : {}) },
      });
      return;
    }
  }

  /**
   * The default branch merged into a change's branch, whose head is `sha` (tested, or to be): its new
   * head, "up to date" (nothing to merge, and the head is still `sha`), or "conflict" (nothing moved).
   */
  private async catchUp(round: number, repository: Repository, branch: string, sha: string): Promise<CaughtUp> {
    const caught = await this.jsonStep(`catch up ${round}`, API_STEP, CaughtUp, async () => {
      const token = await this.repoToken(repository);
      const merged = await mergeBranch(this.github(), token, repository, { base: branch, head: repository.defaultBranch, message: `Merge ${repository.defaultBranch} into ${branch}` });
      if (merged !== "up to date") return merged;
      // A retried step whose merge was made before: that head is what the Tester must see.
      const head = await resolveCommit(this.github(), token, repository, branch);
      return head && head !== sha ? { sha: head } : "up to date";
    });
    if (caught === "up to date") return caught;
    await this.say(`catch up ${round}`, {
      type: "step.progress",
      step: caught === "conflict" ? "developer" : "tester",
      message:
        caught === "conflict"
          ? `${repository.defaultBranch} moved on since change #${this.change?.number ?? "?"} began and conflicts with it: the next Developer round merges it and resolves the conflicts`
          : `${repository.defaultBranch} moved on since change #${this.change?.number ?? "?"} began: merged into ${branch} (${caught.sha.slice(0, 12)}), and tested again`,
      data: { defaultBranch: repository.defaultBranch, ...(caught === "conflict" ? { conflict: true } : { sha: caught.sha }) },
    });
    return caught;
  }

  /** A change asked to catch up that has nothing to take in: open again as it was. */
  private async changeCurrent(project: ProjectFacts, sha: string): Promise<void> {
    await this.doStep("change current", API_STEP, () => withDb(this.env, (db) => recordChangeCurrent(db, this.params.taskId)).then(() => "recorded"));
    await this.say("completed", {
      type: "task.completed",
      message: `Change #${this.change?.number ?? "?"} to ${project.name} has everything of its default branch already: it stays open as it was, at ${sha.slice(0, 12)}`,
      data: { sha, branch: this.change?.branch, merged: false, change: { number: this.change?.number } },
    });
  }

  // ---- Change mode ----

  /** A change request: the stored spec and the repository as they are, a change brief, rounds on the change's branch, a pull request. */
  private async runChange(project: ProjectFacts, change: NonNullable<EngineeringParams["change"]>): Promise<void> {
    await this.say("announce", {
      type: "task.started",
      message: change.catchUp
        ? `Change #${change.number} to ${project.name} catches up (${change.catchUp}): the default branch merged into ${change.branch} → Tester (⇄ Developer) → its pull request updated, on ${this.params.handle}`
        : `Change #${change.number} to ${project.name}${change.more ? ", once more" : ""}: Architect (a change brief) → Developer ⇄ Tester on ${change.branch} → ${change.more ? "its pull request updated" : "a pull request"}, on ${this.params.handle}`,
      data: { change: { number: change.number, branch: change.branch } },
    });
    const spec = await this.jsonStep("change spec", API_STEP, ProjectSpec, () =>
      withDb(this.env, async (db) => {
        const [row] = await db.select({ spec: projects.spec }).from(projects).where(eq(projects.id, project.id));
        const stored = ProjectSpec.safeParse(row?.spec);
        if (!stored.success) throw new NonRetryableError(`project ${project.name} has no spec any more, so there is nothing to change: build it again`);
        return stored.data;
      }),
    );
    const settings = engineeringSettings(spec, project.overrides);
    const repository = await this.jsonStep("change repository", API_STEP, Repository, async () => {
      const found = await ownRepository(this.github(), { name: project.name, repositoryUrl: project.repositoryUrl, managed: project.managed });
      if (typeof found === "string") throw new NonRetryableError(`project ${project.name}'s repository is ${found === "gone" ? "gone" : "not the project's own"}, so there is nothing to change`);
      return found;
    });
    if (change.catchUp && change.more) {
      // Nothing new was asked: the brief stays, and the work starts with the merge.
      this.change = { ...change, brief: change.more.brief };
      const head = await this.doStep("change base", API_STEP, async () => {
        const sha = await resolveCommit(this.github(), await this.repoToken(repository), repository, change.branch);
        if (!sha) throw new NonRetryableError(`${repository.fullName} has no ${change.branch} branch any more`);
        return sha;
      });
      await this.rounds(project, spec, settings, repository, head, true);
      return;
    }
    await this.say("architect started", { type: "step.started", step: "architect", message: `Architect: writing the brief of change #${change.number} from the owner's words and the project as it is` });
    const brief = await this.jsonStep("architect change brief", MODEL_STEP, ChangeBrief, async () => {
      const readme = await fileAt(this.github(), await this.repoToken(repository), repository, "README.md", repository.defaultBranch).catch(() => null);
      return withDb(this.env, async (db) => {
        await this.withinBudget(db, { projectId: project.id, userId: project.ownerId });
        const config = await agentConfig(db, "architect");
        let endpoint;
        try {
          endpoint = modelEndpoint(this.env);
        } catch (error) {
          throw new NonRetryableError(error instanceof Error ? error.message : String(error));
        }
        const usage = (tokens: { promptTokens: number; completionTokens: number }) =>
          recordUsage(db, this.env, { agent: "architect", model: config.model, ...tokens, projectId: project.id, taskId: this.params.taskId, userId: project.ownerId });
        try {
          const result = await draftChangeBrief(openaiClient(endpoint), config, { name: project.name, spec, readme, request: change.request, ...(change.more ? { previous: change.more.brief } : {}) });
          await usage(result.usage);
          // Once more: the change is what it was plus what is asked now (a check of the same name replaced).
          const brief = change.more ? moreBrief(change.more.brief, result.brief) : result.brief;
          await recordChangeBrief(db, this.params.taskId, brief);
          return brief;
        } catch (error) {
          if (error instanceof SpecRejected) {
            await usage(error.usage);
            throw new NonRetryableError(error.message);
          }
          throw new Error(modelErrorMessage(error), { cause: error });
        }
      });
    });
    this.change = { ...change, brief };
    await this.say("architect completed", {
      type: "step.completed",
      step: "architect",
      message: `Architect: change #${change.number}: ${brief.summary} (${brief.changes.length} change${brief.changes.length === 1 ? "" : "s"}${brief.acceptance.length ? `, ${brief.acceptance.length} acceptance check${brief.acceptance.length === 1 ? "" : "s"}` : ""})`,
      data: { change: { number: change.number, branch: change.branch, brief } },
    });
    // The rounds start from the default branch as it is now (what production was built from, or later); once more, from the change's branch.
    const from = change.more ? change.branch : repository.defaultBranch;
    const base = await this.doStep("change base", API_STEP, async () => {
      const sha = await resolveCommit(this.github(), await this.repoToken(repository), repository, from);
      if (!sha) throw new NonRetryableError(`${repository.fullName} has no ${from} branch to change`);
      return sha;
    });
    await this.rounds(project, spec, settings, repository, base);
  }

  /** The change's passing branch as a pull request (the one already open for it, on a retry); the task ends offering it. */
  private async offerChange(project: ProjectFacts, repository: Repository, change: NonNullable<EngineeringRun["change"]>, tested: { sha: string; round: number; results: TestResults }): Promise<void> {
    const rounds = `${tested.round} round${tested.round === 1 ? "" : "s"}`;
    const pullRequest = await this.jsonStep("change pull request", API_STEP, PullRequestRef, async () => {
      const config = this.github();
      const { token } = await repositoryToken(config, repository.name, { contents: "write", metadata: "read", pull_requests: "write" });
      const body = [
        `Asked for: ${change.request}`,
        "",
        change.brief.summary,
        "",
        ...change.brief.changes.map((line) => `- ${line}`),
        "",
        `The tests pass (${tested.results.summary}) at ${tested.sha.slice(0, 12)} after ${rounds} of task ${this.params.taskId}.`,
        ...(change.brief.acceptance.length ? ["", "Acceptance checks it adds or replaces:", ...change.brief.acceptance.map((check) => `- ${check.name}`)] : []),
      ].join("\n");
      const pull = await openPullRequest(config, token, repository, { title: `${project.name} #${change.number}: ${change.brief.summary}`.slice(0, 256), head: change.branch, base: repository.defaultBranch, body });
      const ref = { number: pull.number, url: pull.htmlUrl };
      await withDb(this.env, (db) => recordChangeOpen(db, this.params.taskId, ref, tested.sha));
      return ref;
    });
    const preview = await this.preview(project, change, tested.sha);
    await this.say("completed", {
      type: "task.completed",
      message: `Change #${change.number} to ${project.name}: the tests pass at ${tested.sha.slice(0, 12)} after ${rounds} (${tested.results.summary}); pull request #${pullRequest.number} (${pullRequest.url}) is open: ship it or discard it${"taskId" in preview ? `; its preview is being deployed (task ${preview.taskId})` : `; no preview: ${preview.notDeployed}`}`,
      // `deploy`: the preview's deploy, which whoever follows this task follows next (as a build's deploy).
      data: { sha: tested.sha, branch: change.branch, merged: false, defaultBranch: repository.defaultBranch, repository: repository.htmlUrl, rounds: tested.round, tests: tested.results, pullRequest, change: { number: change.number, brief: change.brief }, deploy: preview },
    });
  }

  /**
   * The change's preview, on a deployed project: a deploy of the tested commit at `<project>--<n>`, as
   * the person who asked. It runs beside production's deploys (a slot of its own: src/deploy/deploys.ts);
   * a deploy of this preview running now is waited for (up to PREVIEW_WAITS times PREVIEW_WAIT);
   * anything else that stops it is said in the task's end.
   */
  private async preview(project: ProjectFacts, change: NonNullable<EngineeringRun["change"]>, sha: string): Promise<DeployAfterBuild> {
    for (let attempt = 1; ; attempt++) {
      const outcome = await this.jsonStep(`preview ${attempt}`, API_STEP, PreviewStart, () =>
        withDb(this.env, async (db) => {
          // Started already (a retried step): that deploy, whether or not its task id was recorded before the retry.
          const started = await deployStartedAfter(db, project.id, this.params.taskId);
          if (started) {
            await db.update(changes).set({ previewTaskId: started.id, updatedAt: new Date() }).where(and(eq(changes.projectId, project.id), eq(changes.number, change.number)));
            return { taskId: started.id };
          }
          const principal = await principalOfCaller(db, change.caller);
          if (!principal) return { notDeployed: "the key that asked for the change no longer works" };
          try {
            const task = await startDeployTask(db, this.env, principal, project.id, { mode: "deploy", ref: sha, preview: change.number, after: this.params.taskId }, this.params.traceparent);
            await db.update(changes).set({ previewTaskId: task.id, updatedAt: new Date() }).where(and(eq(changes.projectId, project.id), eq(changes.number, change.number)));
            return { taskId: task.id };
          } catch (error) {
            if (!(error instanceof AppError)) throw error;
            return { notDeployed: error.message, busy: /already has a deploy .*in progress/.test(error.message) };
          }
        }),
      );
      if (!("busy" in outcome && outcome.busy && attempt < PREVIEW_WAITS)) return "taskId" in outcome ? { taskId: outcome.taskId } : { notDeployed: outcome.notDeployed };
      await this.say(`preview wait ${attempt}`, { type: "step.progress", step: "preview", message: `Preview: a deploy of change #${change.number}'s preview is running; the new one waits for it` });
      await this.step.sleep(`preview wait ${attempt}`, PREVIEW_WAIT);
    }
  }

  /** A round of "change more" that failed: the change's branch (and so its pull request) back to the head whose tests passed. */
  private async resetChange(): Promise<string> {
    const change = this.params.change;
    if (!change) return "no change";
    return withDb(this.env, async (db) => {
      const [row] = await db.select({ testedSha: changes.testedSha }).from(changes).where(and(eq(changes.projectId, this.params.projectId), eq(changes.number, change.number)));
      const [project] = await db.select().from(projects).where(eq(projects.id, this.params.projectId));
      if (!row?.testedSha || !project) return "nothing to reset";
      const repository = await ownRepository(this.github(), project);
      if (typeof repository === "string") return `repository ${repository}`;
      await resetBranch(this.github(), await this.repoToken(repository), repository, change.branch, row.testedSha);
      return row.testedSha;
    });
  }

  /** The passing branch as a pull request into the default branch (the one already open for it, on a retry). */
  private async pullRequest(project: ProjectFacts, spec: ProjectSpec, repository: Repository, branch: string, tested: { round: number; summary: string }): Promise<PullRequestRef> {
    return this.jsonStep("pull request", API_STEP, PullRequestRef, async () => {
      const config = this.github();
      const { token } = await repositoryToken(config, repository.name, { contents: "write", metadata: "read", pull_requests: "write" });
      const body = [
        spec.summary,
        "",
        `The tests pass (${tested.summary}) after ${tested.round} round${tested.round === 1 ? "" : "s"} of task ${this.params.taskId}.`,
        `${repository.defaultBranch} moved on while the task ran, so this was not fast-forwarded: merge it when it suits you.`,
      ].join("\n");
      const pull = await openPullRequest(config, token, repository, { title: `${project.name}: ${spec.summary}`.slice(0, 256), head: branch, base: repository.defaultBranch, body });
      return { number: pull.number, url: pull.htmlUrl };
    });
  }

  /**
   * The deploy asked for with the build (`deploy: true`): of the tested commit, as the caller who asked,
   * whose key must still work. What stops it (a revoked key, a used-up budget, a deploy already
   * running) is said in the task's end; the build itself succeeded.
   */
  private async deployTested(project: ProjectFacts, sha: string, caller: Caller): Promise<DeployAfterBuild> {
    return this.jsonStep("deploy", API_STEP, DeployAfterBuild, () =>
      withDb(this.env, async (db) => {
        const started = await deployStartedAfter(db, project.id, this.params.taskId);
        if (started) return { taskId: started.id };
        const principal = await principalOfCaller(db, caller);
        if (!principal) return { notDeployed: "the key that asked for it no longer works" };
        try {
          const task = await startDeployTask(db, this.env, principal, project.id, { mode: "deploy", ref: sha, after: this.params.taskId }, this.params.traceparent);
          return { taskId: task.id };
        } catch (error) {
          if (error instanceof AppError) return { notDeployed: error.message };
          throw error;
        }
      }),
    );
  }

  private async develop(project: ProjectFacts, spec: ProjectSpec, settings: EngineeringSettings, repository: Repository, at: { round: number; branch: string; ref: string; previous: TestResults | null; merging?: string }): Promise<DevelopResult> {
    const { round } = at;
    const setup = await this.jsonStep(`developer ${round} setup`, API_STEP, DeveloperSetup, async () =>
      withDb(this.env, async (db) => {
        await this.withinBudget(db, { projectId: project.id, userId: project.ownerId });
        const config = await agentConfig(db, "developer");
        return { model: config.model, agent: codingAgent(config.settings.codingAgent).name };
      }),
    );
    const agent = codingAgent(setup.agent);
    await this.say(`developer ${round} started`, {
      type: "step.started",
      step: "developer",
      message: `Developer round ${round}: ${agent.name} (${setup.model}) ${at.merging ? `merging ${at.merging} into ${at.branch} and resolving its conflicts` : at.previous ? `fixing ${at.previous.failures.length} failure${at.previous.failures.length === 1 ? "" : "s"}` : this.change ? `making change #${this.change.number}` : "building the spec"}`,
      data: { round, agent: agent.name, model: setup.model },
    });
    const brief = taskBrief({ project, spec, settings, round, previous: at.previous, ...(this.change ? { change: { request: this.change.request, brief: this.change.brief } } : {}), ...(at.merging ? { merging: at.merging } : {}) });
    const job = await this.runJobWithCredentials(`develop ${round}`, {
      type: "docker.run",
      userId: project.ownerId,
      payload: async (issue) => {
        // The container reaches the model through the relay with a credential of its own, never the factory's key.
        const relay = modelRelayUrl(this.env);
        const { gitToken, modelKey } = await issue({ repository, model: { agent: "developer", name: setup.model, spendCapUsd: workerSettings(this.env).DEVELOPER_ROUND_BUDGET_USD } });
        return developPayload({
          image: this.env.CODING_WORKER_IMAGE,
          template: spec.template,
          ownerId: project.ownerId,
          agent,
          model: { baseUrl: relay, apiKey: modelKey, name: setup.model },
          repo: { cloneUrl: repository.cloneUrl, token: gitToken },
          branch: at.branch,
          baseRef: at.ref,
          ...(at.merging ? { mergeRef: at.merging } : {}),
          brief,
          round,
          agentTimeoutSeconds: settings.agentTimeoutSeconds,
        });
      },
      ttlSeconds: 900,
      timeoutSeconds: settings.agentTimeoutSeconds + 180,
    });
    // Its model calls were recorded (and priced) by the relay as they were made.
    const output = collected(job, AGENT_OUTPUT) ?? "";
    const report = agent.report(output);
    const result = developResult(job);
    const tail = tailLines(output, 8);
    if (!result || !job.outcome?.ok) {
      const why = collected(job, DEVELOP_ERROR)?.trim();
      throw new PipelineFailure(`Developer round ${round} failed: ${job.outcome?.message ?? job.state}${why ? ` (${why.slice(0, 500)})` : ""}${tail ? `\nThe agent's output ended with:\n${tail}` : ""}`);
    }
    if (result.agentExit !== 0) {
      const how = result.agentExit === 124 ? `did not finish within ${settings.agentTimeoutSeconds} s` : `exited with code ${result.agentExit}`;
      throw new PipelineFailure(`Developer round ${round}: ${agent.name} ${how}${report.errors.length ? ` (${report.errors.at(-1) ?? ""})` : ""}${tail ? `\nIts output ended with:\n${tail}` : ""}`);
    }
    const exists = await this.doStep(`developer ${round} verify`, API_STEP, async () => {
      return commitExists(this.github(), { token: await this.repoToken(repository) }, repository, result.sha);
    });
    if (!exists) throw new PipelineFailure(`Developer round ${round} reported commit ${result.sha}, which is not in ${repository.fullName}: nothing was pushed there`);
    await this.say(`developer ${round} completed`, {
      type: "step.completed",
      step: "developer",
      message: `Developer round ${round}: ${result.changed ? `pushed ${result.sha.slice(0, 12)} to ${result.branch}` : `no changes (still at ${result.sha.slice(0, 12)})`}${report.finalText ? `: ${report.finalText.slice(0, 300)}` : ""}`,
      data: { round, sha: result.sha, branch: result.branch, changed: result.changed, toolCalls: report.toolCalls, jobId: job.id },
    });
    return result;
  }

  private async test(project: ProjectFacts, spec: ProjectSpec, settings: EngineeringSettings, repository: Repository, round: number, sha: string): Promise<TestResults> {
    await this.say(`tester ${round} started`, { type: "step.started", step: "tester", message: `Tester round ${round}: \`${settings.testCommand}\` at ${sha.slice(0, 12)}`, data: { round, sha } });
    const job = await this.runJobWithCredentials(`test ${round}`, {
      type: "docker.run",
      userId: null,
      payload: async (issue) => testPayload({ image: this.env.CODING_WORKER_IMAGE, ownerId: project.ownerId, repo: { cloneUrl: repository.cloneUrl, token: (await issue({ repository })).gitToken }, sha, spec, settings, testTimeoutSeconds: settings.testTimeoutSeconds }),
      ttlSeconds: 900,
      timeoutSeconds: settings.testTimeoutSeconds + 120,
    });
    const results = testResults(job, settings.coverageThreshold);
    if (!results) throw new PipelineFailure(`Tester round ${round} could not run the tests: ${job.outcome?.message ?? job.state}`);
    await this.say(`tester ${round} completed`, {
      type: "step.completed",
      step: "tester",
      message: `Tester round ${round}: ${results.passed ? "passed" : "failed"}: ${results.summary}`,
      data: { round, sha, jobId: job.id, tests: results },
    });
    return results;
  }

  /** Asks a person whether to go on after `rounds` rounds; the rounds to add, or a PipelineFailure for "stop". */
  private async askToContinue(rounds: number, last: TestResults, settings: EngineeringSettings): Promise<number> {
    const inputId = `after-${rounds}`;
    const expiresAt = await this.doStep(`decision ${rounds} deadline`, API_STEP, () => Promise.resolve(new Date(Date.now() + settings.decisionTimeoutSeconds * 1000).toISOString()));
    const question: PendingInput = {
      kind: "decision",
      inputId,
      question: `The tests still fail after ${rounds} round${rounds === 1 ? "" : "s"} (${last.summary}). Continue for more rounds, or stop?`,
      options: ["continue", "stop"],
      expiresAt,
    };
    await this.say(`decision ${rounds} asked`, { type: "task.needs_input", message: question.question, data: { ...question, rounds, tests: last } });
    let answer: DecisionAnswer;
    try {
      const event = await this.step.waitForEvent(`decision ${rounds}`, { type: inputEventType(inputId), timeout: `${settings.decisionTimeoutSeconds} seconds` });
      answer = DecisionAnswer.parse(event.payload);
    } catch {
      throw new PipelineFailure(`no decision came within ${settings.decisionTimeoutSeconds} s after ${rounds} rounds, so the task stopped (${last.summary})`);
    }
    if (answer.decision === "stop") throw new PipelineFailure(`stopped by decision after ${rounds} rounds${answer.reason ? ` (${answer.reason})` : ""}: ${last.summary}`);
    await this.say(`decision ${rounds} taken`, { type: "step.progress", step: "developer", message: `Going on for ${answer.rounds} more round${answer.rounds === 1 ? "" : "s"}, as decided`, data: { decision: answer } });
    return answer.rounds;
  }
}

/**
 * A change's brief after another round: the new summary, the new changes first (what the Developer
 * works on now; TASK.md lists them in this order) then those already made, the checks so far with the
 * new ones in.
 */
function moreBrief(before: ChangeBrief, now: ChangeBrief): ChangeBrief {
  return ChangeBrief.parse({ summary: now.summary, changes: [...now.changes, ...before.changes].slice(0, 20), acceptance: withChangeChecks(before.acceptance, now.acceptance) });
}
