import { addonPath, native, NativeCudaInfo } from './binding';

/**
 * What the native engine runs on: the kernel level chosen by cpuid, the GEMM library,
 * the bf16 matmul implementation, default threads, the SQLite version, and the file
 * the addon was loaded from (a local build or the platform package).
 */
export function cpuInfo(): { kernels: string; defaultThreads: number; gemm: string; fp32Matmul: string; bf16Matmul: string; sqlite: string; addon: string } {
  const n = native();
  return { ...n.cpuInfo(), sqlite: n.sqliteVersion, addon: addonPath() };
}

/** What the GPU backend says: whether it is installed and loads, its CUDA runtime, the GPUs it sees. */
export function cudaInfo(): NativeCudaInfo {
  return native().cudaInfo();
}
