/**
 * The `orchestrator` CLI in one ES module: cli/bin.ts and everything it imports (zod, the shared
 * contracts), for a machine that has Node 22 and nothing of this repository. `npm run build:cli` writes
 * it to dist/orchestrator.mjs; the tests run the same build (cached per content, build-cache.ts). It also
 * starts faster than cli/bin.ts, whose every file Node strips of types and resolves on each start:
 * ~0.3 CPU-s a command against ~0.95 here, and the suite runs the CLI some hundred times.
 */
import { join } from "node:path";
import { build } from "esbuild";
import { cachedBuild } from "./build-cache.ts";

export const CLI_BUNDLE_FILE = "orchestrator.mjs";

/** Bundles the CLI into `outfile`. */
export async function buildCli(root: string, outfile: string): Promise<void> {
  await build({
    absWorkingDir: root,
    entryPoints: [join(root, "cli", "bin.ts")],
    outfile,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node22",
    legalComments: "linked",
    // ws is CommonJS and requires Node's modules: an ES module has no require of its own. (esbuild
    // keeps bin.ts's `#!/usr/bin/env node` above this, so the file still runs as a command.)
    banner: { js: `import { createRequire as __createRequire } from "node:module";\nconst require = __createRequire(import.meta.url);` },
    logLevel: "warning",
  });
}

/** The bundled CLI's path, built first if these sources have no build yet. */
export function ensureCliBundle(root: string): Promise<string> {
  return cachedBuild(root, {
    name: "orchestrator-cli",
    // The CLI imports the shared contracts from src/ (src/shared, src/rag/contract.ts).
    inputs: ["cli", "src", "package-lock.json"],
    file: CLI_BUNDLE_FILE,
    build: (dir) => buildCli(root, join(dir, CLI_BUNDLE_FILE)),
  });
}
