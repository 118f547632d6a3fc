/**
 * Encoding a corpus across machines on BullMQ (Redis 6.2+): `er encode --queue` cuts the
 * input into shards and queues one job per shard, carrying the store's identity; each
 * `er worker` encodes the shards it takes into a shard store of its own (resumable, as
 * `er encode` is) and hands it back through a shared folder or S3-compatible storage;
 * the coordinator follows the jobs, then merges the shard stores into one
 * (ActivationStore.merge) without re-encoding.
 *
 * Failures: a worker killed at any moment loses its job's lock; BullMQ's stalled-job
 * check gives the job to another worker, which resumes or redoes the shard. A job whose
 * identity differs from the worker's model is refused (UnrecoverableError, the reason
 * on the job) and stops the run; a shard that fails `attempts` times stops the run,
 * named. A Redis that restarts and lost the queue gets the missing jobs again (job ids
 * are fixed per run and shard, so a job is never queued twice).
 */
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { Job, Queue as QueueT, Worker as WorkerT } from 'bullmq';
import { Encoder } from '../model/encoder';
import { weightFingerprintAsync } from '../model/checkpoint';
import { identityHash, StoreDtype, StoreIdentity } from '../store/format';
import { ActivationStore, StoreError, storeIdentity } from '../store/store';
import { pullStore, pushStore } from './s3';
import { makeDir } from '../util/fs';

type BullMQ = typeof import('bullmq');

function bullmq(): BullMQ {
  try {
    require.resolve('ioredis');
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    return require('bullmq') as BullMQ;
  } catch {
    throw new Error('encoding through a queue needs the packages bullmq and ioredis: npm install bullmq ioredis');
  }
}

/** Segment numbers reserved per shard (10 TiB at 1 GiB segments). */
const SEGMENTS_PER_SHARD = 10_000;

/** The default BullMQ queue name of encode jobs. */
export const DEFAULT_QUEUE_NAME = 'er-encode';

/** Redis connection options from `redis://[user:password@]host[:port][/db]` (or rediss:// for TLS). */
export function parseRedisUrl(url: string): { host: string; port: number; db: number; username?: string; password?: string; tls?: object; maxRetriesPerRequest: null } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new TypeError(`${JSON.stringify(url)} is not a Redis URL (expected redis://host:port/db)`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new TypeError(`${JSON.stringify(url)} is not a Redis URL (expected redis://host:port/db)`);
  const db = u.pathname && u.pathname !== '/' ? Number(u.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0 || db > 15) throw new TypeError(`${url}: the database number must be 0..15`);
  return {
    host: u.hostname || '127.0.0.1',
    port: u.port ? Number(u.port) : 6379,
    db,
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
    // BullMQ's blocking commands must wait out a Redis restart, not fail
    maxRetriesPerRequest: null,
  };
}

/** What one shard job carries. */
export interface ShardJob {
  run: string;
  shard: number;
  shards: number;
  /** index in the input of the shard's first text */
  first: number;
  /** the shard store's first segment number: shards get disjoint ranges, so the merge links their files */
  firstSegment: number;
  identity: StoreIdentity;
  identityHash: string;
  /** the coordinator's model directory: where a worker without --model looks */
  modelDir: string;
  batchSize: number;
  items: { id: string; text: string; pair?: string }[];
  /** where the shard store goes: the worker's work folder, or s3://.../<run>/shard-NNNNNN */
  output: { kind: 'dir' } | { kind: 's3'; url: string; endpoint?: string };
}

/** What a finished shard job returns. */
export interface ShardResult {
  /** the shard store's folder (output 'dir') */
  dir?: string;
  /** the shard store's URL (output 's3') */
  url?: string;
  worker: string;
  texts: number;
  records: number;
  tokens: number;
  bytes: number;
  seconds: number;
}

/** A shard job's progress, as `job.progress` shows it to any process. */
export interface ShardProgress {
  texts: number;
  tokens: number;
  bytes: number;
}

