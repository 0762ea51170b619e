/**
 * The stacks the tests and benchmarks start (scripts/lib/local-stack.ts): one whose worker never gets
 * ready is stopped whole, so that a failed start leaves nothing running on its port.
 */
import { execFileSync } from "node:child_process";
import { expect, it } from "vitest";
import { startStack } from "../../scripts/lib/local-stack.ts";
import { freePort } from "../../scripts/lib/ports.ts";
import { isListening } from "../../scripts/lib/processes.ts";

it("stops wrangler and its workerd when the worker never answers /healthz, leaving its port free", async () => {
  const port = await freePort();
  // A database nothing listens on: /healthz answers 503 db_unavailable until the start gives up.
  const starting = startStack({ databaseUrl: `postgres://nobody:nothing@127.0.0.1:${await freePort()}/none`, dbWsProxy: "", adminKey: "ork_local_stack_test", port, readyTimeoutMs: 8_000 });
  await expect(starting).rejects.toThrow(/timed out after 8000 ms/);
  expect(await isListening(port)).toBe(false);
  // Neither wrangler (`--port N`) nor workerd (`--socket-addr=entry=127.0.0.1:N`) is left.
  const left = execFileSync("ps", ["-eo", "pid,args"], { encoding: "utf8" })
    .split("\n")
    .filter((line) => line.includes(`--port ${port} `) || line.includes(`127.0.0.1:${port} `));
  expect(left).toEqual([]);
}, 60_000);
