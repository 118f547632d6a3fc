// Everything a user can get wrong when loading or running an encoder stops with an
// error naming the file or argument and what was expected.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CheckpointError } from '../../src/errors';
import { Encoder } from '../../src/model/encoder';
import { tensor } from '../../src/tensor/tensor';
import { copyModel, FIXTURES } from '../helpers/fixtures';

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'er-bad-'));
let n = 0;
const fresh = (name = 'tiny-bert') => copyModel(name, path.join(tmpRoot, String(n++)));
const editConfig = (dir: string, edit: (c: Record<string, unknown>) => void) => {
  const p = path.join(dir, 'config.json');
  const c = JSON.parse(fs.readFileSync(p, 'utf8'));
  edit(c);
  fs.writeFileSync(p, JSON.stringify(c));
};

/** Rewrites model.safetensors with an edited header (data bytes kept). */
function editHeader(dir: string, edit: (h: Record<string, any>) => void): void {
  const p = path.join(dir, 'model.safetensors');
  const buf = fs.readFileSync(p);
  const len = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + len).toString('utf8'));
  edit(header);
  let json = JSON.stringify(header);
  // keep the data region where it was: pad the header to its old length with spaces
  if (Buffer.byteLength(json) > len) throw new Error('edited header grew; edit differently');
  json = json.padEnd(len, ' ');
  const out = Buffer.concat([buf.subarray(0, 8), Buffer.from(json), buf.subarray(8 + len)]);
  fs.writeFileSync(p, out);
}

