/**
 * A change's preview counts against its server's release ports and memory, as its runner reports
 * them when it connects: a server without room refuses the preview, saying which is short. (A preview
 * that fits is deployed end to end in test/node/factory.test.ts.)
 */
import { env } from "cloudflare:workers";
import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { withDb } from "../../src/db/client.ts";
import { deployments, servers } from "../../src/db/schema.ts";
import { roomForPreview } from "../../src/deploy/deploys.ts";
import { previewSecret } from "../../src/deploy/previews.ts";
import { call, createUserWithKey, uniqueName } from "./helpers.ts";
import { connect, enrolledRunner, getServer, until } from "./runner-helpers.ts";

async function connectedServer(hello: Record<string, unknown>) {
  const runner = await enrolledRunner();
  const connection = await connect(runner);
  await connection.hello(undefined, hello);
  await connection.next("session:welcome");
  await until(() => getServer(runner.handle), (shown) => shown.runner.connected, "the runner connected");
  const [server] = await withDb(env, (db) => db.select().from(servers).where(eq(servers.handle, runner.handle)));
  if (!server) throw new Error("no server row");
  return { server, connection };
}

async function running(serverId: string, ports: number[]): Promise<void> {
  const { key } = await createUserWithKey();
  const project = (await (await call("/api/projects", { method: "POST", key, json: { name: uniqueName("room") } })).json<{ project: { id: string } }>()).project;
  await withDb(env, (db) => db.insert(deployments).values(ports.map((port) => ({ id: `dep_${crypto.randomUUID().slice(0, 12)}`, projectId: project.id, serverId, commitSha: "a".repeat(40), status: "active" as const, port }))));
}

describe("room for a change's preview", () => {
  it("is the server's memory as its runner reports it: one more 512 MiB release must fit in four fifths of it", async () => {
    const { server, connection } = await connectedServer({ memoryMb: 1500, releasePorts: { from: 21_000, to: 21_009 } });
    expect((await getServer(server.handle)).runner.memoryMb).toBe(1500);
    // Nothing runs: 512 MiB of 1,200 fits.
    await expect(withDb(env, (db) => roomForPreview(db, env, server, 1))).resolves.toBeUndefined();
    await running(server.id, [21_000, 21_001]);
    // Two run: a third makes 1,536 MiB, over 1,200.
    await expect(withDb(env, (db) => roomForPreview(db, env, server, 2))).rejects.toThrow(`Server ${server.handle} has no memory left for the preview of change #2: 2 releases run, 512 MiB each, on 1500 MiB; ship or discard another change first`);
    connection.ws.close();
  });

  it("is the server's release ports: a server whose every port holds a release has none for a preview", async () => {
    const { server, connection } = await connectedServer({ memoryMb: 64_000, releasePorts: { from: 21_100, to: 21_101 } });
    await running(server.id, [21_100, 21_101]);
    await expect(withDb(env, (db) => roomForPreview(db, env, server, 1))).rejects.toThrow(`Server ${server.handle} has no release port free for the preview of change #1 (2 releases run on its 2)`);
    connection.ws.close();
  });
});

describe("a preview's infra secrets", () => {
  it("are derived: the same for one preview's redeploys, another for every other preview, name or project, and none without the factory's key", async () => {
    const key = env.SECRETS_ENCRYPTION_KEY;
    const one = await previewSecret(key, "prj_a", 1, "SESSION_SECRET");
    expect(one).toMatch(/^[0-9a-f]{64}$/);
    expect(await previewSecret(key, "prj_a", 1, "SESSION_SECRET")).toBe(one);
    const others = await Promise.all([previewSecret(key, "prj_a", 2, "SESSION_SECRET"), previewSecret(key, "prj_a", 1, "DB_PASSWORD"), previewSecret(key, "prj_b", 1, "SESSION_SECRET"), previewSecret(`${key}x`, "prj_a", 1, "SESSION_SECRET")]);
    expect(new Set([one, ...others]).size).toBe(5);
  });
});
