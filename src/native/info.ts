import { native } from './binding';

/** What the native engine runs on: the kernel level chosen by cpuid, the GEMM library, default threads. */
export function cpuInfo(): { kernels: string; defaultThreads: number; gemm: string } {
  return native().cpuInfo();
}
