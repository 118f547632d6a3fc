import * as fs from 'fs';
import * as path from 'path';
import { readSafetensors, LoadedTensor } from '../../src/model/safetensors';

export const ROOT = path.resolve(__dirname, '..', '..');
export const FIXTURES = path.join(ROOT, 'test', 'fixtures');
export const MINILM_DIR = path.join(ROOT, 'models', 'all-MiniLM-L6-v2');

/** The real model must be there in CI (.ci/run fetches it); locally a missing model fails with the fix. */
export function requireMiniLM(): string {
  if (!fs.existsSync(path.join(MINILM_DIR, 'model.safetensors'))) {
    throw new Error(`${MINILM_DIR} is missing; run \`npm run fetch-model\` first`);
  }
  return MINILM_DIR;
}

export function loadTensors(file: string): Map<string, LoadedTensor> {
  return readSafetensors(file);
}

export function int32(t: Map<string, LoadedTensor>, name: string): Int32Array {
  const v = t.get(name);
  if (!v || !(v.data instanceof Int32Array)) throw new Error(`fixture tensor ${name} missing or not int32`);
  return v.data;
}

export function f32(t: Map<string, LoadedTensor>, name: string): Float32Array {
  const v = t.get(name);
  if (!v || !(v.data instanceof Float32Array)) throw new Error(`fixture tensor ${name} missing or not float32`);
  return v.data;
}

/** Max |a - b| over the positions whose mask is 1; arrays are [B*T*H], mask [B*T]. */
export function maxAbsDiffMasked(a: Float32Array, b: Float32Array, mask: Int32Array, H: number): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let m = 0;
  for (let p = 0; p < mask.length; p++) {
    if (!mask[p]) continue;
    for (let j = 0; j < H; j++) {
      const d = Math.abs(a[p * H + j] - b[p * H + j]);
      if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
    }
  }
  return m;
}

/** Copies a fixture model directory into a fresh temp dir, for tests that break it. */
export function copyModel(name: string, tmp: string): string {
  const src = path.join(FIXTURES, name);
  const dst = path.join(tmp, name);
  fs.mkdirSync(dst, { recursive: true });
  for (const f of ['config.json', 'model.safetensors', 'tokenizer.json']) fs.copyFileSync(path.join(src, f), path.join(dst, f));
  return dst;
}
