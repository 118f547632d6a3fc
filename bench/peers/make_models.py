#!/usr/bin/env python3
"""Build the random-weight BERT models the encoder benchmark runs.

For each shape (MiniLM-L6-H384 and BERT-base) this writes, under bench/.work/models/<name>/:
  config.json, model.safetensors   Hugging Face BertModel (no pooler), random weights, fixed seed
  tokenizer.json (+ vocab.txt)     copied from models/all-MiniLM-L6-v2 (same 30522-token vocab)
  model.onnx                       torch.onnx.export of the same module (TorchScript exporter, opset 17,
                                   inputs input_ids / attention_mask / token_type_ids as int64 with dynamic
                                   batch and sequence axes, output last_hidden_state)
  model.fused.onnx                 model.onnx after onnxruntime.transformers.optimizer (fused Attention,
                                   SkipLayerNormalization, BiasGelu, EmbedLayerNormalization)
  bench-model.json                 what was built, and the ONNX-vs-torch check

Each model is built once; a second run only rebuilds what is missing or stale (pass --force to rebuild).
Both ONNX files are checked against torch once, on a padded batch: max abs error <= 1e-4 on the
non-padded positions.

Usage: python3 bench/peers/make_models.py [--only minilm|bert-base] [--force] [--out DIR]
"""
import argparse
import json
import os
import shutil
import sys
import time
import warnings

os.environ.setdefault('HF_HUB_DISABLE_PROGRESS_BARS', '1')
os.environ.setdefault('TRANSFORMERS_VERBOSITY', 'error')

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, '..', '..'))
DEFAULT_OUT = os.path.join(ROOT, 'bench', '.work', 'models')
TOKENIZER_SRC = os.path.join(ROOT, 'models', 'all-MiniLM-L6-v2')

# name -> BertConfig fields. Both use BERT's uncased vocab (30522) and 512 positions.
SHAPES = {
    'minilm-l6-h384': dict(num_hidden_layers=6, hidden_size=384, num_attention_heads=12, intermediate_size=1536),
    'bert-base': dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072),
    # a tiny one for `--quick` smoke runs of the harness itself (not a benchmark shape)
    'tiny-l2-h128': dict(num_hidden_layers=2, hidden_size=128, num_attention_heads=2, intermediate_size=512),
}
RECIPE_VERSION = 1  # bump when the recipe below changes, so stale directories get rebuilt
ONNX_TOL = 1e-4


