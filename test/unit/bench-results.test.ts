// The benchmarks' shared result writer (bench/lib/cli.mjs): results only from a clean
// committed tree, unless --allow-dirty, and then marked. Runs in a throw-away git repository;
// no benchmark runs.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, beforeEach, describe, expect, it, vi } from 'vitest';
// @ts-expect-error: a plain ES module without type declarations
import { checkTree, DIRTY_LINE, DirtyTreeError, treeState, writeResults } from '../../bench/lib/cli.mjs';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'er-bench-results-'));
afterAll(() => {
  vi.restoreAllMocks();
  fs.rmSync(tmp, { recursive: true, force: true });
});

let repo: string;
let n = 0;
const git = (...args: string[]) => execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.com', '-c', 'init.defaultBranch=main', ...args], { cwd: repo, encoding: 'utf8' }).trim();
const head = () => git('rev-parse', 'HEAD');
const out = (name: string) => path.join(repo, 'bench', 'results', name);
const read = (base: string) => ({ md: fs.readFileSync(`${base}.md`, 'utf8'), json: JSON.parse(fs.readFileSync(`${base}.json`, 'utf8')) });
const MD = '# A benchmark\n\n| a | b |\n| --- | --- |\n| 1 | 2 |\n';

beforeEach(() => {
  repo = path.join(tmp, `repo-${n++}`);
  fs.mkdirSync(path.join(repo, 'bench', 'results'), { recursive: true });
  git('init', '-q');
  fs.writeFileSync(path.join(repo, 'code.js'), 'one\n');
  git('add', 'code.js');
  git('commit', '-q', '-m', 'first');
  // the "wrote ..." notes of writeResults stay out of the test output
  vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
});

