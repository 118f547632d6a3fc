// What the benchmark scripts share: reading --name value flags, the CPU line of a results
// table, and writing a table with its JSON beside it under bench/results/ -- only from a
// clean, committed tree (see treeState / writeResults).
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

/** flag('epochs', '6') reads `--epochs N` from argv, or gives the default. */
export function flagReader(args) {
  return (name, dflt) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? args[i + 1] : dflt;
  };
}

/** The CPU as the results files state it, from cpuDescription(). */
export function cpuText(c) {
  return `${c.model} (${c.vendor}, family ${c.family}, model ${c.modelNumber}${c.hypervisor ? ', under a hypervisor' : ''}; ${c.simd.join(' ')})`;
}

/** The line a results .md carries when it was written from uncommitted changes (--allow-dirty). */
export const DIRTY_LINE = 'DIRTY TREE: results from uncommitted changes';

/** Thrown when results would be written from a tree with uncommitted changes and --allow-dirty is not given. */
export class DirtyTreeError extends Error {}

/** Untracked files under these (relative to the checkout) do not make the tree dirty: the benchmarks' scratch space. */
const IGNORED = ['bench/.work/'];

/**
 * The commit of the checkout at `root` and what `git status --porcelain` lists beside it
 * (staged, unstaged and untracked, except untracked files under bench/.work/ and the untracked
 * files listed in `own`, the results being written):
 * { commit, changes: ['XY path', ...], dirty }. Not a git checkout (or no git): commit null,
 * dirty true (nothing shows the results come from a commit).
 */
export function treeState(root, { own = [] } = {}) {
  const git = (args) => execFileSync('git', args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  let commit, top, status;
  try {
    commit = git(['rev-parse', 'HEAD']).trim();
    top = git(['rev-parse', '--show-toplevel']).trim();
    status = git(['status', '--porcelain=v1', '-z', '--untracked-files=all']);
  } catch {
    return { commit: null, changes: ['not a git checkout (or git failed): no commit to record'], dirty: true };
  }
  // the scratch folders as paths from the top of the checkout, which porcelain paths are relative to
  const rel = path.relative(fs.realpathSync(top), fs.realpathSync(root));
  const ignored = IGNORED.map((p) => (rel ? `${rel.split(path.sep).join('/')}/${p}` : p));
  // files of the results being written (a long run's checkpoint of them): not a change of the code measured
  const ownFiles = own.map((f) => path.relative(fs.realpathSync(top), path.resolve(f)).split(path.sep).join('/'));
  const fields = status.split('\0');
  const changes = [];
  for (let i = 0; i < fields.length; i++) {
    const f = fields[i];
    if (f.length < 4) continue;
    const xy = f.slice(0, 2), file = f.slice(3);
    if (xy[0] === 'R' || xy[0] === 'C') i++; // the next field is the rename's source
    if (xy === '??' && ignored.some((p) => file.startsWith(p))) continue;
    if (xy === '??' && ownFiles.includes(file)) continue;
    changes.push(`${xy} ${file}`);
  }
  return { commit, changes, dirty: changes.length > 0 };
}

function underScratch(root, file) {
  const r = path.relative(path.resolve(root, 'bench', '.work'), path.resolve(file));
  return r !== '' && !r.startsWith('..') && !path.isAbsolute(r);
}

function refusal(state, extra = []) {
  const list = [...extra, ...state.changes];
  const shown = list.slice(0, 20).map((c) => `  ${c}`).join('\n');
  return `refusing to write benchmark results from a tree with uncommitted changes (commit ${state.commit ?? 'unknown'}):\n${shown}${list.length > 20 ? `\n  ... and ${list.length - 20} more` : ''}\n` +
    'commit them first (results must say which code they measure), or pass --allow-dirty to write results marked "DIRTY TREE"';
}

/**
 * Checks the tree before a benchmark starts, so that a long run does not end in a refusal:
 * throws DirtyTreeError when the tree is dirty, results are to be written outside
 * bench/.work/ and `allowDirty` is not set. Returns the state, for writeResults' `start`.
 */
export function checkTree(root, { allowDirty = false, write = true, dest = path.join(root, 'bench', 'results', 'x') } = {}) {
  const state = treeState(root);
  if (state.dirty && write && !allowDirty && !underScratch(root, dest)) throw new DirtyTreeError(refusal(state));
  return state;
}

/**
 * Writes `<base>.md` (unless md is null: a JSON-only checkpoint) and `<base>.json`, and says
 * so on stderr under the benchmark's tag. Records the commit in both (`commit`, `dirty` in the
 * JSON; a "Commit:" line in the .md). Refuses (DirtyTreeError) when `git status --porcelain`
 * lists changes -- or HEAD is not the commit `start` recorded when the run began -- unless
 * `allowDirty`: then the .md carries DIRTY_LINE and the JSON `"dirty": true` and the changes.
 * Results under bench/.work/ (smoke tests) are never refused, only marked.
 */
export function writeResults(base, md, results, tag, { root, allowDirty = false, start = null } = {}) {
  if (!root) throw new Error('writeResults: root (the checkout) is required');
  // this result's own files, untracked (a checkpoint written earlier in the same run), do not count
  const state = treeState(root, { own: [`${base}.md`, `${base}.json`] });
  const extra = start && start.commit !== state.commit ? [`HEAD moved during the run: ${start.commit ?? 'unknown'} -> ${state.commit ?? 'unknown'}`] : [];
  const dirty = state.dirty || extra.length > 0 || Boolean(start?.dirty);
  if (dirty && !allowDirty && !underScratch(root, base)) throw new DirtyTreeError(refusal(state, extra));
  const changes = [...new Set([...extra, ...(start?.changes ?? []), ...state.changes])];
  const out = { ...results, commit: start?.commit ?? state.commit, dirty, ...(dirty ? { dirtyChanges: changes } : {}) };
  fs.mkdirSync(path.dirname(path.resolve(base)), { recursive: true });
  if (md !== null) {
    const lines = md.split('\n');
    const at = lines[0].startsWith('# ') ? 1 : 0;
    const head = [`Commit: ${out.commit ?? 'unknown'}`, ...(dirty ? ['', DIRTY_LINE, '', ...changes.slice(0, 20).map((c) => `    ${c}`)] : [])];
    lines.splice(at, 0, ...(at ? ['', ...head] : [...head, '']));
    fs.writeFileSync(`${base}.md`, lines.join('\n'));
  }
  fs.writeFileSync(`${base}.json`, JSON.stringify(out, null, 2) + '\n');
  if (md !== null) process.stderr.write(`[${tag}] wrote ${base}.md and .json${dirty ? ' (DIRTY TREE: from uncommitted changes)' : ''}\n`);
  return out;
}
