#!/usr/bin/env python3
"""PyTorch peer of the encoder benchmark.

Modes
  run    time full-encoder forwards of a Hugging Face model directory:
           torch_encoder.py run --model DIR --batch 32 --seq 128 --threads 2 --reps 5 [--warmup 1]
                                [--grad-mode inference_mode|no_grad] [--attn sdpa|eager] [--mkldnn]
         prints {"ms": [...], ...} (one wall time per forward, in milliseconds)
         --mkldnn: PyTorch's oneDNN path for the linear layers. By default an fp32 nn.Linear is
         aten::addmm, which PyTorch's x86 wheels hand to MKL's sgemm (on AMD CPUs MKL takes its
         AVX2 code path); torch.backends.mkldnn being enabled (the default) does not change that
         for fp32. --mkldnn converts the model with torch.utils.mkldnn.to_mkldnn: every nn.Linear
         becomes MkldnnLinear (weights held as oneDNN tensors, aten::mkldnn_linear = a oneDNN
         inner product, with a reorder of its input and output each call); attention (sdpa),
         LayerNorm, GELU and embeddings are unchanged.
  gemm   time the encoder's GEMM shapes with torch.matmul, fp32 and (where the CPU has bf16 dot
         products) bf16:
           torch_encoder.py gemm --m 4096 --hidden 768 --intermediate 3072 --threads 2 --reps 10
         prints {"fp32": {...}, "bf16": {...} | null}, each shape with ms and GFLOP/s
  serve  a long-lived worker for bench/encoder.mjs: one JSON request per stdin line, one JSON reply
         per stdout line, so the harness can interleave PyTorch with the other engines rep by rep:
           {"cmd": "load", "model": DIR, "threads": 2, "gradMode": "inference_mode", "mkldnn": false}
           {"cmd": "run", "batch": 32, "seq": 128, "reps": 1}        -> {"ms": [...]}
           {"cmd": "gemm", "m": 4096, "hidden": 768, "intermediate": 3072, "reps": 10}
           {"cmd": "info"} / {"cmd": "quit"}

Inputs are the benchmark's fixed batch (same as bench/lib/workload.mjs): [CLS] ids... [SEP] with
ids[b, t] = 1000 + ((b*T + t) * 7919) % 29000, attention mask all ones, token types 0.
"""
import argparse
import contextlib
import json
import os
import statistics
import sys
import time
import warnings

os.environ.setdefault('HF_HUB_DISABLE_PROGRESS_BARS', '1')
os.environ.setdefault('TRANSFORMERS_VERBOSITY', 'error')
warnings.simplefilter('ignore')

import torch  # noqa: E402


def make_inputs(B, T):
    b = torch.arange(B, dtype=torch.long).unsqueeze(1)
    t = torch.arange(T, dtype=torch.long).unsqueeze(0)
    ids = 1000 + ((b * T + t) * 7919) % 29000
    ids[:, 0] = 101
    ids[:, T - 1] = 102
    mask = torch.ones(B, T, dtype=torch.long)
    types = torch.zeros(B, T, dtype=torch.long)
    return ids, mask, types


def grad_ctx(mode):
    if mode == 'inference_mode':
        return torch.inference_mode()
    if mode == 'no_grad':
        return torch.no_grad()
    raise ValueError(f'grad mode must be inference_mode or no_grad, got {mode!r}')


def cpu_flags():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('flags'):
                    return set(line.split(':', 1)[1].split())
    except OSError:
        pass
    return set()


def has_bf16():
    f = cpu_flags()
    return bool({'avx512_bf16', 'amx_bf16'} & f)


class Peer:
    def __init__(self):
        self.model = None
        self.model_dir = None
        self.grad_mode = 'inference_mode'
        self.attn = None
        self.mkldnn = False

    def set_threads(self, n):
        torch.set_num_threads(int(n))
        # interop threads can only be set once, before any parallel work; one is what a single forward uses
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)

    def load(self, model, threads, gradMode='inference_mode', attn=None, mkldnn=False):
        from transformers import AutoModel
        self.set_threads(threads)
        # sdpa: transformers' default, named so the training peer (torch_train.py) can match it
        self.model = AutoModel.from_pretrained(model, attn_implementation=attn or 'sdpa').eval()
        if mkldnn:
            if not torch.backends.mkldnn.is_available():
                raise RuntimeError('--mkldnn: this PyTorch build has no oneDNN (torch.backends.mkldnn.is_available() is False)')
            from torch.utils import mkldnn as torch_mkldnn
            self.model = torch_mkldnn.to_mkldnn(self.model)
        self.mkldnn = bool(mkldnn)
        self.model_dir = model
        self.grad_mode = gradMode
        grad_ctx(gradMode)  # validate
        cfg = self.model.config
        self.attn = getattr(cfg, '_attn_implementation', None)
        return {'ok': True, 'attn': self.attn, 'mkldnn': self.mkldnn, 'gradMode': gradMode, 'threads': torch.get_num_threads(),
                'layers': cfg.num_hidden_layers, 'hidden': cfg.hidden_size}

    def run(self, batch, seq, reps=1, warmup=0):
        if self.model is None:
            raise RuntimeError('no model loaded')
        ids, mask, types = make_inputs(int(batch), int(seq))
        ms = []
        with grad_ctx(self.grad_mode):
            for i in range(int(warmup) + int(reps)):
                t0 = time.perf_counter()
                out = self.model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
                dt = (time.perf_counter() - t0) * 1e3
                if i >= int(warmup):
                    ms.append(dt)
        shape = list(out.shape)
        del out
        return {'ms': ms, 'shape': shape}

    def unload(self):
        self.model = None
        import gc
        gc.collect()
        return {'ok': True}


