#!/usr/bin/env python3
"""Parity fixtures of two tiny random DeBERTa-v2 models (transformers' DebertaV2Model), for
the deberta-v2 family, and of their SentencePiece tokenizer.

The tokenizer: a SentencePiece unigram model trained here on the shared task data (DeBERTa-v3's
layout: [PAD] 0, [CLS] 1, [SEP] 2, [UNK] 3, [MASK] last), converted by transformers'
DebertaV2Tokenizer into the tokenizer.json it saves (as loading a DeBERTa-v3 checkpoint's
spm.model does). Its cases (accents, CJK, emoji, pairs) hold transformers' ids, types and word
ids, and sentencepiece's own ids beside them (slowIds).

The models (hidden 32, 3 layers, 4 heads) cover both sides of each config switch:
  tiny-deberta-v2    DeBERTa-v3's settings: relative_attention, pos_att_type p2c|c2p,
                     share_att_key, norm_rel_ebd layer_norm, position_buckets 8 with
                     max_relative_positions 32 (log buckets and their clamp inside 60 tokens),
                     no absolute positions, no token types
  tiny-deberta-v2-b  own position projections (share_att_key false), c2p only, no buckets
                     (max_relative_positions 12, clamped past 12 tokens), no LayerNorm on the
                     relative embeddings, absolute positions and two token types
Each directory gets config.json, model.safetensors, tokenizer.json, batches.json and
expected.safetensors (per batch: input_ids, attention_mask, token_type_ids, position_ids, every
layer's hidden states), as scripts/make_fixtures.py writes for the other tiny models.

Usage: python3 scripts/make_deberta_fixtures.py   (needs sentencepiece, torch, transformers)
"""
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import sentencepiece as spm
import torch
from transformers import AutoTokenizer, DebertaV2Config, DebertaV2Model

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures as mf  # noqa: E402
import make_mpnet_fixtures as mm  # noqa: E402

SEED = mf.SEED + 500
VOCAB = 1200
LONG = mm.LONG  # rows of over 60 tokens, past the log buckets and their clamp
UNICODE = {
    "texts": ["Crème brûlée à la française, naïve café.", "日本語のテキスト and 中文 🤗🚀"],
    "pairs": ["Où est la gare ? Elle est à côté 🚉.", "한국어"],
    "maxLength": None,
}

MODELS = {
    "tiny-deberta-v2": dict(
        relative_attention=True, pos_att_type="p2c|c2p", share_att_key=True, norm_rel_ebd="layer_norm",
        position_buckets=8, max_relative_positions=32, position_biased_input=False, type_vocab_size=0,
    ),
    "tiny-deberta-v2-b": dict(
        relative_attention=True, pos_att_type=["c2p"], share_att_key=False, norm_rel_ebd="none",
        position_buckets=-1, max_relative_positions=12, position_biased_input=True, type_vocab_size=2,
    ),
}


def train_tokenizer(work: Path) -> Path:
    """A SentencePiece unigram model with DeBERTa-v3's special pieces; returns the .model file."""
    lines = mf.corpus_lines(mf.DEFAULT_DATA_DIR, per_file=1500)
    # a few accented words so that some of them are pieces (the CJK and emoji stay unknown)
    lines += ["crème brûlée café naïve résumé à côté où française"] * 5
    corpus = work / "corpus.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    prefix = work / "spm"
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(prefix), vocab_size=VOCAB, model_type="unigram",
        character_coverage=0.9995, pad_id=0, bos_id=1, eos_id=2, unk_id=3,
        pad_piece="[PAD]", bos_piece="[CLS]", eos_piece="[SEP]", unk_piece="[UNK]",
        split_digits=True, num_threads=1, seed_sentencepiece_size=100000, minloglevel=2,
    )
    return prefix.with_suffix(".model")


def tokenizers(model_file: Path, out: Path):
    """transformers' DebertaV2Tokenizer converted from the SentencePiece model (what loading a
    DeBERTa-v3 checkpoint's spm.model does), saved as tokenizer.json in out; and sentencepiece
    itself, for the reference ids."""
    src = out.parent / "spm-dir"
    src.mkdir()
    shutil.copyfile(model_file, src / "spm.model")
    mf.write_json(src / "tokenizer_config.json", {"tokenizer_class": "DebertaV2Tokenizer", "do_lower_case": False,
                                                   "split_by_punct": False})
    AutoTokenizer.from_pretrained(str(src)).save_pretrained(str(out))
    fast = AutoTokenizer.from_pretrained(str(out))
    assert fast.is_fast and (fast.pad_token_id, fast.cls_token_id, fast.sep_token_id, fast.unk_token_id) == (0, 1, 2, 3)
    return spm.SentencePieceProcessor(model_file=str(model_file)), fast


