#!/usr/bin/env python3
"""Training parity fixtures: losses, gradients and AdamW trajectories from PyTorch.

For the tiny random BERT, RoBERTa, MPNet and the two DeBERTa-v2 of test/fixtures (made by
make_fixtures.py, make_mpnet_fixtures.py and make_deberta_fixtures.py),
for every training mode of the engine and every head, this script computes with
PyTorch + transformers (dropout off):

  * the loss of one padded batch and the gradient of every trainable parameter;
  * for the sequence-classification head, the parameters after 5 AdamW steps with a
    linear warm-up / linear decay schedule and gradient clipping by global norm.

Houlsby adapters are written here in PyTorch (the same placement as the engine:
`h + up(act(down(h)))` after the attention output projection and after the FFN
output, after their dropout, before each residual add and LayerNorm).

Parameters use the engine's canonical names (src/model/families.ts, plus
`layer.i.adapter.attn|ffn.down|up.weight|bias` and `head.weight|bias`).
Output: test/fixtures/train-parity.safetensors and train-parity.json.

    python3 scripts/make_train_fixtures.py      # needs torch, transformers, safetensors
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors.numpy import save_file
from transformers import AutoModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "test", "fixtures")
MODES = ["full", "frozen-prefix", "reduced", "reduced-adapters", "full-adapters"]
HEADS = {"sequence": 3, "token": 5, "qa": 2}
K = 1                # layers 1..K are the recycled prefix (the tiny models have 3 layers)
ADAPTER = 8          # bottleneck size
ACT = "gelu"         # adapter nonlinearity
STEPS = 5
LR = 1e-2
WARMUP = 2
WD = 0.01
CLIP = 1.0
CLASS_WEIGHTS = [0.5, 1.0, 2.0]
FAMILIES = ("bert", "roberta", "mpnet", "deberta-v2", "deberta-v2-b")
TYPED = ("bert", "deberta-v2-b")  # the families whose batches carry token types


def canonical_layer_names(family):
    if family == "distilbert":
        raise ValueError("not used")
    if family == "mpnet":
        return {
            "attention.attn.q": "attn.q", "attention.attn.k": "attn.k", "attention.attn.v": "attn.v",
            "attention.attn.o": "attn.out", "attention.LayerNorm": "attn.ln",
            "intermediate.dense": "ffn.in", "output.dense": "ffn.out", "output.LayerNorm": "ffn.ln",
        }
    if family.startswith("deberta-v2"):
        return {
            "attention.self.query_proj": "attn.q", "attention.self.key_proj": "attn.k",
            "attention.self.value_proj": "attn.v", "attention.self.pos_query_proj": "attn.pos_q",
            "attention.self.pos_key_proj": "attn.pos_k", "attention.output.dense": "attn.out",
            "attention.output.LayerNorm": "attn.ln", "intermediate.dense": "ffn.in", "output.dense": "ffn.out",
            "output.LayerNorm": "ffn.ln",
        }
    return {
        "attention.self.query": "attn.q", "attention.self.key": "attn.k", "attention.self.value": "attn.v",
        "attention.output.dense": "attn.out", "attention.output.LayerNorm": "attn.ln",
        "intermediate.dense": "ffn.in", "output.dense": "ffn.out", "output.LayerNorm": "ffn.ln",
    }


def canonical(name, family):
    """HF base-model parameter name -> the engine's canonical slot name."""
    emb = {
        "embeddings.word_embeddings.weight": "embeddings.word",
        "embeddings.position_embeddings.weight": "embeddings.position",
        "embeddings.token_type_embeddings.weight": "embeddings.token_type",
        "embeddings.LayerNorm.weight": "embeddings.ln.weight",
        "embeddings.LayerNorm.bias": "embeddings.ln.bias",
    }
    if name in emb:
        return emb[name]
    if name == "encoder.relative_attention_bias.weight":  # MPNet
        return "encoder.rel_bias"
    deberta = {  # DeBERTa-v2's relative embeddings and their LayerNorm
        "encoder.rel_embeddings.weight": "encoder.rel_embeddings",
        "encoder.LayerNorm.weight": "encoder.rel_ln.weight",
        "encoder.LayerNorm.bias": "encoder.rel_ln.bias",
    }
    if name in deberta:
        return deberta[name]
    parts = name.split(".")
    assert parts[0] == "encoder" and parts[1] == "layer", name
    i = parts[2]
    module = ".".join(parts[3:-1])
    return f"layer.{i}.{canonical_layer_names(family)[module]}.{parts[-1]}"


class Adapter(torch.nn.Module):
    def __init__(self, hidden, size, gen):
        super().__init__()
        self.down = torch.nn.Linear(hidden, size)
        self.up = torch.nn.Linear(size, hidden)
        with torch.no_grad():
            # non-trivial values so every gradient is exercised (the engine's own
            # default initialises `up` near zero; that is a separate test)
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)

    def forward(self, h):
        z = self.down(h)
        z = torch.nn.functional.gelu(z) if ACT == "gelu" else torch.relu(z)
        return h + self.up(z)


