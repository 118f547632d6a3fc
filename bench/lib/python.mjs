// A long-lived Python worker (bench/peers/torch_encoder.py serve): one JSON request per line on stdin,
// one JSON reply per line on stdout. Keeping it alive lets the harness interleave PyTorch with the
// other engines rep by rep without paying the model load each time.
import { spawn, execFile } from 'node:child_process';
import { createInterface } from 'node:readline';

export const PYTHON = process.env.PYTHON || 'python3';

/** Environment for Python peers: their OpenMP / MKL pools sized to the benchmark's thread count. */
export function peerEnv(threads) {
  const n = String(threads);
  return {
    ...process.env,
    OMP_NUM_THREADS: n,
    MKL_NUM_THREADS: n,
    OPENBLAS_NUM_THREADS: '1',
    TOKENIZERS_PARALLELISM: 'false',
    HF_HUB_OFFLINE: '1',
    TRANSFORMERS_OFFLINE: '1',
    HF_HUB_DISABLE_PROGRESS_BARS: '1',
    TRANSFORMERS_VERBOSITY: 'error',
  };
}

export class PythonWorker {
  constructor(script, args, { threads, onStderr } = {}) {
    this.proc = spawn(PYTHON, [script, ...args], { env: peerEnv(threads), stdio: ['pipe', 'pipe', 'pipe'] });
    this.pending = [];
    this.stderrTail = '';
    this.exited = null;
    createInterface({ input: this.proc.stdout }).on('line', (line) => {
      const p = this.pending.shift();
      if (!p) return;
      let msg;
      try {
        msg = JSON.parse(line);
      } catch {
        p.reject(new Error(`python worker sent a line that is not JSON: ${line.slice(0, 200)}`));
        return;
      }
      if (msg && msg.error) p.reject(new Error(`python worker: ${msg.error}`));
      else p.resolve(msg);
    });
    this.proc.stderr.on('data', (d) => {
      const s = d.toString();
      this.stderrTail = (this.stderrTail + s).slice(-4000);
      if (onStderr) onStderr(s);
    });
    this.proc.on('exit', (code, signal) => {
      this.exited = { code, signal };
      const err = new Error(`python worker exited (code ${code}, signal ${signal}); stderr tail:\n${this.stderrTail}`);
      for (const p of this.pending.splice(0)) p.reject(err);
    });
  }

  request(obj) {
    if (this.exited) return Promise.reject(new Error(`python worker already exited: ${JSON.stringify(this.exited)}`));
    return new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject });
      this.proc.stdin.write(JSON.stringify(obj) + '\n');
    });
  }

  async close() {
    if (this.exited) return;
    try {
      await Promise.race([this.request({ cmd: 'quit' }), new Promise((r) => setTimeout(r, 5000))]);
    } catch {
      /* exiting anyway */
    }
    if (!this.exited) {
      // wait for the exit (so its CPU time lands in our cutime), killing it if it lingers
      await new Promise((r) => {
        const t = setTimeout(() => {
          this.proc.kill();
          r();
        }, 5000);
        this.proc.once('exit', () => {
          clearTimeout(t);
          r();
        });
      });
    }
  }
}

/** Runs a Python script to completion and parses the last stdout line as JSON. */
export function runPythonJson(script, args, { threads, timeoutMs = 30 * 60 * 1000, inheritStderr = false } = {}) {
  return new Promise((resolve, reject) => {
    const child = execFile(
      PYTHON,
      [script, ...args],
      { env: peerEnv(threads), maxBuffer: 64 * 1024 * 1024, timeout: timeoutMs },
      (err, stdout, stderr) => {
        if (err) {
          reject(new Error(`${script} ${args.join(' ')} failed: ${err.message}\n${String(stderr).slice(-4000)}`));
          return;
        }
        const lines = String(stdout).trim().split('\n');
        try {
          resolve(JSON.parse(lines[lines.length - 1]));
        } catch {
          reject(new Error(`${script}: last stdout line is not JSON: ${lines[lines.length - 1]}`));
        }
      },
    );
    if (inheritStderr) child.stderr.pipe(process.stderr);
  });
}
