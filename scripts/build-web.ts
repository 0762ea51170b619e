/**
 * `npm run build:web`: bundles the web pages' scripts (web/*.ts) into public/ (scripts/lib/web-bundle.ts).
 * wrangler runs it before `wrangler dev` (again when web/ or src/shared/ changes) and `wrangler deploy`,
 * as wrangler.toml's [build] command; the tests' global setup builds the same. Exits 1 with esbuild's
 * messages when the sources do not build.
 */
import { buildWeb } from "./lib/web-bundle.ts";

try {
  const written = await buildWeb();
  process.stdout.write(written.length ? `build-web: wrote ${written.join(", ")}\n` : "build-web: public/ is up to date\n");
} catch (error) {
  // esbuild has printed its errors (file, line, what); anything else says itself here.
  const printed = error instanceof Error && "errors" in error && Array.isArray(error.errors) && error.errors.length > 0;
  process.stderr.write(printed ? "build-web: failed (esbuild's errors above)\n" : `build-web: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
}
