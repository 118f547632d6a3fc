// Page-cache control for the store benchmark: evict files (posix_fadvise DONTNEED, through
// bench/peers/pagecache.py) and tell how much of them is resident (mincore), and warm them up.
import { closeSync, openSync, readSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runPythonJson } from './python.mjs';

const SCRIPT = join(dirname(fileURLToPath(import.meta.url)), '..', 'peers', 'pagecache.py');

/**
 * Drops the files' pages from the page cache. Resolves to { files: [{ file, bytes, residentBefore,
 * residentAfter }], residentAfter } where the last is the byte-weighted share still resident (0..1;
 * null when mincore could not tell).
 */
export async function evict(files) {
  const r = await runPythonJson(SCRIPT, ['evict', ...files], { threads: 1, timeoutMs: 120_000 });
  return { ...r, residentAfter: weighted(r.files, 'residentAfter'), residentBefore: weighted(r.files, 'residentBefore') };
}

/** The byte-weighted share (0..1) of the files resident in the page cache. */
export async function resident(files) {
  const r = await runPythonJson(SCRIPT, ['resident', ...files], { threads: 1, timeoutMs: 120_000 });
  return weighted(r.files, 'residentBefore');
}

function weighted(files, field) {
  let num = 0;
  let den = 0;
  for (const f of files) {
    if (f[field] === null || f[field] === undefined) return null;
    num += f[field] * f.bytes;
    den += f.bytes;
  }
  return den ? num / den : 1;
}

/** Reads the files once (4 MiB chunks) so their pages are cached. */
export function warm(files) {
  const buf = Buffer.allocUnsafe(4 << 20);
  for (const f of files) {
    const fd = openSync(f, 'r');
    try {
      while (readSync(fd, buf, 0, buf.length, null) > 0);
    } finally {
      closeSync(fd);
    }
  }
}
