// The batching scheduler of InferenceSession: concurrent calls equal one-by-one calls,
// abort and a full queue touch only their own request, a cache hit equals a miss, and
// close() answers everything it accepted.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InferenceSession, QueueFullError } from '../../src/infer/session';
import { trainTask } from '../../src/tasks/runner';
import { FIXTURES } from '../helpers/fixtures';
import { writeClassification } from '../helpers/taskdata';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'er-session-'));
const taskDir = path.join(tmp, 'task');
const storeDir = path.join(tmp, 'store');
let texts: string[] = [];

beforeAll(async () => {
  const train = writeClassification(tmp, 60, 3, 'train');
  await trainTask({
    task: 'classification', train, mode: 'reduced', model: path.join(FIXTURES, 'tiny-bert'), store: storeDir, layer: 1,
    lr: 1e-3, epochs: 1, seed: 1, batchSize: 16, maxLength: 32, out: taskDir,
  });
  const fresh = writeClassification(tmp, 40, 11, 'fresh');
  texts = fs.readFileSync(fresh, 'utf8').trim().split('\n').map((l) => JSON.parse(l).text as string);
}, 120_000);
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

type Cls = { label: string; probabilities: Record<string, number> };

function expectSame(a: Cls[], b: Cls[]): void {
  expect(a.map((x) => x.label)).toEqual(b.map((x) => x.label));
  for (let i = 0; i < a.length; i++) {
    for (const k of Object.keys(a[i].probabilities)) expect(Math.abs(a[i].probabilities[k] - b[i].probabilities[k])).toBeLessThan(1e-6);
  }
}