describe('benchmark results and the git tree', () => {
  it('a clean tree: written, with the commit in both files and no DIRTY line', () => {
    const state = checkTree(repo);
    expect(state).toEqual({ commit: head(), changes: [], dirty: false });
    const res = writeResults(out('x'), MD, { ms: 1 }, 'test', { root: repo, start: state });
    const { md, json } = read(out('x'));
    expect(json).toEqual({ ms: 1, commit: head(), dirty: false });
    expect(res).toEqual(json);
    expect(md).toContain(`Commit: ${head()}`);
    expect(md).not.toContain(DIRTY_LINE);
    expect(md.startsWith('# A benchmark\n')).toBe(true);
    expect(md).toContain('| 1 | 2 |');
  });

  it('refuses a modified, a staged or an untracked file, before the run and at writing, and writes nothing', () => {
    const cases: [string, () => void, RegExp][] = [
      ['modified', () => fs.writeFileSync(path.join(repo, 'code.js'), 'two\n'), /^ M code\.js$/],
      ['staged', () => git('add', 'code.js'), /^M  code\.js$/],
      ['untracked', () => { git('reset', '-q', '--hard'); fs.writeFileSync(path.join(repo, 'new.js'), 'x\n'); }, /^\?\? new\.js$/],
    ];
    for (const [what, change, line] of cases) {
      change();
      const st = treeState(repo);
      expect(st.dirty, what).toBe(true);
      expect(st.changes.some((c: string) => line.test(c)), `${what}: ${st.changes.join(', ')}`).toBe(true);
      expect(() => checkTree(repo), what).toThrow(DirtyTreeError);
      expect(() => checkTree(repo), what).toThrow(/refusing to write benchmark results from a tree with uncommitted changes[\s\S]*--allow-dirty/);
      expect(() => writeResults(out(what), MD, {}, 'test', { root: repo }), what).toThrow(DirtyTreeError);
      expect(fs.existsSync(`${out(what)}.md`) || fs.existsSync(`${out(what)}.json`), what).toBe(false);
    }
    // --no-write needs no clean tree
    expect(checkTree(repo, { write: false }).dirty).toBe(true);
  });

  it('untracked files under bench/.work do not count; new results elsewhere do, until committed', () => {
    fs.mkdirSync(path.join(repo, 'bench', '.work', 'models'), { recursive: true });
    fs.writeFileSync(path.join(repo, 'bench', '.work', 'models', 'm.bin'), 'x');
    expect(treeState(repo).dirty).toBe(false);
    writeResults(out('w'), MD, {}, 'test', { root: repo });
    expect(read(out('w')).json.dirty).toBe(false);
    // the results just written are untracked outside bench/.work: the next write is refused until they are committed
    expect(() => writeResults(out('w2'), MD, {}, 'test', { root: repo })).toThrow(DirtyTreeError);
    git('add', 'bench/results');
    git('commit', '-q', '-m', 'results');
    expect(treeState(repo).dirty).toBe(false);
  });

  it("a long run's checkpoint of its own results does not make its final write dirty; other results still do", () => {
    const start = checkTree(repo);
    writeResults(out('long'), null, { tasks: 1 }, 'test', { root: repo, start });  // JSON-only checkpoint
    expect(fs.existsSync(`${out('long')}.md`)).toBe(false);
    writeResults(out('long'), MD, { tasks: 2 }, 'test', { root: repo, start });
    expect(read(out('long')).json).toEqual({ tasks: 2, commit: start.commit, dirty: false });
    expect(() => writeResults(out('other'), MD, {}, 'test', { root: repo, start })).toThrow(/\?\? bench\/results\/long\.json/);
  });

  it('--allow-dirty writes, marked in the .md and the .json, with the changes listed', () => {
    fs.writeFileSync(path.join(repo, 'code.js'), 'two\n');
    const start = checkTree(repo, { allowDirty: true });
    writeResults(out('d'), MD, { ms: 2 }, 'test', { root: repo, allowDirty: true, start });
    const { md, json } = read(out('d'));
    expect(json.dirty).toBe(true);
    expect(json.commit).toBe(head());
    expect(json.dirtyChanges).toEqual([' M code.js']);
    expect(md.split('\n')).toContain(DIRTY_LINE);
    expect(DIRTY_LINE).toBe('DIRTY TREE: results from uncommitted changes');
    expect(md).toContain(' M code.js');
  });

  it('a tree that was dirty at the start, or a HEAD that moved during the run, counts as dirty', () => {
    fs.writeFileSync(path.join(repo, 'code.js'), 'two\n');
    const dirtyStart = treeState(repo);
    git('commit', '-q', '-am', 'second');  // clean now, but the run measured uncommitted code
    expect(() => writeResults(out('s'), MD, {}, 'test', { root: repo, start: dirtyStart })).toThrow(DirtyTreeError);
    const start = checkTree(repo);
    fs.writeFileSync(path.join(repo, 'code.js'), 'three\n');
    git('commit', '-q', '-am', 'third');
    expect(() => writeResults(out('h'), MD, {}, 'test', { root: repo, start })).toThrow(/HEAD moved during the run/);
    writeResults(out('h'), MD, {}, 'test', { root: repo, start, allowDirty: true });
    expect(read(out('h')).json).toMatchObject({ dirty: true, commit: start.commit });
  });

  it('smoke-test results under bench/.work are never refused, only marked', () => {
    fs.writeFileSync(path.join(repo, 'code.js'), 'two\n');
    const base = path.join(repo, 'bench', '.work', 'results', 'quick');
    expect(() => checkTree(repo, { dest: base })).not.toThrow();
    writeResults(base, MD, {}, 'test', { root: repo });
    const { md, json } = read(base);
    expect(json.dirty).toBe(true);
    expect(md).toContain(DIRTY_LINE);
  });

  it('outside a git checkout: refused, nothing shows which code ran', () => {
    const plain = fs.mkdtempSync(path.join(tmp, 'plain-'));
    const st = treeState(plain);
    expect(st).toMatchObject({ commit: null, dirty: true });
    expect(() => writeResults(path.join(plain, 'bench', 'results', 'x'), MD, {}, 'test', { root: plain })).toThrow(DirtyTreeError);
  });
});
