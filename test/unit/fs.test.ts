// makeDir: creates missing directories, and fails (never spins) where a parent cannot hold
// children: under /proc, Node's own recursive mkdirSync loops forever at 100% CPU.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, describe, expect, it } from 'vitest';
import { Encoder } from '../../src/model/encoder';
import { ActivationStore } from '../../src/store/store';
import { makeDir } from '../../src/util/fs';
import { FIXTURES } from '../helpers/fixtures';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'er-fs-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('makeDir', () => {
  it('creates every missing level, and accepts an existing directory', () => {
    const d = path.join(tmp, 'a', 'b', 'c');
    makeDir(d);
    expect(fs.statSync(d).isDirectory()).toBe(true);
    makeDir(d);
  });

  it('under a file or under /proc it fails at once with the path, instead of spinning', () => {
    fs.writeFileSync(path.join(tmp, 'file'), 'x');
    expect(() => makeDir(path.join(tmp, 'file', 'sub'))).toThrow(/file: not a directory/);
    if (fs.existsSync('/proc/self')) expect(() => makeDir('/proc/self/er-test/sub')).toThrow(/cannot create the directory \/proc\/self\/er-test/);
  });

  it.skipIf(!fs.existsSync('/proc/self'))('a store asked for under /proc is an error, not a hang', async () => {
    const enc = await Encoder.load(path.join(FIXTURES, 'tiny-bert'));
    await expect(ActivationStore.create('/proc/self/er-store', enc, { layer: 1 })).rejects.toThrow(/cannot create the directory \/proc\/self\/er-store/);
    enc.close();
  });
});
