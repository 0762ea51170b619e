/**
 * Where a search's time goes, as a Server-Timing header (`fts;dur=3.1, embed;dur=2.0, …`): what the
 * benchmark reads to tell the search's own cost from the request's, and what a browser's network
 * panel shows. The clock advances only across I/O in Workers, which is all a search waits on.
 */
export class Timings {
  private readonly entries: { name: string; ms: number }[] = [];

  async time<T>(name: string, work: () => Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      return await work();
    } finally {
      this.entries.push({ name, ms: performance.now() - started });
    }
  }

  header(): string {
    return this.entries.map((entry) => `${entry.name};dur=${entry.ms.toFixed(1)}`).join(", ");
  }
}
