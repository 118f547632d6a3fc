/**
 * Prometheus text exposition format (version 0.0.4) for `er serve`'s `/metrics`: the
 * HTTP layer's own counters and a writer that turns the sessions' `metrics()` into
 * metric families. Nothing here measures inference; those numbers come from `src/infer`.
 */
import type { HistogramSnapshot } from '../infer/histogram';
import type { SessionMetrics } from '../infer/session';

export type { SessionMetrics };

/** A histogram as the sessions report it (src/infer/histogram.ts). */
export type Hist = HistogramSnapshot;

/** Latency buckets of the HTTP layer, in milliseconds (0.5 ms .. 10 s). */
export const LATENCY_BOUNDS_MS = [0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000];

export type Labels = Record<string, string>;

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function labelText(labels: Labels, extra?: [string, string]): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  if (extra) parts.push(`${extra[0]}="${escapeLabel(extra[1])}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
}

function num(v: number): string {
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  if (Number.isNaN(v)) return 'NaN';
  return String(v);
}

/** Builds one exposition: each family's HELP and TYPE once, then its samples. */
export class PromWriter {
  private readonly lines: string[] = [];

  private header(name: string, type: 'counter' | 'gauge' | 'histogram', help: string): void {
    this.lines.push(`# HELP ${name} ${help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`, `# TYPE ${name} ${type}`);
  }

  /** A counter family (`name` should end in `_total`). */
  counter(name: string, help: string, samples: readonly { labels: Labels; value: number }[]): this {
    this.header(name, 'counter', help);
    for (const s of samples) this.lines.push(`${name}${labelText(s.labels)} ${num(s.value)}`);
    return this;
  }

  gauge(name: string, help: string, samples: readonly { labels: Labels; value: number }[]): this {
    this.header(name, 'gauge', help);
    for (const s of samples) this.lines.push(`${name}${labelText(s.labels)} ${num(s.value)}`);
    return this;
  }

  /** A histogram family; `scale` multiplies bounds and sum (1e-3 turns milliseconds into seconds). */
  histogram(name: string, help: string, samples: readonly { labels: Labels; hist: Hist; scale?: number }[]): this {
    this.header(name, 'histogram', help);
    for (const { labels, hist, scale = 1 } of samples) {
      let cum = 0;
      hist.bounds.forEach((b, i) => {
        cum += hist.counts[i] ?? 0;
        this.lines.push(`${name}_bucket${labelText(labels, ['le', num(b * scale)])} ${cum}`);
      });
      cum += hist.counts[hist.bounds.length] ?? 0;
      this.lines.push(`${name}_bucket${labelText(labels, ['le', '+Inf'])} ${cum}`);
      this.lines.push(`${name}_sum${labelText(labels)} ${num(hist.sum * scale)}`);
      this.lines.push(`${name}_count${labelText(labels)} ${num(hist.count)}`);
    }
    return this;
  }

  toString(): string {
    return this.lines.join('\n') + '\n';
  }
}

/** The metric families of the sessions, one `task` label each; fields a session does not report are left out. */
export function writeSessionMetrics(w: PromWriter, perTask: readonly { task: string; m: Partial<SessionMetrics> }[]): void {
  const counters: [keyof SessionMetrics, string, string][] = [
    ['requests', 'er_session_requests_total', 'predict() calls the session received'],
    ['inputs', 'er_session_inputs_total', 'inputs (texts) the session received'],
    ['rejected', 'er_session_rejected_total', 'predict() calls refused because the queue was full'],
    ['aborted', 'er_session_aborted_total', 'predict() calls aborted (client gone or timed out)'],
    ['failed', 'er_session_failed_total', 'predict() calls that failed'],
    ['batches', 'er_session_batches_total', 'batches computed'],
    ['cacheHits', 'er_session_cache_hits_total', 'windows read from the activation store'],
    ['cacheMisses', 'er_session_cache_misses_total', 'windows not in the store (prefix layers computed)'],
  ];
  for (const [field, name, help] of counters) {
    const samples = perTask.filter((t) => typeof t.m[field] === 'number').map((t) => ({ labels: { task: t.task }, value: t.m[field] as number }));
    if (samples.length) w.counter(name, help, samples);
  }
  const hists: [keyof SessionMetrics, string, string, number][] = [
    ['queueMs', 'er_session_queue_seconds', 'time a request waited in the queue before its batch started', 1e-3],
    ['computeMs', 'er_session_compute_seconds', 'time from the start of a request\'s batch to its result', 1e-3],
    ['batchRows', 'er_session_batch_rows', 'rows (windows) per batch', 1],
    ['batchTokens', 'er_session_batch_tokens', 'tokens per batch', 1],
  ];
  for (const [field, name, help, scale] of hists) {
    const samples = perTask.filter((t) => isHist(t.m[field])).map((t) => ({ labels: { task: t.task }, hist: t.m[field] as Hist, scale }));
    if (samples.length) w.histogram(name, help, samples);
  }
  const writeErrors = perTask.filter((t) => typeof (t.m as Record<string, unknown>).writeErrors === 'number').map((t) => ({ labels: { task: t.task }, value: (t.m as Record<string, number>).writeErrors }));
  if (writeErrors.length) w.counter('er_session_write_errors_total', 'read-through writes to the store that failed (the requests were answered)', writeErrors);
  const writesPending = perTask.filter((t) => typeof (t.m as Record<string, unknown>).writesPending === 'number').map((t) => ({ labels: { task: t.task }, value: (t.m as Record<string, number>).writesPending }));
  if (writesPending.length) w.gauge('er_session_writes_pending', 'read-through writes waiting to go to the store', writesPending);
  const queued = perTask.filter((t) => typeof t.m.queued === 'number').map((t) => ({ labels: { task: t.task }, value: t.m.queued as number }));
  if (queued.length) w.gauge('er_session_queued_inputs', 'inputs waiting in the queue now (--max-queue bounds it)', queued);
}

function isHist(h: unknown): h is Hist {
  const x = h as Hist;
  return !!x && Array.isArray(x.bounds) && Array.isArray(x.counts) && typeof x.sum === 'number' && typeof x.count === 'number';
}
