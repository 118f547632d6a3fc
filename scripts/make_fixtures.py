#!/usr/bin/env python3
"""Generate the committed test fixtures under test/fixtures/.

What it makes
-------------
1. Three tiny, randomly initialised encoders, one Hugging Face model directory each
   (config.json, model.safetensors, tokenizer.json), plus reference activations:

     test/fixtures/tiny-bert/        BertModel        (WordPiece, TemplateProcessing)
     test/fixtures/tiny-roberta/     RobertaModel     (byte-level BPE, RobertaProcessing)
     test/fixtures/tiny-distilbert/  DistilBertModel  (WordPiece, BertProcessing)

   Each has hidden size 32, 4 heads, FFN 64, 3 layers, exact GELU. Weights are drawn from a
   fixed seed; every LayerNorm weight is 1 + 0.1*N(0,1) and every bias (LayerNorm and Linear)
   is 0.1*N(0,1), so parity tests exercise all of them. The tokenizers are trained here with
   the `tokenizers` library on sentences read from the shared task data (only the trained
   vocabulary ends up in the repository).

     <dir>/expected.safetensors   for batch i in 0..2:
         batch{i}.input_ids        int32   [B, T]
         batch{i}.attention_mask   int32   [B, T]
         batch{i}.token_type_ids   int32   [B, T]     (tiny-bert only)
         batch{i}.position_ids     int32   [B, T]     position ids the HF model really used
         batch{i}.hidden.{l}       float32 [B, T, H]  l = 0..num_layers (0 = embedding output)
     <dir>/batches.json           the texts, pairs and truncation of each batch

   Batch 0: two single texts padded (right) to the longest; batch 1: three text pairs padded;
   batch 2: one long text truncated to 20 tokens, no padding.

2. test/fixtures/tokenizer-parity.json: encodings made by the Python `tokenizers` library
   (no padding, no truncation unless the case says so) of a list of awkward texts, for the
   three tiny tokenizers and the real all-MiniLM-L6-v2 tokenizer. Offsets are given as
   tokenizers reports them (Unicode code points, `offsets`) and in UTF-16 code units
   (`offsetsUtf16`, what JavaScript string indices use).

3. test/fixtures/minilm-reference.safetensors / .json: input ids, masks and the hidden
   states of every layer (0..6) of the real all-MiniLM-L6-v2 for a dozen short sentences.
   Tensors: input_ids, attention_mask, token_type_ids (int32 [B, T]), hidden.{l} (float32
   [B, T, 384]).

Rerun
-----
    python3 scripts/make_fixtures.py [--real-model DIR] [--data-dir DIR]

--real-model defaults to models/all-MiniLM-L6-v2 (what `npm run fetch-model` fetches). When no
real model is found, parts 1 and 2 are regenerated for the tiny tokenizers, the MiniLM cases
already present in tokenizer-parity.json are kept, and minilm-reference.* is left untouched.
--data-dir defaults to ../shared/data next to the repository (the shared task data).

Everything is seeded and computed in float32 on the CPU with one thread, so a rerun with the
same library versions reproduces the same files. Nothing is fetched from the network.
"""

import os

# Keep the run light and deterministic: one thread everywhere. Must precede the imports.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import safetensors.numpy
import tokenizers
import torch
import transformers
from tokenizers import (
    AddedToken,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import (
    BertConfig,
    BertModel,
    DistilBertConfig,
    DistilBertModel,
    RobertaConfig,
    RobertaModel,
)

SCRIPT_VERSION = 1
SEED = 20240917

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "test" / "fixtures"
DEFAULT_REAL_MODEL = REPO / "models" / "all-MiniLM-L6-v2"
REAL_MODEL_REPO_PATH = "models/all-MiniLM-L6-v2"
DEFAULT_DATA_DIR = REPO.parent / "shared" / "data"

HIDDEN = 32
HEADS = 4
FFN = 64
LAYERS = 3

BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
ROBERTA_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]

# --------------------------------------------------------------------------------------
# Texts (all written for this project; none copied from the task data)
# --------------------------------------------------------------------------------------