def add_adapters(model, layers, gen):
    """Houlsby placement: wrap BertSelfOutput / BertOutput (and RoBERTa's) forward."""
    hidden = model.config.hidden_size
    adapters = {}
    for i in layers:
        layer = model.encoder.layer[i]
        if model.config.model_type == "mpnet":
            # MPNetAttention runs attn (q, k, v, o) then LayerNorm(dropout(out) + input)
            ad = Adapter(hidden, ADAPTER, gen)
            layer.attention.adapter = ad
            adapters[(i, "attn")] = ad

            def attn_fwd(self, hidden_states, attention_mask=None, position_bias=None, output_attentions=False, **kw):
                out = self.attn(hidden_states, attention_mask, position_bias, output_attentions=output_attentions)
                h = self.adapter(self.dropout(out[0]))
                return (self.LayerNorm(h + hidden_states),) + out[1:]

            layer.attention.forward = attn_fwd.__get__(layer.attention)
            sites = (("ffn", layer.output),)
        else:
            sites = (("attn", layer.attention.output), ("ffn", layer.output))
        for site, module in sites:
            ad = Adapter(hidden, ADAPTER, gen)
            module.adapter = ad
            adapters[(i, site)] = ad

            def fwd(self, hidden_states, input_tensor):
                h = self.dense(hidden_states)
                h = self.dropout(h)
                h = self.adapter(h)
                return self.LayerNorm(h + input_tensor)

            module.forward = fwd.__get__(module)
    return adapters


def head_loss(kind, head, h, batch, class_weights=None):
    """The engine's heads: [CLS] -> linear; every token -> linear; QA start/end."""
    if kind == "sequence":
        logits = head(h[:, 0])
        w = None if class_weights is None else torch.tensor(class_weights)
        return torch.nn.functional.cross_entropy(logits, batch["labels"], weight=w)
    if kind == "token":
        logits = head(h)
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["token_labels"].reshape(-1), ignore_index=-100)
    logits = head(h)  # (B, T, 2)
    pad = batch["attention_mask"] == 0
    start = logits[..., 0].masked_fill(pad, float("-inf"))  # padding is never a start or end
    end = logits[..., 1].masked_fill(pad, float("-inf"))
    return (torch.nn.functional.cross_entropy(start, batch["starts"]) + torch.nn.functional.cross_entropy(end, batch["ends"])) / 2


def make_batch(family, vocab, pad_id):
    g = torch.Generator().manual_seed(11)
    B, T = 3, 12
    lengths = [12, 9, 6]
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.long)
    for b, n in enumerate(lengths):
        ids[b, :n] = torch.randint(5, vocab, (n,), generator=g)
        ids[b, 0] = {"roberta": 0, "mpnet": 0, "deberta-v2": 1, "deberta-v2-b": 1}.get(family, 2)  # a CLS-like first token
        mask[b, :n] = 1
    types = torch.zeros((B, T), dtype=torch.long)
    if family in TYPED:
        types[0, 7:12] = 1
    token_labels = torch.randint(0, HEADS["token"], (B, T), generator=g)
    token_labels[mask == 0] = -100
    token_labels[0, 3] = -100  # a non-first sub-word
    token_labels[1, 5] = -100
    return {
        "input_ids": ids, "attention_mask": mask, "token_type_ids": types,
        "labels": torch.tensor([2, 0, 1]),
        "token_labels": token_labels,
        "starts": torch.tensor([3, 1, 5]), "ends": torch.tensor([6, 4, 5]),
    }


def load(family):
    kwargs = {} if family.startswith("deberta-v2") else {"add_pooling_layer": False}  # DeBERTa has no pooler
    return AutoModel.from_pretrained(os.path.join(FIX, f"tiny-{family}"), attn_implementation="eager", **kwargs)


def lr_at(step):
    """Linear warm-up over WARMUP steps, then linear decay to 0 at STEPS (step counts from 0)."""
    if step < WARMUP:
        return LR * (step + 1) / WARMUP
    return LR * max(0.0, (STEPS - step) / (STEPS - WARMUP))


