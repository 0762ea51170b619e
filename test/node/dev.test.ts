/**
 * `npm run dev` as a new user runs it: first start writes secrets and prints the admin key,
 * /healthz answers within 60 s, data survives a restart, Ctrl-C stops every process it started,
 * and losing Postgres answers 503 without writing anything. On a machine that lacks Docker or Caddy:
 * test/node/dev-bare.test.ts. Not behind the heavy gate: it builds nothing in Docker, and its ~40 s of
 * starting and stopping processes fit beside a heavy file (test/support/heavy-gate.ts).
 */
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { isListening, waitFor } from "../../scripts/lib/processes.ts";
import { api, cleanUpDevRuns, devPorts, startDev, stopDev, varsFile, work } from "../support/dev-run.ts";

cleanUpDevRuns();

describe("npm run dev", () => {
  it("starts, serves, survives a restart and stops cleanly", async () => {
    const ports = await devPorts();

    const first = await startDev(ports);
    expect(first.readyMs).toBeLessThan(60_000);
    const keyLine = /ADMIN_API_KEY=(ork_[a-z0-9]+)/.exec(first.dev.output());
    expect(keyLine?.[1]).toBeTruthy();
    const adminKey = keyLine?.[1] ?? "";
    expect(readFileSync(varsFile, "utf8")).toContain(`ADMIN_API_KEY=${adminKey}`);
    expect(statSync(varsFile).mode & 0o777).toBe(0o600);

    const created = await api(ports.http, adminKey, "/api/projects", {
      method: "POST",
      body: JSON.stringify({ name: "weather-bot", description: "Weather bot with notifications" }),
    });
    expect(created.status).toBe(201);
    // No model configured: it says so in one line, with how to set one, and the scripted stand-in answers.
    expect(first.dev.output()).toMatch(/model: none configured, so the SCRIPTED stand-in answers .*OPENAI_API_KEY=/);
    // The local runner enrolled itself and is online; Caddy listens for <project>.localhost.
    const server = await api(ports.http, adminKey, "/api/servers/local");
    expect(((await server.json()) as { server: { status: string; publicHttpPort: number } }).server).toMatchObject({ status: "online", publicHttpPort: ports.caddy });
    expect(await isListening(ports.caddy)).toBe(true);
    // The console link signs the local user in.
    const link = /The web console: (\S+)/.exec(first.dev.output())?.[1] ?? "";
    expect(link).toMatch(new RegExp(`^http://127.0.0.1:${ports.http}/chat\\?token=`));
    expect((await fetch(link)).status).toBe(200);

    // Postgres goes away under the running system: 503 db_unavailable, and nothing is written.
    // (ports.pg is the pooler's, which stays up: postmaster.pid's 4th line is Postgres's own port.)
    const [postmaster, , , postgresPort] = readFileSync(join(work, "state", "postgres", "postmaster.pid"), "utf8").split("\n");
    expect(Number(postgresPort)).not.toBe(ports.pg);
    process.kill(Number(postmaster), "SIGINT");
    await waitFor(async () => ((await isListening(Number(postgresPort))) ? undefined : true), 15_000, () => "postgres still up");
    const health = await fetch(`http://127.0.0.1:${ports.http}/healthz`);
    expect(health.status).toBe(503);
    expect(((await health.json()) as { error: { code: string } }).error.code).toBe("db_unavailable");
    const lost = await api(ports.http, adminKey, "/api/projects", {
      method: "POST",
      body: JSON.stringify({ name: "lost-project" }),
    });
    expect(lost.status).toBe(503);
    expect(lost.headers.get("content-type")).toContain("application/json");

    // Ctrl-C stops wrangler, the proxy and Postgres.
    expect(await stopDev(first.dev)).toBe(0);
    for (const port of Object.values(ports)) expect(await isListening(port), `port ${port}`).toBe(false);

    // Second run: same data, same key, no new key printed.
    const second = await startDev(ports);
    expect(second.dev.output()).not.toContain(adminKey);
    const list = await api(ports.http, adminKey, "/api/projects");
    const names = ((await list.json()) as { projects: { name: string }[] }).projects.map((p) => p.name);
    expect(names).toEqual(["weather-bot"]);
    expect(await stopDev(second.dev)).toBe(0);
    for (const port of Object.values(ports)) expect(await isListening(port), `port ${port}`).toBe(false);
  });
});