# Batches fed to the tiny models. Token counts stay well below 64 positions.
TINY_BATCHES = [
    {
        "texts": [
            "The enzyme binds the inhibitor.",
            "Patients with chronic kidney disease received a lower dose of the drug in this study.",
        ],
        "pairs": None,
        "maxLength": None,
    },
    {
        "texts": [
            "What does the protein do?",
            "Gene expression increased.",
            "A short one.",
        ],
        "pairs": [
            "It activates transcription of the target genes in liver cells.",
            "Only after treatment.",
            "And a somewhat longer second segment about mutations and tumour growth.",
        ],
        "maxLength": None,
    },
    {
        "texts": [
            "This sentence is deliberately long so that truncation to twenty tokens cuts it well "
            "before the end, after which nothing of the remaining clauses about receptors, "
            "antibodies and clinical trials should be seen by the model at all.",
        ],
        "pairs": None,
        "maxLength": 20,
    },
]

# Sentences for the real MiniLM reference: 12 short ones so that B*T*384*4*7 stays < 2 MB.
MINILM_SENTENCES = [
    "Aspirin inhibits cyclooxygenase enzymes.",
    "The mutation causes hereditary breast cancer.",
    "Insulin resistance precedes type 2 diabetes.",
    "We used the method of previous work.",
    "Our results agree with earlier reports.",
    "Kinase activity was measured in vitro.",
    "Tumour growth slowed after treatment.",
    "The receptor antagonist blocked signalling.",
    "Anemia is common in kidney disease.",
    "The cat sat on the mat.",
    "Rain is expected tomorrow afternoon.",
    "Hello!",
]
MINILM_MAX_LENGTH = 128

PARITY_TEXTS = [
    ("Hello, world! This is a simple sentence.", None),
    ("The quick brown fox jumps over the lazy dog.", None),
    ("ThIs Is MiXeD CaSe with ACRONYMS like BERT and NLP.", None),
    ("Crème brûlée à la française", None),
    ("naïve café résumé", None),
    ("Ångström", None),
    ("日本語のテキスト", None),
    ("中文分词测试", None),
    ("한국어", None),
    ("I love 🤗 and 🚀🔥", None),
    ("Flags 🇫🇷🇯🇵 and a family 👩\u200d👩\u200d👧 emoji", None),
    ("supercalifragilisticexpialidocious", None),
    ("pneumonoultramicroscopicsilicovolcanoconiosis", None),
    ("a" * 300, None),
    ("https://example.com/path/to/a/very/long/resource/name?query=embedding-recycler&page=42#section-7", None),
    ("Prices rose 3.5% to $1,234.56 on 2024-01-15 (see Fig. 2b; p<0.001)!!! ...", None),
    ("tabs\tand\nnewlines\r\n  and   multiple    spaces  ", None),
    ("Zero\u200bwidth space, soft\u00adhyphen and non\u00a0breaking space.", None),
    ("", None),
    ("   ", None),
    ("How old are you?", "I am six years old."),
    ("Où est la gare ?", "Elle est à côté 🚉, tout près."),
]

# MiniLM-only cases with truncation and overflowing windows.
WINDOW_CASES = [
    (
        "Embedding recycling stores the activations of the lower layers once, so that task "
        "models trained on the upper layers never pay for them again.",
        16,
        4,
    ),
    (
        "A much longer passage is needed to see several overlapping windows: the encoder reads "
        "sixteen tokens at a time, keeps four of them as context from the previous window, and "
        "carries on until every word of this rather verbose sentence has been covered at least "
        "once by some window.",
        16,
        4,
    ),
]


# --------------------------------------------------------------------------------------
# Tokenizers
# --------------------------------------------------------------------------------------


def corpus_lines(data_dir: Path, per_file: int = 3000):
    """Sentences from the shared task data, used only to train the tiny vocabularies."""
    lines = []
    for name in ("chemprot/train.jsonl", "scicite/train.jsonl"):
        path = data_dir / name
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f):
                if i >= per_file:
                    break
                text = json.loads(line)["text"]
                # drop the ChemProt entity markers, they are not natural text
                for marker in ("<<", ">>", "[[", "]]"):
                    text = text.replace(marker, " ")
                lines.append(" ".join(text.split()))
    path = data_dir / "ncbi-disease/train.conll"
    words, count = [], 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                if words:
                    lines.append(" ".join(words))
                    words, count = [], count + 1
                    if count >= per_file:
                        break
                continue
            words.append(line.split("\t")[0])
    if not lines:
        raise SystemExit(f"no training text found under {data_dir}")
    return lines


