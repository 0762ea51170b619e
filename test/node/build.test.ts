import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

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
