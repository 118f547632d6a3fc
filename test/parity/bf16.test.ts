// The bf16 compute option against the fp32 path. Every linear layer runs in bf16,
// so the error grows with the size of the activations: on the real MiniLM it stays
// within 2e-2 absolute; on the tiny random fixtures (activations up to ~5) it is
// bounded relative to the largest hidden value.
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { cpuInfo } from '../../src/native/info';
import { Encoder } from '../../src/model/encoder';
import { FIXTURES, maxAbsDiffMasked, requireMiniLM } from '../helpers/fixtures';

/** The CPU has native bf16 dot products (AVX512-BF16 or AMX) and oneDNN is not capped below them. */
function nativeBf16(): boolean {
  let flags = '';
  try {
    flags = fs.readFileSync('/proc/cpuinfo', 'utf8').match(/^flags\s*:(.*)$/m)?.[1] ?? '';
  } catch {
    return false;
  }
  const has = / (avx512_bf16|amx_bf16)( |$)/.test(flags);
  const cap = process.env.ONEDNN_MAX_CPU_ISA ?? process.env.DNNL_MAX_CPU_ISA;
  return has && (!cap || /BF16|AMX|ALL/i.test(cap));
}

/** oneDNN's implementation string: "<kind>:<isa>" (e.g. "brg:avx512_core_bf16", "gemm:jit"), or "unavailable: <why>". */
const IMPL = /^[a-z_]+:[a-z0-9_:]+$/;

describe('bf16 compute precision', () => {
  it('reports which oneDNN implementation runs the bf16 matmuls', () => {
    const impl = cpuInfo().bf16Matmul;
    console.log(`bf16 matmul: ${impl} (CPU with native bf16: ${nativeBf16()})`);
    if (nativeBf16()) {
      // a real bf16 kernel, not "unavailable", the reference or an emulation
      expect(impl).toMatch(IMPL);
      expect(impl).toMatch(/^(brg|brdgmm|jit|gemm)[a-z_]*:\S*(bf16|amx)/);
    } else {
      expect(impl).toMatch(new RegExp(`${IMPL.source}|^unavailable: \\S`));
    }
  });

  for (const name of ['tiny-bert', 'tiny-roberta', 'tiny-distilbert', 'tiny-deberta-v2', 'tiny-deberta-v2-b', 'minilm']) {
    it(`${name}: every layer close to fp32, and recycling is still exact`, async () => {
      const dir = name === 'minilm' ? requireMiniLM() : path.join(FIXTURES, name);
      const f32 = await Encoder.load(dir);
      const b16 = await Encoder.load(dir, { precision: 'bf16' });
      expect(b16.precision).toBe('bf16');
      // bf16 is claimed: oneDNN must have a bf16 matmul to run it with
      expect(cpuInfo().bf16Matmul).toMatch(IMPL);
      // packing made a bf16 copy (2 bytes a value) of every linear layer's weight:
      // Q, K, V and the attention output (4 x H x H) and the FFN (2 x H x I), every layer
      const { hidden: H, intermediate: I, layers } = f32.shape;
      const bf16Copies = 2 * layers * (4 * H * H + 2 * H * I);
      expect(b16.memory().packedBytes - f32.memory().packedBytes).toBeGreaterThanOrEqual(bf16Copies);
      const batch = await f32.tokenize([
        'The enzyme binds the inhibitor in liver cells.',
        'Patients with chronic kidney disease received a lower dose.',
        'Short.',
      ]);
      const errs: number[] = [];
      const rel: number[] = [];
      for (let l = 0; l <= f32.numLayers; l++) {
        const a = await f32.forward(batch, { toLayer: l });
        const b = await b16.forward(batch, { toLayer: l });
        const e = maxAbsDiffMasked(a.data, b.data, batch.attentionMask, f32.hidden);
        const scale = maxAbsDiffMasked(a.data, new Float32Array(a.data.length), batch.attentionMask, f32.hidden);
        errs.push(e);
        rel.push(e / scale);
      }
      console.log(`${name} bf16 vs fp32 per layer: max abs error ${errs.map((e) => e.toExponential(2)).join(', ')}; relative to the largest value ${rel.map((e) => e.toExponential(2)).join(', ')}`);
      for (const r of rel) expect(r).toBeLessThan(1e-2);
      if (name === 'minilm') for (const e of errs) expect(e).toBeLessThan(2e-2);
      expect(Math.max(...errs)).toBeGreaterThan(0); // it really ran in bf16
      const k = Math.floor(f32.numLayers / 2);
      const full = await b16.forward(batch);
      const top = await b16.forwardFrom(await b16.forward(batch, { toLayer: k }), batch.attentionMask, { fromLayer: k });
      expect(Buffer.from(top.data.buffer).equals(Buffer.from(full.data.buffer))).toBe(true);
      f32.close();
      b16.close();
    });
  }

  it('rejects an unknown precision', async () => {
    await expect(Encoder.load(path.join(FIXTURES, 'tiny-bert'), { precision: 'fp8' as 'fp32' })).rejects.toThrow(/precision must be 'fp32', 'bf16' or 'fp16' \(GPU only\), got fp8/);
  });
});
