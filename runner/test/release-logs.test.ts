/**
 * release.logs' masking and framing, on their own: what a release's env file holds never comes back in
 * a line (as it is, or percent-encoded as in a URL), but the plain values the job names and short ones
 * do; Docker's frames of both streams read back as lines in order. The job itself runs against a real
 * release in test/node/deploy.test.ts.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { demux, envSecrets, MASK, mask } from "../src/executors/release-logs.ts";

const frame = (stream: 1 | 2, text: string) => {
  const body = Buffer.from(text);
  const header = Buffer.alloc(8);
  header.writeUInt8(stream, 0);
  header.writeUInt32BE(body.length, 4);
  return Buffer.concat([header, body]);
};

describe("release.logs", () => {
  it("masks every value of the env file but the plain and the short ones, also percent-encoded", async () => {
    const dir = mkdtempSync(join(tmpdir(), "release-logs-"));
    const env = join(dir, ".env");
    writeFileSync(env, ["PORT=8000", "DOMAIN=shop.example.com", "SESSION_SECRET=0123456789abcdef", "API_KEY=k+y/with=chars", "FLAG=on", "EMPTY="].join("\n"));
    const secrets = await envSecrets(env, new Set(["PORT", "DOMAIN"]));
    expect(secrets.sort()).toEqual(["0123456789abcdef", "k+y/with=chars"]);
    const line = `GET /?s=0123456789abcdef&k=${encodeURIComponent("k+y/with=chars")} from shop.example.com on 8000, flag on; key k+y/with=chars`;
    expect(mask(line, secrets)).toBe(`GET /?s=${MASK}&k=${MASK} from shop.example.com on 8000, flag on; key ${MASK}`);
    // No env file (a release started by hand): nothing to mask, nothing fails.
    expect(await envSecrets(join(dir, "none"), new Set())).toEqual([]);
  });

  it("reads Docker's frames of stdout and stderr as lines, in the order written", () => {
    const raw = Buffer.concat([frame(1, "2026-12-08T00:00:00.1Z listening\n"), frame(2, "2026-12-08T00:00:01.2Z Traceback (most recent call last):\n2026-12-08T00:00:01.2Z   File \"app.py\"\n"), frame(1, "2026-12-08T00:00:02.3Z GET / 200\n")]);
    expect(demux(raw)).toEqual(["2026-12-08T00:00:00.1Z listening", "2026-12-08T00:00:01.2Z Traceback (most recent call last):", '2026-12-08T00:00:01.2Z   File "app.py"', "2026-12-08T00:00:02.3Z GET / 200"]);
  });
});
