import { readFileSync } from "node:fs";
import { startStack } from "./lib/local-stack.ts";
import { startLocalDatabase } from "./lib/local-db.ts";
import * as wb from "./lib/worker-bundle.ts";
const cpu = () => { const [, ...f] = readFileSync("/proc/stat", "utf8").split("\n")[0].split(/\s+/); const n = f.map(Number); return (n[0] + n[1] + n[2] + n[5] + n[6]) / 100; };
const db = await startLocalDatabase("measure_stack3");
for (let i = 0; i < 3; i++) {
  const c0 = cpu(); const t0 = Date.now();
  const stack = await startStack({ databaseUrl: db.databaseUrl, dbWsProxy: db.wsProxy, adminKey: "ork_measure0123456789abcdef0123" });
  const c1 = cpu(); const t1 = Date.now();
  await stack.stop();
  console.log(JSON.stringify({ start_cpu_s: +(c1 - c0).toFixed(2), start_ms: t1 - t0 }));
}
await db.stop();
