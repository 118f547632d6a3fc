/**
 * Number formatting for the cost model's human output.
 */
import { units, UnitSystem } from './model';

/** An integer with thousands separators: 786496 -> "786,496". */
export function int(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/**
 * A number to `digits` significant digits, trailing zeros dropped: 0.0100 -> "0.01",
 * 1234.5 -> "1,235"; exponent notation below 1e-4 and from 1e15: "7.32e-6".
 */
export function sig(x: number, digits = 3): string {
  if (!Number.isFinite(x)) return String(x);
  if (x === 0) return '0';
  const a = Math.abs(x);
  if (a >= 1e-4 && a < 1e15) {
    const decimals = Math.max(0, digits - 1 - Math.floor(Math.log10(a)));
    const v = Number(x.toFixed(Math.min(decimals, 20)));
    return v.toLocaleString('en-US', { maximumFractionDigits: decimals, useGrouping: a >= 1000 });
  }
  return x.toExponential(digits - 1).replace(/\.?0+e/, 'e').replace('e+', 'e');
}

/** US dollars: cents for amounts of a dollar and more, 3 significant digits below. */
export function usd(x: number): string {
  const neg = x < 0;
  const a = Math.abs(x);
  const s = a >= 1 ? a.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 }) : sig(a, 3);
  return `${neg ? '-' : ''}$${s}`;
}

/** A price as given, up to 6 significant digits: $1.4175, $0.01, $0.000229. */
export function price(x: number): string {
  return `$${sig(x, x >= 1 ? 6 : 3)}`;
}

/** Milliseconds with one decimal (or 3 significant digits below 1 ms). */
export function ms(x: number): string {
  return Math.abs(x) >= 1 ? `${x.toFixed(1)} ms` : `${sig(x, 3)} ms`;
}

/** Bytes in the unit system's largest fitting unit: "768.06 KiB", "1.50 TB". */
export function bytes(n: number, system: UnitSystem): string {
  const base = system === 'binary' ? 1024 : 1000;
  const names = system === 'binary' ? ['bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'] : ['bytes', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB'];
  let i = 0;
  let v = n;
  while (Math.abs(v) >= base && i < names.length - 1) {
    v /= base;
    i++;
  }
  return i === 0 ? `${int(n)} bytes` : `${v.toFixed(2)} ${names[i]}`;
}

/** A price in USD per unit-month, e.g. "$0.01 per GiB-month". */
export function pricePerUnit(usdPerUnitMonth: number, system: UnitSystem): string {
  return `${price(usdPerUnitMonth)} per ${units(system).unit}-month`;
}

const DAYS_PER_MONTH = 365.25 / 12;

/** A duration in months, with a plainer gloss: "0.128 months (3.9 days)", "27.4 months (2.3 years)". */
export function months(m: number): string {
  const base = `${sig(m, 3)} month${m === 1 ? '' : 's'}`;
  const days = m * DAYS_PER_MONTH;
  if (days < 1) return `${base} (${sig(days * 24, 2)} hours)`;
  if (m < 1) return `${base} (${sig(days, 2)} days)`;
  if (m >= 24) return `${base} (${sig(m / 12, 2)} years)`;
  return base;
}

/** Percent change: 0.886 -> "+88.6%". */
export function pct(x: number): string {
  return `${x >= 0 ? '+' : ''}${(x * 100).toFixed(1)}%`;
}

/**
 * Pads cells into aligned columns: `align` is the number of left-aligned leading
 * columns (the rest right-aligned), or one 'l' / 'r' per column.
 */
export function table(rows: string[][], align: number | readonly ('l' | 'r')[] = 1): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  const left = (c: number): boolean => (typeof align === 'number' ? c < align : align[c] !== 'r');
  return rows
    .map((r) => r.map((cell, c) => (left(c) ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  ').trimEnd())
    .join('\n');
}
