import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { buildWeb, STAMP } from "../../scripts/lib/web-bundle.ts";
import { prebuiltConfig } from "../../scripts/lib/worker-bundle.ts";

const root = resolve(import.meta.dirname, "..", "..");
const scratch = mkdtempSync(join(tmpdir(), "orchestrator-build-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe("build and schema", () => {
  it("migrations/ matches src/db/schema.ts (drizzle-kit finds nothing to generate)", () => {
    const copy = join(scratch, "migrations");
    cpSync(join(root, "migrations"), copy, { recursive: true });
    const before = readdirSync(copy).sort();
    const out = execFileSync(
      process.execPath,
      [join(root, "node_modules", "drizzle-kit", "bin.cjs"), "generate", "--dialect", "postgresql", "--schema", "./src/db/schema.ts", "--out", relative(root, copy)],
      { cwd: root, encoding: "utf8" },
    );
    expect(readdirSync(copy).sort(), out).toEqual(before);
    expect(out).toMatch(/No schema changes/);
  });

  it("bundles the worker for production (`npm run deploy -- --dry-run`)", () => {
    const outdir = join(scratch, "bundle");
    execFileSync(process.execPath, [join(root, "scripts", "deploy.ts"), "--dry-run", "--outdir", outdir], {
      cwd: root,
      encoding: "utf8",
      env: { ...process.env, WRANGLER_SEND_METRICS: "false" },
    });
    const bundle = join(outdir, "worker.js");
    expect(existsSync(bundle)).toBe(true);
    expect(statSync(bundle).size).toBeGreaterThan(10_000);
  });
});

describe("what the test and bench stacks run", () => {
  it("run the worker from a copy of wrangler.toml with the bundle as main, the assets where they are and no [build]; everything else as it is", () => {
    const source = readFileSync(join(root, "wrangler.toml"), "utf8");
    const config = prebuiltConfig(source, "../../../../public");
    expect(config).toMatch(/^main = "worker\.js"$/m);
    expect(config).toMatch(/^\[assets\]\ndirectory = "\.\.\/\.\.\/\.\.\/\.\.\/public"$/m);
    // No build step at each start: no `npm run build:web`, no esbuild watching web/.
    expect(config).not.toContain("[build]");
    expect(config).not.toContain("build:web");
    expect(config).not.toContain("watch_dir");
    const others = (text: string) => text.split("\n").filter((line) => line.trim() && !/^(main|directory|command|watch_dir) = |^\[build\]$/.test(line));
    expect(others(config)).toEqual(others(source));
  });

  it("skips esbuild while no file the last web build read or wrote has changed, and builds again when one has", async () => {
    await buildWeb();
    const recorded = readFileSync(STAMP, "utf8");
    const mtime = statSync(STAMP).mtimeMs;
    expect(await buildWeb()).toEqual([]);
    // Not written again: the build was skipped.
    expect(statSync(STAMP).mtimeMs).toBe(mtime);
    // A file the record says changed (its hash no longer matches): built again, and the record is right again.
    const files = (JSON.parse(recorded) as { files: Record<string, string> }).files;
    const input = Object.keys(files).find((path) => path.startsWith("web/")) ?? "";
    expect(input).toBeTruthy();
    writeFileSync(STAMP, JSON.stringify({ files: { ...files, [input]: "0".repeat(64) } }));
    await buildWeb();
    expect(JSON.parse(readFileSync(STAMP, "utf8"))).toEqual(JSON.parse(recorded));
  });
});
