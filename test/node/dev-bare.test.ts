/**
 * `npm run dev` on a machine without Docker or Caddy: it says what is missing and how to install it,
 * and starts the rest (no runner). Needs neither, so it runs beside the heavy files; the whole system
 * starting, restarting and stopping is test/node/dev.test.ts.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { api, cleanUpDevRuns, devPorts, startDev, stopDev, work } from "../support/dev-run.ts";

cleanUpDevRuns();

describe("npm run dev", () => {
  it("names what the machine lacks, with the command that installs it, and starts the rest", async () => {
    const ports = await devPorts();
    // No Docker engine and no Caddy binary where it looks.
    const { dev } = await startDev(ports, { state: "bare-state", vars: join(work, "bare.vars"), env: { DOCKER_SOCKET: join(work, "no-docker.sock"), CADDY_BINARY: join(work, "no-caddy") } });
    const output = dev.output();
    expect(output).toMatch(/missing: Docker \(.*sudo apt-get install -y docker\.io.*\): without it there is no runner, so builds and deploys wait/);
    expect(output).toMatch(/missing: Caddy \(`sudo apt-get install -y caddy`\)/);
    // The rest runs: the API, the console, the stand-ins; no runner is registered.
    expect((await fetch(`http://127.0.0.1:${ports.http}/healthz`)).status).toBe(200);
    expect(output).toContain("ready. The web console: ");
    const adminKey = /ADMIN_API_KEY=(ork_[a-z0-9]+)/.exec(output)?.[1] ?? "";
    const servers = (await (await api(ports.http, adminKey, "/api/servers")).json()) as { servers: unknown[] };
    expect(servers.servers).toEqual([]);
    expect(await stopDev(dev)).toBe(0);
  });
});
