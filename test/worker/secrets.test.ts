/** The AES-GCM module for secrets at rest, in workerd: round trip, and every way a ciphertext must fail to open. */
import { describe, expect, it } from "vitest";
import { openText, packSealed, sealText, unpackSealed } from "../../src/lib/secrets.ts";

const KEY = "dGVzdC1rZXktMzItYnl0ZXMtbG9uZy10ZXN0LWtleSE=";

describe("secrets at rest", () => {
  it("opens what it sealed, with a fresh IV each time, and hides the plaintext", async () => {
    const secret = `postgres://app:${crypto.randomUUID()}@db/app`;
    const a = await sealText(KEY, "job-secrets", secret, "job_1");
    const b = await sealText(KEY, "job-secrets", secret, "job_1");
    expect(a.iv).not.toBe(b.iv);
    expect(a.ciphertext).not.toBe(b.ciphertext);
    expect(JSON.stringify(a)).not.toContain(secret);
    expect(await openText(KEY, "job-secrets", unpackSealed(packSealed(a)), "job_1")).toBe(secret);
    // Large values survive (a job's envelope can hold many secrets).
    const big = "x".repeat(500_000);
    expect(await openText(KEY, "project-secrets", await sealText(KEY, "project-secrets", big))).toBe(big);
  });

  it("refuses another key, another purpose, another context, and tampered bytes", async () => {
    const sealed = await sealText(KEY, "job-secrets", "s3cret", "job_1");
    await expect(openText("another-key", "job-secrets", sealed, "job_1")).rejects.toThrow();
    await expect(openText(KEY, "project-secrets", sealed, "job_1")).rejects.toThrow();
    await expect(openText(KEY, "job-secrets", sealed, "job_2")).rejects.toThrow();
    const flipped = { ...sealed, ciphertext: `${sealed.ciphertext.slice(0, -2)}${sealed.ciphertext.endsWith("AA") ? "AB" : "AA"}` };
    await expect(openText(KEY, "job-secrets", flipped, "job_1")).rejects.toThrow();
    expect(() => unpackSealed("v2.x.y")).toThrow("not a sealed value");
  });
});
