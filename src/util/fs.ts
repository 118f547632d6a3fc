/**
 * File-system helpers the store and the CLI share.
 * @internal
 */
import * as fs from 'fs';
import * as path from 'path';

/**
 * `mkdir -p` that always ends: each missing directory from the deepest existing
 * ancestor down is made with a plain mkdir, and the first failure is thrown, naming the
 * path. (Node's `mkdirSync(dir, { recursive: true })` spins forever where a parent
 * exists but cannot hold children, as under /proc, which answer ENOENT.)
 */
export function makeDir(dir: string): void {
  const abs = path.resolve(dir);
  const missing: string[] = [];
  let p = abs;
  for (;;) {
    let st: fs.Stats | undefined;
    try {
      st = fs.statSync(p);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' && (err as NodeJS.ErrnoException).code !== 'ENOTDIR') throw err;
    }
    if (st) {
      if (!st.isDirectory()) throw new Error(`${p}: not a directory (cannot create ${abs} under it)`);
      break;
    }
    missing.push(p);
    const up = path.dirname(p);
    if (up === p) break;
    p = up;
  }
  for (const d of missing.reverse()) {
    try {
      fs.mkdirSync(d);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST' && fs.statSync(d).isDirectory()) continue;
      throw new Error(`cannot create the directory ${d}: ${(err as Error).message}`);
    }
  }
}

/** fsync of a file or directory by path (a directory: its entries, after a rename or create). */
export function fsyncPath(p: string): void {
  const fd = fs.openSync(p, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