def train_wordpiece(lines, vocab_size, post_processor_kind):
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=BERT_SPECIALS,
        limit_alphabet=60,
        continuing_subword_prefix="##",
        show_progress=False,
    )
    tok.train_from_iterator(lines, trainer=trainer)
    # The WordPiece trainer numbers the "##x" single-character tokens in hash-map order, which
    # changes from run to run; give that block a fixed (code point) order so reruns are identical.
    vocab = tok.get_vocab(with_added_tokens=False)
    block = sorted((t for t in vocab if t.startswith("##") and len(t) == 3), key=lambda t: t[2])
    for t, i in zip(block, sorted(vocab[t] for t in block)):
        vocab[t] = i
    tok.model = models.WordPiece(vocab=vocab, unk_token="[UNK]", continuing_subword_prefix="##", max_input_chars_per_word=100)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    if post_processor_kind == "template":
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A:0 [SEP]:0",
            pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
        )
    else:
        tok.post_processor = processors.BertProcessing(("[SEP]", sep_id), ("[CLS]", cls_id))
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    for i, s in enumerate(BERT_SPECIALS):
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))
    return tok


def train_bytelevel_bpe(lines, vocab_size):
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[AddedToken(s, special=True) for s in ROBERTA_SPECIALS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(lines, trainer=trainer)
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")), trim_offsets=True, add_prefix_space=False
    )
    tok.decoder = decoders.ByteLevel()
    for i, s in enumerate(ROBERTA_SPECIALS):
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))
    return tok


def save_tokenizer(tok: Tokenizer, path: Path):
    tok.no_padding()
    tok.no_truncation()
    tok.save(str(path))
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert saved.get("padding") is None and saved.get("truncation") is None, path


def load_plain_tokenizer(path: Path) -> Tokenizer:
    tok = Tokenizer.from_file(str(path))
    tok.no_padding()
    tok.no_truncation()
    return tok


# --------------------------------------------------------------------------------------
# Tiny models
# --------------------------------------------------------------------------------------


def perturb_(model: torch.nn.Module, seed: int):
    """Own, seeded initialisation: unit-variance-ish weights, non-trivial LayerNorms and biases."""
    g = torch.Generator().manual_seed(seed)

    def randn(shape):
        return torch.randn(shape, generator=g, dtype=torch.float32)

    with torch.no_grad():
        for _, module in sorted(model.named_modules(), key=lambda kv: kv[0]):
            if isinstance(module, torch.nn.Linear):
                fan_in = module.weight.shape[1]
                module.weight.copy_(randn(module.weight.shape) / fan_in**0.5)
                if module.bias is not None:
                    module.bias.copy_(0.1 * randn(module.bias.shape))
            elif isinstance(module, torch.nn.Embedding):
                module.weight.copy_(randn(module.weight.shape))
            elif isinstance(module, torch.nn.LayerNorm):
                module.weight.copy_(1.0 + 0.1 * randn(module.weight.shape))
                module.bias.copy_(0.1 * randn(module.bias.shape))


def build_model(kind: str, vocab_size: int):
    if kind == "bert":
        config = BertConfig(
            vocab_size=vocab_size,
            hidden_size=HIDDEN,
            num_hidden_layers=LAYERS,
            num_attention_heads=HEADS,
            intermediate_size=FFN,
            hidden_act="gelu",
            max_position_embeddings=64,
            type_vocab_size=2,
            pad_token_id=0,
            layer_norm_eps=1e-12,
            attn_implementation="eager",
        )
        model = BertModel(config, add_pooling_layer=False)
    elif kind == "roberta":
        config = RobertaConfig(
            vocab_size=vocab_size,
            hidden_size=HIDDEN,
            num_hidden_layers=LAYERS,
            num_attention_heads=HEADS,
            intermediate_size=FFN,
            hidden_act="gelu",
            max_position_embeddings=66,  # positions start at pad_token_id + 1 = 2
            type_vocab_size=1,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
            layer_norm_eps=1e-5,
            attn_implementation="eager",
        )
        model = RobertaModel(config, add_pooling_layer=False)
    elif kind == "distilbert":
        config = DistilBertConfig(
            vocab_size=vocab_size,
            dim=HIDDEN,
            n_layers=LAYERS,
            n_heads=HEADS,
            hidden_dim=FFN,
            activation="gelu",
            max_position_embeddings=64,
            sinusoidal_pos_embds=False,
            pad_token_id=0,
            attn_implementation="eager",
        )
        model = DistilBertModel(config)
    else:
        raise ValueError(kind)
    return model