function pad(n: number): string {
  return String(n).padStart(6, '0');
}

function differingFields(a: StoreIdentity, b: StoreIdentity): string {
  const out: string[] = [];
  for (const k of Object.keys(a) as (keyof StoreIdentity)[]) {
    if (JSON.stringify(a[k]) !== JSON.stringify(b[k])) {
      const show = (v: unknown) => (typeof v === 'string' && v.length > 16 ? `${v.slice(0, 12)}…` : JSON.stringify(v));
      out.push(`${k} (job ${show(a[k])}, worker ${show(b[k])})`);
    }
  }
  return out.join(', ');
}

// ------------------------------------------------------------------ worker

/** Options of {@link startWorker}. */
export interface WorkerOptions {
  /** redis://host:port/db */
  queue: string;
  queueName?: string;
  /** jobs at once (they share the encoder and its compute thread); default 1 */
  concurrency?: number;
  /** where shard stores are written; default ./er-shards */
  workDir?: string;
  /** the model directory; default: the one each job names */
  model?: string;
  threads?: number;
  /** how long a job's lock lasts without renewal: a killed worker's job is taken up again after it; default 30 s */
  lockMs?: number;
  /** S3 endpoint for jobs whose shards go to s3:// (default: the job's) */
  endpoint?: string;
  log?: (line: string) => void;
}

/** A running worker. */
export interface RunningWorker {
  /** finishes the jobs in hand, then stops */
  close(): Promise<void>;
}

