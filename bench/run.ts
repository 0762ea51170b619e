/**
 * `npm run bench -- <name> [options]`: benchmarks that print figures, one JSON line per case.
 * - fanout [--watchers 100,1000] [--events 1000] [--only ours|redis]
 * - jobs [--jobs 1000] [--in-flight 1,8] [--docker-runs 20] [--log-lines 50000]
 * - engineering [--rounds 10] [--only overhead|typescript]
 * - deploy
 * - changes
 * - po [--chats 100] [--messages 5] [--turns 10,100,1000]
 * - api [--clients 50] [--requests 2000] [--warmup 200]
 * - rag [--queries 500] [--max-docs N] [--beir DIR] [--label]
 * - packages [--rounds 2]
 */
import { parseArgs } from "node:util";
import { api } from "./api.ts";
import { changes } from "./changes.ts";
import { deploy } from "./deploy.ts";
import { engineering } from "./engineering.ts";
import { fanout } from "./fanout.ts";
import { jobs } from "./jobs.ts";
import { packages } from "./packages.ts";
import { po } from "./po.ts";
import { rag } from "./rag.ts";

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
    rounds: { type: "string" },
    chats: { type: "string", default: "100" },
    messages: { type: "string", default: "5" },
    turns: { type: "string", default: "10,100,1000" },
    clients: { type: "string", default: "50" },
    requests: { type: "string", default: "2000" },
    warmup: { type: "string", default: "200" },
    queries: { type: "string", default: "500" },
    "max-docs": { type: "string" },
    beir: { type: "string" },
    label: { type: "boolean" },
  },
});
const [name] = positionals;
const benches: Record<string, () => Promise<void>> = {
  fanout: () => fanout({ watchers: values.watchers.split(",").map(Number), events: Number(values.events), only: values.only }),
  engineering: () => engineering({ rounds: Number(values.rounds ?? 10), only: values.only }),
  packages: () => packages({ rounds: Number(values.rounds ?? 2) }),
  deploy: () => deploy(),
  changes: () => changes(),
  po: () => po({ chats: Number(values.chats), messages: Number(values.messages), turns: values.turns.split(",").map(Number) }),
  api: () => api({ clients: Number(values.clients), requests: Number(values.requests), warmup: Number(values.warmup) }),
  rag: () => rag({ queries: Number(values.queries), ...(values["max-docs"] ? { maxDocs: Number(values["max-docs"]) } : {}), ...(values.beir ? { beir: values.beir } : {}), label: Boolean(values.label) }),
  jobs: () => jobs({ jobs: Number(values.jobs), inFlight: values["in-flight"].split(",").map(Number), dockerRuns: Number(values["docker-runs"]), logLines: Number(values["log-lines"]) }),
};
const bench = name ? benches[name] : undefined;
if (!bench) {
  console.error(
    `usage: npm run bench -- fanout [--watchers 100,1000] [--events 1000] [--only ours|redis]\n       npm run bench -- jobs [--jobs 1000] [--in-flight 1,8] [--docker-runs 20] [--log-lines 50000]\n       npm run bench -- engineering [--rounds 10] [--only overhead|typescript]\n       npm run bench -- deploy\n       npm run bench -- changes\n       npm run bench -- po [--chats 100] [--messages 5] [--turns 10,100,1000]\n       npm run bench -- api [--clients 50] [--requests 2000] [--warmup 200]\n       npm run bench -- rag [--queries 500] [--max-docs N] [--beir DIR] [--label]\n       npm run bench -- packages [--rounds 2]`,
  );
  process.exit(2);
}
await bench();
process.exit(0);
