#!/usr/bin/env python3
"""Reference sentence embeddings of the real all-MiniLM-L6-v2 for test/parity/embed.test.ts.

Writes test/fixtures/minilm-embeddings.json: a few texts (short, long past the model's
max_seq_length of 256 tokens, accents / CJK / emoji, a text pair is not used), and for each
  mean:  sentence-transformers' own SentenceTransformer(model).encode(..., normalize_embeddings=True)
         (the model directory's modules: Transformer -> Pooling(mean) -> Normalize)
  cls:   transformers' last_hidden_state[:, 0] of the same tokenization, not normalised
Needs: pip install torch==2.13.0 transformers sentence-transformers
Usage: python3 scripts/make_embed_fixtures.py [--model models/all-MiniLM-L6-v2]
"""
import argparse
import json
import os

import torch
from sentence_transformers import SentenceTransformer, models
from transformers import AutoModel, AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TEXTS = [
    "The patient took aspirin for asthma.",
    "Recycling the activations of the lower layers makes repeated training cheap.",
    "Café naïve résumé — 東京 와 🙂 emoji and accents",
    "short",
    " ".join(["kidney disease and insulin resistance in the cohort"] * 60),  # > 256 tokens: truncated
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "all-MiniLM-L6-v2"))
    ap.add_argument("--out", default=os.path.join(ROOT, "test", "fixtures", "minilm-embeddings.json"))
    a = ap.parse_args()
    torch.manual_seed(0)
    # The model's own modules.json names Transformer -> Pooling -> Normalize, but the packaged
    # copy has no 1_Pooling/config.json; all-MiniLM-L6-v2's pooling is mean over tokens, so the
    # same pipeline is assembled from sentence-transformers' modules here.
    if os.path.exists(os.path.join(a.model, "1_Pooling", "config.json")):
        st = SentenceTransformer(a.model, device="cpu")
    else:
        with open(os.path.join(a.model, "sentence_bert_config.json")) as f:
            max_len = json.load(f)["max_seq_length"]
        word = models.Transformer(a.model, max_seq_length=max_len)
        pool = models.Pooling(word.get_word_embedding_dimension(), pooling_mode="mean")
        st = SentenceTransformer(modules=[word, pool, models.Normalize()], device="cpu")
    mean = st.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True, batch_size=8)
    tok = AutoTokenizer.from_pretrained(a.model)
    model = AutoModel.from_pretrained(a.model).eval()
    enc = tok(TEXTS, padding=True, truncation=True, max_length=st.max_seq_length, return_tensors="pt")
    with torch.no_grad():
        cls = model(**enc).last_hidden_state[:, 0].numpy()
    out = {
        "model": "all-MiniLM-L6-v2",
        "maxSeqLength": st.max_seq_length,
        "texts": TEXTS,
        "tokens": [int(x) for x in enc["attention_mask"].sum(1)],
        "mean": [[float(v) for v in row] for row in mean],
        "cls": [[float(v) for v in row] for row in cls],
    }
    with open(a.out, "w") as f:
        json.dump(out, f)
    print(f"wrote {a.out}: {len(TEXTS)} texts, max_seq_length {st.max_seq_length}")


if __name__ == "__main__":
    main()
