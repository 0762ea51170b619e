/**
 * `npm run build:runner`: the runner as a VPS installs it, with none of this repository's
 * development dependencies (wrangler, workerd, playwright…). Writes `dist/runner/`:
 *   orchestrator-runner.mjs   the daemon and its libraries (zod, ws, dockerode) in one ES module
 *   ansible/                  the playbooks (and their templates) it runs
 *   templates/                the project templates repo.scaffold renders
 *   package.json, README.md
 * and `dist/orchestrator-runner-<version>.tar.gz` of that directory. Node 20 or newer runs it:
 * `node orchestrator-runner.mjs enroll …`. provision.yml installs it as a systemd service.
 */
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { build } from "esbuild";
import { RUNNER_VERSION } from "../runner/src/version.ts";

const ROOT = resolve(import.meta.dirname, "..");
const OUT = join(ROOT, "dist", "runner");

rmSync(OUT, { recursive: true, force: true });
mkdirSync(OUT, { recursive: true });
await build({
  entryPoints: [join(ROOT, "runner", "bin.ts")],
  outfile: join(OUT, "orchestrator-runner.mjs"),
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  legalComments: "linked",
  // ssh2 (through dockerode) loads optional native add-ons inside try/catch; without them it uses JS.
  external: ["cpu-features", "*.node"],
  // CommonJS dependencies bundled into an ES module still ask for require and __dirname.
  banner: {
    js: [
      `import { createRequire as __createRequire } from "node:module";`,
      `import { fileURLToPath as __fileURLToPath } from "node:url";`,
      `import { dirname as __pathDirname } from "node:path";`,
      `const require = __createRequire(import.meta.url);`,
      `const __filename = __fileURLToPath(import.meta.url);`,
      `const __dirname = __pathDirname(__filename);`,
    ].join("\n"),
  },
  logLevel: "warning",
});
cpSync(join(ROOT, "runner", "ansible"), join(OUT, "ansible"), { recursive: true });
cpSync(join(ROOT, "runner", "templates"), join(OUT, "templates"), { recursive: true });
cpSync(join(ROOT, "runner", "README.md"), join(OUT, "README.md"));
writeFileSync(
  join(OUT, "package.json"),
  `${JSON.stringify(
    {
      name: "orchestrator-runner",
      version: RUNNER_VERSION,
      description: "The Orchestrator runner daemon: runs jobs signed by the control plane on a VPS (Docker, Ansible, Caddy).",
      type: "module",
      bin: { "orchestrator-runner": "orchestrator-runner.mjs" },
      engines: { node: ">=20" },
    },
    null,
    2,
  )}\n`,
);
const archive = join(ROOT, "dist", `orchestrator-runner-${RUNNER_VERSION}.tar.gz`);
execFileSync("tar", ["-czf", archive, "-C", join(ROOT, "dist"), "runner"]);
process.stdout.write(`${OUT}\n${archive}\n`);