/** Starts a worker that takes shard jobs from the queue until closed. */
export async function startWorker(opts: WorkerOptions): Promise<RunningWorker> {
  const { Worker, UnrecoverableError } = bullmq();
  const connection = parseRedisUrl(opts.queue);
  const workDir = path.resolve(opts.workDir ?? 'er-shards');
  makeDir(workDir);
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const me = `${os.hostname()}:${process.pid}`;
  const encoders = new Map<string, Promise<Encoder>>();
  const encoderFor = (dir: string): Promise<Encoder> => {
    const key = path.resolve(dir);
    let e = encoders.get(key);
    if (!e) {
      e = Encoder.load(key, { threads: opts.threads });
      e.catch(() => encoders.delete(key));
      encoders.set(key, e);
    }
    return e;
  };
  const lockMs = opts.lockMs ?? 30_000;
  // a worker told its model loads it now, not when the first job arrives
  if (opts.model) await encoderFor(opts.model);

  const processor = async (job: Job<ShardJob, ShardResult>): Promise<ShardResult> => {
    const d = job.data;
    const t0 = Date.now();
    const modelDir = opts.model ?? d.modelDir;
    if (!fs.existsSync(path.join(modelDir, 'config.json'))) {
      throw new UnrecoverableError(`refused by worker ${me}: no model at ${modelDir} (start the worker with --model DIR)`);
    }
    const enc = await encoderFor(modelDir);
    const { layer, dtype, maxLength, stride } = d.identity;
    if (layer > enc.numLayers) throw new UnrecoverableError(`refused by worker ${me}: the job wants layer ${layer}, the model at ${modelDir} has ${enc.numLayers}`);
    await weightFingerprintAsync(enc.checkpoint, layer);
    const mine = storeIdentity(enc, layer, dtype, maxLength, stride);
    if (identityHash(mine) !== d.identityHash) {
      throw new UnrecoverableError(`refused by worker ${me}: its model ${modelDir} does not match the job's store identity: ${differingFields(d.identity, mine) || 'identity hash'}`);
    }
    const dir = path.join(workDir, d.run, `shard-${pad(d.shard)}`);
    log(`shard ${d.shard + 1}/${d.shards} of run ${d.run}: ${d.items.length} texts -> ${dir}`);
    const st = await ActivationStore.create(dir, enc, { layer, dtype, maxLength, stride, firstSegment: d.firstSegment });
    let last = 0;
    let stats;
    try {
      const p = await st.encode(d.items, {
        batchSize: d.batchSize,
        onProgress: (s) => {
          const now = Date.now();
          if (now - last < 500) return;
          last = now;
          void job.updateProgress({ texts: s.textsDone, tokens: s.tokensDone, bytes: s.bytesWritten } satisfies ShardProgress).catch(() => undefined);
        },
      });
      stats = { ...st.stats(), textsDone: p.textsDone };
    } finally {
      st.close();
    }
    let url: string | undefined;
    if (d.output.kind === 's3') {
      url = `${d.output.url}/${d.run}/shard-${pad(d.shard)}`;
      await pushStore(dir, url, { endpoint: opts.endpoint ?? d.output.endpoint });
      fs.rmSync(dir, { recursive: true, force: true });
    }
    await job.updateProgress({ texts: d.items.length, tokens: stats.tokens, bytes: stats.bytes } satisfies ShardProgress);
    log(`shard ${d.shard + 1}/${d.shards} of run ${d.run}: done, ${stats.records} records, ${stats.bytes} bytes in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    return { ...(url ? { url } : { dir }), worker: me, texts: d.items.length, records: stats.records, tokens: stats.tokens, bytes: stats.bytes, seconds: (Date.now() - t0) / 1000 };
  };

  const worker = new Worker<ShardJob, ShardResult>(opts.queueName ?? DEFAULT_QUEUE_NAME, processor, {
    connection,
    concurrency: opts.concurrency ?? 1,
    lockDuration: lockMs,
    stalledInterval: Math.max(1000, Math.floor(lockMs / 2)),
    // a shard may be cut off many times (killed workers, lost machines): never give up for that
    maxStalledCount: 1000,
  });
  worker.on('failed', (job, err) => log(`shard ${job ? job.data.shard + 1 : '?'}: failed: ${err.message}`));
  worker.on('error', (err) => log(`worker: ${err.message}`));
  await worker.waitUntilReady();
  return {
    async close() {
      await worker.close();
      for (const e of encoders.values()) (await e.catch(() => null))?.close();
    },
  };
}

// ------------------------------------------------------------------ coordinator

/** Options of {@link encodeWithQueue}. */
export interface QueueEncodeOptions {
  /** redis://host:port/db */
  queue: string;
  queueName?: string;
  encoder: Encoder;
  layer: number;
  dtype?: StoreDtype;
  maxLength?: number;
  stride?: number;
  /** the merged store (created if missing; texts it already holds are not queued) */
  store: string;
  items: { id: string; text: string; pair?: string }[];
  /** texts per shard (rounded up to a multiple of batchSize; repeats of a text join its first shard); default 5000 */
  shardSize?: number;
  batchSize?: number;
  /** tries per shard before the run stops and names it; default 3 */
  attempts?: number;
  /** shard stores travel through s3://bucket/prefix instead of a shared folder */
  shardsTo?: { url: string; endpoint?: string };
  /** keep the shard stores after the merge */
  keepShards?: boolean;
  pollMs?: number;
  onProgress?: (p: QueueProgress) => void;
  /** called once the run's jobs are in the queue */
  onQueued?: (info: { run: string; shards: number; texts: number; textsSkipped: number }) => void;
}

/** Where a queued encode stands. */
export interface QueueProgress {
  run: string;
  shards: number;
  shardsDone: number;
  shardsActive: number;
  texts: number;
  textsDone: number;
  tokensDone: number;
  bytesDone: number;
  /** set while Redis cannot be reached */
  redisDown?: string;
  phase: 'queued' | 'encoding' | 'merging' | 'done';
}

/** What a queued encode did. */
export interface QueueEncodeResult {
  run: string;
  store: string;
  shards: number;
  texts: number;
  /** texts already in the store before the run */
  textsSkipped: number;
  records: number;
  tokens: number;
  bytes: number;
  /** jobs re-added after Redis lost them */
  requeued: number;
  workers: string[];
  encodeSeconds: number;
  mergeSeconds: number;
}

/** Raised when a shard cannot be encoded: it names the shard and why. */
export class QueueEncodeError extends Error {
  constructor(message: string, readonly shard: number) {
    super(message);
    this.name = 'QueueEncodeError';
  }
}

/**
 * Encodes `items` into `store` through the queue's workers: one job per shard, then a
 * merge. Re-running it with the same input and settings resumes the same run (its jobs
 * have fixed ids): finished shards are not redone.
 */
export async function encodeWithQueue(opts: QueueEncodeOptions): Promise<QueueEncodeResult> {
  const { Queue, QueueEvents } = bullmq();
  const enc = opts.encoder;
  const batchSize = opts.batchSize ?? 32;
  const attempts = opts.attempts ?? 3;
  if (!Number.isInteger(attempts) || attempts < 1 || attempts > 100) throw new RangeError(`attempts must be an integer in 1..100, got ${attempts}`);
  const shardSize = Math.ceil((opts.shardSize ?? 5000) / batchSize) * batchSize;
  if (!Number.isInteger(shardSize) || shardSize < 1) throw new RangeError(`shardSize must be a positive integer, got ${opts.shardSize}`);
  // the target store: created (or checked against) first, and what it holds is not queued
  const target = await ActivationStore.create(opts.store, enc, { layer: opts.layer, dtype: opts.dtype, maxLength: opts.maxLength, stride: opts.stride });
  const identity = target.identity;
  const idHash = target.manifest.identityHash;
  // shard i numbers its segments from segmentBase + i * SEGMENTS_PER_SHARD: above the store's own
  const lastSegment = target.stats().lastSegment;
  const segmentBase = (Math.floor(lastSegment / SEGMENTS_PER_SHARD) + 1) * SEGMENTS_PER_SHARD + 1;
  const ids = new Set<string>();
  const todo: { id: string; text: string; pair?: string }[] = [];
  let skipped = 0;
  for (const it of opts.items) {
    if (ids.has(it.id)) continue;
    ids.add(it.id);
    if (target.has(it.id)) skipped++;
    else todo.push({ id: it.id, text: it.text, ...(it.pair !== undefined ? { pair: it.pair } : {}) });
  }
  target.close();
  const h = createHash('sha256').update(idHash).update(`\0${shardSize}\0${batchSize}\0`);
  for (const it of todo) h.update(it.id).update('\0').update(it.text).update('\0').update(it.pair ?? '').update('\u0001');
  const run = h.digest('hex').slice(0, 16);
  // shards in input order; a text seen before (another id, the same content) joins the
  // shard of its first occurrence, so no two shards store the same windows
  const shards: ShardJob[] = [];
  const shardOf = new Map<string, number>();
  const output: ShardJob['output'] = opts.shardsTo ? { kind: 's3', url: opts.shardsTo.url.replace(/\/+$/, ''), endpoint: opts.shardsTo.endpoint } : { kind: 'dir' };
  let fresh = shardSize; // texts of the current shard that are not repeats
  for (let i = 0; i < todo.length; i++) {
    const it = todo[i];
    const content = `${it.text}\u0000${it.pair ?? ''}`;
    const earlier = shardOf.get(content);
    if (earlier !== undefined) {
      shards[earlier].items.push(it);
      continue;
    }
    if (fresh >= shardSize) {
      shards.push({ run, shard: shards.length, shards: 0, first: i, firstSegment: segmentBase + shards.length * SEGMENTS_PER_SHARD, identity, identityHash: idHash, modelDir: enc.checkpoint.dir, batchSize, items: [], output });
      fresh = 0;
    }
    shardOf.set(content, shards.length - 1);
    shards[shards.length - 1].items.push(it);
    fresh++;
  }
  for (const sh of shards) sh.shards = shards.length;
  const progress: QueueProgress = { run, shards: shards.length, shardsDone: 0, shardsActive: 0, texts: todo.length, textsDone: 0, tokensDone: 0, bytesDone: 0, phase: 'queued' };
  const result: QueueEncodeResult = { run, store: path.resolve(opts.store), shards: shards.length, texts: todo.length, textsSkipped: skipped, records: 0, tokens: 0, bytes: 0, requeued: 0, workers: [], encodeSeconds: 0, mergeSeconds: 0 };
  if (shards.length === 0) {
    progress.phase = 'done';
    opts.onProgress?.(progress);
    return result;
  }
  const queue: QueueT<ShardJob, ShardResult> = new Queue<ShardJob, ShardResult>(opts.queueName ?? DEFAULT_QUEUE_NAME, { connection: parseRedisUrl(opts.queue) });
  const jobId = (s: number) => `${run}-${pad(s)}`;
  const jobOpts = (s: number) => ({ jobId: jobId(s), attempts, backoff: { type: 'exponential' as const, delay: 1000 }, removeOnComplete: false, removeOnFail: false });
  const t0 = Date.now();
  const results = new Map<number, ShardResult>();
  const failedSince = new Map<number, number>();
  const pollMs = opts.pollMs ?? 500;
  let redisDownSince = 0;
  // the poll below runs every pollMs, and at once when a job of the run completes or fails
  const events = new QueueEvents(opts.queueName ?? DEFAULT_QUEUE_NAME, { connection: parseRedisUrl(opts.queue) });
  let wake: (() => void) | null = null;
  const nudge = ({ jobId: id }: { jobId: string }) => { if (id.startsWith(`${run}-`) && wake) wake(); };
  const progressOf = new Map<string, Partial<ShardProgress>>();
  events.on('progress', ({ jobId: id, data }: { jobId: string; data: unknown }) => {
    if (id.startsWith(`${run}-`) && data && typeof data === 'object') progressOf.set(id, data as Partial<ShardProgress>);
  });
  events.on('completed', nudge);
  events.on('failed', nudge);
  events.on('error', () => undefined);
  try {
    await queue.waitUntilReady();
    for (const sh of shards) {
      const job = await queue.getJob(jobId(sh.shard));
      if (!job) await queue.add('encode-shard', sh, jobOpts(sh.shard));
      else if ((await job.getState()) === 'failed') await job.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true }); // a new run of a shard that failed before
    }
    opts.onQueued?.({ run, shards: shards.length, texts: todo.length, textsSkipped: skipped });
    progress.phase = 'encoding';
    while (results.size < shards.length) {
      let active = 0, texts = 0, tokens = 0, bytes = 0;
      const count = (p: Partial<ShardProgress> | undefined) => {
        texts += p?.texts ?? 0;
        tokens += p?.tokens ?? 0;
        bytes += p?.bytes ?? 0;
      };
      try {
        for (const sh of shards) {
          const id = jobId(sh.shard);
          const done = results.get(sh.shard);
          if (done) {
            count(done);
            continue;
          }
          // the state alone (the job's texts are not fetched again); progress comes from the events
          const state = await queue.getJobState(id);
          if (state === 'unknown') {
            // Redis lost it (restarted without persistence, or flushed): queue it again
            await queue.add('encode-shard', sh, jobOpts(sh.shard));
            result.requeued++;
            continue;
          }
          if (state !== 'completed' && state !== 'failed') {
            failedSince.delete(sh.shard);
            if (state === 'active') active++;
            count(progressOf.get(id));
            continue;
          }
          const job = await queue.getJob(id);
          if (!job) continue; // removed between the two calls: seen again next round
          if (state === 'completed') {
            results.set(sh.shard, job.returnvalue);
            count(job.returnvalue);
            continue;
          }
          // failed: final when refused or out of tries; one with tries left shows as failed for a
          // moment before its retry is scheduled (and is taken as final if it stays so for 10 s)
          if (!failedSince.has(sh.shard)) failedSince.set(sh.shard, Date.now());
          const refused = /^refused by worker/.test(job.failedReason ?? '');
          const stuck = Date.now() - failedSince.get(sh.shard)! > 10_000;
          if (refused || stuck || job.attemptsMade >= (job.opts.attempts ?? attempts)) {
            const last = sh.items.length ? `${JSON.stringify(sh.items[0].id)}..${JSON.stringify(sh.items[sh.items.length - 1].id)}` : '';
            throw new QueueEncodeError(
              `shard ${sh.shard + 1}/${shards.length} (${sh.items.length} texts from text ${sh.first + 1} of the input, ids ${last}) ` +
                `${refused ? 'was refused' : `failed ${job.attemptsMade} time(s)`}: ${job.failedReason}`,
              sh.shard,
            );
          }
        }
        redisDownSince = 0;
        delete progress.redisDown;
      } catch (err) {
        if (err instanceof QueueEncodeError) throw err;
        // Redis unreachable: the client reconnects by itself; say so and keep waiting
        if (!redisDownSince) redisDownSince = Date.now();
        progress.redisDown = `${(err as Error).message} (for ${((Date.now() - redisDownSince) / 1000).toFixed(0)} s)`;
      }
      Object.assign(progress, { shardsDone: results.size, shardsActive: active, textsDone: texts, tokensDone: tokens, bytesDone: bytes });
      opts.onProgress?.({ ...progress });
      if (results.size < shards.length) {
        await new Promise<void>((r) => {
          const t = setTimeout(r, pollMs);
          wake = () => { clearTimeout(t); r(); };
        });
        wake = null;
      }
    }
    result.encodeSeconds = (Date.now() - t0) / 1000;
    // the merge: shard stores from the shared folder, or pulled from object storage
    progress.phase = 'merging';
    opts.onProgress?.({ ...progress });
    const t1 = Date.now();
    const ordered = shards.map((sh) => results.get(sh.shard)!);
    result.workers = [...new Set(ordered.map((r) => r.worker))].sort();
    const dirs: string[] = [];
    const pulled = `${path.resolve(opts.store)}.shards-${run}`;
    for (const [i, r] of ordered.entries()) {
      if (r.url) {
        const local = path.join(pulled, `shard-${pad(i)}`);
        if (!fs.existsSync(local)) await pullStore(r.url, local, { endpoint: opts.shardsTo?.endpoint });
        dirs.push(local);
      } else {
        if (!r.dir || !fs.existsSync(path.join(r.dir, 'manifest.json'))) {
          throw new StoreError(`shard ${i + 1}: its store ${r.dir} (written by ${r.worker}) is not reachable from here; ` +
            'give the workers a --work-dir on a filesystem the coordinator shares, or send shards through object storage (--shards-to s3://...)');
        }
        dirs.push(r.dir);
      }
    }
    await ActivationStore.merge(opts.store, dirs, { removeShards: !opts.keepShards, link: !opts.keepShards });
    if (fs.existsSync(pulled) && !opts.keepShards) fs.rmSync(pulled, { recursive: true, force: true });
    result.mergeSeconds = (Date.now() - t1) / 1000;
    const merged = await ActivationStore.open(opts.store);
    const st = merged.stats();
    merged.close();
    Object.assign(result, { records: st.records, tokens: st.tokens, bytes: st.bytes });
    // the run's jobs are done with
    for (const sh of shards) await (await queue.getJob(jobId(sh.shard)))?.remove().catch(() => undefined);
    progress.phase = 'done';
    opts.onProgress?.({ ...progress });
    return result;
  } catch (err) {
    if (err instanceof QueueEncodeError) {
      // stop the run: the shards not yet taken are withdrawn (one in hand finishes and is ignored)
      for (const sh of shards) {
        const job = await queue.getJob(jobId(sh.shard)).catch(() => undefined);
        const state = job ? await job.getState().catch(() => 'unknown') : 'missing';
        if (job && (state === 'waiting' || state === 'delayed' || state === 'prioritized')) await job.remove().catch(() => undefined);
      }
    }
    throw err;
  } finally {
    await events.close().catch(() => undefined);
    await queue.close();
  }
}
