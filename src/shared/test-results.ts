/**
 * What a test run said, read from what it left: JUnit XML when the test command writes it (pytest
 * `--junitxml`, the vitest and jest JUnit reporters), else pytest's or unittest's summary in its
 * output. A run that crashed before any test ran is an error, never "0 failed"; a run with no tests
 * at all does not pass.
 */
import { XMLParser } from "fast-xml-parser";
import { z } from "zod";

export const TestFailure = z.object({
  /** `classname::name` as the runner reports it. */
  test: z.string(),
  kind: z.enum(["failure", "error"]),
  message: z.string(),
  /** The end of its trace, where the cause usually is. */
  trace: z.string(),
});
export type TestFailure = z.infer<typeof TestFailure>;

export const TestResults = z.object({
  /** Where the counts came from. */
  source: z.enum(["junit", "pytest", "unittest", "none"]),
  passed: z.boolean(),
  total: z.number().int(),
  failed: z.number().int(),
  errors: z.number().int(),
  skipped: z.number().int(),
  failures: z.array(TestFailure),
  /** Line coverage in percent, when the run printed it. */
  coverage: z.number().nullable(),
  exitCode: z.number().int().nullable(),
  /** One line for people: "3 passed", "1 failed of 4: tests/test_app.py::test_hello_route". */
  summary: z.string(),
});
export type TestResults = z.infer<typeof TestResults>;

const MAX_FAILURES = 20;
const TRACE_LINES = 15;
const MESSAGE_CHARS = 1000;

export function parseTestRun(run: { exitCode: number | null; junitXml?: string | null; output: string; coverageThreshold?: number | null }): TestResults {
  const coverage = parseCoverage(run.output);
  const counted = (run.junitXml ? parseJunit(run.junitXml) : null) ?? parsePytestSummary(run.output) ?? parseUnittestSummary(run.output);
  if (!counted || counted.total === 0) {
    const tail = run.output.trim().split("\n").slice(-TRACE_LINES).join("\n");
    const why = run.exitCode === 0 ? "the test command ran no tests" : `the tests did not run (exit code ${String(run.exitCode)})`;
    return {
      source: counted?.source ?? "none",
      passed: false,
      total: 0,
      failed: 0,
      errors: 1,
      skipped: counted?.skipped ?? 0,
      failures: [{ test: "(test run)", kind: "error", message: why, trace: tail }],
      coverage,
      exitCode: run.exitCode,
      summary: `${why}${tail ? `: ${tail.split("\n").at(-1) ?? ""}` : ""}`,
    };
  }
  const failedTests = counted.failed + counted.errors;
  const belowCoverage = run.coverageThreshold != null && (coverage === null || coverage < run.coverageThreshold);
  const passed = failedTests === 0 && run.exitCode === 0 && !belowCoverage;
  const failures = [...counted.failures];
  if (belowCoverage) {
    failures.push({
      test: "(coverage)",
      kind: "failure",
      message: coverage === null ? `a coverage of ${run.coverageThreshold}% is required and the run reported none` : `line coverage is ${coverage}%, below the required ${run.coverageThreshold}%`,
      trace: "",
    });
  }
  if (failedTests === 0 && run.exitCode !== 0 && !belowCoverage) {
    failures.push({ test: "(test run)", kind: "error", message: `every test passed but the command exited ${String(run.exitCode)}`, trace: run.output.trim().split("\n").slice(-TRACE_LINES).join("\n") });
  }
  const counts = [
    `${counted.total - failedTests - counted.skipped} passed`,
    counted.failed ? `${counted.failed} failed` : "",
    counted.errors ? `${counted.errors} errors` : "",
    counted.skipped ? `${counted.skipped} skipped` : "",
    coverage !== null ? `coverage ${coverage}%` : "",
  ].filter(Boolean);
  const firstFailure = failures[0];
  return {
    ...counted,
    passed,
    failures: failures.slice(0, MAX_FAILURES),
    coverage,
    exitCode: run.exitCode,
    summary: `${counts.join(", ")}${passed || !firstFailure ? "" : `; first: ${firstFailure.test}: ${firstFailure.message.split("\n")[0] ?? ""}`}`,
  };
}

type Counted = Pick<TestResults, "source" | "total" | "failed" | "errors" | "skipped" | "failures">;

interface JunitCase {
  "@_name"?: string;
  "@_classname"?: string;
  failure?: JunitProblem | JunitProblem[];
  error?: JunitProblem | JunitProblem[];
  skipped?: unknown;
}
type JunitProblem = string | { "@_message"?: string; "#text"?: string };

