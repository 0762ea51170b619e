/**
 * The runner jobs of the engineering pipeline, as payloads: the Preparer's scaffold, a Developer
 * round in the coding-worker image, a Tester run. And what their results say, read back from the
 * files the containers leave in /out.
 */
import { z } from "zod";
import type { CodingAgent } from "./coding-agents/types.ts";
import type { JobView } from "../shared/api.ts";
import { egressTarget } from "../shared/job-payloads.ts";
import { CollectedFile } from "../shared/job-results.ts";
import { parseJson } from "../shared/json.ts";
import type { EngineeringSettings, ProjectSpec } from "../shared/spec.ts";
import { PROJECT_TEMPLATES, type TemplateName, templateRegistry } from "../shared/templates.ts";
import { parseTestRun, type TestResults } from "../shared/test-results.ts";
import { AGENT_PROMPT } from "./task-brief.ts";

export interface RepoAccess {
  cloneUrl: string;
  token: string;
}

export function scaffoldPayload(spec: ProjectSpec, project: { name: string }, settings: EngineeringSettings, repo: RepoAccess): Record<string, unknown> {
  const envExample = spec.env.map((variable) => `# ${variable.description} (${variable.kind})\n${variable.name}=`).join("\n");
  return {
    template: spec.template,
    repoUrl: repo.cloneUrl,
    branch: "main",
    values: { project_name: project.name, summary: spec.summary, test_command: settings.testCommand, env_example: envExample },
    secrets: { GIT_TOKEN: repo.token },
  };
}

/** The packages a kind's jobs may install: its registry, with the project owner's own cache (src/shared/registries.ts). */
function packages(template: TemplateName, ownerId: string): Record<string, unknown> {
  const registry = templateRegistry(template);
  return registry ? { registries: [registry], cacheScope: ownerId } : {};
}

export interface DevelopInput {
  image: string;
  template: TemplateName;
  ownerId: string;
  agent: CodingAgent;
  model: { baseUrl: string; apiKey: string; name: string };
  repo: RepoAccess;
  branch: string;
  baseRef: string;
  /** A branch merged into `branch` before the agent starts (a change catching up): its conflicts are the agent's to resolve. */
  mergeRef?: string;
  brief: string;
  round: number;
  agentTimeoutSeconds: number;
}

/** Files a Developer round leaves: its result, and the agent's own output (its end, when long). */
export const DEVELOP_RESULT = "/out/result.json";
export const AGENT_OUTPUT = "/out/agent.jsonl";
/** Why orchestrator-develop itself failed (no clone, no commit, no push), when it did: the round's failure says so. */
export const DEVELOP_ERROR = "/out/develop-error.txt";

export function developPayload(input: DevelopInput): Record<string, unknown> {
  const run = { baseUrl: input.model.baseUrl, model: input.model.name, prompt: AGENT_PROMPT };
  return {
    image: input.image,
    cmd: ["orchestrator-develop"],
    env: {
      ...input.agent.env(run),
      REPO_URL: input.repo.cloneUrl,
      BRANCH: input.branch,
      BASE_REF: input.baseRef,
      ...(input.mergeRef ? { MERGE_REF: input.mergeRef } : {}),
      TASK: input.brief,
      AGENT_ARGV: JSON.stringify(input.agent.argv(run)),
      AGENT_LOG_FORMAT: input.agent.name,
      AGENT_TIMEOUT_SECONDS: String(input.agentTimeoutSeconds),
      COMMIT_MESSAGE: `Developer round ${input.round}`,
    },
    // The job's own relay credential and repository token, both ended with the job; the agent runs as an
    // unprivileged user who cannot read them from this process (orchestrator-develop).
    secretEnv: { GIT_TOKEN: input.repo.token, OPENAI_API_KEY: input.model.apiKey },
    dropsPrivileges: true,
    network: "egress",
    egress: [...new Set([egressTarget(input.model.baseUrl), egressTarget(input.repo.cloneUrl)])],
    ...packages(input.template, input.ownerId),
    cpus: 1,
    memoryMb: 2048,
    collect: [DEVELOP_RESULT, AGENT_OUTPUT, DEVELOP_ERROR],
  };
}

/**
 * The Developer container's result file (DEVELOP_RESULT, written by orchestrator-develop in the
 * coding-worker image): the commit it pushed; a field left out reads as nothing done.
 */
const DevelopResult = z.object({
  sha: z.string().regex(/^[0-9a-f]{40}$/),
  branch: z.string().default(""),
  changed: z.boolean().default(false),
  agentExit: z.number().default(1),
});
export type DevelopResult = z.output<typeof DevelopResult>;

/** What a finished Developer job says; null when it left no result (it failed before the end). */
export function developResult(job: JobView): DevelopResult | null {
  const file = collected(job, DEVELOP_RESULT);
  if (!file) return null;
  return parseJson(DevelopResult, file).data ?? null;
}

export const TEST_EXIT = "/out/test-exit";
export const TEST_OUTPUT = "/out/test-output.txt";
export const TEST_JUNIT = "/out/junit.xml";

export function testPayload(input: { image: string; ownerId: string; repo: RepoAccess; sha: string; spec: ProjectSpec; settings: EngineeringSettings; testTimeoutSeconds: number }): Record<string, unknown> {
  return {
    image: input.image,
    cmd: ["orchestrator-test"],
    env: {
      REPO_URL: input.repo.cloneUrl,
      REF: input.sha,
      TEST_COMMAND: input.settings.testCommand,
      JUNIT_PATH: PROJECT_TEMPLATES[input.spec.template].junitPath,
      TEST_TIMEOUT_SECONDS: String(input.testTimeoutSeconds),
    },
    secretEnv: { GIT_TOKEN: input.repo.token },
    // The tests run as an unprivileged user without the token (orchestrator-test), and reach nothing
    // but the git host they were cloned from and the kind's package registry.
    dropsPrivileges: true,
    network: "egress",
    egress: [egressTarget(input.repo.cloneUrl)],
    ...packages(input.spec.template, input.ownerId),
    cpus: 1,
    memoryMb: 1024,
    collect: [TEST_EXIT, TEST_OUTPUT, TEST_JUNIT],
  };
}

/** The Tester job's files read as test results; null when the tests could not be run at all. */
export function testResults(job: JobView, coverageThreshold: number | null): TestResults | null {
  const exit = collected(job, TEST_EXIT);
  if (exit === null) return null;
  const code = Number(exit.trim());
  return parseTestRun({ exitCode: Number.isInteger(code) ? code : null, junitXml: collected(job, TEST_JUNIT), output: collected(job, TEST_OUTPUT) ?? "", coverageThreshold });
}

/** A collected file's text, or null when the container did not leave it. */
export function collected(job: JobView, path: string): string | null {
  const files = z.record(z.string(), z.unknown()).safeParse(job.outcome?.data?.files).data;
  const file = CollectedFile.safeParse(files?.[path]).data;
  return file && "content" in file ? file.content : null;
}

/** The last lines of a text, each cut short: what a failure message shows of an output. */
export function tailLines(text: string, lines = 12, width = 300): string {
  return text
    .split("\n")
    .filter((line) => line.trim())
    .slice(-lines)
    .map((line) => (line.length > width ? `${line.slice(0, width)}…` : line))
    .join("\n");
}
