import type { Command } from 'commander';
import { cpuInfo, cudaInfo } from '../native/info';

/** `er info`: what the native engine runs on. */
export function registerInfo(program: Command): void {
  program
    .command('info')
    .description('print the kernel level, GEMM library, thread count, SQLite version and addon file the engine uses here, and whether the GPU backend is installed and which GPUs it sees')
    .option('--json', 'print JSON')
    .action((opts: { json?: boolean }) => {
      const info = cpuInfo();
      const cuda = cudaInfo();
      if (opts.json) {
        process.stdout.write(JSON.stringify({ ...info, cuda }) + '\n');
        return;
      }
      process.stdout.write(`kernels: ${info.kernels}\ngemm: ${info.gemm}\nthreads: ${info.defaultThreads}\nsqlite: ${info.sqlite}\naddon: ${info.addon}\n`);
      // the GPU backend: not built in, built in but unusable here (and why), or the GPUs it runs on
      const gpu = !cuda.loaded ? `not available: ${cuda.reason}`
        : cuda.available ? `CUDA ${cuda.runtime} runtime; cuBLASLt GEMMs, cuBLAS batched attention, own kernels (LayerNorm, masked softmax, GELU, adapters, embeddings, their backward, AdamW); encoders, task-model serving and training (fp32) of BERT, RoBERTa, DistilBERT and MPNet; ${cuda.devices.length} GPU(s)`
          : `compiled in (CUDA ${cuda.runtime} runtime) but unusable here: ${cuda.reason}`;
      process.stdout.write(`cuda: ${gpu}\ncuda backend: ${cuda.backend}\n${cuda.devices.map((d) => `gpu ${d}\n`).join('')}`);
    });
}
