import type { Command } from 'commander';
import { cpuInfo } from '../native/info';

/** `er info`: what the native engine runs on. */
export function registerInfo(program: Command): void {
  program
    .command('info')
    .description('print the kernel level, GEMM library, thread count, SQLite version and addon file the engine uses here')
    .option('--json', 'print JSON')
    .action((opts: { json?: boolean }) => {
      const info = cpuInfo();
      if (opts.json) process.stdout.write(JSON.stringify(info) + '\n');
      else process.stdout.write(`kernels: ${info.kernels}\ngemm: ${info.gemm}\nthreads: ${info.defaultThreads}\nsqlite: ${info.sqlite}\naddon: ${info.addon}\n`);
    });
}
