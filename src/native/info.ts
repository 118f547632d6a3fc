import { native } from './binding';

/** What the native engine runs on: the kernel level chosen by cpuid, the GEMM library, the bf16 matmul implementation, default threads. */
export function cpuInfo(): { kernels: string; defaultThreads: number; gemm: string; fp32Matmul: string; bf16Matmul: string } {
  return native().cpuInfo();
}
