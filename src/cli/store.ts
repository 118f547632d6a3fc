import type { Command } from 'commander';
import { pullStore, pushStore, TransferProgress } from '../scale/s3';
import { ActivationStore } from '../store/store';
import { formatBytes, formatDuration, Progress } from './progress';

function transferLine(p: TransferProgress, t0: number): string {
  const s = (Date.now() - t0) / 1000;
  return `${p.filesDone}/${p.files} files, ${formatBytes(p.bytesMoved)} moved, ${formatBytes(p.bytesSkipped)} already there, ` +
    `${s > 0 ? formatBytes(p.bytesMoved / s) : '?'}/s${p.file ? ` (${p.file})` : ''}`;
}

/** `er store merge|push|pull`: combine shard stores, move stores through S3-compatible storage. */
export function registerStore(program: Command): void {
  const store = program.command('store').description('merge shard stores; push and pull stores through S3-compatible object storage');

  store
    .command('merge')
    .description('merge shard stores (same model and settings) into one store, without re-encoding')
    .requiredOption('--store <dir>', 'the merged store (created if missing, else added to)')
    .argument('<shards...>', 'shard store directories')
    .option('--remove-shards', 'delete each shard once the merged index holds it')
    .option('--link', 'hard-link segment files where their numbers are free (same filesystem; needs --remove-shards)')
    .option('--no-verify', 'skip checking every shard record before merging')
    .option('--quiet', 'no progress output')
    .action(async (shards: string[], f: { store: string; removeShards?: boolean; link?: boolean; verify: boolean; quiet?: boolean }) => {
      const t0 = Date.now();
      const r = await ActivationStore.merge(f.store, shards, {
        verify: f.verify,
        removeShards: f.removeShards,
        link: f.link,
        onShard: (s) => { if (!f.quiet) process.stderr.write(`merged ${s.shard}: ${s.recordsAdded} records, ${formatBytes(s.bytes)}\n`); },
      });
      process.stdout.write(`${r.dir}: merged ${r.shards} shard(s): ${r.recordsAdded} records added (${r.recordsDuplicate} already there), ` +
        `${r.docsAdded} texts (${r.docsDuplicate} already there), ${r.segments} segment(s) (${r.linked} linked), ${formatBytes(r.bytes)} in ${formatDuration(Date.now() - t0)}\n`);
    });

  store
    .command('push')
    .description('upload a store to s3://bucket/prefix (resumable; er-store.json is written last)')
    .requiredOption('--store <dir>', 'store directory')
    .requiredOption('--to <url>', 's3://bucket/prefix')
    .option('--endpoint <url>', 'S3-compatible endpoint (MinIO, Ceph RGW, ...); AWS S3 when absent')
    .option('--part-mib <n>', 'multipart part size in MiB (at least 5)', '16')
    .option('--quiet', 'no progress output')
    .action(async (f: { store: string; to: string; endpoint?: string; partMib: string; quiet?: boolean }) => {
      const progress = new Progress();
      const t0 = Date.now();
      const r = await pushStore(f.store, f.to, {
        endpoint: f.endpoint, partBytes: Math.round(Number(f.partMib) * 2 ** 20),
        onProgress: (p) => { if (!f.quiet) progress.update(p.bytesMoved + p.bytesSkipped, p.bytesTotal, transferLine(p, t0)); },
      });
      if (!f.quiet) progress.finish();
      process.stdout.write(`pushed ${f.store} to ${r.url}: ${r.files} files, ${formatBytes(r.bytesMoved)} uploaded, ${formatBytes(r.bytesSkipped)} already there, in ${r.seconds.toFixed(1)} s\n`);
    });

  store
    .command('pull')
    .description('download a pushed store into a new directory (resumable; verified before it appears under its name)')
    .requiredOption('--from <url>', 's3://bucket/prefix')
    .requiredOption('--store <dir>', 'the new store directory (must not exist)')
    .option('--endpoint <url>', 'S3-compatible endpoint; AWS S3 when absent')
    .option('--quiet', 'no progress output')
    .action(async (f: { from: string; store: string; endpoint?: string; quiet?: boolean }) => {
      const progress = new Progress();
      const t0 = Date.now();
      const r = await pullStore(f.from, f.store, {
        endpoint: f.endpoint,
        onProgress: (p) => { if (!f.quiet) progress.update(p.bytesMoved + p.bytesSkipped, p.bytesTotal, transferLine(p, t0)); },
      });
      if (!f.quiet) progress.finish();
      process.stdout.write(`pulled ${r.url} into ${f.store}: ${r.files} files, ${formatBytes(r.bytesMoved)} downloaded, ${formatBytes(r.bytesSkipped)} resumed, verified, in ${r.seconds.toFixed(1)} s\n`);
    });
}
