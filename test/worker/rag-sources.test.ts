/**
 * What the knowledge index is fed (src/rag/sources.ts, repository.ts): which repository files are
 * indexed under which scope, a project's spec as a document, a task's log keeping its end.
 */
import { describe, expect, it } from "vitest";
import { MAX_DOCUMENT_BYTES } from "../../src/rag/contract.ts";
import { scopeOfPath } from "../../src/rag/repository.ts";
import { specDocument, taskLogDocument, truncateBytes } from "../../src/rag/sources.ts";
import type { TaskEvent } from "../../src/shared/events.ts";

describe("repository files", () => {
  it("indexes docs and code, and skips what nobody searches", () => {
    expect(["README.md", "docs/adr/0001-queues.md", "notes/design.rst", "CHANGES.txt"].map(scopeOfPath)).toEqual(["docs", "docs", "docs", "docs"]);
    expect(["src/app.py", "web/src/main.ts", "cmd/server/main.go"].map(scopeOfPath)).toEqual(["code", "code", "code"]);
    expect(["node_modules/x/README.md", "dist/app.js", "package-lock.json", "static/app.min.js", "LICENSE", "logo.png", "data.csv"].map(scopeOfPath)).toEqual([null, null, null, null, null, null, null]);
  });
});

describe("documents made from the system's records", () => {
  it("renders a project's description and spec as Markdown, or nothing when it has neither", () => {
    const spec = { summary: "Weather alerts by Telegram", template: "python-http", modules: [{ name: "alerts", purpose: "sends the alerts" }], routes: [{ method: "GET", path: "/forecast", purpose: "today's forecast" }], env: [{ name: "WEATHER_API_KEY", kind: "user", description: "the weather API's key" }] };
    const doc = specDocument({ id: "prj_1", name: "weather-bot", description: "Tells people when it will rain.", spec });
    expect(doc).toMatchObject({ projectId: "prj_1", ownerId: null, scope: "docs", source: "spec", kind: "markdown" });
    expect(doc?.content).toContain("## Summary\n\nWeather alerts by Telegram");
    expect(doc?.content).toContain("- GET /forecast: today's forecast");
    expect(doc?.content).toContain("- WEATHER_API_KEY (user): the weather API's key");
    expect(specDocument({ id: "prj_2", name: "empty", description: " ", spec: null })).toBeNull();
    expect(specDocument({ id: "prj_3", name: "odd", description: "", spec: { anything: 1 } })?.content).toContain('"anything": 1');
  });

  it("makes a task's log one line per event, keeping the end of a long one, and a task of no project its owner's", () => {
    const events: TaskEvent[] = Array.from({ length: 3000 }, (_, i) => ({ seq: i + 1, taskId: "eng_1", at: "2026-01-01T00:00:00.000Z", type: "log", message: `line ${i + 1} ${"x".repeat(40)}` }));
    const doc = taskLogDocument({ id: "eng_1", type: "engineering", status: "failed", error: "tests failed", projectId: null, ownerId: "usr_1" }, events);
    expect(doc).toMatchObject({ scope: "logs", source: "task:eng_1", projectId: null, ownerId: "usr_1", kind: "text" });
    expect(doc.content.startsWith("engineering task eng_1: failed (tests failed)\n\n")).toBe(true);
    expect(doc.content).toContain("line 3000 ");
    expect(doc.content).not.toContain("line 1 ");
    expect(new TextEncoder().encode(doc.content).byteLength).toBeLessThanOrEqual(MAX_DOCUMENT_BYTES);
  });

  it("truncates to a byte limit at a line, from either end, multi-byte characters included", () => {
    const text = Array.from({ length: 100 }, (_, i) => `é line ${i}`).join("\n");
    const head = truncateBytes(text, 200, "end");
    const tail = truncateBytes(text, 200, "start");
    for (const part of [head, tail]) expect(new TextEncoder().encode(part).byteLength).toBeLessThanOrEqual(200);
    expect(head.startsWith("é line 0\n")).toBe(true);
    expect(tail.endsWith("é line 99")).toBe(true);
    expect(tail.startsWith("é line ")).toBe(true);
    expect(truncateBytes("short", 200, "end")).toBe("short");
  });
});
