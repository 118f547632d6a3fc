// The GPU backend's own host code (its encoder, trainer and C table: model/cuda_backend.cpp,
// cuda_encoder.cpp, cuda_trainer.cpp) on an emulated GPU: build/er_emulated_cuda_backend.so
// compiles it against a stand-in CUDA runtime whose kernels and GEMMs are the CPU engine's
// (native/tests/cuda_emulation/). Every layout, stride, buffer, copy and call order of the GPU
// path then runs here, against the CPU engine on the same weights; only the CUDA kernels
// themselves are left to bench/gpu/check.sh on a GPU (each against these same CPU kernels).
// Each scenario runs in a child process (the backend is opened once per process).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { FIXTURES, ROOT } from '../helpers/fixtures';

const EMULATED = path.join(ROOT, 'build', 'er_emulated_cuda_backend.so');

function child(kase: string, env: Record<string, string> = {}): any {
  expect(fs.existsSync(EMULATED), `${EMULATED} is built by npm run build:native`).toBe(true);
  const r = spawnSync(process.execPath, [path.join(ROOT, 'test', 'helpers', 'cuda-emulated-child.js'), kase, FIXTURES], {
    encoding: 'utf8', timeout: 120_000, env: { ...process.env, ER_CUDA_BACKEND: EMULATED, ...env },
  });
  expect({ signal: r.signal, status: r.status }, r.stderr).toEqual({ signal: null, status: 0 });
  const out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}');
  expect(out.crashed, out.crashed).toBeUndefined();
  return out;
}

const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(a), Math.abs(b), 1e-12);

describe('the GPU backend on an emulated GPU, against the CPU engine', () => {
  it('encodes as the CPU does: every layer, from a layer, and an inference task model', () => {
    const r = child('encoder');
    expect(r.layers).toHaveLength(15);
    for (const l of r.layers) expect(l.diff, `${l.name} layer ${l.layer}`).toBeLessThan(1e-5);
    expect(r.tasks).toHaveLength(6);
    for (const t of r.tasks) {
      expect(t.device).toBe('cuda');
      expect(t.diff, `${t.name} ${t.mode}`).toBeLessThan(1e-5);
    }
  });

  it('a training step gives the CPU trainer\'s loss and gradients in every mode and head (BERT, MPNet)', () => {
    const r = child('gradients');
    expect(r).toHaveLength(2 * 5 * 3);
    for (const g of r) {
      const what = `${g.name} ${g.mode} ${g.kind}`;
      expect(g.device, what).toBe('cuda');
      expect(rel(g.loss[0], g.loss[1]), `${what} loss`).toBeLessThan(1e-6);
      // per tensor, over its largest gradient (floored at 1e-3 of the model's: a key bias's
      // gradient is zero but for rounding)
      expect(g.worst, `${what}: ${g.worstName}`).toBeLessThan(1e-4);
      if (g.fromIds !== null) expect(g.fromIds, `${what} from token ids`).toBeLessThan(1e-4);
    }
  });

  it('bf16 mixed precision gives the CPU trainer\'s bf16 loss and gradients, and follows it for 4 AdamW steps', () => {
    const r = child('bf16');
    expect(r).toHaveLength(2 * 5);
    for (const g of r) {
      const what = `${g.name} ${g.mode}`;
      expect(rel(g.loss[0], g.loss[1]), `${what} loss`).toBeLessThan(1e-4);
      expect(g.worst, `${what}: ${g.worstName}`).toBeLessThan(2e-2);
      // and bf16 is in use: its gradients are not fp32's
      expect(g.vs32, `${what}: bf16 against fp32 gradients`).toBeGreaterThan(1e-5);
      for (const [a, b] of g.steps) expect(rel(a, b), `${what} step loss`).toBeLessThan(1e-3);
    }
  });

  it('AdamW steps follow the CPU, with hidden and head dropout too (the same masks); attention dropout draws its own', () => {
    const r = child('steps');
    for (const s of r) {
      expect(s.steps).toBe(4);
      const lossGap = Math.max(...s.losses.map((l: number[]) => rel(l[0], l[1])));
      const normGap = Math.max(...s.losses.map((l: number[]) => rel(l[2], l[3])));
      if (s.what === 'attention') {
        expect(lossGap, `${s.mode}: attention dropout draws other masks on the GPU`).toBeGreaterThan(1e-4);
      } else {
        expect(lossGap, `${s.what} ${s.mode} loss`).toBeLessThan(1e-5);
        expect(normGap, `${s.what} ${s.mode} gradient norm`).toBeLessThan(1e-4);
      }
    }
  });

  it('trainTask on the GPU trains and saves what the CPU does; an InferenceSession there predicts the same', () => {
    const r = child('fit');
    for (const mode of ['reduced', 'full-adapters']) {
      const m = r[mode];
      expect(m.gpu).toHaveLength(2);
      m.cpu.forEach((e: number[], i: number) => {
        expect(rel(e[0], m.gpu[i][0]), `${mode} epoch ${i + 1} train loss`).toBeLessThan(1e-5);
        expect(rel(e[1], m.gpu[i][1]), `${mode} epoch ${i + 1} dev loss`).toBeLessThan(1e-5);
      });
      expect(m.sessionDevice).toBe('cuda');
      m.probs[0].forEach((p: Record<string, number>, i: number) => {
        for (const l of ['neg', 'pos']) expect(Math.abs(p[l] - m.probs[1][i][l])).toBeLessThan(1e-5);
      });
    }
  });

  it('takes an fp16 store\'s records as they are (cast on the GPU): the CPU\'s gradients and logits on the same records decoded', () => {
    const r = child('fp16');
    expect(r.rows).toBe(3);
    expect(r.modes).toHaveLength(2);
    for (const m of r.modes) {
      expect(rel(m.loss[0], m.loss[1]), `${m.mode} loss`).toBeLessThan(1e-6);
      expect(m.worst, `${m.mode} gradients`).toBeLessThan(1e-4);
      expect(m.logits, `${m.mode} inference logits`).toBeLessThan(1e-5);
    }
    expect(r.cpuRefused.error).toMatch(/fp16 activations \(hidden16\) are for a model on device 'cuda'; on the CPU give \{ hidden \}/);
  });

  it('running out of GPU memory is an error that says what to do; the process carries on', () => {
    const r = child('oom', { ER_EMULATED_MAX_BYTES: '20000' });
    expect(r.step.error).toMatch(/out of GPU memory allocating \d+ KiB for the trainable tensors; use a smaller batch .*train fewer layers.* or --device cpu/);
    expect(r.encoder.error).toMatch(/out of GPU memory allocating \d+ KiB for the word embeddings; .*--device cpu/);
    expect(r.after).toEqual([2, expect.any(Number), 32]);
  });
});