def model_class(kind):
    return {"bert": BertModel, "roberta": RobertaModel, "distilbert": DistilBertModel}[kind]


def roberta_position_ids(input_ids: np.ndarray, padding_idx: int) -> np.ndarray:
    """Independent restatement of transformers' create_position_ids_from_input_ids."""
    mask = (input_ids != padding_idx).astype(np.int64)
    return np.cumsum(mask, axis=1) * mask + padding_idx


def run_model(model, kind, batch):
    """Forward pass; returns (position ids the embedding layer saw, list of hidden states)."""
    seen = {}

    def hook(_module, args):
        seen["position_ids"] = args[0].detach().clone()

    handle = model.embeddings.position_embeddings.register_forward_pre_hook(hook)
    try:
        kwargs = {
            "input_ids": torch.from_numpy(batch["input_ids"].astype(np.int64)),
            "attention_mask": torch.from_numpy(batch["attention_mask"].astype(np.int64)),
            "output_hidden_states": True,
        }
        if kind == "bert":
            kwargs["token_type_ids"] = torch.from_numpy(batch["token_type_ids"].astype(np.int64))
        with torch.no_grad():
            out = model(**kwargs)
    finally:
        handle.remove()
    pos = np.ascontiguousarray(seen["position_ids"].expand(kwargs["input_ids"].shape).numpy(), dtype=np.int32)
    hidden = [h.detach().to(torch.float32).numpy().copy() for h in out.hidden_states]
    return pos, hidden


def encode_batch(tok_path: Path, spec, pad_id: int, pad_token: str):
    tok = load_plain_tokenizer(tok_path)
    if spec["maxLength"] is not None:
        tok.enable_truncation(max_length=spec["maxLength"])
    pad = len(spec["texts"]) > 1
    if pad:
        tok.enable_padding(direction="right", pad_id=pad_id, pad_type_id=0, pad_token=pad_token)
    if spec["pairs"] is not None:
        encs = tok.encode_batch(list(zip(spec["texts"], spec["pairs"])))
    else:
        encs = tok.encode_batch(spec["texts"])
    lengths = {len(e.ids) for e in encs}
    assert len(lengths) == 1, "batch is not rectangular"
    if spec["maxLength"] is not None:
        assert all(len(e.overflowing) > 0 for e in encs), "truncation case does not truncate"
    return pad, {
        "input_ids": np.array([e.ids for e in encs], dtype=np.int32),
        "attention_mask": np.array([e.attention_mask for e in encs], dtype=np.int32),
        "token_type_ids": np.array([e.type_ids for e in encs], dtype=np.int32),
    }


def make_tiny(name, kind, tok: Tokenizer, seed: int):
    out_dir = FIXTURES / name
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    tok_path = out_dir / "tokenizer.json"
    save_tokenizer(tok, tok_path)
    vocab_size = tok.get_vocab_size(with_added_tokens=True)

    torch.manual_seed(seed)
    model = build_model(kind, vocab_size)
    perturb_(model, seed + 1)
    model.eval()
    model.save_pretrained(str(out_dir), safe_serialization=True)

    extra = {} if kind == "distilbert" else {"add_pooling_layer": False}
    reloaded = model_class(kind).from_pretrained(str(out_dir), attn_implementation="eager", dtype=torch.float32, **extra)
    reloaded.eval()
    cfg = json.loads((out_dir / "config.json").read_text())
    assert cfg["vocab_size"] == vocab_size

    if kind == "roberta":
        pad_id, pad_token = 1, "<pad>"
    else:
        pad_id, pad_token = 0, "[PAD]"

    tensors = {}
    batches_json = []
    for i, spec in enumerate(TINY_BATCHES):
        padded, enc = encode_batch(tok_path, spec, pad_id, pad_token)
        pos, hidden = run_model(model, kind, enc)
        pos2, hidden2 = run_model(reloaded, kind, enc)
        assert np.array_equal(pos, pos2)
        for a, b in zip(hidden, hidden2):
            assert np.array_equal(a, b), f"{name}: reloaded model differs"
        assert len(hidden) == LAYERS + 1
        B, T = enc["input_ids"].shape
        if kind == "roberta":
            assert np.array_equal(pos, roberta_position_ids(enc["input_ids"], pad_id))
        else:
            assert np.array_equal(pos, np.broadcast_to(np.arange(T, dtype=np.int32), (B, T)))
        if padded:
            assert (enc["attention_mask"] == 0).any(), "padded batch has no padding"
        p = f"batch{i}."
        tensors[p + "input_ids"] = enc["input_ids"]
        tensors[p + "attention_mask"] = enc["attention_mask"]
        if kind == "bert":
            tensors[p + "token_type_ids"] = enc["token_type_ids"]
            if spec["pairs"] is not None:
                assert (enc["token_type_ids"] == 1).any()
        tensors[p + "position_ids"] = pos
        for l, h in enumerate(hidden):
            assert h.shape == (B, T, HIDDEN) and h.dtype == np.float32
            tensors[p + f"hidden.{l}"] = np.ascontiguousarray(h)
        batches_json.append(
            {
                "texts": spec["texts"],
                "pairs": spec["pairs"],
                "maxLength": spec["maxLength"],
                "padding": "longest" if padded else None,
                "paddingSide": "right",
            }
        )
    save_tensors(tensors, out_dir / "expected.safetensors")
    write_json(out_dir / "batches.json", batches_json)
    print(f"  {name}: vocab {vocab_size}, {len(TINY_BATCHES)} batches")


