#!/usr/bin/env python3
"""Parity fixtures of a tiny random MPNet (transformers' MPNetModel), for the mpnet family.

Writes test/fixtures/tiny-mpnet/: config.json, model.safetensors, tokenizer.json (tiny-roberta's
byte-level BPE: <s> ... </s>, pad id 1, as MPNet's own), batches.json and expected.safetensors
(per batch: input_ids, attention_mask, the position ids the embedding layer saw, every layer's
hidden states). The batches are tiny-roberta's plus one of long rows, so the relative-position
bias reaches its log-spaced buckets (distances past 8) and the max_distance clamp (past 128
with a small max_distance).

With the real all-mpnet-base-v2 in models/all-mpnet-base-v2 (npm run fetch-model --
all-mpnet-base-v2), also writes test/fixtures/mpnet-reference.{json,safetensors}: the MiniLM
reference sentences through transformers' MPNetModel, every layer's hidden states projected on
16 fixed random directions (P, 768 x 16, entries +-1/sqrt(768), stored with them): the full
states of 13 layers would be 15 MB; each projection still mixes every one of the 768 values.

Usage: python3 scripts/make_mpnet_fixtures.py [--real-model DIR]   (after scripts/make_fixtures.py made tiny-roberta)
"""
import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from transformers import MPNetConfig, MPNetModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures as mf  # noqa: E402

NAME = "tiny-mpnet"
SEED = mf.SEED + 400
LONG = {
    "texts": [
        " ".join(["Patients with chronic kidney disease received a lower dose of the drug, and tumour growth slowed."] * 2),
        "A short one.",
    ],
    "pairs": None,
    "maxLength": None,
}


PROJ = 16
REAL_DIR = mf.REPO / "models" / "all-mpnet-base-v2"


def make_reference(model_dir: Path):
    tok = mf.load_plain_tokenizer(model_dir / "tokenizer.json")
    tok.enable_truncation(max_length=mf.MINILM_MAX_LENGTH)
    tok.enable_padding(direction="right", pad_id=1, pad_type_id=0, pad_token="<pad>")
    encs = tok.encode_batch(mf.MINILM_SENTENCES)
    enc = {
        "input_ids": np.array([e.ids for e in encs], dtype=np.int32),
        "attention_mask": np.array([e.attention_mask for e in encs], dtype=np.int32),
    }
    model = MPNetModel.from_pretrained(str(model_dir), add_pooling_layer=False, attn_implementation="eager", dtype=torch.float32).eval()
    pos, hidden = mf.run_model(model, "roberta", enc)
    H = model.config.hidden_size
    g = np.random.default_rng(20241201)
    P = (g.integers(0, 2, size=(H, PROJ)) * 2 - 1).astype(np.float32) / np.float32(np.sqrt(H))
    tensors = dict(enc)
    tensors["position_ids"] = pos
    tensors["projection"] = P
    for l, h in enumerate(hidden):
        tensors[f"projected.{l}"] = np.ascontiguousarray(h.astype(np.float64) @ P.astype(np.float64)).astype(np.float32)
    mf.save_tensors(tensors, mf.FIXTURES / "mpnet-reference.safetensors")
    B, T = enc["input_ids"].shape
    mf.write_json(mf.FIXTURES / "mpnet-reference.json", {
        "model": "models/all-mpnet-base-v2",
        "modelSha256": mf.sha256(model_dir / "model.safetensors"),
        "sentences": mf.MINILM_SENTENCES,
        "maxLength": mf.MINILM_MAX_LENGTH,
        "padding": "longest",
        "numLayers": model.config.num_hidden_layers,
        "tensors": {
            "input_ids, attention_mask, position_ids": "int32 [B, T]",
            "projection": f"float32 [{H}, {PROJ}]",
            "projected.{l}": f"float32 [B, T, {PROJ}]: layer l's hidden states (l = 0 the embeddings) times projection",
        },
        "versions": mf.versions(),
    })
    print(f"  mpnet-reference: B={B} T={T}, {model.config.num_hidden_layers} layers")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--real-model", type=Path, default=REAL_DIR)
    args = ap.parse_args()
    torch.set_num_threads(1)
    src = mf.FIXTURES / "tiny-roberta" / "tokenizer.json"
    if not src.exists():
        sys.exit(f"{src} is missing: run scripts/make_fixtures.py first")
    out = mf.FIXTURES / NAME
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    tok_path = out / "tokenizer.json"
    shutil.copyfile(src, tok_path)
    vocab = mf.load_plain_tokenizer(tok_path).get_vocab_size(with_added_tokens=True)
    config = MPNetConfig(
        vocab_size=vocab, hidden_size=mf.HIDDEN, num_hidden_layers=mf.LAYERS, num_attention_heads=mf.HEADS,
        intermediate_size=mf.FFN, hidden_act="gelu", max_position_embeddings=258, pad_token_id=1, bos_token_id=0,
        eos_token_id=2, layer_norm_eps=1e-5, relative_attention_num_buckets=32, attn_implementation="eager",
    )
    torch.manual_seed(SEED)
    model = MPNetModel(config, add_pooling_layer=False)
    mf.perturb_(model, SEED + 1)
    model.eval()
    model.save_pretrained(str(out), safe_serialization=True)
    reloaded = MPNetModel.from_pretrained(str(out), add_pooling_layer=False, attn_implementation="eager", dtype=torch.float32).eval()

    tensors, batches = {}, []
    specs = list(mf.TINY_BATCHES) + [LONG]
    for i, spec in enumerate(specs):
        padded, enc = mf.encode_batch(tok_path, spec, 1, "<pad>")
        pos, hidden = mf.run_model(model, "roberta", enc)
        pos2, hidden2 = mf.run_model(reloaded, "roberta", enc)
        assert np.array_equal(pos, pos2) and all(np.array_equal(a, b) for a, b in zip(hidden, hidden2))
        assert np.array_equal(pos, mf.roberta_position_ids(enc["input_ids"], 1))
        B, T = enc["input_ids"].shape
        p = f"batch{i}."
        tensors[p + "input_ids"] = enc["input_ids"]
        tensors[p + "attention_mask"] = enc["attention_mask"]
        tensors[p + "position_ids"] = pos
        for l, h in enumerate(hidden):
            tensors[p + f"hidden.{l}"] = np.ascontiguousarray(h)
        batches.append({"texts": spec["texts"], "pairs": spec["pairs"], "maxLength": spec["maxLength"],
                        "padding": "longest" if padded else None, "paddingSide": "right"})
        print(f"  batch {i}: {B} x {T}")
    assert max(tensors[f"batch{len(specs) - 1}.input_ids"].shape[1], 0) > 40, "the long batch is not long"
    mf.save_tensors(tensors, out / "expected.safetensors")
    mf.write_json(out / "batches.json", batches)
    print(f"{NAME}: vocab {vocab}, {len(specs)} batches")
    if (args.real_model / "model.safetensors").exists():
        make_reference(args.real_model)
    else:
        print(f"note: no model at {args.real_model}; keeping the existing mpnet-reference fixture")


if __name__ == "__main__":
    main()
