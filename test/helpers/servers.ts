// Real servers on loopback for the scale-out tests: Redis (Debian's redis-server) and an
// S3-compatible server (moto_server, from PyPI's moto[server]). Each starts on a free
// port and is stopped by the returned function; `...Available` says whether the binary is
// installed (scripts/setup.sh, which .ci/run runs, installs both).
import { ChildProcess, spawn, spawnSync } from 'child_process';
import * as net from 'net';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function has(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).status === 0;
}

async function waitPort(port: number, child: ChildProcess, name: string, timeoutMs = 30_000): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${name} exited with code ${child.exitCode} before listening`);
    const ok = await new Promise<boolean>((resolve) => {
      const c = net.connect(port, '127.0.0.1', () => { c.end(); resolve(true); });
      c.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() - t0 > timeoutMs) throw new Error(`${name} did not listen on ${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface Running {
  port: number;
  url: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

function stopper(child: ChildProcess): () => Promise<void> {
  return () => new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

// In CI (CI set) the tests run whether or not the binary is found: a missing server fails them
export const redisAvailable = has('redis-server') || !!process.env.CI;
export const motoAvailable = has('moto_server') || !!process.env.CI;

/** redis-server on `port` (a free one by default), no persistence unless asked. */
export async function startRedis(port?: number, opts: { appendonly?: boolean; dir?: string } = {}): Promise<Running> {
  const p = port ?? (await freePort());
  const args = ['--port', String(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', opts.appendonly ? 'yes' : 'no', ...(opts.dir ? ['--dir', opts.dir] : [])];
  const child = spawn('redis-server', args, { stdio: 'ignore' });
  await waitPort(p, child, 'redis-server');
  return { port: p, url: `redis://127.0.0.1:${p}/0`, child, stop: stopper(child) };
}

/** moto_server (an S3-compatible server) on a free port. */
export async function startMoto(): Promise<Running> {
  const p = await freePort();
  const child = spawn('moto_server', ['-H', '127.0.0.1', '-p', String(p)], { stdio: 'ignore' });
  await waitPort(p, child, 'moto_server', 60_000);
  return { port: p, url: `http://127.0.0.1:${p}`, child, stop: stopper(child) };
}
