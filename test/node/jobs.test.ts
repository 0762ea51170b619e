import { describe, it } from "vitest";
import { checkRefusals, checkVector } from "../support/job-cases.ts";

describe("signed runner jobs in Node (the runner's side)", () => {
  it("signs the fixed vector to the expected bytes", () => checkVector());
  it("refuses tampered, foreign, expired, early, long-lived, replayed and malformed jobs", () => checkRefusals());
});
