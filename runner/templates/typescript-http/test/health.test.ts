import { expect, test } from "vitest";
import { app } from "../src/app.ts";

test("GET /healthz answers ok", async () => {
  const response = await app.request("/healthz");
  expect(response.status).toBe(200);
  expect(await response.json()).toEqual({ ok: true });
});