/** JUnit XML of any common dialect: one testsuite or many, inside <testsuites> or not. */
export function parseJunit(xml: string): Counted | null {
  let document: Record<string, unknown>;
  try {
    // Names exactly as the runner wrote them: no trimming, and "123" or "true" stay text.
    document = new XMLParser({
      ignoreAttributes: false,
      attributeNamePrefix: "@_",
      htmlEntities: true,
      trimValues: false,
      parseTagValue: false,
      parseAttributeValue: false,
      isArray: (name) => ["testsuite", "testcase", "failure", "error"].includes(name),
    }).parse(xml) as Record<string, unknown>;
  } catch {
    return null;
  }
  const root = (document.testsuites ?? document) as { testsuite?: { testcase?: JunitCase[]; testsuite?: unknown }[] };
  const cases: JunitCase[] = [];
  const collect = (suites: unknown) => {
    for (const suite of (Array.isArray(suites) ? suites : []) as { testcase?: JunitCase[]; testsuite?: unknown }[]) {
      cases.push(...(suite.testcase ?? []));
      collect(suite.testsuite);
    }
  };
  collect(root.testsuite);
  if (!Array.isArray(root.testsuite)) return null;
  const failures: TestFailure[] = [];
  let failed = 0;
  let errors = 0;
  let skipped = 0;
  for (const testcase of cases) {
    const test = [testcase["@_classname"], testcase["@_name"]].filter((part) => part !== undefined && part !== "").join("::");
    const problems = [
      ...asArray(testcase.failure).map((problem) => ({ kind: "failure" as const, problem })),
      ...asArray(testcase.error).map((problem) => ({ kind: "error" as const, problem })),
    ];
    if (problems.some((p) => p.kind === "failure")) failed++;
    else if (problems.length) errors++;
    else if (testcase.skipped !== undefined) skipped++;
    const first = problems[0];
    if (first) {
      const text = typeof first.problem === "string" ? first.problem : (first.problem["#text"] ?? "");
      // pytest puts the whole assertion report in `message`; its first line is the one people read.
      const message = firstLine(typeof first.problem === "string" ? text : (first.problem["@_message"] ?? text));
      failures.push({ test, kind: first.kind, message: message.slice(0, MESSAGE_CHARS), trace: tail(text) });
    }
  }
  return { source: "junit", total: cases.length, failed, errors, skipped, failures: failures.slice(0, MAX_FAILURES) };
}

/** pytest's last line ("1 failed, 2 passed, 1 skipped, 1 error in 0.37s") and its FAILED/ERROR lines. */
export function parsePytestSummary(output: string): Counted | null {
  const line = output
    .split("\n")
    .reverse()
    .find((candidate) => /^=*\s*(\d+ (passed|failed|errors?|skipped|xfailed|xpassed|deselected|warnings?)(, )?)+.* in [\d.]+s/.test(candidate.trim()));
  if (!line) return null;
  const count = (word: string) => Number(new RegExp(`(\\d+) ${word}`).exec(line)?.[1] ?? 0);
  const passed = count("passed");
  const failed = count("failed");
  const errors = count("errors?");
  const skipped = count("skipped");
  const failures: TestFailure[] = [];
  // The id runs to " - " and the message, or to the end of the line: a parametrized id may hold spaces.
  for (const match of output.matchAll(/^(FAILED|ERROR) (.+?)(?: - (.*))?$/gm)) {
    failures.push({ test: match[2] ?? "", kind: match[1] === "FAILED" ? "failure" : "error", message: (match[3] ?? "").slice(0, MESSAGE_CHARS), trace: "" });
  }
  return { source: "pytest", total: passed + failed + errors + skipped, failed, errors, skipped, failures: failures.slice(0, MAX_FAILURES) };
}

/** unittest's "Ran N tests" and "FAILED (failures=1, errors=2, skipped=1)", with each FAIL:/ERROR: block. */
export function parseUnittestSummary(output: string): Counted | null {
  const ran = /^Ran (\d+) tests? in/m.exec(output);
  if (!ran) return null;
  const verdict = /^(OK|FAILED)(?: \((.*)\))?$/m.exec(output.split(/^Ran \d+ tests? in.*$/m).at(-1) ?? "");
  const detail = (name: string) => Number(new RegExp(`${name}=(\\d+)`).exec(verdict?.[2] ?? "")?.[1] ?? 0);
  const failures: TestFailure[] = [];
  const blocks = output.split(/^={10,}$/m).slice(1);
  for (const block of blocks) {
    const head = /^(FAIL|ERROR): (\S+) \(([^)]+)\)/m.exec(block);
    if (!head) continue;
    const body = block.split(/^-{10,}$/m)[1] ?? "";
    const lines = body.trim().split("\n");
    // Python ≥ 3.11 prints the full id ("test_calc.CalcTest.test_divide"), older ones the class only.
    const owner = head[3]?.endsWith(`.${head[2]}`) ? head[3].slice(0, -(head[2]?.length ?? 0) - 1) : head[3];
    failures.push({ test: `${owner}::${head[2]}`, kind: head[1] === "FAIL" ? "failure" : "error", message: (lines.at(-1) ?? "").slice(0, MESSAGE_CHARS), trace: tail(body) });
  }
  return { source: "unittest", total: Number(ran[1]), failed: detail("failures"), errors: detail("errors"), skipped: detail("skipped"), failures: failures.slice(0, MAX_FAILURES) };
}

/** pytest-cov's (and coverage.py's) "TOTAL … 87%" line, or istanbul's text summary "Lines : 87.5% ( 7/8 )" (vitest's). */
export function parseCoverage(output: string): number | null {
  const match = /^TOTAL\s.*?(\d+(?:\.\d+)?)%\s*$/m.exec(output) ?? /^Lines\s*:\s*(\d+(?:\.\d+)?)%/m.exec(output);
  return match ? Number(match[1]) : null;
}

function asArray<T>(value: T | T[] | undefined): T[] {
  return value === undefined ? [] : Array.isArray(value) ? value : [value];
}

const firstLine = (text: string) => text.trim().split("\n")[0] ?? "";
const tail = (text: string) => text.trim().split("\n").slice(-TRACE_LINES).join("\n");
