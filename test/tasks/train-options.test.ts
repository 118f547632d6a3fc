// trainTask's dropout option reaches the task model and is recorded with the hyperparameters.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, describe, expect, it } from 'vitest';
import { trainTask } from '../../src/tasks/runner';
import { FIXTURES } from '../helpers/fixtures';
import { writeClassification } from '../helpers/taskdata';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'er-train-options-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('trainTask dropout', () => {
  const train = writeClassification(tmp, 32, 5, 'train');
  const run = (dropout: number | undefined, out: string) => trainTask({
    task: 'classification', train, mode: 'full', model: path.join(FIXTURES, 'tiny-bert'), lr: 1e-3, epochs: 1, seed: 1,
    batchSize: 8, maxLength: 32, out: path.join(tmp, out), ...(dropout === undefined ? {} : { dropout }),
  });
  it('is recorded in task.json, default 0.1, and changes training (same seed)', async () => {
    const a = await run(undefined, 'a');
    const b = await run(0, 'b');
    const c = await run(0, 'c');
    const hyper = (dir: string) => JSON.parse(fs.readFileSync(path.join(tmp, dir, 'task.json'), 'utf8')).hyperparameters;
    expect(hyper('a').dropout).toBe(0.1);
    expect(hyper('b').dropout).toBe(0);
    // without dropout the seed's dropout stream plays no part: the same loss twice, and not the default's
    expect(b.log[0].trainLoss).toBe(c.log[0].trainLoss);
    expect(a.log[0].trainLoss).not.toBe(b.log[0].trainLoss);
  }, 120_000);
  it('a probability outside [0, 1) is refused by name', async () => {
    await expect(run(1.5, 'd')).rejects.toThrow(/dropout\.hidden must be/);
  });
  it('a maxLength beyond the model\'s is refused before training, by name', async () => {
    await expect(trainTask({
      task: 'classification', train, mode: 'full', model: path.join(FIXTURES, 'tiny-bert'), lr: 1e-3, epochs: 1, maxLength: 128, out: path.join(tmp, 'e'),
    })).rejects.toThrow(/maxLength \(--max-length\) must be an integer in 8\.\.64 \(the model's maximum length\), got 128/);
    expect(fs.existsSync(path.join(tmp, 'e'))).toBe(false);
  });
});