# --------------------------------------------------------------------------------------
# Tokenizer parity
# --------------------------------------------------------------------------------------


def utf16_index(text: str) -> list:
    """Map each code-point index 0..len(text) to the UTF-16 code-unit index."""
    table, u = [0], 0
    for ch in text:
        u += 2 if ord(ch) > 0xFFFF else 1
        table.append(u)
    return table


def describe(enc, text, pair):
    t1 = utf16_index(text)
    t2 = utf16_index(pair) if pair is not None else None
    seq_ids = enc.sequence_ids
    offsets16 = []
    for (s, e), sid in zip(enc.offsets, seq_ids):
        table = t2 if sid == 1 else t1
        offsets16.append([table[s], table[e]] if sid is not None else [s, e])
    return {
        "ids": list(enc.ids),
        "typeIds": list(enc.type_ids),
        "offsets": [list(o) for o in enc.offsets],
        "offsetsUtf16": offsets16,
        "wordIds": list(enc.word_ids),
        "sequenceIds": list(seq_ids),
        "attentionMask": list(enc.attention_mask),
    }


def parity_cases(name, path: Path, with_windows: bool):
    tok = load_plain_tokenizer(path)
    cases = []
    for text, pair in PARITY_TEXTS:
        enc = tok.encode(text, pair) if pair is not None else tok.encode(text)
        case = {"tokenizer": name, "text": text, "pair": pair}
        case.update(describe(enc, text, pair))
        cases.append(case)
    if with_windows:
        for text, max_length, stride in WINDOW_CASES:
            tok = load_plain_tokenizer(path)
            tok.enable_truncation(max_length=max_length, stride=stride)
            enc = tok.encode(text)
            windows = [enc] + list(enc.overflowing)
            assert len(windows) >= 2
            case = {"tokenizer": name, "text": text, "pair": None}
            case.update(describe(enc, text, None))
            case["maxLength"] = max_length
            case["stride"] = stride
            case["windows"] = [
                {k: v for k, v in describe(w, text, None).items() if k in ("ids", "typeIds", "offsets", "offsetsUtf16")}
                for w in windows
            ]
            cases.append(case)
    return cases


