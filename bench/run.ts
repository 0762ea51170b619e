/**
 * `npm run bench -- <name> [--watchers 100,1000] [--events 1000]`: benchmarks that print figures,
 * one JSON line per case. Names: fanout (`--only ours` or `--only redis` runs one side).
 */
import { parseArgs } from "node:util";
import { fanout } from "./fanout.ts";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    watchers: { type: "string", default: "100,1000" },
    events: { type: "string", default: "1000" },
    only: { type: "string" },
  },
});
const [name] = positionals;
const benches: Record<string, () => Promise<void>> = {
  fanout: () => fanout({ watchers: values.watchers.split(",").map(Number), events: Number(values.events), only: values.only }),
};
const bench = name ? benches[name] : undefined;
if (!bench) {
  console.error(`usage: npm run bench -- <${Object.keys(benches).join("|")}> [--watchers 100,1000] [--events 1000] [--only ours|redis]`);
  process.exit(2);
}
await bench();
process.exit(0);
