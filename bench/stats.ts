/** Percentile of an unsorted sample (nearest rank), in the sample's unit. */
export function percentile(values: Float64Array | number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? Number.NaN;
}

export const round = (value: number, digits = 2) => Number(value.toFixed(digits));

/** High-resolution wall-clock milliseconds, comparable across everything in this process. */
export const nowMs = () => performance.timeOrigin + performance.now();

export interface LatencySummary {
  p50_ms: number;
  p99_ms: number;
  events_per_s: number;
  deliveries_per_s: number;
}

export function summarize(latencies: Float64Array, events: number, watchers: number, elapsedMs: number): LatencySummary {
  return {
    p50_ms: round(percentile(latencies, 50)),
    p99_ms: round(percentile(latencies, 99)),
    events_per_s: round(events / (elapsedMs / 1000), 1),
    deliveries_per_s: round((events * watchers) / (elapsedMs / 1000), 0),
  };
}
