/**
 * Minimal codecs of cached activations (fp32, fp16, int8 with per-token scales),
 * used by the cost model to time decoding a cache. Not the store's codec.
 */
import { Dtype, DTYPES } from './model';

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** float32 -> IEEE half bits (round half away from zero on the mantissa; overflow to infinity). */
export function floatToHalf(x: number): number {
  f32Scratch[0] = x;
  const b = u32Scratch[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // inf / nan
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant = (mant | 0x800000) >>> (1 - e);
    if (mant & 0x1000) mant += 0x2000;
    return sign | (mant >>> 13);
  }
  if (mant & 0x1000) {
    mant += 0x2000;
    if (mant & 0x800000) {
      mant = 0;
      e++;
      if (e >= 31) return sign | 0x7c00;
    }
  }
  return sign | (e << 10) | (mant >>> 13);
}

/** IEEE half bits -> number. */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 31) return m ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

let halfTable: Float32Array | undefined;
/** All 65536 half values as float32, built once. */
function halfLut(): Float32Array {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) halfTable[h] = halfToFloat(h);
  }
  return halfTable;
}

/** Activations encoded as a cache would store them. */
export type EncodedCache =
  | { dtype: 'fp32'; values: Float32Array }
  | { dtype: 'fp16'; values: Uint16Array }
  | { dtype: 'int8'; values: Int8Array; scales: Float32Array; hidden: number };

/** Encodes [tokens, hidden] activations into a dtype (not timed: the cache is written once). */
export function encodeCache(data: Float32Array, hidden: number, dtype: Dtype): EncodedCache {
  if (dtype === 'fp32') return { dtype, values: Float32Array.from(data) };
  if (dtype === 'fp16') {
    const values = new Uint16Array(data.length);
    for (let i = 0; i < data.length; i++) values[i] = floatToHalf(data[i]);
    return { dtype, values };
  }
  if (dtype === 'int8') {
    const tokens = data.length / hidden;
    const values = new Int8Array(data.length);
    const scales = new Float32Array(tokens);
    for (let t = 0; t < tokens; t++) {
      let max = 0;
      for (let j = 0; j < hidden; j++) max = Math.max(max, Math.abs(data[t * hidden + j]));
      const scale = max > 0 ? max / 127 : 1;
      scales[t] = scale;
      for (let j = 0; j < hidden; j++) values[t * hidden + j] = Math.round(data[t * hidden + j] / scale);
    }
    return { dtype, values, scales, hidden };
  }
  throw new Error(`unknown dtype ${JSON.stringify(dtype)}; expected one of ${DTYPES.join(', ')}`);
}

/** Decodes a cache into float32 `out` (what the recycled path does before layer k+1). */
export function decodeCache(c: EncodedCache, out: Float32Array): void {
  if (c.dtype === 'fp32') {
    out.set(c.values);
  } else if (c.dtype === 'fp16') {
    const lut = halfLut();
    const v = c.values;
    for (let i = 0; i < v.length; i++) out[i] = lut[v[i]];
  } else {
    const { values, scales, hidden } = c;
    for (let t = 0; t < scales.length; t++) {
      const s = scales[t];
      const o = t * hidden;
      for (let j = 0; j < hidden; j++) out[o + j] = values[o + j] * s;
    }
  }
}
