/**
 * The project templates a new repository is scaffolded from (runner/templates/<name>/), and how each
 * is tested. The Architect picks one; the Preparer's `repo.scaffold` job renders it.
 */
import { z } from "zod";

export const PROJECT_TEMPLATES = {
  "python-http": {
    description: "a small HTTP service in Python on the standard library, tested with pytest",
    testCommand: "python3 -m pytest -q --junitxml=.orchestrator/junit.xml",
    /** The same, measuring line coverage of the service's code (pytest-cov). */
    coverageCommand: "python3 -m pytest -q --junitxml=.orchestrator/junit.xml --cov=app --cov-report=term",
    junitPath: ".orchestrator/junit.xml",
  },
  "static-site": {
    description: "a static web site (HTML, CSS, JavaScript in site/) served with the right caching headers, its pages checked with pytest",
    testCommand: "python3 -m pytest -q --junitxml=.orchestrator/junit.xml",
    coverageCommand: "python3 -m pytest -q --junitxml=.orchestrator/junit.xml --cov=app --cov-report=term",
    junitPath: ".orchestrator/junit.xml",
  },
} as const;

export const TemplateName = z.enum(Object.keys(PROJECT_TEMPLATES) as [keyof typeof PROJECT_TEMPLATES, ...(keyof typeof PROJECT_TEMPLATES)[]]);
export type TemplateName = z.infer<typeof TemplateName>;

/** The values a template's `{{name}}` placeholders take. */
export const TemplateValues = z.record(z.string().regex(/^[a-z_]{1,40}$/), z.string().max(4000));

/** What the factory can build, one line per kind, for the Product Owner's and the Architect's prompts and for a refusal. */
export function buildableKinds(): string {
  return Object.entries(PROJECT_TEMPLATES)
    .map(([name, template]) => `- ${name}: ${template.description}`)
    .join("\n");
}
