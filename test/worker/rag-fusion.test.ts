/** Reciprocal rank fusion (src/rag/fusion.ts) and the Vectorize filter (src/rag/vectorize-index.ts). */
import { describe, expect, it } from "vitest";
import { reciprocalRankFusion, RRF_K } from "../../src/rag/fusion.ts";
import { vectorizeFilters } from "../../src/rag/vectorize-index.ts";

describe("reciprocal rank fusion", () => {
  it("adds 1/(60 + rank) per list, says which lists found each id, and orders by the sum", () => {
    expect(RRF_K).toBe(60);
    const fused = reciprocalRankFusion(["a", "b", "c"], ["c", "d", "a"]);
    expect(fused.map((entry) => entry.id)).toEqual(["a", "c", "b", "d"]);
    expect(fused[0]).toEqual({ id: "a", score: 1 / 61 + 1 / 63, ftsRank: 1, vectorRank: 3, matchedBy: "both" });
    expect(fused.find((entry) => entry.id === "b")).toMatchObject({ matchedBy: "fts", vectorRank: null, score: 1 / 62 });
    expect(fused.find((entry) => entry.id === "d")).toMatchObject({ matchedBy: "vector", ftsRank: null, score: 1 / 62 });
  });

  it("ranks an item both lists found above one either list put first", () => {
    const fused = reciprocalRankFusion(["top-fts", "shared"], ["top-vector", "shared"]);
    expect(fused[0]?.id).toBe("shared");
  });

  it("breaks ties by the full-text rank, and works with one list or none", () => {
    expect(reciprocalRankFusion(["x"], ["y"]).map((entry) => entry.id)).toEqual(["x", "y"]);
    expect(reciprocalRankFusion([], ["p", "q"]).map((entry) => entry.matchedBy)).toEqual(["vector", "vector"]);
    expect(reciprocalRankFusion([], [])).toEqual([]);
  });
});

describe("the Vectorize filter", () => {
  it("filters by visibility and scope, and splits a visibility list too long for one filter", () => {
    expect(vectorizeFilters({})).toEqual([{}]);
    expect(vectorizeFilters({ visibility: ["project:a"], scope: ["docs"] })).toEqual([{ scope: { $in: ["docs"] }, visibility: { $in: ["project:a"] } }]);
    const keys = Array.from({ length: 200 }, (_, i) => `project:prj_${String(i).padStart(16, "0")}`);
    const parts = vectorizeFilters({ visibility: keys });
    expect(parts.length).toBeGreaterThan(1);
    for (const part of parts) expect(JSON.stringify(part).length).toBeLessThanOrEqual(2048);
    expect(parts.flatMap((part) => (part.visibility as { $in: string[] }).$in)).toEqual(keys);
    // Nothing visible is a filter nothing passes, not "no filter".
    expect(vectorizeFilters({ visibility: [] })).toEqual([{ visibility: { $in: ["none"] } }]);
  });
});
