#!/usr/bin/env python3
"""PyTorch peer of the training benchmark: ms per training step (forward + backward +
AdamW, with gradient clipping) of a sequence-classification model on a BERT directory.

    torch_train.py --model DIR --mode full|reduced --k 6 --batch 16 --seq 128 --threads 2 --reps 3 [--warmup 1]
                   [--attn sdpa|eager]

Attention: sdpa (default), the implementation the encoder peer (torch_encoder.py) runs.

full:             embeddings + all layers run and train (model.train(), dropout 0.1).
frozen-prefix:    layers 1..k run every step under no_grad, k+1..N and the head train.
reduced:          the layer-k hidden states are computed once beforehand (as a cache would
                  hold them); each step runs layers k+1..N and the head, and trains them.
reduced-adapters: as reduced, with layers k+1..N frozen and Houlsby adapters (size 64,
                  GELU) after their attention output and FFN output training, with the head.
Prints {"ms": [...], "attn": ...} on the last line. Inputs: the benchmark's fixed batch (bench/lib/workload.mjs).
"""
import argparse
import json
import os
import time
import warnings

os.environ.setdefault('TRANSFORMERS_VERBOSITY', 'error')
warnings.simplefilter('ignore')
import torch  # noqa: E402
from transformers import AutoModel  # noqa: E402


def make_inputs(B, T):
    b = torch.arange(B, dtype=torch.long).unsqueeze(1)
    t = torch.arange(T, dtype=torch.long).unsqueeze(0)
    ids = 1000 + ((b * T + t) * 7919) % 29000
    ids[:, 0] = 101
    ids[:, -1] = 102
    return ids, torch.ones(B, T, dtype=torch.long)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--model', required=True)
    ap.add_argument('--mode', choices=['full', 'frozen-prefix', 'reduced', 'reduced-adapters'], required=True)
    ap.add_argument('--k', type=int, required=True)
    ap.add_argument('--batch', type=int, default=16)
    ap.add_argument('--seq', type=int, default=128)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--reps', type=int, default=3)
    ap.add_argument('--warmup', type=int, default=1)
    # the same attention implementation as the encoder peer (torch_encoder.py: transformers' default, sdpa)
    ap.add_argument('--attn', default='sdpa', choices=['sdpa', 'eager'])
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = AutoModel.from_pretrained(a.model, add_pooling_layer=False, attn_implementation=a.attn)
    head = torch.nn.Linear(model.config.hidden_size, 2)
    ids, mask = make_inputs(a.batch, a.seq)
    labels = torch.arange(a.batch) % 2
    model.train()
    ext = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
    if a.mode in ('reduced', 'reduced-adapters'):
        with torch.no_grad():
            model.eval()
            cached = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[a.k].clone()
            model.train()
    if a.mode != 'full':
        for p in model.embeddings.parameters():
            p.requires_grad_(False)
        for layer in model.encoder.layer[: a.k]:
            for p in layer.parameters():
                p.requires_grad_(False)
    if a.mode == 'reduced-adapters':
        hidden = model.config.hidden_size
        for layer in model.encoder.layer[a.k:]:
            for p in layer.parameters():
                p.requires_grad_(False)
            for module in (layer.attention.output, layer.output):
                module.adapter = torch.nn.Sequential(torch.nn.Linear(hidden, 64), torch.nn.GELU(), torch.nn.Linear(64, hidden))

                def fwd(self, hidden_states, input_tensor):
                    h = self.dropout(self.dense(hidden_states))
                    return self.LayerNorm(h + self.adapter(h) + input_tensor)

                module.forward = fwd.__get__(module)
    params = [p for p in list(model.parameters()) + list(head.parameters()) if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)

    def step():
        opt.zero_grad(set_to_none=True)
        if a.mode == 'full':
            h = model(input_ids=ids, attention_mask=mask).last_hidden_state
        else:
            if a.mode == 'frozen-prefix':
                with torch.no_grad():
                    h = model.embeddings(input_ids=ids)
                    for layer in model.encoder.layer[: a.k]:
                        h = layer(h, attention_mask=ext)
                        h = h[0] if isinstance(h, tuple) else h
            else:
                h = cached
            for layer in model.encoder.layer[a.k:]:
                h = layer(h, attention_mask=ext)
                h = h[0] if isinstance(h, tuple) else h
        loss = torch.nn.functional.cross_entropy(head(torch.nn.functional.dropout(h[:, 0], 0.1, True)), labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    for _ in range(a.warmup):
        step()
    ms = []
    for _ in range(a.reps):
        t0 = time.perf_counter()
        step()
        ms.append((time.perf_counter() - t0) * 1000)
    print(json.dumps({'ms': ms, 'torch': torch.__version__, 'threads': torch.get_num_threads(),
                      'attn': getattr(model.config, '_attn_implementation', None)}))


if __name__ == '__main__':
    main()
