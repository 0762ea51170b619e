import { describe, expect, it } from "vitest";
import { adminKey, call, createUserWithKey, uniqueName } from "./helpers.ts";

type Project = { id: string; name: string; ownerId: string; status: string; description: string; createdAt: string };
type ErrorJson = { error: { code: string; message: string; details?: unknown } };

async function createProject(key: string, json: Record<string, unknown>) {
  return call("/api/projects", { method: "POST", key, json });
}

describe("/api/projects", () => {
  it("creates, shows, lists and updates a project for its owner", async () => {
    const { key, userId } = await createUserWithKey();
    const name = uniqueName("weather");
    const res = await createProject(key, { name, description: "Weather bot with notifications" });
    expect(res.status).toBe(201);
    const { project } = await res.json<{ project: Project }>();
    expect(project).toMatchObject({ name, ownerId: userId, status: "draft" });
    expect(project.id).toMatch(/^prj_/);
    expect(new Date(project.createdAt).toISOString()).toBe(project.createdAt);

    const shown = await call(`/api/projects/${project.id}`, { key });
    expect((await shown.json<{ project: Project }>()).project.name).toBe(name);

    const listed = await call("/api/projects", { key });
    expect((await listed.json<{ projects: Project[] }>()).projects.map((p) => p.id)).toEqual([project.id]);

    const patched = await call(`/api/projects/${project.id}`, {
      method: "PATCH",
      key,
      json: { description: "weather with alerts" },
    });
    expect(patched.status).toBe(200);
    expect((await patched.json<{ project: Project }>()).project.description).toBe("weather with alerts");
    // The status is the pipelines' to set: the owner is refused and nothing changes; an admin may repair it.
    const byOwner = await call(`/api/projects/${project.id}`, { method: "PATCH", key, json: { status: "deployed", description: "sneaky" } });
    expect(byOwner.status).toBe(403);
    expect((await byOwner.json<{ error: { code: string; message: string } }>()).error.message).toContain("set by its pipelines");
    const unchanged = await (await call(`/api/projects/${project.id}`, { key })).json<{ project: Project }>();
    expect(unchanged.project).toMatchObject({ status: "draft", description: "weather with alerts" });
    const byAdmin = await call(`/api/projects/${project.id}`, { method: "PATCH", key: adminKey(), json: { status: "engineering" } });
    expect(byAdmin.status).toBe(200);
    const filtered = await call("/api/projects?status=engineering", { key });
    expect((await filtered.json<{ projects: Project[] }>()).projects).toHaveLength(1);
  });

  it("hides another user's project behind a 404, for reading and writing", async () => {
    const alice = await createUserWithKey("alice");
    const bob = await createUserWithKey("bob");
    const res = await createProject(alice.key, { name: uniqueName("alice") });
    const { project } = await res.json<{ project: Project }>();

    const peek = await call(`/api/projects/${project.id}`, { key: bob.key });
    expect(peek.status).toBe(404);
    expect((await peek.json<ErrorJson>()).error.code).toBe("not_found");
    const write = await call(`/api/projects/${project.id}`, { method: "PATCH", key: bob.key, json: { description: "mine now" } });
    expect(write.status).toBe(404);
    expect((await (await call("/api/projects", { key: bob.key })).json<{ projects: Project[] }>()).projects).toEqual([]);

    const again = await call(`/api/projects/${project.id}`, { key: alice.key });
    expect((await again.json<{ project: Project }>()).project.description).toBe("");
  });

  it("lets a user create only for themselves, and an admin for anyone", async () => {
    const alice = await createUserWithKey("alice");
    const bob = await createUserWithKey("bob");
    const forged = await createProject(bob.key, { name: uniqueName(), ownerId: alice.userId });
    expect(forged.status).toBe(403);
    const byAdmin = await createProject(adminKey(), { name: uniqueName(), ownerId: alice.userId });
    expect(byAdmin.status).toBe(201);
    expect((await byAdmin.json<{ project: Project }>()).project.ownerId).toBe(alice.userId);
    const aliceList = await call("/api/projects", { key: alice.key });
    expect((await aliceList.json<{ projects: Project[] }>()).projects).toHaveLength(1);
    const unknownOwner = await createProject(adminKey(), { name: uniqueName(), ownerId: "usr_nobody" });
    expect(unknownOwner.status).toBe(400);
  });

  it("admins see every project", async () => {
    const alice = await createUserWithKey("alice");
    const { project } = await (await createProject(alice.key, { name: uniqueName() })).json<{ project: Project }>();
    const res = await call(`/api/projects/${project.id}`, { key: adminKey() });
    expect(res.status).toBe(200);
  });

  it("refuses a duplicate name with 409 and keeps the first", async () => {
    const { key } = await createUserWithKey();
    const name = uniqueName();
    expect((await createProject(key, { name, description: "first" })).status).toBe(201);
    const dup = await createProject(key, { name, description: "second" });
    expect(dup.status).toBe(409);
    const list = await (await call("/api/projects", { key })).json<{ projects: Project[] }>();
    expect(list.projects.map((p) => p.description)).toEqual(["first"]);
  });

  it("validates names as DNS labels and rejects unknown fields", async () => {
    const { key } = await createUserWithKey();
    for (const name of ["A", "Bad_Name", "-lead", "x".repeat(41), "a--b", ""]) {
      const res = await createProject(key, { name });
      expect(res.status, name).toBe(400);
      expect((await res.json<ErrorJson>()).error.code).toBe("invalid_request");
    }
    const extra = await createProject(key, { name: uniqueName(), owner: "x" });
    expect(extra.status).toBe(400);
    expect((await extra.json<ErrorJson>()).error.message).toMatch(/owner/);
    const empty = await call("/api/projects/prj_x", { method: "PATCH", key, json: {} });
    expect(empty.status).toBe(400);
    const badStatus = await call("/api/projects?status=bogus", { key });
    expect(badStatus.status).toBe(400);
  });

  it("answers 404 for an unknown project", async () => {
    const { key } = await createUserWithKey();
    expect((await call("/api/projects/prj_unknown", { key })).status).toBe(404);
  });
});

