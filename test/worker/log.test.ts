import { describe, expect, it, vi } from "vitest";
import { createLogger, redact } from "../../src/lib/log.ts";

describe("logs never carry secrets", () => {
  it("redacts secret-named fields, our API keys, URL passwords and bearer tokens", () => {
    const out = JSON.stringify(
      redact({
        password: "hunter2",
        nested: { apiKey: "abc", DATABASE_URL: "postgres://u:p@h/db" },
        note: "used ork_0123456789abcdefghij and postgres://admin:s3cret@db.example/x with Bearer abc.def",
        fine: "weather-bot",
      }),
    );
    for (const secret of ["hunter2", "ork_0123456789abcdefghij", "s3cret", "abc.def", "u:p@"]) expect(out).not.toContain(secret);
    expect(out).toContain("weather-bot");
    expect(out).toContain("postgres://admin:[redacted]@db.example/x");
  });

  it("drops bound query parameters from database errors", () => {
    const error = new Error('Failed query: select * from api_keys where key_hash = $1\nparams: 9f86d081884c7d659a2feaa0c55ad015');
    const out = JSON.stringify(redact(error));
    expect(out).not.toContain("9f86d081");
    expect(out).toContain("Failed query: select * from api_keys");
  });

  it("writes one JSON line per record with the base fields, above the minimum level", () => {
    const lines: string[] = [];
    const spy = vi.spyOn(console, "log").mockImplementation((line: string) => void lines.push(line));
    const log = createLogger("info", { requestId: "r1" });
    log.debug("hidden");
    log.info("shown", { token: "t0p" });
    spy.mockRestore();
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0] ?? "")).toMatchObject({ level: "info", msg: "shown", requestId: "r1", token: "[redacted]" });
  });
});
