#!/usr/bin/env python3
"""GEMM rate of the oneDNN library the native addon links, at the encoder's shapes.

The engine's fp32 GEMM is `dnnl_sgemm('N', 'T', M, N, K, 1, X, K, W, K, 0, Y, N)` (row-major X[M,K] times
W[N,K]^T, native/kernels/gemm.cpp). This script calls the same C function of the same shared library
through ctypes, so the number is the ceiling of the engine's own BLAS on this machine, without a
benchmark mode in the native code. Where the CPU has bf16 dot products it also times
`dnnl_gemm_bf16bf16f32` (bf16 inputs, fp32 accumulation and output).

  onednn_gemm.py --m 4096 --hidden 768 --intermediate 3072 --threads 2 --reps 10 [--lib PATH]

prints {"fp32": {...}, "bf16": {...} | null, "library": ..., "version": ...}. Thread count: oneDNN here
is built on OpenMP; the script sets OMP_NUM_THREADS before the library loads and calls
omp_set_num_threads as the engine does.
"""
import argparse
import ctypes
import ctypes.util
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, '..', '..'))


def find_lib(explicit):
    if explicit:
        return explicit
    # the library the built addon actually resolves to
    addon = os.path.join(ROOT, 'build', 'Release')
    if os.path.isdir(addon):
        for fn in sorted(os.listdir(addon)):
            if fn.endswith('.node'):
                try:
                    out = subprocess.run(['ldd', os.path.join(addon, fn)], capture_output=True, text=True).stdout
                except OSError:
                    break
                for line in out.splitlines():
                    if 'libdnnl' in line and '=>' in line:
                        p = line.split('=>', 1)[1].split('(')[0].strip()
                        if p:
                            return p
    return ctypes.util.find_library('dnnl') or 'libdnnl.so.2'


def cpu_flags():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('flags'):
                    return set(line.split(':', 1)[1].split())
    except OSError:
        pass
    return set()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--m', type=int, default=4096)
    ap.add_argument('--hidden', type=int, default=768)
    ap.add_argument('--intermediate', type=int, default=3072)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--reps', type=int, default=10)
    ap.add_argument('--lib', default=None)
    ap.add_argument('--no-bf16', action='store_true')
    a = ap.parse_args()

    os.environ['OMP_NUM_THREADS'] = str(a.threads)
    os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')  # numpy's own BLAS stays idle
    import numpy as np

    path = find_lib(a.lib)
    lib = ctypes.CDLL(path)
    with_omp = None
    for name in ('libgomp.so.1', 'libiomp5.so', 'libomp.so'):
        try:
            omp = ctypes.CDLL(name)
            omp.omp_set_num_threads(ctypes.c_int(a.threads))
            with_omp = name
            break
        except OSError:
            continue

    class Ver(ctypes.Structure):
        _fields_ = [('major', ctypes.c_int), ('minor', ctypes.c_int), ('patch', ctypes.c_int),
                    ('hash', ctypes.c_char_p), ('cpu_runtime', ctypes.c_uint), ('gpu_runtime', ctypes.c_uint)]

    lib.dnnl_version.restype = ctypes.POINTER(Ver)
    v = lib.dnnl_version().contents
    version = f'{v.major}.{v.minor}.{v.patch}'

    i64, f32, ptr = ctypes.c_int64, ctypes.c_float, ctypes.c_void_p
    ch = ctypes.c_char
    sig = [ch, ch, i64, i64, i64, f32, ptr, i64, ptr, i64, f32, ptr, i64]
    lib.dnnl_sgemm.argtypes = sig
    lib.dnnl_sgemm.restype = ctypes.c_int
    lib.dnnl_gemm_bf16bf16f32.argtypes = sig
    lib.dnnl_gemm_bf16bf16f32.restype = ctypes.c_int

    M, H, I = a.m, a.hidden, a.intermediate
    shapes = [('HxH', H, H, 4), ('IxH', I, H, 1), ('HxI', H, I, 1)]
    rng = np.random.default_rng(0)
    flags = cpu_flags()
    res = {'library': path, 'version': version, 'omp': with_omp, 'threads': a.threads, 'm': M,
           'op': "dnnl_sgemm('N','T', M, N, K, X[M,K], W[N,K])"}

    def to_bf16(x):
        u = x.astype(np.float32).view(np.uint32)
        return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)  # round to nearest even

    for dt in ('fp32', 'bf16'):
        if dt == 'bf16':
            if a.no_bf16:
                continue
            if not ({'avx512_bf16', 'amx_bf16'} & flags):
                res['bf16'] = None
                res['bf16Note'] = 'CPU has neither avx512_bf16 nor amx_bf16'
                continue
        fn = lib.dnnl_sgemm if dt == 'fp32' else lib.dnnl_gemm_bf16bf16f32
        out = []
        tot_flop = tot_ms = 0.0
        for name, N, K, count in shapes:
            x = rng.standard_normal((M, K), dtype=np.float32)
            w = rng.standard_normal((N, K), dtype=np.float32)
            if dt == 'bf16':
                x, w = to_bf16(x), to_bf16(w)
            y = np.empty((M, N), dtype=np.float32)
            args = (b'N', b'T', M, N, K, 1.0, x.ctypes.data, K, w.ctypes.data, K, 0.0, y.ctypes.data, N)
            st = fn(*args)  # warm-up (and the JIT kernels get generated)
            if st != 0:
                raise SystemExit(f'{fn.__name__} returned status {st} at M={M} N={N} K={K}')
            ms = []
            for _ in range(a.reps):
                t0 = time.perf_counter()
                fn(*args)
                ms.append((time.perf_counter() - t0) * 1e3)
            med = statistics.median(ms)
            flop = 2.0 * M * N * K
            out.append({'name': name, 'M': M, 'N': N, 'K': K, 'ms': ms, 'medianMs': med,
                        'gflops': flop / (med * 1e-3) / 1e9})
            tot_flop += count * flop
            tot_ms += count * med
        res[dt] = {'shapes': out, 'layerMixGflops': tot_flop / (tot_ms * 1e-3) / 1e9,
                   'bestGflops': max(s['gflops'] for s in out)}
    json.dump(res, sys.stdout)
    sys.stdout.write('\n')


if __name__ == '__main__':
    main()
