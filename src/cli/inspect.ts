import type { Command } from 'commander';
import { ActivationStore } from '../store/store';
import { formatBytes } from './progress';

/** `er inspect`: what a store holds, and (with --verify) whether every byte checks out. */
export function registerInspect(program: Command): void {
  program
    .command('inspect')
    .description("show a store's identity and contents; --verify checks every record's checksum and the index")
    .requiredOption('--store <dir>', 'store directory')
    .option('--verify', 'check every segment and every index entry')
    .option('--json', 'print JSON')
    .action(async (f: { store: string; verify?: boolean; json?: boolean }) => {
      const store = await ActivationStore.open(f.store);
      try {
        const stats = store.stats();
        const verify = f.verify ? await store.verify() : undefined;
        if (f.json) {
          process.stdout.write(JSON.stringify({ dir: store.dir, manifest: store.manifest, stats, verify }, null, 2) + '\n');
        } else {
          const id = store.identity;
          process.stdout.write(
            `store ${store.dir} (format ${id.formatVersion})\n` +
              `  model: ${id.family}, hidden ${id.hidden}, weights ${id.modelFingerprint.slice(0, 16)}… (from ${store.manifest.modelDir})\n` +
              `  layer ${id.layer}, ${id.dtype}, max length ${id.maxLength}, stride ${id.stride}, tokenizer ${id.tokenizerFingerprint.slice(0, 16)}…\n` +
              `  ${stats.docs} texts, ${stats.records} windows, ${stats.tokens} tokens, ${formatBytes(stats.bytes)} in ${stats.segments} segment(s)` +
              (stats.tokens ? `, ${(stats.bytes / stats.tokens).toFixed(1)} bytes a token` : '') + '\n',
          );
          if (verify) {
            for (const s of verify.segments) {
              const extra = s.fileBytes > s.committedBytes ? ` (+${s.fileBytes - s.committedBytes} uncommitted bytes)` : '';
              process.stdout.write(`  ${s.problems.length ? 'FAIL' : 'ok  '} ${s.file}: ${s.records} records, ${formatBytes(s.committedBytes)}${extra}\n`);
              for (const p of s.problems) process.stdout.write(`       ${p}\n`);
            }
            process.stdout.write(`  ${verify.indexProblems.length ? 'FAIL' : 'ok  '} index: ${verify.records} records, ${verify.docs} texts\n`);
            for (const p of verify.indexProblems.slice(0, 20)) process.stdout.write(`       ${p}\n`);
            process.stdout.write(verify.ok ? 'verify: everything checks out\n' : 'verify: PROBLEMS FOUND\n');
          }
        }
        if (verify && !verify.ok) process.exitCode = 2;
      } finally {
        store.close();
      }
    });
}
