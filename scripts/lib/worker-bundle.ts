/**
 * The worker as wrangler bundles it for a deploy (`wrangler deploy --dry-run`), built once per content
 * of what goes into it (build-cache.ts). The tests' and the benchmarks' stacks run it with
 * `wrangler dev --config <its wrangler.toml> --no-bundle`: the same code wrangler would bundle at each
 * start (a 6 MB bundle: ~1.7 CPU-s and ~3 s a start), and no esbuild left watching the sources for
 * the stack's lifetime. `npm run dev` bundles live instead, so that an edit reloads.
 *
 * Beside the bundle goes a copy of wrangler.toml whose `main` is the bundle and which has no [build]:
 * the pages' scripts are built once per run (the global setup, `npm run dev`), and a [build] would run
 * `npm run build:web` at every start (~0.9 CPU-s) and keep an esbuild watching web/ and src/shared/
 * for the stack's lifetime (~1.2 CPU-s a minute).
 */
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { promisify } from "node:util";
import { cachedBuild } from "./build-cache.ts";
import { buildWeb } from "./web-bundle.ts";

let webBuilt: Promise<unknown> | undefined;

const run = promisify(execFile);

/**
 * The arguments that make `wrangler dev` run the prebuilt worker (its config beside the bundle, no
 * bundling), built first if these inputs have none yet.
 */
export async function prebuiltWorkerArgs(root: string, wrangler: string): Promise<string[]> {
  // What the config's missing [build] would have done (skipped while public/ is up to date).
  webBuilt ??= buildWeb();
  await webBuilt;
  const bundle = await ensureWorkerBundle(root, wrangler);
  return ["--config", join(dirname(bundle), "wrangler.toml"), "--no-bundle"];
}

/** wrangler.toml for the bundle beside it: `main` the bundle, the assets where they are, no [build]. */
export function prebuiltConfig(source: string, assetsDir: string): string {
  const replaced = (text: string, pattern: RegExp, by: string) => {
    if (!pattern.test(text)) throw new Error(`wrangler.toml has no ${pattern.source}: scripts/lib/worker-bundle.ts cannot write the prebuilt worker's config`);
    return text.replace(pattern, by);
  };
  let config = replaced(source, /^main = .*$/m, 'main = "worker.js"');
  // The table and its keys, up to a blank line, a comment or the next table.
  config = replaced(config, /^\[build\]\n(?:(?![[#\n]).*\n)*/m, "");
  config = replaced(config, /^(\[assets\]\n(?:(?!\[).*\n)*?)directory = .*$/m, `$1directory = ${JSON.stringify(assetsDir)}`);
  return config;
}

/** The bundled worker's path (worker.js), built first if these inputs have no bundle yet. */
export function ensureWorkerBundle(root: string, wrangler: string): Promise<string> {
  return cachedBuild(root, {
    name: "orchestrator-worker",
    // The worker's sources, its config, the installed packages' versions and how the build is made.
    inputs: ["src", "wrangler.toml", "package-lock.json", "tsconfig.json", "scripts/lib/worker-bundle.ts"],
    file: "worker.js",
    async build(dir) {
      await run(process.execPath, [wrangler, "deploy", "--dry-run", "--outdir", dir], {
        cwd: root,
        env: { ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false" },
        maxBuffer: 16 * 1024 * 1024,
      }).catch((error: Error & { stdout?: string; stderr?: string }) => {
        throw new Error(`wrangler could not bundle the worker: ${`${error.stdout ?? ""}${error.stderr ?? ""}`.trim().slice(-3000) || error.message}`);
      });
      // The assets by a relative path (the staging folder is renamed beside it): a moved checkout keeps working.
      writeFileSync(join(dir, "wrangler.toml"), prebuiltConfig(readFileSync(join(root, "wrangler.toml"), "utf8"), relative(dir, join(root, "public"))));
    },
  });
}
