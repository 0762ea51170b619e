/**
 * `npm run build:cli`: the `orchestrator` CLI in one file, dist/orchestrator.mjs, for any machine with
 * Node 22: `node orchestrator.mjs status`, configured as in the repository (ORCHESTRATOR_URL and
 * ORCHESTRATOR_API_KEY, or `orchestrator login`). See scripts/lib/cli-bundle.ts.
 */
import { chmodSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { buildCli, CLI_BUNDLE_FILE } from "./lib/cli-bundle.ts";

const ROOT = resolve(import.meta.dirname, "..");
const out = join(ROOT, "dist", CLI_BUNDLE_FILE);
mkdirSync(join(ROOT, "dist"), { recursive: true });
await buildCli(ROOT, out);
chmodSync(out, 0o755);
process.stdout.write(`${out}\n`);
