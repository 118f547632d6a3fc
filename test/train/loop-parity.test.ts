// The training loop against PyTorch, step by step (fixtures from scripts/make_loop_fixtures.mjs):
// trainTask on small generated tasks (tokenizing, label alignment, batching and padding,
// the shuffle, warm-up and decay, clipping, AdamW) gives every step the loss PyTorch's run
// gave when started from our initial head, fed our example order, without dropout.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, describe, expect, it } from 'vitest';
import { trainTask } from '../../src/tasks/runner';
import { FIXTURES } from '../helpers/fixtures';

const meta = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'loop-parity.json'), 'utf8')) as {
  epochs: number; batchSize: number; maxLength: number; seed: number; warmupRatio: number;
  cases: { name: string; model: string; task: 'classification' | 'ner'; file: string; lr: number; labels: string[]; losses: number[] }[];
};
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'er-loop-parity-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('the training loop against PyTorch, every step', () => {
  for (const c of meta.cases) {
    it(`${c.name}: ${c.losses.length} steps' losses within 1e-4 (relative)`, async () => {
      const losses: number[] = [];
      const { spec } = await trainTask({
        task: c.task, train: path.join(FIXTURES, 'loop', c.file), mode: 'full', model: path.join(FIXTURES, c.model), lr: c.lr,
        epochs: meta.epochs, patience: meta.epochs, batchSize: meta.batchSize, maxLength: meta.maxLength, seed: meta.seed,
        warmupRatio: meta.warmupRatio, dropout: 0, threads: 1, out: path.join(tmp, c.name), warn: () => {},
        onStep: (p) => losses.push(p.stepLoss),
      });
      expect(spec.labels).toEqual(c.labels);
      expect(losses).toHaveLength(c.losses.length);
      losses.forEach((l, i) => expect(Math.abs(l - c.losses[i]) / Math.abs(c.losses[i]), `step ${i + 1}: ours ${l}, PyTorch ${c.losses[i]}`).toBeLessThan(1e-4));
    }, 60_000);
  }
});
