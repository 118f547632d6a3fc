#!/usr/bin/env python3
"""Dropout statistics from PyTorch (test/train/dropout-stats.test.ts).

The engine draws its dropout masks from its own counter-based generator, so no single
training step can match PyTorch's. What can match is the distribution: for the tiny BERT
and MPNet, mode full, a sequence head on the first token, this script runs the
gradient-parity batch (test/fixtures/train-parity.safetensors) N times in training mode
with dropout P in one place at a time (the hidden states, the attention probabilities, the
head input) and records the mean and standard deviation of the loss, and the loss without
dropout. Each place's dropout left out (the spread falls to 0) or scaled wrongly moves the
mean or the spread.

    python3 scripts/make_dropout_fixtures.py      # needs torch, transformers, safetensors
"""
import json
import os

import numpy as np
import torch
from safetensors.numpy import load_file
from transformers import AutoModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "test", "fixtures")
P = 0.3
N = 2000
SITES = ("hidden", "attention", "head")
LABELS = 3


def main():
    torch.set_num_threads(1)
    batches = load_file(os.path.join(FIX, "train-parity.safetensors"))
    out = {"p": P, "n": N, "labels": LABELS, "families": {}}
    for family in ("bert", "mpnet"):
        torch.manual_seed(5)
        rec = None
        for site in SITES:
            p = {x: (P if x == site else 0.0) for x in SITES}
            model = AutoModel.from_pretrained(os.path.join(FIX, f"tiny-{family}"), attn_implementation="eager",
                                              add_pooling_layer=False, hidden_dropout_prob=p["hidden"],
                                              attention_probs_dropout_prob=p["attention"])
            H = model.config.hidden_size
            if rec is None:
                g = torch.Generator().manual_seed(9)
                rec = {"headWeight": (torch.randn(LABELS, H, generator=g) * 0.5).flatten().tolist(),
                       "headBias": (torch.randn(LABELS, generator=g) * 0.1).tolist(), "sites": {}}
            head = torch.nn.Linear(H, LABELS)
            with torch.no_grad():
                head.weight.copy_(torch.tensor(rec["headWeight"]).reshape(LABELS, H))
                head.bias.copy_(torch.tensor(rec["headBias"]))
            drop = torch.nn.Dropout(p["head"])
            b = {k.split(".")[-1]: torch.from_numpy(v.astype(np.int64)) for k, v in batches.items()
                 if k.startswith(f"{family}.batch.")}
            kw = {"input_ids": b["input_ids"], "attention_mask": b["attention_mask"]}
            if family == "bert":
                kw["token_type_ids"] = b["token_type_ids"]

            def loss(train):
                model.train(train)
                drop.train(train)
                with torch.no_grad():
                    h = model(**kw).last_hidden_state[:, 0]
                    return float(torch.nn.functional.cross_entropy(head(drop(h)), b["labels"]))
            rec["evalLoss"] = loss(False)
            losses = np.array([loss(True) for _ in range(N)])
            rec["sites"][site] = {"mean": float(losses.mean()), "std": float(losses.std(ddof=1))}
            print(f"{family}, dropout {P} on {site}: mean {losses.mean():.5f}, std {losses.std(ddof=1):.5f} over {N}"
                  f" (without: {rec['evalLoss']:.5f})")
        out["families"][family] = rec
    with open(os.path.join(FIX, "dropout-stats.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
