/**
 * TASK.md: what the coding agent is asked to do in one Developer round. The first round builds the
 * spec on the scaffolded template; later rounds carry the parsed test failures of the round before.
 */
import type { ChangeBrief } from "../shared/changes.ts";
import { PIP_INSTALL, PYTHON_PACKAGES_DIR } from "../shared/registries.ts";
import type { EngineeringSettings, ProjectSpec } from "../shared/spec.ts";
import { PROJECT_TEMPLATES, templateRegistry } from "../shared/templates.ts";
import type { TestResults } from "../shared/test-results.ts";

export interface BriefInput {
  project: { name: string; description: string };
  spec: ProjectSpec;
  settings: EngineeringSettings;
  round: number;
  /** The Tester's results of the previous round; null on the first. */
  previous: TestResults | null;
  /** A change request's words and brief: the work is that change to the project as it is, not the spec from scratch. */
  change?: { request: string; brief: ChangeBrief };
  /** The branch merged into this one before the round (a change catching up): its conflicts, marked in the files, are resolved first. */
  merging?: string;
}

/** The prompt given on the command line; the brief itself is in the file. */
export const AGENT_PROMPT = "Read TASK.md in the repository root and do what it asks. Work only in this repository. When you are done, stop.";

export function taskBrief(input: BriefInput): string {
  const { spec, settings, previous } = input;
  const lines = [`# ${input.project.name}: round ${input.round}`, ""];
  if (input.merging) {
    lines.push(
      `# Merging ${input.merging}`,
      "",
      `${input.merging} moved on since this change began (another change was shipped), and has just been merged into this branch. Where both changed the same lines, the files hold git's conflict markers (\`<<<<<<<\`, \`=======\`, \`>>>>>>>\`; \`git diff --name-only --diff-filter=U\` lists them). Resolve every conflict so that the code does what ${input.merging} does now and what this change adds, remove the markers, and make the tests pass. Do not commit: the pipeline commits the merge.`,
      "",
    );
  }
  if (previous) {
    lines.push(
      "The tests failed in the previous round. Fix the code (not the tests, unless a test is wrong about the spec) so that they pass.",
      "",
      `Result: ${previous.summary}`,
      "",
      ...previous.failures.flatMap((failure) => [
        `## ${failure.kind === "error" ? "Error" : "Failure"}: ${failure.test}`,
        "",
        failure.message,
        ...(failure.trace ? ["", "```", failure.trace, "```"] : []),
        "",
      ]),
    );
  } else if (input.merging) {
    // The change below is made already on this branch: the merge is the work.
  } else if (input.change) {
    lines.push("Make the change below to the project as it is in this repository (built from the spec further down). Change only what it asks; keep the rest working. Add tests for what you change.", "");
  } else {
    lines.push("Build what the spec below describes on the code already in this repository (it was scaffolded from the template it names). Add tests for what you build.", "");
  }
  if (input.change) {
    lines.push("# The change", "", `Asked for: ${input.change.request}`, "", input.change.brief.summary, "", ...input.change.brief.changes.map((change) => `- ${change}`), "");
  }
  lines.push("# The spec", "", spec.summary, "", `Template: ${spec.template} (${PROJECT_TEMPLATES[spec.template].description})`, "");
  if (input.project.description) lines.push("Description given by the person:", "", input.project.description, "");
  lines.push("## Modules", "", ...spec.modules.map((module) => `- ${module.name}: ${module.purpose}`), "");
  if (spec.routes.length) lines.push("## Routes", "", ...spec.routes.map((route) => `- ${route.method} ${route.path}: ${route.purpose}`), "");
  if (spec.entities.length) lines.push("## Entities", "", ...spec.entities.map((entity) => `- ${entity.name}: ${entity.fields.map((field) => `${field.name} (${field.type})`).join(", ")}`), "");
  if (spec.env.length) lines.push("## Environment", "", ...spec.env.map((variable) => `- ${variable.name} (${variable.kind}): ${variable.description}`), "");
  if (templateRegistry(spec.template) === "npm") {
    lines.push(
      "## Dependencies",
      "",
      "Packages come from the npm registry: run `npm install` before you run the tests, and `npm install <package>` to add one. Leave package-lock.json in the working tree: the tests and the release install exactly what it says (`npm ci`), and the release gets the dependencies only, not the devDependencies.",
      "",
    );
  } else if (templateRegistry(spec.template) === "pypi") {
    lines.push(
      "## Dependencies",
      "",
      `The standard library first; a package from PyPI only where it is worth it. To add one, pin it in requirements.txt with its exact version (\`name==1.2.3\`) and every package it depends on too, then install them with \`${PIP_INSTALL}\` (\`python3 -m pip freeze --path ${PYTHON_PACKAGES_DIR}\` lists what to pin). The tests and the release install exactly what requirements.txt pins (wheels only, no dependency it does not name), into ${PYTHON_PACKAGES_DIR}, which is on the tests' path and the release's; do not commit ${PYTHON_PACKAGES_DIR}.`,
      "",
    );
  }
  lines.push(
    "## Data",
    "",
    "Deployed, the app can write in one place only: the directory named by `DATA_DIR` (`/data`), which keeps what is in it across redeploys and rollbacks (the rest of the file system is read-only; `/tmp` is small and lost on restart). Store anything that must last there, in SQLite by default (WAL mode: during a redeploy the old and the new release use it at once). In tests, point `DATA_DIR` at a temporary directory.",
    "",
  );
  lines.push(
    "## How it is checked",
    "",
    `The tests run with \`${settings.testCommand}\`${settings.coverageThreshold !== null ? ` and must cover at least ${settings.coverageThreshold}% of the lines` : ""}.`,
    "Do not commit: the pipeline commits and pushes what you leave in the working tree.",
    "",
  );
  return lines.join("\n");
}