def run_case(family, mode, kind, out, meta, adam, class_weights=None):
    tag = f"{family}/{mode}/{kind}" + ("/weighted" if class_weights else "")
    torch.manual_seed(0)
    model = load(family)
    model.eval()  # dropout off
    cfg = model.config
    n_layers = cfg.num_hidden_layers
    gen = torch.Generator().manual_seed(1234)
    adapters = {}
    if mode == "reduced-adapters":
        adapters = add_adapters(model, range(K, n_layers), gen)
    elif mode == "full-adapters":
        adapters = add_adapters(model, range(n_layers), gen)
    head = torch.nn.Linear(cfg.hidden_size, HEADS[kind])
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=gen) * 0.3)
        head.bias.copy_(torch.randn(head.bias.shape, generator=gen) * 0.1)
    batch = make_batch(family, cfg.vocab_size, cfg.pad_token_id)

    # which parameters train
    trainable = {}
    for name, p in model.named_parameters():
        if ".adapter." in name:
            continue
        cname = canonical(name, family)
        layer = int(cname.split(".")[1]) if cname.startswith("layer.") else -1
        train = mode == "full" or (mode in ("frozen-prefix", "reduced") and layer >= K)
        p.requires_grad_(train)
        if train:
            trainable[cname] = p
    for (i, site), ad in adapters.items():
        for part in ("down", "up"):
            lin = getattr(ad, part)
            trainable[f"layer.{i}.adapter.{site}.{part}.weight"] = lin.weight
            trainable[f"layer.{i}.adapter.{site}.{part}.bias"] = lin.bias
    trainable["head.weight"] = head.weight
    trainable["head.bias"] = head.bias

    # the additive mask the eager attention takes: 0 for real keys, the dtype's minimum for padding
    ext = (1.0 - batch["attention_mask"][:, None, None, :].float()) * torch.finfo(torch.float32).min

    types = batch["token_type_ids"] if family in TYPED else None

    def forward():
        if mode in ("reduced", "reduced-adapters"):
            with torch.no_grad():
                hs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           token_type_ids=types, output_hidden_states=True).hidden_states
            h = hs[K].detach()
            if family.startswith("deberta-v2"):
                # DeBERTa-v2's layers take its (B, 1, T, T) mask, the relative positions and embeddings
                enc = model.encoder
                extra = {"relative_pos": enc.get_rel_pos(h), "rel_embeddings": enc.get_rel_embedding()}
                layer_mask = enc.get_attention_mask(batch["attention_mask"])
            else:
                extra = {"position_bias": model.encoder.compute_position_bias(h)} if family == "mpnet" else {}
                layer_mask = ext
            for layer in model.encoder.layer[K:]:
                h = layer(h, layer_mask, **extra) if family.startswith("deberta-v2") else layer(h, attention_mask=ext, **extra)
                h = h[0] if isinstance(h, tuple) else h
        else:
            h = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                      token_type_ids=types).last_hidden_state
        return head_loss(kind, head, h, batch, class_weights)

    prefix = tag.replace("/", ".")
    # initial values of what the engine cannot know: adapters and head
    for name, p in trainable.items():
        if name.startswith("head.") or ".adapter." in name:
            out[f"{prefix}.init.{name}"] = p.detach().numpy().astype(np.float32).copy()
    loss = forward()
    loss.backward()
    for name, p in trainable.items():
        out[f"{prefix}.grad.{name}"] = p.grad.detach().numpy().astype(np.float32).copy()
    untrainable = [canonical(n, family) for n, p in model.named_parameters() if not p.requires_grad and ".adapter." not in n]
    meta["cases"].append({
        "family": family, "mode": mode, "head": kind, "numLabels": HEADS[kind], "classWeights": class_weights,
        "prefix": prefix, "loss": float(loss), "trainable": sorted(trainable), "frozen": sorted(untrainable), "adam": adam,
    })
    if adam:
        params = list(trainable.items())
        decay = [p for n, p in params if not (n.endswith(".bias") or ".ln." in n)]
        no_decay = [p for n, p in params if n.endswith(".bias") or ".ln." in n]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": WD}, {"params": no_decay, "weight_decay": 0.0}], lr=LR)
        losses = []
        for step in range(STEPS):
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            opt.zero_grad()
            l = forward()
            l.backward()
            torch.nn.utils.clip_grad_norm_([p for _, p in params], CLIP)
            opt.step()
            losses.append(float(l))
        for name, p in trainable.items():
            out[f"{prefix}.after.{name}"] = p.detach().numpy().astype(np.float32).copy()
        meta["cases"][-1]["adamLosses"] = losses
    print(f"{tag}: loss {float(loss):.6f}, {len(trainable)} trainable tensors", file=sys.stderr)


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    out = {}
    meta = {
        "k": K, "adapterSize": ADAPTER, "adapterAct": ACT, "steps": STEPS, "lr": LR, "warmup": WARMUP,
        "weightDecay": WD, "clip": CLIP, "betas": [0.9, 0.999], "eps": 1e-8,
        "schedule": "lr(step) = lr * (step+1)/warmup for step < warmup, else lr * (steps-step)/(steps-warmup)",
        "cases": [], "batches": {},
    }
    for family in FAMILIES:
        model = load(family)
        b = make_batch(family, model.config.vocab_size, model.config.pad_token_id)
        for key in ("input_ids", "attention_mask", "token_type_ids", "labels", "token_labels", "starts", "ends"):
            out[f"{family}.batch.{key}"] = b[key].numpy().astype(np.int32)
        heads = list(HEADS)
        for mode in MODES:
            for kind in heads:
                run_case(family, mode, kind, out, meta, adam=(kind == "sequence"))
        if family == "bert":
            run_case(family, "full", "sequence", out, meta, adam=False, class_weights=CLASS_WEIGHTS)
    save_file(out, os.path.join(FIX, "train-parity.safetensors"))
    with open(os.path.join(FIX, "train-parity.json"), "w") as f:
        json.dump(meta, f, indent=1)
    size = os.path.getsize(os.path.join(FIX, "train-parity.safetensors"))
    print(f"wrote test/fixtures/train-parity.safetensors ({size} bytes) and train-parity.json", file=sys.stderr)


if __name__ == "__main__":
    main()