describe('loading a model directory', () => {
  afterAll(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

  it('a missing directory', async () => {
    await expect(Encoder.load(path.join(tmpRoot, 'does-not-exist'))).rejects.toThrow(/model directory .*does-not-exist does not exist/);
  });

  it('a file instead of a directory', async () => {
    const f = path.join(tmpRoot, 'file.txt');
    fs.writeFileSync(f, 'x');
    await expect(Encoder.load(f)).rejects.toThrow(/is not a directory/);
  });

  it('a missing config.json', async () => {
    const d = fresh();
    fs.rmSync(path.join(d, 'config.json'));
    await expect(Encoder.load(d)).rejects.toThrow(/no config\.json/);
  });

  it('a config.json that is not JSON', async () => {
    const d = fresh();
    fs.writeFileSync(path.join(d, 'config.json'), '{ nope');
    await expect(Encoder.load(d)).rejects.toThrow(/config\.json: not valid JSON/);
  });

  it('an unsupported architecture names the supported ones', async () => {
    const d = fresh();
    editConfig(d, (c) => { c.model_type = 'gpt2'; });
    await expect(Encoder.load(d)).rejects.toThrow(/model_type "gpt2" is not supported; supported model types: bert, roberta/);
  });

  it('an unsupported activation', async () => {
    const d = fresh();
    editConfig(d, (c) => { c.hidden_act = 'relu'; });
    await expect(Encoder.load(d)).rejects.toThrow(/activation "relu" is not supported/);
  });

  it("DeBERTa-v2's convolution layer, a projected embedding and an unknown pos_att_type are refused by name", async () => {
    const conv = fresh('tiny-deberta-v2');
    editConfig(conv, (c) => { c.conv_kernel_size = 3; });
    await expect(Encoder.load(conv)).rejects.toThrow(/"conv_kernel_size" is 3: the convolution layer of the larger DeBERTa-v2 checkpoints is not supported/);
    const proj = fresh('tiny-deberta-v2');
    editConfig(proj, (c) => { c.embedding_size = 16; });
    await expect(Encoder.load(proj)).rejects.toThrow(/"embedding_size" 16 differs from hidden_size 32/);
    const p2p = fresh('tiny-deberta-v2');
    editConfig(p2p, (c) => { c.pos_att_type = 'p2c|p2p'; });
    await expect(Encoder.load(p2p)).rejects.toThrow(/"pos_att_type" entry "p2p" is not supported; DeBERTa-v2 has "c2p" and "p2c"/);
    const bad = fresh('tiny-deberta-v2');
    editConfig(bad, (c) => { c.share_att_key = 'yes'; });
    await expect(Encoder.load(bad)).rejects.toThrow(/"share_att_key" must be true or false, got "yes"/);
  });

  it('a DeBERTa-v2 whose relative embeddings disagree with position_buckets', async () => {
    const d = fresh('tiny-deberta-v2');
    editConfig(d, (c) => { c.position_buckets = 16; });
    await expect(Encoder.load(d)).rejects.toThrow(/rel_embeddings\.weight has shape \[16, 32\] but config\.json implies \[32, 32\]/);
  });

  it('a config missing a required number', async () => {
    const d = fresh();
    editConfig(d, (c) => { delete c.num_attention_heads; });
    await expect(Encoder.load(d)).rejects.toThrow(/"num_attention_heads" must be a number \(missing\)/);
  });

  it('heads that do not divide the hidden size', async () => {
    const d = fresh();
    editConfig(d, (c) => { c.num_attention_heads = 5; });
    await expect(Encoder.load(d)).rejects.toThrow(/not divisible by the number of attention heads 5/);
  });

  it('only pytorch_model.bin: says how to convert', async () => {
    const d = fresh();
    fs.rmSync(path.join(d, 'model.safetensors'));
    fs.writeFileSync(path.join(d, 'pytorch_model.bin'), 'x');
    await expect(Encoder.load(d)).rejects.toThrow(/holds pytorch_model\.bin .*convert-to-safetensors\.py/);
  });

  it('no weights at all', async () => {
    const d = fresh();
    fs.rmSync(path.join(d, 'model.safetensors'));
    await expect(Encoder.load(d)).rejects.toThrow(/no model\.safetensors or model\.safetensors\.index\.json/);
  });

  it('a truncated model.safetensors', async () => {
    const d = fresh();
    const p = path.join(d, 'model.safetensors');
    fs.truncateSync(p, fs.statSync(p).size - 100);
    await expect(Encoder.load(d)).rejects.toThrow(/model\.safetensors: invalid safetensors file: .*runs past the end.*truncated/);
  });

  it('shapes that disagree with config.json', async () => {
    const d = fresh();
    editConfig(d, (c) => { c.intermediate_size = 48; });
    await expect(Encoder.load(d)).rejects.toThrow(/intermediate\.dense\.weight has shape \[64, 32\] but config\.json implies \[48, 32\]/);
  });

  it('a weight of the wrong dtype', async () => {
    const d = fresh();
    editHeader(d, (h) => {
      const name = Object.keys(h).find((k) => k.endsWith('embeddings.LayerNorm.bias'))!;
      h[name].dtype = 'I32';
    });
    await expect(Encoder.load(d)).rejects.toThrow(/embeddings\.LayerNorm\.bias has dtype I32; weights must be F32, F16 or BF16/);
  });

  it('overlapping tensors in the header', async () => {
    const d = fresh();
    editHeader(d, (h) => {
      const names = Object.keys(h).filter((k) => k !== '__metadata__' && h[k].shape.length === 1 && h[k].shape[0] === 32);
      const [a, b] = names;
      h[b].data_offsets = [h[a].data_offsets[0], h[a].data_offsets[1]];
    });
    await expect(Encoder.load(d)).rejects.toThrow(/overlap/);
  });

  it('a missing weight', async () => {
    const d = fresh();
    editHeader(d, (h) => {
      const name = Object.keys(h).find((k) => k.endsWith('encoder.layer.1.output.dense.bias'))!;
      h[name.replace('output.dense.bias', 'output.dense.bix')] = h[name];
      delete h[name];
    });
    await expect(Encoder.load(d)).rejects.toThrow(/missing tensor encoder\.layer\.1\.output\.dense\.bias/);
  });

  it('a sharded checkpoint whose index names a missing shard', async () => {
    const d = fresh();
    fs.renameSync(path.join(d, 'model.safetensors'), path.join(d, 'model-00001-of-00002.safetensors'));
    fs.writeFileSync(path.join(d, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors' } }));
    await expect(Encoder.load(d)).rejects.toThrow(/shard model-00002-of-00002\.safetensors is missing/);
  });

  it('a sharded checkpoint with all shards loads', async () => {
    const d = fresh();
    fs.renameSync(path.join(d, 'model.safetensors'), path.join(d, 'model-00001-of-00001.safetensors'));
    fs.writeFileSync(path.join(d, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { x: 'model-00001-of-00001.safetensors' } }));
    const enc = await Encoder.load(d);
    expect(enc.numLayers).toBe(3);
    enc.close();
  });

  it('a directory with vocab.txt but no tokenizer.json builds a WordPiece tokenizer', async () => {
    const d = copyModel('tiny-bert', path.join(tmpRoot, 'vocab-only'));
    const tj = JSON.parse(fs.readFileSync(path.join(d, 'tokenizer.json'), 'utf8'));
    const vocab = Object.entries(tj.model.vocab as Record<string, number>).sort((a, b) => a[1] - b[1]).map(([t]) => t);
    fs.writeFileSync(path.join(d, 'vocab.txt'), vocab.join('\n') + '\n');
    const viaJson = await Encoder.load(d);
    fs.rmSync(path.join(d, 'tokenizer.json'));
    const viaVocab = await Encoder.load(d);
    const text = ['The enzyme binds the inhibitor, Crème brûlée 日本'];
    expect(Array.from((await viaVocab.tokenize(text)).inputIds)).toEqual(Array.from((await viaJson.tokenize(text)).inputIds));
    viaJson.close();
    viaVocab.close();
  });
});

describe('running an encoder', () => {
  let enc: Encoder;
  beforeAll(async () => { enc = await Encoder.load(path.join(FIXTURES, 'tiny-bert')); });
  afterAll(() => enc.close());

  it('token ids outside the vocabulary name the row and position', async () => {
    const b = await enc.tokenize(['a short text']);
    b.inputIds[1] = 100000;
    await expect(enc.forward(b)).rejects.toThrow(/batch\.inputIds\[0\]\[1\] = 100000 is outside the vocabulary/);
    b.inputIds[1] = -3;
    await expect(enc.forward(b)).rejects.toThrow(RangeError);
  });

  it('a layer index out of range', async () => {
    const b = await enc.tokenize(['a short text']);
    await expect(enc.forward(b, { toLayer: 4 })).rejects.toThrow(/toLayer must be an integer in 0\.\.3, got 4/);
    await expect(enc.forward(b, { toLayer: -1 })).rejects.toThrow(/toLayer must be an integer in 0\.\.3/);
    await expect(enc.forward(b, { toLayer: 1.5 })).rejects.toThrow(/toLayer must be an integer/);
    const h = await enc.forward(b, { toLayer: 2 });
    await expect(enc.forwardFrom(h, b.attentionMask, { fromLayer: 4 })).rejects.toThrow(/fromLayer must be an integer in 0\.\.3, got 4/);
    await expect(enc.forwardFrom(h, b.attentionMask, { fromLayer: 2, toLayer: 1 })).rejects.toThrow(/toLayer must be an integer in 2\.\.3, got 1/);
  });

  it('a mask of the wrong shape or with values other than 0/1', async () => {
    const b = await enc.tokenize(['a short text', 'another one that is longer']);
    const h = await enc.forward(b, { toLayer: 1 });
    await expect(enc.forwardFrom(h, new Int32Array(3), { fromLayer: 1 })).rejects.toThrow(/attentionMask must be an Int32Array of 2 x \d+ = \d+ values/);
    const m = Int32Array.from(b.attentionMask);
    m[0] = 2;
    await expect(enc.forwardFrom(h, m, { fromLayer: 1 })).rejects.toThrow(/attentionMask\[0\] = 2/);
    await expect(enc.forward({ ...b, attentionMask: new Int32Array(1) })).rejects.toThrow(/batch\.attentionMask must be an Int32Array/);
  });

  it('hidden states of the wrong width', async () => {
    const b = await enc.tokenize(['a short text']);
    const wrong = tensor(new Float32Array(b.seqLen * 16), [1, b.seqLen, 16]);
    await expect(enc.forwardFrom(wrong, b.attentionMask, { fromLayer: 1 })).rejects.toThrow(/hidden must have shape \[batch, seqLen, 32\]/);
  });

  it('sequences longer than the position table', async () => {
    await expect(enc.tokenize(['x'], { maxLength: 10_000 })).rejects.toThrow(/maxLength must be an integer in 1\.\.64/);
  });

  it('pairs that do not match the texts', async () => {
    await expect(enc.tokenize(['a', 'b'], { pairs: ['only one'] })).rejects.toThrow(/pairs must be an array of 2 strings/);
    await expect(enc.tokenize([])).rejects.toThrow(/non-empty array/);
    await expect(enc.tokenize([5 as unknown as string])).rejects.toThrow(/texts\[0\] must be a string/);
  });

  it('a closed encoder', async () => {
    const e2 = await Encoder.load(path.join(FIXTURES, 'tiny-bert'));
    const b = await e2.tokenize(['hello']);
    e2.close();
    await expect(e2.forward(b)).rejects.toThrow(/Encoder is closed/);
  });

  it('forward runs off the event loop: timers keep firing during a long batch', async () => {
    const big = await enc.tokenize(Array.from({ length: 64 }, (_, i) => `sentence number ${i} about enzymes and inhibitors in the liver`), { padding: 'max_length', maxLength: 64 });
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const t0 = performance.now();
    let runs = 0;
    while (performance.now() - t0 < 200) {
      await enc.forward(big);
      runs++;
    }
    clearInterval(timer);
    expect(runs).toBeGreaterThan(0);
    expect(ticks).toBeGreaterThan(20);
  });
});

describe('bf16 on a CPU without a bf16 matmul', () => {
  it('is refused at load with the reason, not left to fail in the first forward', () => {
    const { spawnSync } = require('child_process') as typeof import('child_process');
    const root = require('path').resolve(__dirname, '..', '..');
    const script = `require(${JSON.stringify(root + '/lib')}).Encoder.load(${JSON.stringify(root + '/test/fixtures/tiny-bert')}, { precision: 'bf16' })` +
      `.then(() => console.log('loaded'), (e) => console.log('refused: ' + e.message))`;
    // oneDNN capped at AVX2 has no bf16 matmul
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, ONEDNN_MAX_CPU_ISA: 'AVX2' } });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/refused: precision 'bf16' needs oneDNN's bf16 matmul, which this CPU does not have .*; use precision 'fp32'/);
  });
});
