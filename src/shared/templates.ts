/**
 * The project templates a new repository is scaffolded from (runner/templates/<name>/), and how each
 * is tested. The Architect picks one; the Preparer's `repo.scaffold` job renders it.
 */
import { z } from "zod";
import { PIP_INSTALL, type PackageRegistry } from "./registries.ts";

interface ProjectTemplate {
  description: string;
  testCommand: string;
  /** The same, measuring line coverage (its output has a line parseCoverage reads). */
  coverageCommand: string;
  junitPath: string;
  /**
   * Where the kind's packages come from: its Developer and Tester jobs may install from it (through
   * the egress proxy, with the tenant's package cache), and its releases get their dependencies from
   * it before the image builds. Absent: a kind without dependencies.
   */
  registry?: PackageRegistry;
}

/** How each toolchain's tests run, writing JUnit XML where `junitPath` says (and, for coverage, a line parseCoverage reads). */
const PYTEST = "python3 -m pytest -q --junitxml=.orchestrator/junit.xml";
/** The same, with the packages requirements.txt pins installed first (src/shared/registries.ts). */
const PIP_PYTEST = `${PIP_INSTALL} && ${PYTEST}`;
const VITEST = "npm ci && npx vitest run --reporter=default --reporter=junit --outputFile.junit=.orchestrator/junit.xml";
const VITEST_COVERAGE = `${VITEST} --coverage.enabled --coverage.include=src --coverage.reporter=text-summary`;

export const PROJECT_TEMPLATES = {
  "python-http": {
    description: "a small HTTP service in Python (the standard library, and packages from PyPI where they are worth it), tested with pytest",
    testCommand: PIP_PYTEST,
    /** The same, measuring line coverage of the service's code (pytest-cov). */
    coverageCommand: `${PIP_PYTEST} --cov=app --cov-report=term`,
    junitPath: ".orchestrator/junit.xml",
    registry: "pypi",
  },
  "static-site": {
    description: "a static web site (HTML, CSS, JavaScript in site/) served with the right caching headers, its pages checked with pytest",
    testCommand: PYTEST,
    coverageCommand: `${PYTEST} --cov=app --cov-report=term`,
    junitPath: ".orchestrator/junit.xml",
  },
  "typescript-http": {
    description: "an HTTP service in TypeScript (Hono on Node.js) that may use npm packages, tested with vitest",
    testCommand: VITEST,
    coverageCommand: VITEST_COVERAGE,
    junitPath: ".orchestrator/junit.xml",
    registry: "npm",
  },
  "telegram-bot": {
    description: "a Telegram bot in TypeScript (grammY on Node.js) with a token from the bot pool, its data in SQLite, tested with vitest",
    testCommand: VITEST,
    coverageCommand: VITEST_COVERAGE,
    junitPath: ".orchestrator/junit.xml",
    registry: "npm",
  },
} as const satisfies Record<string, ProjectTemplate>;

export const TemplateName = z.enum(Object.keys(PROJECT_TEMPLATES) as [keyof typeof PROJECT_TEMPLATES, ...(keyof typeof PROJECT_TEMPLATES)[]]);
export type TemplateName = z.infer<typeof TemplateName>;

/** The registry a project of this kind installs from; none for a kind without packages, or a project not built from a template. */
export function templateRegistry(template: unknown): PackageRegistry | undefined {
  const name = TemplateName.safeParse(template).data;
  const chosen: ProjectTemplate | undefined = name ? PROJECT_TEMPLATES[name] : undefined;
  return chosen?.registry;
}

/** The values a template's `{{name}}` placeholders take. */
export const TemplateValues = z.record(z.string().regex(/^[a-z_]{1,40}$/), z.string().max(4000));

/** What the factory can build, one line per kind, for the Product Owner's and the Architect's prompts and for a refusal. */
export function buildableKinds(): string {
  return Object.entries(PROJECT_TEMPLATES)
    .map(([name, template]) => `- ${name}: ${template.description}`)
    .join("\n");
}
