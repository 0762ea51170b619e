/**
 * `npm run deploy`: migrates the production database, then `wrangler deploy`.
 * Needs DATABASE_URL (the Neon URL) in the environment and the worker secrets set with
 * `wrangler secret put`. `npm run deploy -- --dry-run` only builds the bundle (no network, no migration).
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { isLocalDatabase } from "./lib/dev-vars.ts";
import { runMigrations } from "./lib/migrate.ts";

const dryRun = process.argv.includes("--dry-run");
const passThrough = process.argv.slice(2);

if (!dryRun) {
  const databaseUrl = process.env.DATABASE_URL;
  if (!databaseUrl || isLocalDatabase(databaseUrl)) {
    console.error("deploy: set DATABASE_URL to your Neon database (the same value as the DATABASE_URL worker secret)");
    process.exit(2);
  }
  await runMigrations(databaseUrl);
  console.log("deploy: migrations applied");
}
const wranglerBin = fileURLToPath(new URL("../node_modules/wrangler/bin/wrangler.js", import.meta.url));
const result = spawnSync(process.execPath, [wranglerBin, "deploy", ...passThrough], { stdio: "inherit" });
process.exit(result.status ?? 1);
