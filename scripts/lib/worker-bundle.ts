/**
 * The worker as wrangler bundles it for a deploy (`wrangler deploy --dry-run`), built once per content
 * of what goes into it (build-cache.ts). The tests' and the benchmarks' stacks run it with
 * `wrangler dev <bundle> --no-bundle`: the same code wrangler would bundle at each start (a 6 MB
 * bundle: ~1.7 CPU-s and ~3 s a start), and no esbuild left watching the sources for the stack's
 * lifetime. `npm run dev` bundles live instead, so that an edit reloads.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { cachedBuild } from "./build-cache.ts";

const run = promisify(execFile);

/** The bundled worker's path (worker.js), built first if these inputs have no bundle yet. */
export function ensureWorkerBundle(root: string, wrangler: string): Promise<string> {
  return cachedBuild(root, {
    name: "orchestrator-worker",
    // The worker's sources, its config and the installed packages' versions.
    inputs: ["src", "wrangler.toml", "package-lock.json", "tsconfig.json"],
    file: "worker.js",
    async build(dir) {
      await run(process.execPath, [wrangler, "deploy", "--dry-run", "--outdir", dir], {
        cwd: root,
        env: { ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false" },
        maxBuffer: 16 * 1024 * 1024,
      }).catch((error: Error & { stdout?: string; stderr?: string }) => {
        throw new Error(`wrangler could not bundle the worker: ${`${error.stdout ?? ""}${error.stderr ?? ""}`.trim().slice(-3000) || error.message}`);
      });
    },
  });
}
