/**
 * `npm run bench -- <name> [options]`: benchmarks that print figures, one JSON line per case.
 * - fanout [--watchers 100,1000] [--events 1000] [--only ours|redis]
 * - jobs [--jobs 1000] [--in-flight 1,8] [--docker-runs 20] [--log-lines 50000]
 * - engineering [--rounds 10]
 * - deploy
 */
import { parseArgs } from "node:util";
import { deploy } from "./deploy.ts";
import { engineering } from "./engineering.ts";
import { fanout } from "./fanout.ts";
import { jobs } from "./jobs.ts";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    watchers: { type: "string", default: "100,1000" },
    events: { type: "string", default: "1000" },
    only: { type: "string" },
    jobs: { type: "string", default: "1000" },
    "in-flight": { type: "string", default: "1,8" },
    "docker-runs": { type: "string", default: "20" },
    "log-lines": { type: "string", default: "50000" },
    rounds: { type: "string", default: "10" },
  },
});
const [name] = positionals;
const benches: Record<string, () => Promise<void>> = {
  fanout: () => fanout({ watchers: values.watchers.split(",").map(Number), events: Number(values.events), only: values.only }),
  engineering: () => engineering({ rounds: Number(values.rounds) }),
  deploy: () => deploy(),
  jobs: () => jobs({ jobs: Number(values.jobs), inFlight: values["in-flight"].split(",").map(Number), dockerRuns: Number(values["docker-runs"]), logLines: Number(values["log-lines"]) }),
};
const bench = name ? benches[name] : undefined;
if (!bench) {
  console.error(
    `usage: npm run bench -- fanout [--watchers 100,1000] [--events 1000] [--only ours|redis]\n       npm run bench -- jobs [--jobs 1000] [--in-flight 1,8] [--docker-runs 20] [--log-lines 50000]\n       npm run bench -- engineering [--rounds 10]\n       npm run bench -- deploy`,
  );
  process.exit(2);
}
await bench();
process.exit(0);
