import type { Command } from 'commander';
import { DEFAULT_QUEUE_NAME, startWorker } from '../scale/queue';
import { int } from './args';

/** `er worker`: take shard jobs of `er encode --queue` from Redis until stopped. */
export function registerWorker(program: Command): void {
  program
    .command('worker')
    .description('encode the shard jobs of er encode --queue from a Redis queue until stopped (SIGINT/SIGTERM finish the job in hand)')
    .requiredOption('--queue <url>', 'Redis URL: redis://host:port/db')
    .option('--queue-name <name>', 'BullMQ queue name', DEFAULT_QUEUE_NAME)
    .option('--concurrency <n>', 'jobs at once (they share one encoder)', '1')
    .option('--work-dir <dir>', 'where shard stores are written (shared with the coordinator, unless shards go through --shards-to)', 'er-shards')
    .option('--model <dir>', "the model directory (default: the path each job names, the coordinator's)")
    .option('--threads <n>', 'compute threads (default: all cores)')
    .option('--lock-ms <n>', 'job lock duration: a job of a worker that died is taken up again after it', '30000')
    .option('--endpoint <url>', 'S3-compatible endpoint for shards sent to object storage')
    .action(async (f: { queue: string; queueName: string; concurrency: string; workDir: string; model?: string; threads?: string; lockMs: string; endpoint?: string }) => {
      const w = await startWorker({
        queue: f.queue, queueName: f.queueName, concurrency: int('--concurrency', f.concurrency, 1, 64), workDir: f.workDir,
        model: f.model, threads: int('--threads', f.threads, 1, 1024), lockMs: int('--lock-ms', f.lockMs, 1000, 3_600_000), endpoint: f.endpoint,
      });
      process.stderr.write(`worker ${process.pid}: waiting for jobs on ${f.queue} (queue ${f.queueName}), shards into ${f.workDir}\n`);
      let stopping = false;
      const stop = (sig: string) => {
        if (stopping) return;
        stopping = true;
        process.stderr.write(`worker ${process.pid}: ${sig}: finishing the job in hand\n`);
        void w.close().then(() => process.exit(0));
      };
      process.on('SIGINT', () => stop('SIGINT'));
      process.on('SIGTERM', () => stop('SIGTERM'));
    });
}
