import type { Command } from 'commander';
import { Encoder } from '../model/encoder';
import { CODECS, StoreDtype } from '../store/format';
import { BadLine, countJsonl, readJsonl } from '../store/input';
import { detectFormat, readConll } from '../tasks/data';
import { nerRows } from '../tasks/features';
import type { EncodeItem } from '../store/store';
import { ActivationStore } from '../store/store';
import { int } from './args';
import { formatBytes, formatDuration, Progress } from './progress';
import { DEFAULT_QUEUE_NAME, encodeWithQueue } from '../scale/queue';

/** The --on-bad-line policy: stop at the first bad line, or warn, skip it and keep it for the summary. */
function badLinePolicy(f: EncodeFlags): { bad: BadLine[]; onBad: (b: BadLine) => void } {
  const bad: BadLine[] = [];
  const onBad = (b: BadLine) => {
    if (f.onBadLine === 'fail') throw new Error(`${b.file}:${b.line}: ${b.reason} (use --on-bad-line skip to skip such lines)`);
    bad.push(b);
    process.stderr.write(`warning: skipping ${b.file}:${b.line}: ${b.reason}\n`);
  };
  return { bad, onBad };
}

/** `er encode --queue`: shards to the workers, progress from the queue, then the merge. */
async function encodeThroughQueue(f: EncodeFlags, encoder: Encoder, layer: number): Promise<void> {
  if (detectFormat(f.input) === 'conll') throw new Error('--queue takes JSON-lines input; encode CoNLL files without --queue');
  const { bad, onBad } = badLinePolicy(f);
  const items: EncodeItem[] = [];
  for await (const it of readJsonl(f.input, { id: f.idField, text: f.textField, pair: f.pairField }, onBad)) items.push(it);
  const progress = new Progress();
  const t0 = Date.now();
  const r = await encodeWithQueue({
    queue: f.queue!, queueName: f.queueName, encoder, layer, dtype: f.dtype as StoreDtype,
    maxLength: int('--max-length', f.maxLength, 8, encoder.maxLength), stride: int('--stride', f.stride, 0, encoder.maxLength),
    store: f.store, items: items.map((i) => ({ id: i.id, text: i.text, ...(i.pair !== undefined ? { pair: i.pair } : {}) })),
    shardSize: int('--shard-size', f.shardSize, 1, 10_000_000), batchSize: int('--batch-size', f.batchSize, 1, 4096),
    attempts: int('--attempts', f.attempts, 1, 100), keepShards: f.keepShards,
    shardsTo: f.shardsTo ? { url: f.shardsTo, endpoint: f.endpoint } : undefined,
    onQueued: (q) => process.stdout.write(`run ${q.run}: ${q.shards} shard(s) of ${q.texts} texts queued on ${f.queue} (${q.textsSkipped} already stored)\n`),
    onProgress: f.quiet ? undefined : (p) => {
      const sec = (Date.now() - t0) / 1000;
      const text = p.redisDown ? `Redis unreachable: ${p.redisDown}; waiting` :
        p.phase === 'merging' ? 'merging the shard stores' :
        `${p.shardsDone}/${p.shards} shards (${p.shardsActive} in work), ${p.textsDone}/${p.texts} texts, ` +
          `${(p.textsDone / Math.max(sec, 1e-9)).toFixed(1)} texts/s, ${formatBytes(p.bytesDone)} written`;
      progress.update(p.textsDone, p.texts, text, p.phase !== 'encoding');
    },
  });
  if (!f.quiet) progress.finish();
  process.stdout.write(
    `run ${r.run}: ${r.shards} shard(s) by ${r.workers.length} worker(s), ${r.texts} texts (${r.textsSkipped} were already stored)` +
      `${r.requeued ? `, ${r.requeued} job(s) queued again after Redis lost them` : ''}; encode ${formatDuration(r.encodeSeconds * 1000)}, merge ${formatDuration(r.mergeSeconds * 1000)}\n` +
      `store ${r.store}: ${r.records} windows, ${r.tokens} tokens, ${formatBytes(r.bytes)}\n` +
      (bad.length ? `skipped ${bad.length} bad line(s)\n` : ''),
  );
}


interface EncodeFlags {
  model: string; layer: string; dtype: string; input: string; store: string;
  maxLength?: string; stride?: string; batchSize?: string; threads?: string; device: string; gpu?: string;
  onBadLine: string; idField?: string; textField?: string; pairField?: string; quiet?: boolean;
  queue?: string; queueName?: string; shardSize?: string; attempts?: string; shardsTo?: string; endpoint?: string; keepShards?: boolean;
}

