// What machine and which versions a result came from.
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import os from 'node:os';

export function cpuDescription() {
  let text = '';
  try {
    text = readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    /* not Linux */
  }
  const first = text.split('\n\n')[0] || '';
  const field = (name) => {
    const m = first.match(new RegExp(`^${name}\\s*:\\s*(.*)$`, 'm'));
    return m ? m[1].trim() : null;
  };
  const flags = new Set((field('flags') || '').split(/\s+/).filter(Boolean));
  const interesting = ['avx2', 'fma', 'avx512f', 'avx512bw', 'avx512vl', 'avx512_vnni', 'avx512_bf16', 'amx_bf16', 'amx_tile', 'avx_vnni'];
  return {
    model: field('model name') || os.cpus()[0]?.model || 'unknown',
    vendor: field('vendor_id'),
    family: field('cpu family'),
    modelNumber: field('model'),
    stepping: field('stepping'),
    mhz: field('cpu MHz'),
    cache: field('cache size'),
    logicalCpus: (text.match(/^processor\s*:/gm) || []).length || os.cpus().length,
    hypervisor: flags.has('hypervisor'),
    simd: interesting.filter((f) => flags.has(f)),
    bf16: flags.has('avx512_bf16') || flags.has('amx_bf16'),
  };
}

export function nproc() {
  try {
    return Number(execFileSync('nproc', { encoding: 'utf8' }).trim());
  } catch {
    return os.availableParallelism ? os.availableParallelism() : os.cpus().length;
  }
}

export function loadAverage() {
  return os.loadavg().map((x) => Number(x.toFixed(2)));
}

/** Read-only git facts: the commit and whether tracked files differ from it. */
export function gitInfo(cwd) {
  const git = (args) => execFileSync('git', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  try {
    return { commit: git(['rev-parse', '--short', 'HEAD']), dirty: git(['status', '--porcelain', '--untracked-files=no']) !== '' };
  } catch {
    return { commit: null, dirty: null };
  }
}

export function localDate(d = new Date()) {
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
}

// ---- contention monitor -------------------------------------------------------------------------
// On a 2-core machine one stray process halves an OpenMP engine's speed (or worse: spinning barriers
// wait on a descheduled thread). So the harness measures, per workload, how much CPU time went to
// processes other than the benchmark's own (node + its Python worker + children it waited for), and
// how much the hypervisor stole.

function readJiffies() {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]; // "cpu  user nice system idle iowait irq softirq steal ..."
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    const [user, nice, system, idle, iowait, irq, softirq, steal] = f;
    return { busy: user + nice + system + irq + softirq, idle: idle + iowait, steal: steal || 0 };
  } catch {
    return null;
  }
}

function procJiffies(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' '); // fields from 3 ("state") on
    // utime, stime, cutime, cstime are fields 14..17 (1-based) -> indices 11..14 here
    return Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
  } catch {
    return 0;
  }
}

/** Snapshot of system and own-process CPU time; pass the pids of long-lived helpers (the Python worker). */
export function cpuSnapshot(pids = []) {
  const sys = readJiffies();
  if (!sys) return null;
  const own = [process.pid, ...pids].reduce((s, p) => s + procJiffies(p), 0);
  return { ...sys, own, t: Date.now() };
}

/**
 * Between two snapshots: the share of all CPUs' time used by other processes (`foreign`) and stolen by
 * the hypervisor (`steal`), each in 0..1.
 */
export function cpuContention(a, b, ncpu) {
  if (!a || !b) return null;
  const total = b.busy + b.idle + b.steal - (a.busy + a.idle + a.steal);
  if (total <= 0) return null;
  const foreign = Math.max(0, b.busy - a.busy - (b.own - a.own));
  return { foreign: foreign / total, steal: (b.steal - a.steal) / total, seconds: (b.t - a.t) / 1000, ncpu };
}
