/** A command-line integer option in lo..hi, or undefined when not given; a clear error otherwise. */
export function int(name: string, v: string | undefined, lo: number, hi: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < lo || n > hi) throw new Error(`${name} must be an integer in ${lo}..${hi}, got ${JSON.stringify(v)}`);
  return n;
}

/** `--device cpu|cuda|auto` (or another flag of that form), checked. */
export function deviceFlag(flag: string, v: unknown): 'cpu' | 'cuda' | 'auto' {
  if (v !== 'cpu' && v !== 'cuda' && v !== 'auto') throw new Error(`${flag} must be cpu, cuda or auto, got ${JSON.stringify(v)}`);
  return v;
}

/** `--gpu-precision fp32|bf16|fp16`, checked. */
export function gpuPrecisionFlag(v: unknown): 'fp32' | 'bf16' | 'fp16' {
  if (v !== 'fp32' && v !== 'bf16' && v !== 'fp16') throw new Error(`--gpu-precision must be fp32, bf16 or fp16, got ${JSON.stringify(v)}`);
  return v;
}

/** The options of a command that runs task models: --device, --gpu, --gpu-precision. */
export function taskDeviceOptions<C extends { option(flags: string, description: string, value?: string): C }>(cmd: C): C {
  return cmd
    .option('--device <device>', 'where the task model runs: cpu, cuda (an NVIDIA GPU; every family but DeBERTa-v2) or auto', 'cpu')
    .option('--gpu <n>', 'which GPU, with --device cuda or auto', '0')
    .option('--gpu-precision <p>', "the GPU's precision of the linear layers: fp32, bf16 or fp16", 'fp32');
}

/** What taskDeviceOptions parsed, as InferenceSession options. */
export function taskDevice(f: Record<string, unknown>): { device: 'cpu' | 'cuda' | 'auto'; gpu: number; gpuPrecision: 'fp32' | 'bf16' | 'fp16' } {
  return { device: deviceFlag('--device', f.device), gpu: int('--gpu', f.gpu as string, 0, 1023) ?? 0, gpuPrecision: gpuPrecisionFlag(f.gpuPrecision) };
}
