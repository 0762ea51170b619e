/**
 * The worker as wrangler bundles it for a deploy (`wrangler deploy --dry-run`), built once per content
 * of what goes into it and kept in node_modules/.cache/orchestrator-worker/<hash>/. The tests' and the
 * benchmarks' stacks run it with `wrangler dev <bundle> --no-bundle`: the same code wrangler would
 * bundle at each start (a 6 MB bundle: ~1.7 CPU-s and ~3 s a start), and no esbuild left watching the
 * sources for the stack's lifetime. `npm run dev` bundles live instead, so that an edit reloads.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, utimesSync } from "node:fs";
import { join, relative } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** What the bundle is made of: the worker's sources, its config and the installed packages' versions. */
const INPUTS = ["src", "wrangler.toml", "package-lock.json", "tsconfig.json"];
/** A bundle nobody has built or used for this long goes (each is ~20 MB with its source map). */
const KEEP_MS = 24 * 60 * 60 * 1000;

function filesUnder(root: string, path: string): string[] {
  const full = join(root, path);
  if (!statSync(full).isDirectory()) return [path];
  return readdirSync(full, { withFileTypes: true })
    .map((entry) => entry.name)
    .sort()
    .flatMap((name) => filesUnder(root, join(path, name)));
}

/** A hash of every input file's path and content. */
export function workerInputsHash(root: string): string {
  const hash = createHash("sha256");
  for (const file of INPUTS.flatMap((input) => filesUnder(root, input))) hash.update(file).update("\0").update(readFileSync(join(root, file))).update("\0");
  return hash.digest("hex").slice(0, 16);
}

const building = new Map<string, Promise<string>>();

/** The bundled worker's path (worker.js), built first if these inputs have no bundle yet. */
export function ensureWorkerBundle(root: string, wrangler: string): Promise<string> {
  const cache = join(root, "node_modules", ".cache", "orchestrator-worker");
  const dir = join(cache, workerInputsHash(root));
  let pending = building.get(dir);
  if (!pending) {
    pending = build(cache, dir, root, wrangler);
    building.set(dir, pending);
    pending.catch(() => building.delete(dir));
  }
  return pending;
}

async function build(cache: string, dir: string, root: string, wrangler: string): Promise<string> {
  const bundle = join(dir, "worker.js");
  if (existsSync(bundle)) {
    // In use: not one to prune.
    utimesSync(dir, new Date(), new Date());
    return bundle;
  }
  mkdirSync(cache, { recursive: true });
  prune(cache);
  // Built beside and renamed into place, so that another process (a benchmark, another test run)
  // never reads half a bundle; if one got there first, its bundle is the same.
  const staging = join(cache, `.${relative(cache, dir)}.${process.pid}.${Date.now()}`);
  try {
    await run(process.execPath, [wrangler, "deploy", "--dry-run", "--outdir", staging], {
      cwd: root,
      env: { ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false" },
      maxBuffer: 16 * 1024 * 1024,
    }).catch((error: Error & { stdout?: string; stderr?: string }) => {
      throw new Error(`wrangler could not bundle the worker: ${`${error.stdout ?? ""}${error.stderr ?? ""}`.trim().slice(-3000) || error.message}`);
    });
    try {
      renameSync(staging, dir);
    } catch (error) {
      if (!existsSync(bundle)) throw error;
    }
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
  return bundle;
}

/** Removes the bundles nobody has built or used for a day. */
function prune(cache: string): void {
  for (const name of readdirSync(cache)) {
    const path = join(cache, name);
    if (Date.now() - statSync(path).mtimeMs > KEEP_MS) rmSync(path, { recursive: true, force: true });
  }
}
