import * as path from 'path';
import type { Command } from 'commander';
import { EmbeddingSession } from '../infer/embed';
import { deviceFlag, taskDevice, taskDeviceOptions } from './args';
import { InferenceSession, SessionOptions } from '../infer/session';
import { createServer, SERVE_DEFAULTS, ServedSession } from '../serve/server';

function int(name: string, v: string | undefined, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be an integer in ${min}..${max}, got ${JSON.stringify(v)}`);
  return n;
}

function positive(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a number >= 0, got ${JSON.stringify(v)}`);
  return n;
}

/** `--task DIR` (named by the directory's base name) or `--task NAME=DIR`. */
export function parseTaskFlags(flags: readonly string[], allowNone = false): { name: string; dir: string }[] {
  if (!flags.length && !allowNone) throw new Error('give at least one --task DIR (or --task NAME=DIR), or --model DIR to serve embeddings');
  const out: { name: string; dir: string }[] = [];
  for (const f of flags) {
    const eq = f.indexOf('=');
    const [name, dir] = eq > 0 ? [f.slice(0, eq), f.slice(eq + 1)] : [path.basename(path.resolve(f)), f];
    if (!dir) throw new Error(`--task ${f}: no directory after "="`);
    if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new Error(`--task ${f}: a task name takes letters, digits, ".", "_" and "-"; name it with --task NAME=${dir}`);
    const dup = out.find((t) => t.name === name);
    if (dup) throw new Error(`--task ${f}: the name ${JSON.stringify(name)} is already taken by ${dup.dir}; name one explicitly with --task NAME=DIR`);
    out.push({ name, dir });
  }
  return out;
}

/** `er serve`. */
export function registerServe(program: Command): void {
  taskDeviceOptions(program
    .command('serve')
    .description('serve trained tasks over HTTP: POST /v1/predict, GET /health, GET /metrics (Prometheus); with --model, sentence embeddings at POST /embed')
    .option('--task <dir>', 'task directory from er train, named by its base name, or NAME=DIR (repeat for several tasks)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--port <n>', 'port (0: any free port)', String(SERVE_DEFAULTS.port))
    .option('--host <addr>', 'address to listen on', SERVE_DEFAULTS.host)
    .option('--model <dir>', 'base model directory for every task (default: the one in each task.json); also serves POST /embed (sentence embeddings) from it')
    .option('--store <dir>', 'activation store for every task (default: the one in each task.json) and for /embed')
    .option('--pooling <kind>', 'pooling of /embed: mean or cls', 'mean')
    .option('--embed-device <device>', "where /embed's encoder runs: cpu, cuda or auto", 'cpu')
    .option('--read-through', 'store the activations of texts not in the store (takes the store\'s writer lock: one such process per store)')
    .option('--threads <n>', 'compute threads (default: all cores)')
    .option('--max-batch-tokens <n>', 'token budget of one batch', '8192')
    .option('--max-delay-ms <ms>', 'longest a request waits for others to batch with', '2')
    .option('--max-queue <n>', 'inputs waiting per task; a request that would exceed it gets 429', '1024')
    .option('--max-inputs <n>', 'inputs per request', String(SERVE_DEFAULTS.maxInputs))
    .option('--max-text-chars <n>', 'characters per text', String(SERVE_DEFAULTS.maxTextChars))
    .option('--timeout-ms <ms>', 'answer 504 to a request not done within this time (default: no limit)')
    .option('--log <format>', 'one line per request on stdout: json, or none', 'none'))
    .action(async (f: Record<string, string | boolean | string[] | undefined>) => {
      const tasks = parseTaskFlags(f.task as string[], typeof f.model === 'string');
      if (f.log !== 'json' && f.log !== 'none') throw new Error(`--log must be json or none, got ${JSON.stringify(f.log)}`);
      const serverOpts = {
        port: int('--port', f.port as string, 0, 65535),
        host: f.host as string,
        maxInputs: int('--max-inputs', f.maxInputs as string, 1),
        maxTextChars: int('--max-text-chars', f.maxTextChars as string, 1),
        timeoutMs: int('--timeout-ms', f.timeoutMs as string | undefined, 1),
        log: f.log === 'json' ? (line: object) => { process.stdout.write(JSON.stringify(line) + '\n'); } : undefined,
      };
      // the scheduler's options (src/infer/session.ts) travel as they are
      const sessionOpts: SessionOptions & { maxBatchTokens?: number; maxDelayMs?: number; maxQueue?: number } = {
        model: f.model as string | undefined,
        store: f.store as string | undefined,
        readThrough: Boolean(f.readThrough),
        threads: int('--threads', f.threads as string | undefined, 1),
        maxBatchTokens: int('--max-batch-tokens', f.maxBatchTokens as string, 1),
        maxDelayMs: positive('--max-delay-ms', f.maxDelayMs as string),
        maxQueue: int('--max-queue', f.maxQueue as string, 1),
        ...taskDevice(f),
      };
      const sessions = new Map<string, ServedSession>();
      try {
        for (const t of tasks) {
          const s = await InferenceSession.open(t.dir, sessionOpts);
          sessions.set(t.name, s);
          process.stderr.write(`${t.name}: ${s.spec.task} (${s.spec.mode}${s.spec.k ? `, k = ${s.spec.k}` : ''}) from ${t.dir}${s.store ? `, store ${s.store.dir}` : ', no store'}, on ${s.model.device === 'cuda' ? `GPU ${sessionOpts.gpu}` : `the CPU${sessionOpts.device === 'auto' ? ` (${s.model.deviceReason})` : ''}`}\n`);
        }
      } catch (err) {
        for (const s of sessions.values()) await s.close();
        throw err;
      }
      let embedder: EmbeddingSession | undefined;
      if (typeof f.model === 'string') {
        if (f.pooling !== 'mean' && f.pooling !== 'cls') throw new Error(`--pooling must be mean or cls, got ${JSON.stringify(f.pooling)}`);
        try {
          embedder = await EmbeddingSession.open(f.model, {
            store: f.store as string | undefined, threads: sessionOpts.threads, pooling: f.pooling, device: deviceFlag('--embed-device', f.embedDevice), gpu: sessionOpts.gpu,
            maxBatchTokens: sessionOpts.maxBatchTokens, maxDelayMs: sessionOpts.maxDelayMs, maxQueue: sessionOpts.maxQueue,
          });
        } catch (err) {
          for (const s of sessions.values()) await s.close();
          throw err;
        }
        process.stderr.write(`embed: ${f.model} (${f.pooling} pooling, ${embedder.maxLength} tokens${embedder.store ? `, store ${embedder.store.dir}` : ''}, on ${embedder.encoder.device === 'cuda' ? 'the GPU' : 'the CPU'})\n`);
      }
      const server = createServer(sessions, { ...serverOpts, embedder });
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) {
          process.stderr.write(`er serve: ${signal} again: exiting without waiting\n`);
          process.exit(1);
        }
        stopping = true;
        process.stderr.write(`er serve: ${signal}: no new requests; finishing the accepted ones\n`);
        server.close().then(
          () => { process.stderr.write('er serve: closed\n'); process.exit(0); },
          (err: Error) => { process.stderr.write(`er serve: ${err.message}\n`); process.exit(1); },
        );
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
      const url = await server.listen();
      process.stdout.write(`listening on ${url}\n`);
    });
}

