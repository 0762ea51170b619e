/**
 * Reading test runs from what real runners printed and wrote (fixtures captured from real pytest,
 * vitest and unittest runs, test/fixtures/test-runs/): counts, each failure's name and message, and a
 * crash before any test ran reported as an error rather than as zero failures.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ROOT } from "../../scripts/lib/local-stack.ts";
import { parseCoverage, parseTestRun } from "../../src/shared/test-results.ts";

const fixture = (name: string) => readFileSync(join(ROOT, "test", "fixtures", "test-runs", name), "utf8");

describe("test results", () => {
  it("reads pytest's JUnit XML: counts, the failure and the error with their messages and traces", () => {
    const results = parseTestRun({ exitCode: 1, junitXml: fixture("pytest-junit.xml"), output: fixture("pytest-output.txt") });
    expect(results).toMatchObject({ source: "junit", passed: false, total: 4, failed: 1, errors: 1, skipped: 1 });
    expect(results.failures.map((f) => [f.test, f.kind])).toEqual([
      ["tests.test_app::test_hello_route", "failure"],
      ["tests.test_app::test_uses_broken", "error"],
    ]);
    expect(results.failures[0]?.message).toContain("GET /hello should greet the world");
    expect(results.failures[0]?.trace).toContain("tests/test_app.py:10: AssertionError");
    expect(results.failures[1]?.message).toContain("RuntimeError: database fixture failed to start");
    expect(results.summary).toBe("1 passed, 1 failed, 1 errors, 1 skipped; first: tests.test_app::test_hello_route: AssertionError: GET /hello should greet the world");
  });

  it("reads vitest's JUnit XML", () => {
    const results = parseTestRun({ exitCode: 1, junitXml: fixture("vitest-junit.xml"), output: "" });
    expect(results).toMatchObject({ source: "junit", total: 3, failed: 1, errors: 0, skipped: 1, passed: false });
    expect(results.failures[0]).toMatchObject({ test: "sum.test.ts::sum > adds negatives", kind: "failure", message: "expected -3 to be -4 // Object.is equality" });
  });

  it("reads pytest's and unittest's summaries when there is no XML", () => {
    const pytest = parseTestRun({ exitCode: 1, output: fixture("pytest-plain.txt") });
    expect(pytest).toMatchObject({ source: "pytest", total: 4, failed: 1, errors: 1, skipped: 1 });
    expect(pytest.failures.map((f) => f.test)).toEqual(["tests/test_app.py::test_hello_route", "tests/test_app.py::test_uses_broken"]);
    const unittest = parseTestRun({ exitCode: 1, output: fixture("unittest-output.txt") });
    expect(unittest).toMatchObject({ source: "unittest", total: 3, failed: 1, errors: 1, passed: false });
    expect(unittest.failures.map((f) => [f.test, f.kind])).toEqual([
      ["test_calc.CalcTest::test_explodes", "error"],
      ["test_calc.CalcTest::test_divide", "failure"],
    ]);
    expect(unittest.failures[1]?.message).toContain("integer division expected");
  });

  it("names each failing test exactly as its runner did: spaces, quotes, brackets, unicode, entities, leading and trailing spaces", () => {
    const names = ['adds  two numbers', ' leading and trailing ', 'says "hi" & <bye>', "test_x[a b-c]", "prüft Übergrößen ✓ 日本", "123", "a > b > c"];
    const escape = (text: string) => text.replaceAll("&", "&amp;").replaceAll('"', "&quot;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
    const xml = `<?xml version="1.0" encoding="utf-8"?>\n<testsuites><testsuite name="s" tests="${names.length}">${names
      .map((name) => `\n  <testcase classname="suite file.ts" name="${escape(name)}">\n    <failure message="no">trace</failure>\n  </testcase>`)
      .join("")}\n</testsuite></testsuites>`;
    const junit = parseTestRun({ exitCode: 1, junitXml: xml, output: "" });
    expect(junit.failures.map((f) => f.test)).toEqual(names.map((name) => `suite file.ts::${name}`));
    // pytest's short summary: a parametrized id with spaces, with and without a message.
    const plain = "FAILED tests/test_a.py::test_x[a b-c] - AssertionError: no\nERROR tests/test_a.py::test_y[ü ö]\n===== 1 failed, 1 error in 0.10s =====\n";
    expect(parseTestRun({ exitCode: 1, output: plain }).failures.map((f) => [f.test, f.message])).toEqual([
      ["tests/test_a.py::test_x[a b-c]", "AssertionError: no"],
      ["tests/test_a.py::test_y[ü ö]", ""],
    ]);
  });

  it("reports a crash before any test ran as an error, and no tests at all as not passing", () => {
    const crash = parseTestRun({ exitCode: 4, output: fixture("pytest-crash-output.txt") });
    expect(crash).toMatchObject({ passed: false, total: 0, errors: 1 });
    expect(crash.failures[0]?.message).toBe("the tests did not run (exit code 4)");
    expect(crash.failures[0]?.trace).toContain("ModuleNotFoundError: No module named 'app_that_does_not_exist'");
    const missing = parseTestRun({ exitCode: 127, output: "bash: line 1: pytest: command not found\n" });
    expect(missing.summary).toContain("command not found");
    expect(parseTestRun({ exitCode: 0, output: "no tests ran in 0.01s\n" }).passed).toBe(false);
  });

  it("passes a clean run, and holds it to a coverage threshold when one is set", () => {
    const clean = '<testsuites><testsuite name="s" tests="2"><testcase classname="t" name="a"/><testcase classname="t" name="b"/></testsuite></testsuites>';
    expect(parseTestRun({ exitCode: 0, junitXml: clean, output: "" })).toMatchObject({ passed: true, total: 2, summary: "2 passed" });
    const withCoverage = "Name      Stmts   Miss  Cover\nTOTAL        40      6    85%\n";
    expect(parseCoverage(withCoverage)).toBe(85);
    expect(parseTestRun({ exitCode: 0, junitXml: clean, output: withCoverage, coverageThreshold: 80 })).toMatchObject({ passed: true, coverage: 85 });
    const below = parseTestRun({ exitCode: 0, junitXml: clean, output: withCoverage, coverageThreshold: 90 });
    expect(below.passed).toBe(false);
    expect(below.failures.at(-1)?.message).toBe("line coverage is 85%, below the required 90%");
    expect(parseTestRun({ exitCode: 0, junitXml: clean, output: "", coverageThreshold: 50 }).passed).toBe(false);
  });
});