/** `er encode`: run layers 1..k over a corpus and append the activations to a store. */
export function registerEncode(program: Command): void {
  program
    .command('encode')
    .description('run the encoder up to --layer over a JSON-lines corpus and store the activations (resumable)')
    .requiredOption('--model <dir>', 'Hugging Face model directory')
    .requiredOption('--layer <k>', 'layer whose output is stored (1..N)')
    .requiredOption('--input <file>', 'JSON lines ({"id": ..., "text": ..., "text_pair"?: ...}) or CoNLL (.conll: one token a line, sentences split by blank lines)')
    .requiredOption('--store <dir>', 'store directory (created if missing)')
    .option('--dtype <dtype>', 'stored value type: fp16 or fp32', 'fp16')
    .option('--max-length <n>', 'window length in tokens (default: the model maximum)')
    .option('--stride <n>', 'tokens shared by consecutive windows of a long text (default: 128 or max-length/4)')
    .option('--batch-size <n>', 'windows per forward batch', '32')
    .option('--threads <n>', 'compute threads (default: all cores)')
    .option('--device <device>', "where the encoder runs: cpu, cuda (an NVIDIA GPU; every family but DeBERTa-v2) or auto", 'cpu')
    .option('--gpu <n>', 'which GPU, with --device cuda or auto', '0')
    .option('--on-bad-line <policy>', 'a line that is not valid JSON or lacks a text: fail or skip', 'fail')
    .option('--id-field <name>', 'JSON field of the id (default "id"; the line number when absent)')
    .option('--text-field <name>', 'JSON field of the text (default "text")')
    .option('--pair-field <name>', 'JSON field of the second text (default "text_pair")')
    .option('--quiet', 'no progress output')
    .option('--queue <url>', 'encode through er worker processes on this Redis queue (redis://host:port/db), then merge')
    .option('--queue-name <name>', 'BullMQ queue name', DEFAULT_QUEUE_NAME)
    .option('--shard-size <n>', 'texts per shard job (with --queue)', '5000')
    .option('--attempts <n>', 'tries per shard before the run stops and names it (with --queue)', '3')
    .option('--shards-to <url>', 'shard stores travel through s3://bucket/prefix instead of a shared --work-dir (with --queue)')
    .option('--endpoint <url>', 'S3-compatible endpoint for --shards-to')
    .option('--keep-shards', 'keep the shard stores after merging (with --queue)')
    .action(async (f: EncodeFlags) => {
      if (!(f.dtype in CODECS)) throw new Error(`--dtype must be one of ${Object.keys(CODECS).join(', ')}, got ${JSON.stringify(f.dtype)}`);
      if (f.onBadLine !== 'fail' && f.onBadLine !== 'skip') throw new Error(`--on-bad-line must be fail or skip, got ${JSON.stringify(f.onBadLine)}`);
      if (f.device !== 'cpu' && f.device !== 'cuda' && f.device !== 'auto') throw new Error(`--device must be cpu, cuda or auto, got ${JSON.stringify(f.device)}`);
      const encoder = await Encoder.load(f.model, { threads: int('--threads', f.threads, 1, 1024), device: f.device, gpu: int('--gpu', f.gpu, 0, 1023) });
      if (!f.quiet && f.device !== 'cpu') process.stderr.write(`encoder on ${encoder.device === 'cuda' ? `GPU ${f.gpu}` : `the CPU (${encoder.deviceReason})`}
`);
      const layer = int('--layer', f.layer, 0, encoder.numLayers)!;
      if (f.queue) {
        try {
          await encodeThroughQueue(f, encoder, layer);
        } finally {
          encoder.close();
        }
        return;
      }
      const store = await ActivationStore.create(f.store, encoder, {
        layer,
        dtype: f.dtype as StoreDtype,
        maxLength: int('--max-length', f.maxLength, 8, encoder.maxLength),
        stride: int('--stride', f.stride, 0, encoder.maxLength),
      });
      const { bad, onBad } = badLinePolicy(f);
      const format = detectFormat(f.input);
      let items: AsyncIterable<EncodeItem> | EncodeItem[];
      let total: number;
      if (format === 'conll') {
        // NER sentences: the same word-aligned windows `er train --task ner` looks up
        const sentences = readConll(f.input, { tags: false, onBad });
        const { rows } = await nerRows(encoder, sentences, null, store.identity.maxLength);
        const windows = sentences.map(() => [] as typeof rows[number]['encoding'][]);
        for (const r of rows) windows[r.example].push(r.encoding);
        items = sentences.map((s, i) => ({ id: s.id, text: s.words.join(' '), encodings: windows[i] }));
        total = sentences.length;
      } else {
        items = readJsonl(f.input, { id: f.idField, text: f.textField, pair: f.pairField }, onBad);
        total = await countJsonl(f.input);
      }
      const progress = new Progress();
      let warnings = 0;
      try {
        const p = await store.encode(items, {
          batchSize: int('--batch-size', f.batchSize, 1, 4096),
          onWarning: (m) => {
            warnings++;
            if (warnings <= 5) process.stderr.write(`\nwarning: ${m}\n`);
          },
          onProgress: f.quiet ? undefined : (s) => {
            const sec = s.elapsedMs / 1000;
            const rate = s.textsDone / Math.max(sec, 1e-9);
            const eta = rate > 0 ? ((total - s.textsDone) / rate) * 1000 : Infinity;
            progress.update(s.textsDone, total,
              `${s.textsDone} texts (${s.textsSkipped} already stored), ${rate.toFixed(1)} texts/s, ` +
                `${(s.tokensDone / Math.max(sec, 1e-9)).toFixed(0)} tokens/s, ${formatBytes(s.bytesWritten)} written, ETA ${formatDuration(eta)}`);
          },
        });
        if (!f.quiet) progress.finish();
        const st = store.stats();
        process.stdout.write(
          `encoded ${p.textsDone} texts (${p.textsSkipped} were already stored), ${p.windowsDone} windows, ${p.tokensDone} tokens ` +
            `in ${formatDuration(p.elapsedMs)}; wrote ${p.recordsWritten} records (${formatBytes(p.bytesWritten)})\n` +
            `store ${store.dir}: layer ${layer}, ${f.dtype}, ${st.docs} texts, ${st.records} windows, ${st.tokens} tokens, ${formatBytes(st.bytes)}\n` +
            (bad.length ? `skipped ${bad.length} bad line(s): ${bad.slice(0, 10).map((b) => b.line).join(', ')}${bad.length > 10 ? ', ...' : ''}\n` : '') +
            (warnings ? `${warnings} text pair(s) were truncated to the max length\n` : ''),
        );
      } finally {
        store.close();
        encoder.close();
      }
    });
}