def build(name, out_dir, force):
    import torch
    from transformers import BertConfig, BertModel

    d = os.path.join(out_dir, name)
    meta_path = os.path.join(d, 'bench-model.json')
    if not force and os.path.exists(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
        need = ['config.json', 'model.safetensors', 'tokenizer.json', 'model.onnx', 'model.fused.onnx']
        if meta.get('recipe') == RECIPE_VERSION and all(os.path.exists(os.path.join(d, n)) for n in need):
            print(f'[make_models] {name}: up to date ({d})', file=sys.stderr)
            return meta
    os.makedirs(d, exist_ok=True)
    t0 = time.time()
    shape = SHAPES[name]
    cfg = BertConfig(
        vocab_size=30522,
        max_position_embeddings=512,
        type_vocab_size=2,
        hidden_act='gelu',
        layer_norm_eps=1e-12,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        **shape,
    )
    # eager attention: the plain MatMul/Softmax graph that onnxruntime's attention fusion recognises,
    # and the attention implementation every transformers version has
    cfg._attn_implementation = 'eager'
    torch.manual_seed(1234)
    model = BertModel(cfg, add_pooling_layer=False).eval()
    model.save_pretrained(d, safe_serialization=True)
    # the engine loads the plain BERT config; drop the attention-implementation hint if transformers wrote it
    with open(os.path.join(d, 'config.json')) as f:
        cj = json.load(f)
    cj.pop('_attn_implementation', None)
    cj.pop('attn_implementation', None)
    with open(os.path.join(d, 'config.json'), 'w') as f:
        json.dump(cj, f, indent=2)
    for fn in ('tokenizer.json', 'vocab.txt', 'tokenizer_config.json', 'special_tokens_map.json'):
        src = os.path.join(TOKENIZER_SRC, fn)
        if os.path.exists(src):
            shutil.copyfile(src, os.path.join(d, fn))
    if not os.path.exists(os.path.join(d, 'tokenizer.json')):
        raise SystemExit(f'no tokenizer.json in {TOKENIZER_SRC}: fetch the real MiniLM first (npm run fetch-model)')

    onnx_path = os.path.join(d, 'model.onnx')
    B, T = 2, 16
    ids = torch.randint(1000, 30000, (B, T), dtype=torch.long)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, 11:] = 0  # one padded row, so the export keeps the mask path
    types = torch.zeros(B, T, dtype=torch.long)

    class Wrapped(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state

    with torch.no_grad():
        torch.onnx.export(
            Wrapped(model),
            (ids, mask, types),
            onnx_path,
            input_names=['input_ids', 'attention_mask', 'token_type_ids'],
            output_names=['last_hidden_state'],
            dynamic_axes={
                'input_ids': {0: 'batch', 1: 'sequence'},
                'attention_mask': {0: 'batch', 1: 'sequence'},
                'token_type_ids': {0: 'batch', 1: 'sequence'},
                'last_hidden_state': {0: 'batch', 1: 'sequence'},
            },
            opset_version=17,
            do_constant_folding=True,
            dynamo=False,
        )
    # one check that the ONNX graph computes what torch computes (at a different shape than the export's)
    import numpy as np
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(onnx_path, so, providers=['CPUExecutionProvider'])
    B2, T2 = 3, 37
    g = torch.Generator().manual_seed(7)
    ids2 = torch.randint(1000, 30000, (B2, T2), dtype=torch.long, generator=g)
    mask2 = torch.ones(B2, T2, dtype=torch.long)
    mask2[2, 20:] = 0
    types2 = torch.zeros(B2, T2, dtype=torch.long)
    with torch.no_grad():
        ref = model(input_ids=ids2, attention_mask=mask2, token_type_ids=types2).last_hidden_state.numpy()
    got = sess.run(['last_hidden_state'], {
        'input_ids': ids2.numpy(), 'attention_mask': mask2.numpy(), 'token_type_ids': types2.numpy()})[0]
    valid = mask2.numpy().astype(bool)
    err = float(np.abs(ref - got)[valid].max())
    if not err <= ONNX_TOL:
        raise SystemExit(f'{name}: ONNX export differs from torch by {err:.3g} (> {ONNX_TOL})')

    # The same graph after onnxruntime's transformer optimizer (EmbedLayerNormalization, fused Attention,
    # SkipLayerNormalization, BiasGelu): what a Node user who tunes onnxruntime would ship. opt_level=0
    # applies only these fusions; the session still runs its own graph optimizations on top.
    from onnxruntime.transformers import optimizer
    fused_path = os.path.join(d, 'model.fused.onnx')
    fm = optimizer.optimize_model(onnx_path, model_type='bert', num_heads=shape['num_attention_heads'],
                                  hidden_size=shape['hidden_size'], opt_level=0, use_gpu=False)
    fusions = {k: v for k, v in fm.get_fused_operator_statistics().items() if v}
    fm.save_model_to_file(fused_path)
    sess_f = ort.InferenceSession(fused_path, so, providers=['CPUExecutionProvider'])
    got_f = sess_f.run(['last_hidden_state'], {
        'input_ids': ids2.numpy(), 'attention_mask': mask2.numpy(), 'token_type_ids': types2.numpy()})[0]
    err_f = float(np.abs(ref - got_f)[valid].max())
    if not err_f <= ONNX_TOL:
        raise SystemExit(f'{name}: fused ONNX model differs from torch by {err_f:.3g} (> {ONNX_TOL})')
    meta = {
        'recipe': RECIPE_VERSION,
        'name': name,
        'shape': shape,
        'vocab': 30522,
        'maxPositions': 512,
        'attention': 'eager',
        'onnx': {'opset': 17, 'exporter': 'torch.onnx.export(dynamo=False)', 'maxAbsErrVsTorch': err,
                 'checkedAt': [B2, T2]},
        'onnxFused': {'optimizer': 'onnxruntime.transformers.optimizer(model_type=bert, opt_level=0)',
                      'fusions': fusions, 'maxAbsErrVsTorch': err_f},
        'torch': torch.__version__,
        'onnxruntimePython': ort.__version__,
        'seconds': round(time.time() - t0, 1),
    }
    with open(meta_path, 'w') as f:
        json.dump(meta, f, indent=2)
    print(f'[make_models] {name}: built in {meta["seconds"]} s, ONNX vs torch max abs err {err:.2e}, '
          f'fused {err_f:.2e} ({d})',
          file=sys.stderr)
    return meta


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--only', action='append', choices=sorted(SHAPES), help='build just this shape (repeatable)')
    ap.add_argument('--force', action='store_true', help='rebuild even if up to date')
    ap.add_argument('--out', default=DEFAULT_OUT)
    args = ap.parse_args()
    warnings.simplefilter('ignore')  # the TorchScript exporter's deprecation and tracer warnings
    import torch
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    names = args.only or ['minilm-l6-h384', 'bert-base']
    res = {n: build(n, args.out, args.force) for n in names}
    print(json.dumps({n: os.path.join(args.out, n) for n in res}))


if __name__ == '__main__':
    main()
