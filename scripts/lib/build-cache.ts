/**
 * Builds kept per content: a build's output goes to node_modules/.cache/<name>/<hash of its inputs>/,
 * and a second request for the same inputs (another test file, another run, a benchmark) gets the one
 * already there. The worker's bundle (worker-bundle.ts) and the CLI's (cli-bundle.ts) are kept so.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, utimesSync } from "node:fs";
import { join, relative } from "node:path";

/** A build nobody has made or used for this long goes. */
const KEEP_MS = 24 * 60 * 60 * 1000;

export interface CachedBuild {
  /** The cache's folder name under node_modules/.cache/. */
  name: string;
  /** Files and folders (relative to root) whose content makes the build. */
  inputs: string[];
  /** The file in the output folder that callers want (its path is what they get). */
  file: string;
  /** Writes the build into `dir` (a folder of its own, empty). */
  build(dir: string): Promise<void>;
}

function filesUnder(root: string, path: string): string[] {
  const full = join(root, path);
  if (!statSync(full).isDirectory()) return [path];
  return readdirSync(full)
    .sort()
    .flatMap((name) => filesUnder(root, join(path, name)));
}

/** A hash of every input file's path and content. */
function inputsHash(root: string, inputs: string[]): string {
  const hash = createHash("sha256");
  for (const file of inputs.flatMap((input) => filesUnder(root, input))) hash.update(file).update("\0").update(readFileSync(join(root, file))).update("\0");
  return hash.digest("hex").slice(0, 16);
}

const pending = new Map<string, Promise<string>>();

/** The path of `what.file` in the build for these inputs, made first if there is none yet. */
export function cachedBuild(root: string, what: CachedBuild): Promise<string> {
  const cache = join(root, "node_modules", ".cache", what.name);
  const dir = join(cache, inputsHash(root, what.inputs));
  let made = pending.get(dir);
  if (!made) {
    made = make(cache, dir, what);
    pending.set(dir, made);
    made.catch(() => pending.delete(dir));
  }
  return made;
}

async function make(cache: string, dir: string, what: CachedBuild): Promise<string> {
  const file = join(dir, what.file);
  if (existsSync(file)) {
    // In use: not one to prune.
    utimesSync(dir, new Date(), new Date());
    return file;
  }
  mkdirSync(cache, { recursive: true });
  prune(cache);
  // Built beside and renamed into place, so that another process never reads half a build; if one
  // got there first, its build is the same.
  const staging = join(cache, `.${relative(cache, dir)}.${process.pid}.${Date.now()}`);
  try {
    mkdirSync(staging);
    await what.build(staging);
    try {
      renameSync(staging, dir);
    } catch (error) {
      if (!existsSync(file)) throw error;
    }
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
  return file;
}

/** Removes the builds nobody has made or used for a day. */
function prune(cache: string): void {
  for (const name of readdirSync(cache)) {
    const path = join(cache, name);
    if (Date.now() - statSync(path).mtimeMs > KEEP_MS) rmSync(path, { recursive: true, force: true });
  }
}