# --------------------------------------------------------------------------------------
# Real MiniLM reference
# --------------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def make_minilm_reference(model_dir: Path):
    tok = load_plain_tokenizer(model_dir / "tokenizer.json")
    tok.enable_truncation(max_length=MINILM_MAX_LENGTH)
    tok.enable_padding(direction="right", pad_id=0, pad_type_id=0, pad_token="[PAD]")
    encs = tok.encode_batch(MINILM_SENTENCES)
    enc = {
        "input_ids": np.array([e.ids for e in encs], dtype=np.int32),
        "attention_mask": np.array([e.attention_mask for e in encs], dtype=np.int32),
        "token_type_ids": np.array([e.type_ids for e in encs], dtype=np.int32),
    }
    model = BertModel.from_pretrained(str(model_dir), attn_implementation="eager", dtype=torch.float32)
    model.eval()
    _, hidden = run_model(model, "bert", enc)
    B, T = enc["input_ids"].shape
    n_layers = model.config.num_hidden_layers
    assert len(hidden) == n_layers + 1
    size = B * T * model.config.hidden_size * 4 * len(hidden)
    assert size < 2 * 1024 * 1024, f"minilm reference too large: {size} bytes"
    tensors = dict(enc)
    for l, h in enumerate(hidden):
        tensors[f"hidden.{l}"] = np.ascontiguousarray(h)
    save_tensors(tensors, FIXTURES / "minilm-reference.safetensors")
    write_json(
        FIXTURES / "minilm-reference.json",
        {
            "model": REAL_MODEL_REPO_PATH,
            "modelSha256": sha256(model_dir / "model.safetensors"),
            "sentences": MINILM_SENTENCES,
            "maxLength": MINILM_MAX_LENGTH,
            "padding": "longest",
            "paddingSide": "right",
            "numLayers": n_layers,
            "tensors": {
                "input_ids": "int32 [B, T]",
                "attention_mask": "int32 [B, T]",
                "token_type_ids": "int32 [B, T]",
                "hidden.{l}": f"float32 [B, T, {model.config.hidden_size}], l = 0..{n_layers} (0 = embedding output)",
            },
            "scriptVersion": SCRIPT_VERSION,
            "versions": versions(),
        },
    )
    print(f"  minilm-reference: B={B} T={T}, {size} bytes of hidden states")


# --------------------------------------------------------------------------------------


def versions():
    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
    }


def save_tensors(tensors: dict, path: Path):
    """safetensors.numpy writes an array's memory as it lies, so a non-C-contiguous array (a
    broadcast or transposed view) would be stored scrambled: make every array C-contiguous and
    read the file back to check it."""
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    safetensors.numpy.save_file(tensors, str(path))
    back = safetensors.numpy.load_file(str(path))
    assert back.keys() == tensors.keys()
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and np.array_equal(back[k], v), f"{path}: {k} did not round-trip"


def write_json(path: Path, obj):
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--real-model", type=Path, default=None, help="directory of all-MiniLM-L6-v2 (config.json, model.safetensors, tokenizer.json)")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="shared task data used to train the tiny tokenizers")
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    FIXTURES.mkdir(parents=True, exist_ok=True)

    real = args.real_model or DEFAULT_REAL_MODEL
    if not (real / "model.safetensors").exists() or not (real / "tokenizer.json").exists():
        if args.real_model is not None:
            sys.exit(f"--real-model {real}: no model.safetensors / tokenizer.json there")
        print(f"note: no real model at {real}; keeping the existing MiniLM fixtures")
        real = None

    print("training tokenizers ...")
    lines = corpus_lines(args.data_dir)
    tiny = [
        ("tiny-bert", "bert", train_wordpiece(lines, 400, "template"), SEED + 100),
        ("tiny-roberta", "roberta", train_bytelevel_bpe(lines, 420), SEED + 200),
        ("tiny-distilbert", "distilbert", train_wordpiece(lines, 360, "bert"), SEED + 300),
    ]
    print("tiny models ...")
    for name, kind, tok, seed in tiny:
        make_tiny(name, kind, tok, seed)

    print("tokenizer parity ...")
    parity_path = FIXTURES / "tokenizer-parity.json"
    tok_paths = {name: f"test/fixtures/{name}/tokenizer.json" for name, *_ in tiny}
    cases = []
    for name, *_ in tiny:
        cases += parity_cases(name, FIXTURES / name / "tokenizer.json", with_windows=False)
    if real is not None:
        tok_paths["minilm"] = f"{REAL_MODEL_REPO_PATH}/tokenizer.json"
        cases += parity_cases("minilm", real / "tokenizer.json", with_windows=True)
    elif parity_path.exists():
        old = json.loads(parity_path.read_text(encoding="utf-8"))
        kept = [c for c in old["cases"] if c["tokenizer"] == "minilm"]
        if kept:
            tok_paths["minilm"] = old["tokenizers"]["minilm"]
            cases += kept
    write_json(
        parity_path,
        {
            "note": "Generated by scripts/make_fixtures.py. offsets: Unicode code points (as tokenizers reports); "
            "offsetsUtf16: the same spans in UTF-16 code units. Padding and truncation disabled unless maxLength is given.",
            "scriptVersion": SCRIPT_VERSION,
            "versions": versions(),
            "tokenizers": tok_paths,
            "cases": cases,
        },
    )
    print(f"  {len(cases)} cases")

    if real is not None:
        print("MiniLM reference ...")
        make_minilm_reference(real)
    print("done")


if __name__ == "__main__":
    main()
