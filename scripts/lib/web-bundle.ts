/**
 * The web pages' scripts: web/chat.ts and web/task-view.ts (TypeScript, importing the shared
 * contracts in src/shared/) bundled for the browser into public/chat.js and public/task-view.js,
 * which wrangler serves as static assets. The bundles are generated, not committed. They are built
 * by `node scripts/build-web.ts`, which wrangler runs before `wrangler dev` and `wrangler deploy`
 * (wrangler.toml's [build]), and by the test run's global setup before the workers pool reads public/.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { build } from "esbuild";
import { z } from "zod";
import { parseJson } from "../../src/shared/json.ts";

const ROOT = resolve(import.meta.dirname, "..", "..");
/**
 * What the last build read and wrote, with each file's hash: while they are all unchanged the build
 * is skipped (a few ms instead of ~0.4 CPU-s of esbuild; wrangler runs the build at every start).
 */
export const STAMP = join(ROOT, "node_modules", ".cache", "orchestrator-web", "last-build.json");
const Stamp = z.object({ files: z.record(z.string(), z.string()) });

const hashOf = (path: string) => (existsSync(path) ? createHash("sha256").update(readFileSync(path)).digest("hex") : "missing");

function upToDate(): boolean {
  if (!existsSync(STAMP)) return false;
  const stamp = parseJson(Stamp, readFileSync(STAMP, "utf8"));
  return stamp.success && Object.entries(stamp.data.files).every(([path, hash]) => hashOf(join(ROOT, path)) === hash);
}

/** Output name in public/ (without .js) → its source. */
export const WEB_ENTRIES = { chat: "web/chat.ts", "task-view": "web/task-view.ts" };

/**
 * Bundles the pages' scripts into public/ and returns the files it wrote (relative to the
 * repository); nothing, without running esbuild, when no file the last build read or wrote has changed
 * since. A file whose content is already there is left alone, and a changed one replaced in one rename,
 * so a wrangler serving public/ meanwhile (another test file's, another build's) never reads half a
 * script; the record of the build is replaced the same way. Throws esbuild's failure (already printed, with its messages) on an error.
 */
export async function buildWeb(): Promise<string[]> {
  if (upToDate()) return [];
  const result = await build({
    absWorkingDir: ROOT,
    entryPoints: WEB_ENTRIES,
    outdir: "public",
    bundle: true,
    platform: "browser",
    format: "esm",
    target: "es2022",
    minify: true,
    sourcemap: "linked",
    write: false,
    metafile: true,
    logLevel: "warning",
  });
  // `import { z } from "zod"` reaches zod through a re-exported namespace esbuild cannot shake: every
  // locale zod has (some 350 KB) would ship to the browser. What the pages bundle says `import * as z`.
  const bundled = new Set(Object.values(result.metafile.outputs).flatMap((output) => Object.keys(output.inputs).filter((input) => (output.inputs[input]?.bytesInOutput ?? 0) > 0)));
  const locales = [...bundled].filter((input) => /zod\/v4\/locales\/(?!en\.js$)/.test(input));
  if (locales.length) {
    throw new Error(`the web bundle takes in all of zod's locales (${locales.length} files): a file under web/ or src/shared/ it imports has \`import { z } from "zod"\`; write \`import * as z from "zod"\` there`);
  }
  const written: string[] = [];
  for (const file of result.outputFiles) {
    if (existsSync(file.path) && Buffer.from(file.contents).equals(readFileSync(file.path))) continue;
    const temporary = `${file.path}.${process.pid}.tmp`;
    writeFileSync(temporary, file.contents);
    renameSync(temporary, file.path);
    written.push(relative(ROOT, file.path));
  }
  // Inputs are relative to ROOT in esbuild's metafile; outputs are the files just written.
  const files = [...Object.keys(result.metafile.inputs), ...result.outputFiles.map((file) => relative(ROOT, file.path))];
  mkdirSync(dirname(STAMP), { recursive: true });
  const staged = `${STAMP}.${process.pid}.tmp`;
  writeFileSync(staged, `${JSON.stringify({ files: Object.fromEntries(files.map((path) => [path, hashOf(join(ROOT, path))])) }, null, 1)}\n`);
  renameSync(staged, STAMP);
  return written;
}
