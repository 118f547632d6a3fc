/** A fixed-bucket histogram (Prometheus-style upper bounds) for session metrics. */
export interface HistogramSnapshot {
  /** upper bounds, ascending */
  bounds: number[];
  /** observations per bucket: counts[i] for bounds[i-1] < v <= bounds[i]; the last is past every bound (+Inf) */
  counts: number[];
  sum: number;
  count: number;
}

export class Histogram {
  private readonly counts: number[];
  private sum = 0;
  private count = 0;
  constructor(private readonly bounds: readonly number[]) {
    this.counts = new Array(bounds.length + 1).fill(0);
  }

  observe(v: number): void {
    let i = 0;
    while (i < this.bounds.length && v > this.bounds[i]) i++;
    this.counts[i]++;
    this.sum += v;
    this.count++;
  }

  snapshot(): HistogramSnapshot {
    return { bounds: [...this.bounds], counts: [...this.counts], sum: this.sum, count: this.count };
  }
}
