// The event loop stays free while a session opens on the real MiniLM (weights hashed on a
// worker thread) and while it serves 200 concurrent requests: a 1 ms interval timer never
// fires more than 250 ms late (loose for a busy 2-core machine; synchronous hashing of the
// weights alone took about 200 ms here, a synchronous batch far more).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InferenceSession } from '../../src/infer/session';
import { forgetFingerprints } from '../../src/model/checkpoint';
import { trainTask } from '../../src/tasks/runner';
import { requireMiniLM } from '../helpers/fixtures';
import { writeClassification } from '../helpers/taskdata';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'er-loop-'));
const taskDir = path.join(tmp, 'task');
let texts: string[] = [];

beforeAll(async () => {
  const train = writeClassification(tmp, 48, 5, 'train');
  await trainTask({
    task: 'classification', train, mode: 'reduced', model: requireMiniLM(), store: path.join(tmp, 'store'), layer: 3,
    lr: 1e-3, epochs: 1, seed: 1, batchSize: 16, maxLength: 64, out: taskDir,
  });
  const reqs = writeClassification(tmp, 200, 17, 'requests');
  texts = fs.readFileSync(reqs, 'utf8').trim().split('\n').map((l) => JSON.parse(l).text as string);
}, 180_000);
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function watchLoop(): { stop: () => number } {
  let last = performance.now();
  let worst = 0;
  const t = setInterval(() => {
    const now = performance.now();
    worst = Math.max(worst, now - last);
    last = now;
  }, 1);
  return {
    stop: () => {
      clearInterval(t);
      return Math.max(worst, performance.now() - last);
    },
  };
}

describe('the event loop while serving', () => {
  it('opening a session on the real MiniLM and serving 200 concurrent requests never blocks the loop for 250 ms', async () => {
    // let the process settle (module loading is not the session's doing)
    await new Promise((r) => setTimeout(r, 50));
    forgetFingerprints(); // as in a fresh server process: the weights are hashed while it opens
    const w1 = watchLoop();
    const s = await InferenceSession.open(taskDir, { maxDelayMs: 2 });
    const openGap = w1.stop();
    const w2 = watchLoop();
    const out = await Promise.all(texts.map((text) => s.predict([{ text }])));
    const serveGap = w2.stop();
    expect(out.flat()).toHaveLength(200);
    expect(s.metrics().batches).toBeGreaterThan(0);
    await s.close();
    expect({ openGap: openGap < 250, serveGap: serveGap < 250, openMs: Math.round(openGap), serveMs: Math.round(serveGap) }).toMatchObject({ openGap: true, serveGap: true });
  });
});

describe("native work and libuv's thread pool", () => {
  it('eight queued forward passes do not hold the pool: a pool job started after them finishes first', () => {
    const child = path.resolve(__dirname, '..', 'helpers', 'pool-child.js');
    const r = spawnSync(process.execPath, [child, requireMiniLM()], {
      encoding: 'utf8', timeout: 120_000, env: { ...process.env, UV_THREADPOOL_SIZE: '2' },
    });
    expect(r.status, r.stderr).toBe(0);
    const { order } = JSON.parse(r.stdout.trim()) as { order: string[] };
    expect(order).toHaveLength(9);
    // the forwards run one at a time on the encoder's compute thread; the pool job needs
    // a pool thread only, so it ends before the second forward (in the pool it waited
    // behind all of them)
    expect(order.indexOf('pool job')).toBeLessThan(2);
  }, 150_000);
});
