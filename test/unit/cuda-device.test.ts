// device 'cuda' | 'auto': the addon opens the GPU backend (embedding_recycler_cuda.so) with
// dlopen on first use, never links it. On a machine without a GPU the addon's whole GPU path
// is driven through a stand-in backend (build/er_fake_cuda_backend.so, which fills outputs
// with values made from its inputs), each scenario in a child process because the backend is
// opened once per process. With a GPU, the real backend's outputs are checked against the
// CPU encoder on the same weights.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { Encoder } from '../../src/model/encoder';
import { native } from '../../src/native/binding';
import { FIXTURES, ROOT } from '../helpers/fixtures';

const FAKE = path.join(ROOT, 'build', 'er_fake_cuda_backend.so');
const REAL = path.join(ROOT, 'build', 'Release', 'embedding_recycler_cuda.so');

function child(kase: string, env: Record<string, string>): any {
  const r = spawnSync(process.execPath, [path.join(ROOT, 'test', 'helpers', 'cuda-child.js'), kase, FIXTURES], {
    encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...env },
  });
  expect({ signal: r.signal, status: r.status }, r.stderr).toEqual({ signal: null, status: 0 });
  const out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}');
  expect(out.crashed, out.crashed).toBeUndefined();
  return out;
}

describe('the GPU path through the addon, on a stand-in backend', () => {
  it('passes the batch through, zeroes padding, reports errors and memory, and refuses what it cannot run', () => {
    expect(fs.existsSync(FAKE), `${FAKE} is built by npm run build:native`).toBe(true);
    const r = child('plumbing', { ER_CUDA_BACKEND: FAKE });
    expect(r.info).toMatchObject({ backend: FAKE, loaded: true, available: true, runtime: '13.0-fake' });
    expect(r.info.devices).toHaveLength(2);
    expect(r.device).toBe('cuda');
    expect(r.memory).toMatchObject({ gpu: 1, deviceBufferBytes: 4096 });
    expect(r.memory.deviceWeightBytes).toBeGreaterThan(0);
    // ids, positions and token types reached the backend; the padding came back as zeros
    expect(r.forward.typesUsed).toBe(true);
    expect(r.forward.pads).toBeGreaterThan(0);
    expect(r.forward).toMatchObject({ wrong: 0, padZero: r.forward.pads });
    expect(r.forwardFrom.fromWrong).toBe(0);
    expect(r.kernelError.error).toMatch(/forward failed: fake backend: a kernel failed \(cudaErrorLaunchFailure\)/);
    expect(r.taskModel.error).toMatch(/device 'cuda'.*task models .* run on the CPU so far; load the encoder with device 'cpu'/);
    expect(r.nativeTaskModel.error).toMatch(/loaded with device 'cuda'.*load the encoder with device 'cpu'/);
    expect(r.noSuchGpu.error).toMatch(/GPU 2 does not exist: this machine has 2/);
    expect(r.mpnetDevice).toBe('cuda');
    expect(r.deberta.error).toMatch(/device 'cuda': the GPU encoder does not run deberta-v2's disentangled attention yet.*use device 'cpu'/);
    expect(r.debertaAuto.device).toBe('cpu');
    expect(r.debertaAuto.reason).toMatch(/disentangled attention/);
    expect(r.closed.error).toMatch(/Encoder is closed/);
  });

  it('runs an inference task model there: layers, adapters and head uploaded, again after a change; the loss on the host', () => {
    const r = child('task', { ER_CUDA_BACKEND: FAKE });
    const close = (got: number[], want: number[]) => {
      expect(got).toHaveLength(want.length);
      got.forEach((g, i) => expect(Math.abs(g - want[i]), `element ${i}: ${g} vs ${want[i]}`).toBeLessThan(1e-4 * Math.max(1, Math.abs(want[i]))));
    };
    expect(r.device).toBe('cuda');
    // from layer k's states, with the adapters of the layers above k (2 each) and the head
    close(r.seq.got, r.seq.want);
    expect(Math.abs(r.loss.got - r.loss.want)).toBeLessThan(1e-5);
    close(r.reuploaded.got, r.reuploaded.want);
    close(r.fromIds.got, r.fromIds.want);
    close(r.half.got, r.half.want);
    expect(r.token.n).toBeGreaterThan(0);
    expect(r.token.wrongTok).toBe(0);
    expect(r.memory).toMatchObject({ gpu: 1, deviceBufferBytes: 4096 });
    expect(r.memory.deviceWeightBytes).toBeGreaterThan(0);
    expect(r.train.error).toMatch(/opened for inference only/);
    expect(r.kernelError.error).toMatch(/fake backend: a kernel failed \(cudaErrorLaunchFailure\)/);
    expect(r.trainBf16.device).toBe('cuda');
    expect(r.trainGpuPrecision.error).toMatch(/gpuPrecision 'fp16': a task model trains on the GPU in its own precision \('fp32'\); leave gpuPrecision out/);
    expect(r.deberta.error).toMatch(/device 'cuda': the GPU encoder does not run deberta-v2's disentangled attention yet/);
    expect(r.debertaAuto.device).toBe('cpu');
    expect(r.debertaAuto.reason).toMatch(/disentangled attention/);
    expect(r.nativeDeberta.error).toMatch(/does not run DeBERTa-v2's disentangled attention yet; use device 'cpu'/);
    // InferenceSession.open(dir, { device: 'cuda' }): its predictions are the backend's logits
    expect(r.session.device).toBe('cuda');
    for (const l of ['neg', 'pos']) expect(Math.abs(r.session.probabilities[l] - r.session.want[l])).toBeLessThan(1e-5);
    // er predict --device cuda --gpu 1 answers the same; a bad --device is refused by name
    expect(r.cli.status, r.cli.stderr).toBe(0);
    for (const l of ['neg', 'pos']) expect(Math.abs(r.cli.line.probabilities[l] - r.session.want[l])).toBeLessThan(1e-5);
    expect(r.cliBad.status).toBe(1);
    expect(r.cliBad.stderr).toMatch(/--device must be cpu, cuda or auto, got "gpu"/);
  });

  it('trains a task model there: the loss and its gradient on the host, backward and AdamW on the GPU, values read back', () => {
    const r = child('train', { ER_CUDA_BACKEND: FAKE });
    const close = (got: number[], want: number[], tol = 1e-4) => {
      expect(got).toHaveLength(want.length);
      got.forEach((g, i) => expect(Math.abs(g - want[i]), `element ${i}: ${g} vs ${want[i]}`).toBeLessThan(tol * Math.max(1, Math.abs(want[i]))));
    };
    expect(r.device).toBe('cuda');
    close(r.eval.got, r.eval.want);
    expect(r.loss).toBeGreaterThan(0);
    // the host's dL/dlogits reached the backend, whose gradients came back
    close(r.gradBias.got, r.gradBias.want, 1e-5);
    close(r.gradWeight.got, r.gradWeight.want, 1e-5);
    expect(r.gradWeight.restNonZero).toBe(0);
    // the update ran there (AdamW's first step) and the host read the new values
    expect(Math.abs(r.gradNorm.got - r.gradNorm.want)).toBeLessThan(1e-5);
    close(r.stepBias.got, r.stepBias.want, 1e-5);
    close(r.stepWeight.got, r.stepWeight.want, 1e-5);
    expect(r.steps).toBe(1);
    expect(r.memory).toMatchObject({ gpu: 1, deviceBufferBytes: 8192 });
    expect(r.memory.deviceWeightBytes).toBeGreaterThan(0);
    close(r.afterSet.got, r.afterSet.want);
    expect(r.fromIds.ok, r.fromIds.error).toBe(true);
    expect(r.kernelError.error).toMatch(/fake backend: a kernel failed \(cudaErrorLaunchFailure\)/);
    // trainTask on the GPU: the loss falls, and the task directory holds the GPU's trained head
    expect(r.log).toHaveLength(3);
    expect(r.log[2]).toBeLessThan(r.log[0]);
    expect(r.saved.device).toBe('cpu');
    expect(Math.max(...r.saved.moved)).toBeGreaterThan(1e-3);
    // the layers' values came back too: the fake leaves their gradients 0, so AdamW only decayed them, all by one factor
    expect(r.saved.decay.max).toBeLessThan(1);
    expect(r.saved.decay.max - r.saved.decay.min).toBeLessThan(1e-5);
    expect(r.cli.status, r.cli.stderr).toBe(0);
    expect(r.cli.task).toBe('reduced');
    expect(r.cliBf16.status, r.cliBf16.stderr).toBe(0);  // bf16 trains on the GPU too
  });

  it.each([
    ['no GPU', { ER_FAKE_BACKEND_NO_GPU: '1' }, /no CUDA GPU was found \(fake backend\); use device 'cpu'/],
    ['another build', { ER_FAKE_BACKEND_ABI: '99' }, /is from another build \(interface 99, this addon's \d+\); rebuild or reinstall both together/],
  ])('%s: device cuda is refused with the reason, auto runs on the CPU bit for bit', (_name, env, reason) => {
    const r = child('refused', { ER_CUDA_BACKEND: FAKE, ...env });
    expect(r.info.available).toBe(false);
    expect(r.info.reason).toMatch(reason);
    expect(r.cuda.error).toMatch(/^device 'cuda': /);
    expect(r.cuda.error).toMatch(reason);
    expect(r.auto.device).toBe('cpu');
    expect(r.auto.reason).toMatch(reason);
    expect(r.autoEqualsCpu).toBe(true);
    expect(r.fp16Auto.error).toMatch(/precision 'fp16' needs a GPU, and device 'auto' found none usable/);
    expect(r.taskCuda.error).toMatch(/^device 'cuda': /);
    expect(r.taskCuda.error).toMatch(reason);
    expect(r.taskAuto.device).toBe('cpu');
    expect(r.taskAuto.reason).toMatch(reason);
  });

  it('a missing backend or a file that is not one: the reason names the file and what to do', () => {
    const missing = child('refused', { ER_CUDA_BACKEND: path.join(os.tmpdir(), 'no-such-dir', 'embedding_recycler_cuda.so') });
    expect(missing.info).toMatchObject({ loaded: false, available: false });
    expect(missing.cuda.error).toMatch(/this installation has no GPU backend .* is absent.*or use device 'cpu'/);
    expect(missing.auto.device).toBe('cpu');
    const junk = path.join(os.tmpdir(), `er-not-a-library-${process.pid}.so`);
    fs.writeFileSync(junk, 'not an ELF file');
    try {
      const bad = child('refused', { ER_CUDA_BACKEND: junk });
      expect(bad.cuda.error).toMatch(/the GPU backend .* could not be loaded: .*use device 'cpu'/);
      expect(bad.autoEqualsCpu).toBe(true);
    } finally {
      fs.rmSync(junk, { force: true });
    }
  });
});

describe('er info', () => {
  const info = (env: Record<string, string>, json: boolean) => {
    const r = spawnSync(process.execPath, [path.join(ROOT, 'lib', 'cli', 'main.js'), 'info', ...(json ? ['--json'] : [])], {
      encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...env },
    });
    expect(r.status, r.stderr).toBe(0);
    return r.stdout;
  };
  it('says whether the GPU backend is there, whether it loads and which GPUs it sees', () => {
    const text = info({ ER_CUDA_BACKEND: FAKE }, false);
    expect(text).toMatch(/^cuda: CUDA 13\.0-fake runtime; cuBLASLt GEMMs.*2 GPU\(s\)$/m);
    expect(text).toMatch(/^gpu 0: Fake GPU, compute 9\.0/m);
    expect(text).toContain(`cuda backend: ${FAKE}`);
    const json = JSON.parse(info({ ER_CUDA_BACKEND: FAKE, ER_FAKE_BACKEND_NO_GPU: '1' }, true));
    expect(json.cuda).toMatchObject({ loaded: true, available: false, devices: [] });
    expect(json.cuda.reason).toMatch(/no CUDA GPU was found/);
    expect(info({ ER_CUDA_BACKEND: '/nonexistent/embedding_recycler_cuda.so' }, false)).toMatch(/^cuda: not available: this installation has no GPU backend/m);
  });
});

describe('device options', () => {
  const tiny = path.join(FIXTURES, 'tiny-bert');
  it('bad values are refused by name', async () => {
    await expect(Encoder.load(tiny, { device: 'gpu' as never })).rejects.toThrow(/device must be 'cpu', 'cuda' or 'auto', got gpu/);
    await expect(Encoder.load(tiny, { precision: 'fp16' })).rejects.toThrow(/precision 'fp16' runs on device 'cuda' only/);
    await expect(Encoder.load(tiny, { device: 'cuda', gpu: -1 })).rejects.toThrow(/gpu must be an integer in 0\.\.1023/);
    const e = await Encoder.load(tiny);
    expect(e.device).toBe('cpu');
    e.close();
  });
});

const info = native().cudaInfo();

describe.skipIf(!fs.existsSync(REAL))('the real GPU backend (built where nvcc is found)', () => {
  it('loads, and says whether it has a GPU (and why not)', () => {
    expect(info.loaded, info.reason).toBe(true);
    if (!info.available) {
      console.log(`GPU backend: ${info.reason}`);
      expect(info.reason).toMatch(/device 'cpu'/);
    }
  });

  it.skipIf(!info.available)('matches the CPU encoder on the same weights: every layer, forward from a layer, fp32 / bf16 / fp16', async () => {
    for (const fixture of ['tiny-bert', 'tiny-roberta', 'tiny-distilbert', 'tiny-mpnet']) {
      const cpu = await Encoder.load(path.join(FIXTURES, fixture));
      const batch = await cpu.tokenize(['Naïve café 東京 🙂 résumé', 'a much longer second text than the first one, with padding after the first'], { pairs: ['x', 'y'] });
      for (const precision of ['fp32', 'bf16', 'fp16'] as const) {
        const gpu = await Encoder.load(path.join(FIXTURES, fixture), { device: 'cuda', precision });
        const tol = precision === 'fp32' ? 1e-4 : 2e-2;
        for (let layer = 0; layer <= cpu.numLayers; layer++) {
          const want = await cpu.forward(batch, { toLayer: layer });
          const got = await gpu.forward(batch, { toLayer: layer });
          let worst = 0, scale = 0;
          for (let i = 0; i < want.data.length; i++) {
            worst = Math.max(worst, Math.abs(want.data[i] - got.data[i]));
            scale = Math.max(scale, Math.abs(want.data[i]));
          }
          expect(worst / Math.max(1, scale), `${fixture} ${precision} layer ${layer}`).toBeLessThan(tol);
        }
        const k = Math.floor(cpu.numLayers / 2);
        const mid = await gpu.forward(batch, { toLayer: k });
        const a = await gpu.forwardFrom(mid, batch.attentionMask, { fromLayer: k });
        const b = await gpu.forward(batch);
        for (let i = 0; i < a.data.length; i++) expect(Math.abs(a.data[i] - b.data[i])).toBeLessThan(1e-5);
        gpu.close();
      }
      cpu.close();
    }
  });
});