describe('InferenceSession batching', () => {
  it('concurrent predict() calls are batched together and return exactly what one-by-one calls return', async () => {
    const s = await InferenceSession.open(taskDir, { maxDelayMs: 5, maxBatchTokens: 4096 });
    const one: Cls[] = [];
    const timings: { queueMs: number; computeMs: number }[] = [];
    for (const t of texts) one.push(...((await s.predict([{ text: t }], { onTiming: (x) => timings.push(x) })) as Cls[]));
    expect(timings).toHaveLength(texts.length);
    expect(timings.every((x) => x.queueMs >= 0 && x.computeMs > 0)).toBe(true);
    const before = s.metrics().batches;
    const together = (await Promise.all(texts.map((t) => s.predict([{ text: t }])))).flat() as Cls[];
    expectSame(together, one);
    const m = s.metrics();
    // 40 concurrent single-text requests ran in far fewer than 40 batches
    expect(m.batches - before).toBeLessThan(texts.length / 4);
    expect(m.requests).toBe(2 * texts.length);
    expect(m.batchRows.count).toBe(m.batches);
    expect(m.queueMs.count).toBe(2 * texts.length);
    await s.close();
  });

  it('a lone request does not wait for maxDelayMs: with no other request on its way, its batch starts at once', async () => {
    const s = await InferenceSession.open(taskDir, { maxDelayMs: 2000 });
    await s.predict([{ text: texts[0] }]); // warm
    const queued: number[] = [];
    for (const t of texts.slice(0, 5)) await s.predict([{ text: t }], { onTiming: (x) => queued.push(x.queueMs) });
    expect(Math.max(...queued)).toBeLessThan(500);
    // concurrent requests still wait for each other (they are batched)
    const before = s.metrics().batches;
    await Promise.all(texts.slice(0, 8).map((t) => s.predict([{ text: t }])));
    expect(s.metrics().batches - before).toBeLessThan(4);
    await s.close();
  });

  it('an aborted request rejects with an AbortError and leaves the others alone', async () => {
    const s = await InferenceSession.open(taskDir, { maxDelayMs: 50 });
    const ctl = new AbortController();
    const keep = s.predict([{ text: texts[0] }]);
    const gone = s.predict([{ text: texts[1] }], { signal: ctl.signal });
    const keep2 = s.predict([{ text: texts[2] }]);
    // aborted before its batch can have finished (batches start once nothing is on its way)
    ctl.abort();
    await expect(gone).rejects.toMatchObject({ name: 'AbortError' });
    const [a, b] = await Promise.all([keep, keep2]);
    expect(a).toHaveLength(1);
    expect(b).toHaveLength(1);
    await expect(s.predict([{ text: texts[0] }], { signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError' });
    const m = s.metrics();
    expect(m.aborted).toBe(2);
    expect(m.queued).toBe(0);
    await s.close();
  });

  it('a full queue refuses at once with QueueFullError (code ER_QUEUE_FULL), and accepts again once drained', async () => {
    const s = await InferenceSession.open(taskDir, { maxQueue: 4, maxDelayMs: 20 });
    const first = s.predict(texts.slice(0, 4).map((text) => ({ text })));
    const refused = s.predict([{ text: texts[5] }]);
    await expect(refused).rejects.toBeInstanceOf(QueueFullError);
    await expect(refused).rejects.toMatchObject({ code: 'ER_QUEUE_FULL' });
    expect(await first).toHaveLength(4);
    expect(await s.predict([{ text: texts[5] }])).toHaveLength(1);
    expect(s.metrics().rejected).toBe(1);
    await s.close();
  });

  it('a cache miss gives the same answer as a later hit of the same text', async () => {
    const t = `${texts[7]} once more`;
    // a miss: the text is not in the store, the prefix runs (its activations rounded as the fp16 store would)
    const s1 = await InferenceSession.open(taskDir);
    const miss = (await s1.predict([{ text: t }])) as Cls[];
    expect(s1.metrics().cacheMisses).toBe(1);
    await s1.close();
    // the text is written to the store, behind the response, from the activations the miss computed
    const s2 = await InferenceSession.open(taskDir, { readThrough: true });
    const records = s2.store!.stats().records;
    const readThrough = (await s2.predict([{ text: t }])) as Cls[];
    expectSame(readThrough, miss);
    await s2.flush();
    expect(s2.store!.stats().records).toBe(records + 1);
    expect(s2.metrics()).toMatchObject({ writesPending: 0, writeErrors: 0, cacheMisses: 1 });
    await s2.close();
    // a hit: its activations come from the store
    const s3 = await InferenceSession.open(taskDir);
    const hit = (await s3.predict([{ text: t }])) as Cls[];
    expect(s3.metrics().cacheHits).toBe(1);
    expect(s3.metrics().cacheMisses).toBe(0);
    expectSame(hit, miss);
    await s3.close();
  });

  it('close() answers every accepted request, then refuses new ones', async () => {
    const s = await InferenceSession.open(taskDir, { maxDelayMs: 20 });
    const pending = texts.slice(0, 10).map((text) => s.predict([{ text }]));
    const closed = s.close();
    await expect(s.predict([{ text: texts[0] }])).rejects.toThrow(/closed/);
    const out = await Promise.all(pending);
    expect(out.every((o) => o.length === 1)).toBe(true);
    await closed;
  });

  it('bad inputs are refused before anything is queued, naming the input', async () => {
    const s = await InferenceSession.open(taskDir);
    await expect(s.predict([{ text: 'fine' }, { words: ['x'] } as never])).rejects.toThrow(/input 1: a classification task takes \{ text, pair\? \}/);
    await expect(s.predict('text' as never)).rejects.toThrow(TypeError);
    expect(s.metrics().queued).toBe(0);
    await s.close();
  });
});

describe('the inference-only task model', () => {
  it('holds no gradients or optimizer state, refuses training, and gives the logits evalStep gives on a training model', async () => {
    const { Encoder } = await import('../../src/model/encoder');
    const { TaskModel } = await import('../../src/train/model');
    const enc = await Encoder.load(path.join(FIXTURES, 'tiny-bert'));
    const opts = { mode: 'reduced' as const, k: 1, head: { kind: 'sequence' as const, numLabels: 3 }, seed: 4, dropout: { hidden: 0, attention: 0, head: 0 } };
    const train = TaskModel.create(enc, opts);
    const infer = await TaskModel.createAsync(enc, { ...opts, inference: true });
    for (const name of train.parameterNames()) infer.setParameter(name, train.parameter(name));
    expect(infer.memory().paramBytes * 4).toBe(train.memory().paramBytes);
    const batch = await enc.tokenize(texts.slice(0, 6));
    const hidden = await enc.forward(batch, { toLayer: 1 });
    const input = { hidden, attentionMask: batch.attentionMask };
    const a = (await train.evalStep(input)).logits;
    const b = (await infer.evalStep(input)).logits;
    let d = 0;
    for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
    expect(d).toBeLessThan(1e-5);
    await expect(infer.trainStep(input, Int32Array.from([0, 1, 2, 0, 1, 2]), 1e-3)).rejects.toThrow(/opened for inference only/);
    enc.close();
  });
});

describe('sessions of one process share the encoder and the store reader', () => {
  it('two tasks on one base model hold one encoder and one reader; the last close releases them', async () => {
    const a = await InferenceSession.open(taskDir);
    const b = await InferenceSession.open(taskDir);
    expect(b.encoder).toBe(a.encoder);
    expect(b.store).toBe(a.store);
    const want = await a.predict([{ text: texts[0] }]);
    await a.close();
    // the other session goes on with the shared encoder and reader
    expect(await b.predict([{ text: texts[0] }])).toEqual(want);
    await b.close();
    await expect(b.encoder.embed(['x'])).rejects.toThrow(/closed/);
    // a new session opens them again
    const c = await InferenceSession.open(taskDir);
    expect(c.encoder).not.toBe(a.encoder);
    expect(await c.predict([{ text: texts[0] }])).toEqual(want);
    await c.close();
  });
});
