/**
 * An SVG chart of monthly cost against reprocessing frequency, written without
 * dependencies: "recompute every time" (a line through the origin,
 * cost = r x compute per pass) against "store + recycle" (storage every month plus
 * r x the cheaper recycled pass), on log-log axes, with each break-even point
 * (where the two cross) marked and labelled. Several panels (one per model / dtype)
 * share the x axis range.
 */
import { sig } from './format';

/** One strategy: cost per month = fixedUsdPerMonth + reprocessPerMonth x usdPerReprocess. */
export interface ChartLine {
  label: string;
  color: string;
  /** SVG stroke-dasharray, e.g. '6 4' */
  dash?: string;
  fixedUsdPerMonth: number;
  usdPerReprocess: number;
}

export interface ChartPanel {
  title: string;
  subtitle?: string;
  /** "recompute every time": fixedUsdPerMonth 0 */
  recompute: ChartLine;
  /** "store + recycle", one per storage price */
  recycle: ChartLine[];
}

export interface ChartOptions {
  title: string;
  /** what the money is for, e.g. 'per 1,000,000 sequences' (printed under the title) */
  yLabel: string;
  /** a line of small print under the title */
  note?: string;
  /** panels per row (default: 1 for one panel, else 2) */
  columns?: number;
}

/** Reprocessings per month where `recycle` becomes cheaper than `recompute`; null if it never does. */
export function breakEvenRate(recompute: ChartLine, recycle: ChartLine): number | null {
  const savedPerPass = recompute.usdPerReprocess - recycle.usdPerReprocess;
  const extraFixed = recycle.fixedUsdPerMonth - recompute.fixedUsdPerMonth;
  if (!(savedPerPass > 0)) return null;
  return Math.max(0, extraFixed) / savedPerPass;
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function tickLabel(e: number): string {
  const v = 10 ** e;
  if (e < -4 || e > 6) return `1e${e}`;
  return sig(v, 1);
}

function money(e: number): string {
  const v = 10 ** e;
  if (e < -4 || e > 6) return `$1e${e}`;
  return `$${sig(v, 1)}`;
}

const cost = (l: ChartLine, r: number): number => l.fixedUsdPerMonth + r * l.usdPerReprocess;

/** Renders the panels into a standalone SVG document. */
export function renderChart(panels: ChartPanel[], opts: ChartOptions): string {
  if (panels.length === 0) throw new Error('the chart needs at least one panel');
  const cols = opts.columns ?? (panels.length === 1 ? 1 : 2);
  const rows = Math.ceil(panels.length / cols);
  const pw = panels.length === 1 ? 760 : 520;
  const ph = panels.length === 1 ? 460 : 340;
  const note = [`USD per month ${opts.yLabel}`, opts.note].filter(Boolean).join('; ');
  const headerH = 62;
  const width = cols * pw;
  const height = headerH + rows * ph;
  const m = { left: 78, right: 18, top: 46, bottom: 52 };

  // shared x range: two decades around every break-even point
  const rates = panels.flatMap((p) => p.recycle.map((l) => breakEvenRate(p.recompute, l))).filter((r): r is number => r !== null && r > 0);
  let xlo = rates.length ? Math.floor(Math.log10(Math.min(...rates))) - 1 : -2;
  let xhi = rates.length ? Math.ceil(Math.log10(Math.max(...rates))) + 1 : 2;
  if (xhi - xlo < 3) { xlo -= 1; xhi += 1; }

  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif">`);
  out.push(`<rect width="${width}" height="${height}" fill="white"/>`);
  out.push(`<text x="${width / 2}" y="26" text-anchor="middle" font-size="17" font-weight="bold">${esc(opts.title)}</text>`);
  out.push(`<text x="${width / 2}" y="48" text-anchor="middle" font-size="12" fill="#444">${esc(note)}</text>`);

  panels.forEach((p, idx) => {
    const ox = (idx % cols) * pw;
    const oy = headerH + Math.floor(idx / cols) * ph;
    const x0 = ox + m.left, x1 = ox + pw - m.right, y0 = oy + ph - m.bottom, y1 = oy + m.top;
    const lines = [p.recompute, ...p.recycle];
    const vals: number[] = [];
    for (const l of lines) for (const e of [xlo, xhi]) { const v = cost(l, 10 ** e); if (v > 0) vals.push(v); }
    let ylo = Math.floor(Math.log10(Math.min(...vals)));
    let yhi = Math.ceil(Math.log10(Math.max(...vals)));
    if (yhi <= ylo) yhi = ylo + 1;
    // cap the y span so the interesting region stays readable, and leave a decade on top for the legend
    if (yhi - ylo > 9) ylo = yhi - 9;
    yhi += 1;
    const X = (r: number): number => x0 + ((Math.log10(r) - xlo) / (xhi - xlo)) * (x1 - x0);
    const Y = (v: number): number => {
      const lv = Math.log10(Math.max(v, 10 ** (ylo - 1)));
      return y0 - ((lv - ylo) / (yhi - ylo)) * (y0 - y1);
    };
    out.push(`<g>`);
    out.push(`<text x="${ox + pw / 2}" y="${oy + 18}" text-anchor="middle" font-size="14" font-weight="bold">${esc(p.title)}</text>`);
    if (p.subtitle) out.push(`<text x="${ox + pw / 2}" y="${oy + 34}" text-anchor="middle" font-size="11" fill="#444">${esc(p.subtitle)}</text>`);
    out.push(`<defs><clipPath id="clip${idx}"><rect x="${x0}" y="${y1}" width="${x1 - x0}" height="${y0 - y1}"/></clipPath></defs>`);
    // grid and ticks
    for (let e = xlo; e <= xhi; e++) {
      const x = X(10 ** e);
      out.push(`<line x1="${x.toFixed(1)}" y1="${y1}" x2="${x.toFixed(1)}" y2="${y0}" stroke="#e4e4e4"/>`);
      out.push(`<text x="${x.toFixed(1)}" y="${y0 + 16}" text-anchor="middle" font-size="11">${esc(tickLabel(e))}</text>`);
    }
    for (let e = ylo; e <= yhi; e++) {
      const y = Y(10 ** e);
      out.push(`<line x1="${x0}" y1="${y.toFixed(1)}" x2="${x1}" y2="${y.toFixed(1)}" stroke="#e4e4e4"/>`);
      out.push(`<text x="${x0 - 6}" y="${(y + 4).toFixed(1)}" text-anchor="end" font-size="11">${esc(money(e))}</text>`);
    }
    out.push(`<rect x="${x0}" y="${y1}" width="${x1 - x0}" height="${y0 - y1}" fill="none" stroke="#333"/>`);
    out.push(`<text x="${(x0 + x1) / 2}" y="${y0 + 36}" text-anchor="middle" font-size="12">reprocessings of the corpus per month (log scale)</text>`);
    const ym = (y0 + y1) / 2;
    out.push(`<text x="${ox + 16}" y="${ym}" text-anchor="middle" font-size="12" transform="rotate(-90 ${ox + 16} ${ym})">USD per month (log scale)</text>`);
    // the lines
    const steps = 120;
    for (const l of lines) {
      const pts: string[] = [];
      for (let s = 0; s <= steps; s++) {
        const r = 10 ** (xlo + ((xhi - xlo) * s) / steps);
        pts.push(`${X(r).toFixed(1)},${Y(cost(l, r)).toFixed(1)}`);
      }
      out.push(`<polyline clip-path="url(#clip${idx})" fill="none" stroke="${l.color}" stroke-width="2.2"${l.dash ? ` stroke-dasharray="${l.dash}"` : ''} points="${pts.join(' ')}"/>`);
    }
    // legend: the strategies, with each break-even spelled out
    const legend = lines.map((l) => {
      if (l === p.recompute) return l.label;
      const r = breakEvenRate(p.recompute, l);
      return r === null || r <= 0
        ? `${l.label}: never pays (recycling is not faster)`
        : `${l.label} (break-even ${sig(r, 3)}/month)`;
    });
    lines.forEach((l, i) => {
      const ly = y1 + 16 + i * 16;
      out.push(`<line x1="${x0 + 10}" y1="${ly - 4}" x2="${x0 + 34}" y2="${ly - 4}" stroke="${l.color}" stroke-width="2.2"${l.dash ? ` stroke-dasharray="${l.dash}"` : ''}/>`);
      out.push(`<text x="${x0 + 40}" y="${ly}" font-size="11" fill="white" stroke="white" stroke-width="4">${esc(legend[i])}</text>`);
      out.push(`<text x="${x0 + 40}" y="${ly}" font-size="11">${esc(legend[i])}</text>`);
    });
    // break-even points, with a short label: above-left of the point where it fits
    // (there the recycle line lies above the recompute line), else below-right
    for (const l of p.recycle) {
      const r = breakEvenRate(p.recompute, l);
      if (r === null || r <= 0) continue;
      const x = X(r), y = Y(cost(l, r));
      out.push(`<line x1="${x.toFixed(1)}" y1="${y.toFixed(1)}" x2="${x.toFixed(1)}" y2="${y0}" stroke="${l.color}" stroke-dasharray="2 3"/>`);
      out.push(`<circle cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" r="5" fill="white" stroke="${l.color}" stroke-width="2"/>`);
      const label = `break-even: every ${sig(1 / r, 3)} mo`;
      const width = label.length * 6.2;
      const right = x - 8 - width < x0;
      const attrs = `x="${(right ? x + 8 : x - 8).toFixed(1)}" y="${(right ? y + 20 : y - 12).toFixed(1)}" text-anchor="${right ? 'start' : 'end'}" font-size="11"`;
      out.push(`<text ${attrs} fill="white" stroke="white" stroke-width="4">${esc(label)}</text>`);
      out.push(`<text ${attrs} fill="${l.color}">${esc(label)}</text>`);
    }
    out.push(`</g>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
