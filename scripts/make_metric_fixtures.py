#!/usr/bin/env python3
"""Metric fixtures: scikit-learn and seqeval on random (seeded) predictions.

Writes test/fixtures/metrics.json with classification cases (accuracy, micro-F1,
macro-F1, per-label F1) and NER cases (seqeval entity precision / recall / F1 in
the default and the strict IOB2 mode, token-level micro / macro F1), so the tests
of src/tasks/metrics.ts need no Python.

    python3 scripts/make_metric_fixtures.py     # needs scikit-learn and seqeval
"""
import json
import os
import random

from seqeval.metrics import f1_score as seq_f1, precision_score as seq_p, recall_score as seq_r
from seqeval.scheme import IOB2
from sklearn.metrics import accuracy_score, f1_score

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    rnd = random.Random(2024)
    cases = {"classification": [], "ner": []}
    for n_labels, n in ((2, 40), (3, 100), (5, 200), (13, 300)):
        labels = [f"L{i}" for i in range(n_labels)]
        truth = [rnd.choice(labels) for _ in range(n)]
        pred = [t if rnd.random() < 0.6 else rnd.choice(labels[:-1]) for t in truth]  # the last label is never predicted
        exclude = [labels[0]] if n_labels == 13 else []
        kept = [l for l in labels if l not in exclude]
        cases["classification"].append({
            "truth": truth, "pred": pred, "exclude": exclude,
            "accuracy": accuracy_score(truth, pred),
            "microF1": f1_score(truth, pred, average="micro", labels=kept if exclude else None, zero_division=0),
            "macroF1": f1_score(truth, pred, average="macro", labels=kept if exclude else None, zero_division=0),
            "perLabelF1": dict(zip(sorted(set(truth) | set(pred)), f1_score(truth, pred, average=None, labels=sorted(set(truth) | set(pred)), zero_division=0).tolist())),
        })
    types = ["Disease", "Chem", "Gene"]
    tags = ["O"] + [f"{p}-{t}" for t in types for p in ("B", "I")]
    for n_sent, noise in ((30, 0.1), (80, 0.25), (150, 0.4)):
        truth, pred = [], []
        for _ in range(n_sent):
            length = rnd.randint(3, 25)
            seq, i = [], 0
            while i < length:
                if rnd.random() < 0.25:
                    t = rnd.choice(types)
                    span = rnd.randint(1, 4)
                    seq.append(f"B-{t}")
                    seq.extend(f"I-{t}" for _ in range(min(span, length - i) - 1))
                    i += min(span, length - i)
                else:
                    seq.append("O")
                    i += 1
            truth.append(seq)
            # predictions: random edits, including invalid ones (I- without B-) to separate the modes
            pred.append([rnd.choice(tags) if rnd.random() < noise else t for t in seq])
        flat_t = [t for s in truth for t in s]
        flat_p = [t for s in pred for t in s]
        cases["ner"].append({
            "truth": truth, "pred": pred,
            "default": {"precision": seq_p(truth, pred), "recall": seq_r(truth, pred), "f1": seq_f1(truth, pred)},
            "strict": {"precision": seq_p(truth, pred, mode="strict", scheme=IOB2), "recall": seq_r(truth, pred, mode="strict", scheme=IOB2),
                       "f1": seq_f1(truth, pred, mode="strict", scheme=IOB2)},
            "tokenMicroF1": f1_score(flat_t, flat_p, average="micro", zero_division=0),
            "tokenMacroF1": f1_score(flat_t, flat_p, average="macro", zero_division=0),
        })
    with open(os.path.join(ROOT, "test", "fixtures", "metrics.json"), "w") as f:
        json.dump(cases, f)
    print("wrote test/fixtures/metrics.json")


if __name__ == "__main__":
    main()
