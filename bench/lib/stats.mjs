// Small statistics and formatting helpers.

export function median(xs) {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
}

export function summarize(ms) {
  return {
    ms,
    medianMs: median(ms),
    minMs: ms.length ? Math.min(...ms) : NaN,
    maxMs: ms.length ? Math.max(...ms) : NaN,
  };
}

/** Milliseconds with three significant-ish digits: 4712, 371.2, 12.34, 0.812. */
export function fmtMs(x) {
  if (x === undefined || x === null || !Number.isFinite(x)) return 'n/a';
  if (x >= 1000) return x.toFixed(0);
  if (x >= 100) return x.toFixed(1);
  if (x >= 1) return x.toFixed(2);
  return x.toFixed(3);
}

export function fmtRatio(x) {
  return Number.isFinite(x) ? `${x.toFixed(2)}x` : 'n/a';
}

export function fmtPct(x) {
  return Number.isFinite(x) ? `${(100 * x).toFixed(0)}%` : 'n/a';
}

export function fmtNum(x, digits = 0) {
  return Number.isFinite(x) ? x.toFixed(digits) : 'n/a';
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