def time_matmul(a, b, reps, warmup=1):
    for _ in range(warmup):
        torch.matmul(a, b)
    ms = []
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        ms.append((time.perf_counter() - t0) * 1e3)
    return ms


def gemm_shapes(hidden, intermediate):
    H, I = int(hidden), int(intermediate)
    # (N, K, count per layer): Q, K, V, attention output are H x H; FFN up is I x H; FFN down is H x I
    return [('HxH', H, H, 4), ('IxH', I, H, 1), ('HxI', H, I, 1)]


def gemm(m, hidden, intermediate, reps=10, threads=None, dtypes=('fp32', 'bf16')):
    if threads:
        torch.set_num_threads(int(threads))
    M = int(m)
    res = {'m': M, 'threads': torch.get_num_threads(), 'op': 'torch.matmul(A[M,K], W[N,K].t())'}
    g = torch.Generator().manual_seed(0)
    for dt in ('fp32', 'bf16'):
        if dt not in dtypes:
            continue
        if dt == 'bf16' and not has_bf16():
            res['bf16'] = None
            res['bf16Note'] = 'CPU has neither avx512_bf16 nor amx_bf16'
            continue
        tdt = torch.float32 if dt == 'fp32' else torch.bfloat16
        shapes = []
        tot_flop = 0.0
        tot_ms = 0.0
        for name, N, K, count in gemm_shapes(hidden, intermediate):
            a = torch.randn(M, K, generator=g).to(tdt)
            w = torch.randn(N, K, generator=g).to(tdt)
            ms = time_matmul(a, w.t(), int(reps))
            med = statistics.median(ms)
            flop = 2.0 * M * N * K
            shapes.append({'name': name, 'M': M, 'N': N, 'K': K, 'ms': ms, 'medianMs': med,
                           'gflops': flop / (med * 1e-3) / 1e9})
            tot_flop += count * flop
            tot_ms += count * med
        # the rate over one layer's mix of dense GEMMs (4 HxH + IxH + HxI), weighted by their FLOPs
        res[dt] = {'shapes': shapes, 'layerMixGflops': tot_flop / (tot_ms * 1e-3) / 1e9,
                   'bestGflops': max(s['gflops'] for s in shapes)}
    return res


def info():
    import transformers
    return {'torch': torch.__version__, 'transformers': transformers.__version__,
            'threads': torch.get_num_threads(), 'cpuCapability': torch.backends.cpu.get_cpu_capability(),
            'mkldnn': torch.backends.mkldnn.is_available(), 'bf16': has_bf16(),
            'python': sys.version.split()[0]}


def serve():
    peer = Peer()
    out = sys.stdout
    # keep stray prints (transformers, warnings) off the protocol channel
    sys.stdout = sys.stderr
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            cmd = req.pop('cmd')
            if cmd == 'quit':
                out.write(json.dumps({'ok': True}) + '\n')
                out.flush()
                break
            elif cmd == 'load':
                rep = peer.load(req['model'], req.get('threads', 1), req.get('gradMode', 'inference_mode'),
                                req.get('attn'), req.get('mkldnn', False))
            elif cmd == 'run':
                rep = peer.run(req['batch'], req['seq'], req.get('reps', 1), req.get('warmup', 0))
            elif cmd == 'unload':
                rep = peer.unload()
            elif cmd == 'gemm':
                rep = gemm(req['m'], req['hidden'], req['intermediate'], req.get('reps', 10), req.get('threads'),
                           tuple(req.get('dtypes', ('fp32', 'bf16'))))
            elif cmd == 'info':
                rep = info()
            else:
                raise ValueError(f'unknown command {cmd!r}')
        except Exception as e:  # report, keep serving
            rep = {'error': f'{type(e).__name__}: {e}'}
        out.write(json.dumps(rep) + '\n')
        out.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest='mode', required=True)
    r = sub.add_parser('run')
    r.add_argument('--model', required=True)
    r.add_argument('--batch', type=int, default=32)
    r.add_argument('--seq', type=int, default=128)
    r.add_argument('--threads', type=int, default=2)
    r.add_argument('--reps', type=int, default=5)
    r.add_argument('--warmup', type=int, default=1)
    r.add_argument('--grad-mode', default='inference_mode', choices=['inference_mode', 'no_grad'])
    r.add_argument('--attn', default='sdpa', choices=['sdpa', 'eager'])
    r.add_argument('--mkldnn', action='store_true', help="linear layers on PyTorch's oneDNN path (torch.utils.mkldnn.to_mkldnn)")
    g = sub.add_parser('gemm')
    g.add_argument('--m', type=int, default=4096)
    g.add_argument('--hidden', type=int, default=768)
    g.add_argument('--intermediate', type=int, default=3072)
    g.add_argument('--threads', type=int, default=2)
    g.add_argument('--reps', type=int, default=10)
    g.add_argument('--no-bf16', action='store_true')
    sub.add_parser('serve')
    sub.add_parser('info')
    a = ap.parse_args()
    if a.mode == 'serve':
        serve()
        return
    if a.mode == 'info':
        print(json.dumps(info()))
        return
    if a.mode == 'run':
        p = Peer()
        meta = p.load(a.model, a.threads, a.grad_mode, a.attn, a.mkldnn)
        res = p.run(a.batch, a.seq, a.reps, a.warmup)
        res.update({'medianMs': statistics.median(res['ms']), 'batch': a.batch, 'seq': a.seq, **meta})
        print(json.dumps(res))
        return
    if a.mode == 'gemm':
        torch.set_num_threads(a.threads)
        dts = ('fp32',) if a.no_bf16 else ('fp32', 'bf16')
        print(json.dumps(gemm(a.m, a.hidden, a.intermediate, a.reps, a.threads, dts)))


if __name__ == '__main__':
    main()
