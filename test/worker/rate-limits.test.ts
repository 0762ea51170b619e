/**
 * Limits by client address: failed sign-ins of every kind (API key, view link, chat link, enrollment
 * token, the webhook's secret) slow down to 429 with Retry-After, and the error body stays the
 * project's; a good key from another address is not affected.
 */
import { describe, expect, it } from "vitest";
import { adminKey, call } from "./helpers.ts";

const address = () => `127.1.${Math.floor(Math.random() * 256)}.${Math.floor(Math.random() * 254) + 1}`;

/**
 * Waits, when the limiter's current 60 s period (aligned to the clock, locally) has less than 20 s
 * left, for the next one to begin: a burst that straddled two periods would be counted in halves.
 */
async function freshPeriod(): Promise<void> {
  const left = 60_000 - (Date.now() % 60_000);
  if (left < 20_000) await new Promise((resolve) => setTimeout(resolve, left + 50));
}

describe("failed authentication per address", () => {
  it("answers 401 until the address has failed 30 times in a minute, then 429 with Retry-After", async () => {
    const from = address();
    // All at once, early in a period: a minute's window is counted in fixed periods, and a burst must not straddle two.
    await freshPeriod();
    const statuses = await Promise.all(Array.from({ length: 32 }, (_, i) => call("/api/projects", { key: `ork_guess${i}`, headers: { "cf-connecting-ip": from } }).then((res) => res.status)));
    expect(statuses.filter((status) => status === 401)).toHaveLength(30);
    expect(statuses.filter((status) => status === 429)).toHaveLength(2);
    const limited = await call("/api/projects", { key: "ork_guess-again", headers: { "cf-connecting-ip": from } });
    expect(limited.status).toBe(429);
    expect(limited.headers.get("retry-after")).toBe("60");
    const { error } = await limited.json<{ error: { code: string; message: string; requestId: string } }>();
    expect(error.code).toBe("rate_limited");
    expect(error.message).toMatch(/failed sign-ins/);
    expect(error.requestId).toBeTruthy();
    // Someone else, with a good key, is not limited.
    expect((await call("/api/projects", { key: adminKey(), headers: { "cf-connecting-ip": address() } })).status).toBe(200);
  });

  it("counts every kind of credential: view links, chat links, enrollment tokens, the chat socket", async () => {
    const from = address();
    const attempts = [
      () => call("/tasks/tsk_x?token=bad", { headers: { "cf-connecting-ip": from } }),
      () => call("/api/tasks/tsk_x/events?token=bad", { headers: { "cf-connecting-ip": from } }),
      () => call("/chat/ws?token=bad", { headers: { "cf-connecting-ip": from } }),
      () => call("/runner/enroll", { method: "POST", json: { token: "ort_nope0000000000000000", publicKey: "A".repeat(43), version: "t" }, headers: { "cf-connecting-ip": from } }),
    ];
    await freshPeriod();
    const statuses = await Promise.all(Array.from({ length: 32 }, (_, i) => (attempts[i % attempts.length] as () => Promise<Response>)().then((res) => res.status)));
    expect(statuses.filter((status) => status === 401 || status === 400)).toHaveLength(30);
    expect(statuses.filter((status) => status === 429)).toHaveLength(2);
  });
});
