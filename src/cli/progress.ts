/**
 * Progress for long CLI jobs: a redrawn status line on a terminal, plain lines
 * (at most one every few seconds) otherwise. Written to stderr.
 */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return '?';
  const s = Math.round(ms / 1000);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(r).padStart(2, '0')}s` : `${r}s`;
}

export class Progress {
  private lastPlain = 0;
  private readonly tty: boolean;
  constructor(private readonly stream: NodeJS.WriteStream = process.stderr, private readonly plainEveryMs = 5000) {
    this.tty = Boolean(stream.isTTY);
  }

  /** Shows a status; `done`/`total` drive the bar when total is known. */
  update(done: number, total: number | undefined, text: string, force = false): void {
    if (this.tty) {
      const width = 24;
      const frac = total ? Math.min(1, done / total) : 0;
      const bar = total ? `[${'#'.repeat(Math.round(frac * width)).padEnd(width, '.')}] ${(frac * 100).toFixed(0).padStart(3)}% ` : '';
      const line = `${bar}${text}`;
      const cols = this.stream.columns || 120;
      this.stream.write(`\r${line.slice(0, cols - 1).padEnd(Math.min(cols - 1, line.length + 2))}`);
      return;
    }
    const now = Date.now();
    if (force || now - this.lastPlain >= this.plainEveryMs) {
      this.lastPlain = now;
      this.stream.write(`${total ? `${done}/${total} ` : ''}${text}\n`);
    }
  }

  /** Ends the status line. */
  finish(): void {
    if (this.tty) this.stream.write('\n');
  }
}