def encode(tok, spec):
    kwargs = dict(padding="longest", return_tensors="np", return_token_type_ids=True)
    if spec["maxLength"] is not None:
        kwargs.update(truncation=True, max_length=spec["maxLength"])
    if spec["pairs"] is not None:
        enc = tok(spec["texts"], spec["pairs"], **kwargs)
    else:
        enc = tok(spec["texts"], **kwargs)
    return {k: enc[k].astype(np.int32) for k in ("input_ids", "attention_mask", "token_type_ids")}


def run(model, enc):
    kwargs = {
        "input_ids": torch.from_numpy(enc["input_ids"].astype(np.int64)),
        "attention_mask": torch.from_numpy(enc["attention_mask"].astype(np.int64)),
        "output_hidden_states": True,
    }
    if model.config.type_vocab_size > 0:
        kwargs["token_type_ids"] = torch.from_numpy(enc["token_type_ids"].astype(np.int64))
    with torch.no_grad():
        out = model(**kwargs)
    return [h.detach().to(torch.float32).numpy().copy() for h in out.hidden_states]


def tokenizer_cases(sp, fast):
    """fast: transformers' ids, types, word ids; slowIds: sentencepiece's pieces inside [CLS] .. [SEP]."""
    cases, differ = [], 0
    for text, pair in mf.PARITY_TEXTS:
        enc = fast(text, pair, return_token_type_ids=True) if pair is not None else fast(text, return_token_type_ids=True)
        slow_ids = [1] + sp.encode(text) + [2] + (sp.encode(pair) + [2] if pair is not None else [])
        case = {"text": text, "pair": pair, "ids": enc["input_ids"], "typeIds": enc["token_type_ids"],
                "wordIds": enc.word_ids(), "slowIds": slow_ids}
        differ += slow_ids != enc["input_ids"]
        cases.append(case)
    return cases, differ


def make_model(name, settings, tok_dir: Path, fast):
    out = mf.FIXTURES / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for f in tok_dir.iterdir():
        shutil.copyfile(f, out / f.name)
    config = DebertaV2Config(
        vocab_size=len(fast), hidden_size=mf.HIDDEN, num_hidden_layers=mf.LAYERS, num_attention_heads=mf.HEADS,
        intermediate_size=mf.FFN, hidden_act="gelu", max_position_embeddings=128, pad_token_id=0,
        layer_norm_eps=1e-7, attn_implementation="eager", **settings,
    )
    torch.manual_seed(SEED)
    model = DebertaV2Model(config)
    mf.perturb_(model, SEED + 1)
    model.eval()
    model.save_pretrained(str(out), safe_serialization=True)
    reloaded = DebertaV2Model.from_pretrained(str(out), dtype=torch.float32).eval()
    tensors, batches = {}, []
    specs = list(mf.TINY_BATCHES) + [LONG, UNICODE]
    for i, spec in enumerate(specs):
        enc = encode(fast, spec)
        hidden = run(model, enc)
        hidden2 = run(reloaded, enc)
        assert all(np.array_equal(a, b) for a, b in zip(hidden, hidden2))
        B, T = enc["input_ids"].shape
        p = f"batch{i}."
        for k, v in enc.items():
            if k != "token_type_ids" or config.type_vocab_size > 0:  # the model reads no types without a table
                tensors[p + k] = v
        tensors[p + "position_ids"] = np.ascontiguousarray(np.broadcast_to(np.arange(T, dtype=np.int32), (B, T)))
        for l, h in enumerate(hidden):
            tensors[p + f"hidden.{l}"] = np.ascontiguousarray(h)
        batches.append({"texts": spec["texts"], "pairs": spec["pairs"], "maxLength": spec["maxLength"],
                        "padding": "longest", "paddingSide": "right"})
        print(f"  {name} batch {i}: {B} x {T}")
    assert tensors[f"batch{len(specs) - 2}.input_ids"].shape[1] > 40, "the long batch is not long"
    mf.save_tensors(tensors, out / "expected.safetensors")
    mf.write_json(out / "batches.json", batches)


def main():
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_file = train_tokenizer(work)
        tok_dir = work / "tokenizer"
        tok_dir.mkdir()
        sp, fast = tokenizers(model_file, tok_dir)
        cases, differ = tokenizer_cases(sp, fast)
        for name, settings in MODELS.items():
            make_model(name, settings, tok_dir, fast)
    mf.write_json(mf.FIXTURES / "tiny-deberta-v2" / "tokenizer-parity.json", {
        "note": "transformers' DebertaV2Tokenizer (tokenizer.json converted from the SentencePiece model) "
                "on each text; slowIds from sentencepiece itself inside [CLS] .. [SEP]",
        "slowDiffers": differ,
        "cases": cases,
        "versions": dict(mf.versions(), sentencepiece=spm.__version__),
    })
    print(f"tokenizer: vocab {len(fast)}, {len(cases)} cases, slow and fast differ on {differ}")


if __name__ == "__main__":
    main()