describe("deleting a project's data (POST /api/projects/:id/undeploy {deleteData})", () => {
  it("refuses another owner, a key limited to another project, a body that is not one, and a project that never had data; nothing is started", async () => {
    const alice = await createUserWithKey("alice");
    const project = (await (await createProject(alice.key, { name: uniqueName("data") })).json<{ project: Project }>()).project;
    const other = (await (await createProject(alice.key, { name: uniqueName("data") })).json<{ project: Project }>()).project;
    const issued = await call("/api/keys", { method: "POST", key: alice.key, json: { name: "ci", projectId: other.id } });
    const limited = (await issued.json<{ key: string }>()).key;
    const bob = await createUserWithKey("bob");
    const undeploy = (key: string, json: unknown) => call(`/api/projects/${project.id}/undeploy`, { method: "POST", key, json });

    for (const key of [bob.key, limited]) {
      const res = await undeploy(key, { deleteData: true });
      expect(res.status).toBe(404);
      expect((await res.json<ErrorJson>()).error.code).toBe("not_found");
    }
    for (const body of [{ deleteData: "yes" }, { deleteData: true, releases: ["x"] }]) {
      const res = await undeploy(alice.key, body);
      expect(res.status, JSON.stringify(body)).toBe(400);
    }
    const never = await undeploy(alice.key, { deleteData: true });
    expect(never.status).toBe(409);
    expect((await never.json<ErrorJson>()).error.message).toContain("never was, so it has no data to delete");
    // Without deleteData, the same project is simply not deployed.
    expect((await (await undeploy(alice.key, {})).json<ErrorJson>()).error.message).toMatch(/is not deployed$/);
    const tasks = await (await call(`/api/tasks?projectId=${project.id}`, { key: alice.key })).json<{ tasks: unknown[] }>();
    expect(tasks.tasks).toEqual([]);
  });
});
