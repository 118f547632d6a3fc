#!/usr/bin/env python3
"""PyTorch + Hugging Face reference of the accuracy benchmark: fine-tunes a BERT-family
model directory for classification or NER, the way embedding-recycler's `task train` does,
and reports dev metrics per epoch and test metrics of the best epoch.

    torch_finetune.py --task classification|ner --model DIR --train FILE --dev FILE --test FILE --lr X
        [--epochs 3] [--batch-size 32] [--max-length 128] [--seed 1] [--threads 2]
        [--warmup-ratio 0.1] [--weight-decay 0.01] [--clip 1.0] [--dropout 0.1] [--patience 10]

Data (the files the native engine reads):
  classification  JSON lines with "text" (and optional "text_pair") and "label"; labels are
                  the sorted set of training labels; dev/test examples with a label training
                  never saw are not scored (counted as "unknownLabels").
  ner             CoNLL: a token a line, columns split by whitespace, tag in the last column,
                  blank lines between sentences, "-DOCSTART-" lines skipped; labels "O" then
                  the other tags sorted. Words are joined with single spaces and tokenized
                  (truncated to --max-length); a token belongs to the word holding its last
                  character; a word's first token carries its tag (others -100); a word whose
                  first token was cut off predicts "O". Tags training never saw are scored as
                  "O" in the truth (and ignored by the loss), counted as "unknownLabels".

Model: AutoModel (no pooler) + dropout + Linear head (first token for classification, every
token for NER), head weight ~ N(0, 0.02), bias 0, full fine-tuning in train mode. --dropout
is the rate of the hidden states, attention probabilities and head input alike (the
model config's rates are replaced), as the engine's dropout option. AdamW
(no decay on biases and LayerNorm weights), global-norm clipping, linear warm-up of
max(1, round-half-up(ratio * total)) steps then linear decay to 0 (as the engine's
linearSchedule), seeded shuffling each epoch, dynamic padding. Dev after every epoch;
the best dev loss (strictly lower) is kept in memory; early stopping after --patience epochs
without improvement; test is evaluated with the best epoch's weights.

Progress goes to stderr; the last line of stdout is one JSON object.
"""
import argparse
import bisect
import json
import math
import os
import random
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault('TRANSFORMERS_VERBOSITY', 'error')
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
warnings.simplefilter('ignore')
import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModel, AutoTokenizer  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

hf_logging.disable_progress_bar()

IGNORE = -100


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- data


def label_str(v):
    """A JSON label as the engine's String(label) writes it."""
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e21:
        return str(int(v))
    return str(v)


def read_jsonl(path):
    out = []
    with open(path, encoding='utf-8') as f:
        for i, raw in enumerate(f, 1):
            if raw.strip() == '':
                continue
            o = json.loads(raw)
            if not isinstance(o, dict) or not isinstance(o.get('text'), str):
                raise ValueError(f'{path}:{i}: expected an object with a string field "text"')
            if 'label' not in o:
                raise ValueError(f'{path}:{i}: no field "label"')
            pair = o.get('text_pair')
            out.append({'text': o['text'], 'pair': pair if isinstance(pair, str) else None, 'label': label_str(o['label'])})
    return out


def read_conll(path):
    out, words, tags = [], [], []
    with open(path, encoding='utf-8') as f:
        for i, raw in enumerate(f, 1):
            t = raw.strip()
            if t == '':
                if words:
                    out.append({'words': words, 'tags': tags})
                words, tags = [], []
                continue
            if t.startswith('-DOCSTART-'):
                continue
            cols = t.split()
            if len(cols) < 2:
                raise ValueError(f'{path}:{i}: expected a token and a tag, found {len(cols)} column(s)')
            words.append(cols[0])
            tags.append(cols[-1])
    if words:
        out.append({'words': words, 'tags': tags})
    return out


def encode_classification(tok, examples, labels, max_length):
    index = {l: i for i, l in enumerate(labels)}
    rows, unknown, truncated = [], 0, 0
    for e in examples:
        args = (e['text'], e['pair']) if e['pair'] is not None else (e['text'],)
        full = tok(*args, truncation=False)['input_ids']
        if len(full) > max_length:
            truncated += 1
        enc = tok(*args, truncation=True, max_length=max_length)
        y = index.get(e['label'], IGNORE)
        if y == IGNORE:
            unknown += 1
        rows.append({'ids': enc['input_ids'], 'tt': enc.get('token_type_ids') or [0] * len(enc['input_ids']), 'y': [y]})
    return rows, {'unknownLabels': unknown, 'truncated': truncated}


def word_of_tokens(enc, words):
    """For each token of the encoding of ' '.join(words): its word index, or -1 (special tokens)."""
    ends, pos = [], 0
    for w in words:
        pos += len(w)
        ends.append(pos)  # word i covers [ends[i] - len(w), ends[i])
        pos += 1
    seq = enc.sequence_ids(0)
    owner = []
    for t, (s, e) in enumerate(enc['offset_mapping']):
        if seq[t] is None or e <= s:
            owner.append(-1)
            continue
        owner.append(min(bisect.bisect_right(ends, e - 1), len(words) - 1))
    return owner


def encode_ner(tok, examples, labels, max_length):
    index = {l: i for i, l in enumerate(labels)}
    rows, unknown, truncated = [], 0, 0
    for e in examples:
        words = e['words']
        text = ' '.join(words)
        if len(tok(text, truncation=False)['input_ids']) > max_length:
            truncated += 1
        enc = tok(text, truncation=True, max_length=max_length, return_offsets_mapping=True)
        owner = word_of_tokens(enc, words)
        tag_idx = []
        for t in e['tags']:
            k = index.get(t, IGNORE)
            if k == IGNORE:
                unknown += 1
            tag_idx.append(k)
        n = len(enc['input_ids'])
        y = [IGNORE] * n
        first = [-1] * len(words)  # each word's first token
        prev = -1
        for t, w in enumerate(owner):
            if w >= 0 and w != prev:
                y[t] = tag_idx[w]
                if first[w] < 0:
                    first[w] = t
            if w >= 0:
                prev = w
        rows.append({'ids': enc['input_ids'], 'tt': enc.get('token_type_ids') or [0] * n, 'y': y, 'first': first})
    return rows, {'unknownLabels': unknown, 'truncated': truncated}


def collate(rows, pad_id, task):
    T = max(len(r['ids']) for r in rows)
    B = len(rows)
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    tt = torch.zeros((B, T), dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.long)
    if task == 'ner':
        y = torch.full((B, T), IGNORE, dtype=torch.long)
    else:
        y = torch.tensor([r['y'][0] for r in rows], dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r['ids'])
        ids[i, :n] = torch.tensor(r['ids'])
        tt[i, :n] = torch.tensor(r['tt'])
        mask[i, :n] = 1
        if task == 'ner':
            y[i, :n] = torch.tensor(r['y'])
    return ids, tt, mask, y


# ---------------------------------------------------------------- model


class TaskModel(torch.nn.Module):
    def __init__(self, model_dir, task, num_labels, dropout):
        super().__init__()
        self.task = task
        # the same attention implementation as the other PyTorch peers (torch_encoder.py, torch_train.py)
        # (MPNet has no SDPA implementation in transformers: eager attention there)
        # --dropout sets the encoder's hidden and attention dropout as well as the head's, as
        # the engine's dropout option does (the config's own rates are replaced)
        rates = dict(hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
        try:
            self.encoder = AutoModel.from_pretrained(model_dir, add_pooling_layer=False, attn_implementation='sdpa', **rates)
        except ValueError:
            self.encoder = AutoModel.from_pretrained(model_dir, add_pooling_layer=False, attn_implementation='eager', **rates)
        # families without token types (MPNet) take no token_type_ids argument
        self.token_types = self.encoder.config.model_type not in ('mpnet',)
        hidden = self.encoder.config.hidden_size
        self.dropout = torch.nn.Dropout(dropout)
        self.head = torch.nn.Linear(hidden, num_labels)
        torch.nn.init.normal_(self.head.weight, mean=0.0, std=0.02)
        torch.nn.init.zeros_(self.head.bias)

    def forward(self, ids, tt, mask):
        if self.token_types:
            h = self.encoder(input_ids=ids, token_type_ids=tt, attention_mask=mask).last_hidden_state
        else:
            h = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        if self.task == 'classification':
            h = h[:, 0]
        return self.head(self.dropout(h))


class Adapter(torch.nn.Module):
    """A Houlsby bottleneck, h + up(gelu(down(h))), initialised as the engine does: down
    ~ N(0, 0.02), up ~ N(0, 1e-3) (near the identity), biases 0."""

    def __init__(self, hidden, size):
        super().__init__()
        self.down = torch.nn.Linear(hidden, size)
        self.up = torch.nn.Linear(size, hidden)
        torch.nn.init.normal_(self.down.weight, std=0.02)
        torch.nn.init.normal_(self.up.weight, std=1e-3)
        torch.nn.init.zeros_(self.down.bias)
        torch.nn.init.zeros_(self.up.bias)

    def forward(self, h):
        return h + self.up(torch.nn.functional.gelu(self.down(h)))


def add_adapters(encoder, layers, size):
    """The engine's placement: after the attention output projection and after the FFN output
    (after their dropout), before each residual add and LayerNorm."""
    hidden = encoder.config.hidden_size

    def output_forward(self, hidden_states, input_tensor):
        return self.LayerNorm(self.adapter(self.dropout(self.dense(hidden_states))) + input_tensor)

    for i in layers:
        layer = encoder.encoder.layer[i]
        if encoder.config.model_type == 'mpnet':
            # MPNetAttention: attn (q, k, v, o), then LayerNorm(dropout(out) + input)
            att = layer.attention
            att.adapter = Adapter(hidden, size)

            def attn_forward(self, hidden_states, attention_mask=None, position_bias=None, output_attentions=False, **kw):
                out = self.attn(hidden_states, attention_mask, position_bias, output_attentions=output_attentions)
                return (self.LayerNorm(self.adapter(self.dropout(out[0])) + hidden_states),) + out[1:]

            att.forward = attn_forward.__get__(att)
            sites = [layer.output]
        else:
            sites = [layer.attention.output, layer.output]
        for module in sites:
            module.adapter = Adapter(hidden, size)
            module.forward = output_forward.__get__(module)


def param_groups(model, wd):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lname = name.lower()
        if name.endswith('.bias') or 'layernorm' in lname or 'layer_norm' in lname:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{'params': decay, 'weight_decay': wd}, {'params': no_decay, 'weight_decay': 0.0}]


def mulberry32(seed):
    """The engine's seeded generator (src/train/loop.ts seededRandom), in uint32 arithmetic."""
    state = [seed & 0xFFFFFFFF]
    m = 0xFFFFFFFF

    def rand():
        state[0] = (state[0] + 0x6D2B79F5) & m
        t = state[0]
        t = ((t ^ (t >> 15)) * (t | 1)) & m
        t ^= (t + (((t ^ (t >> 7)) * (t | 61)) & m)) & m
        return ((t ^ (t >> 14)) & m) / 4294967296
    return rand


def engine_shuffle(n, rand):
    """The engine's shuffle (src/train/loop.ts shuffle): Fisher-Yates from the end."""
    a = list(range(n))
    for i in range(n - 1, 0, -1):
        j = int(rand() * (i + 1))
        a[i], a[j] = a[j], a[i]
    return a


def linear_schedule(lr, warmup, total):
    def at(step):
        if step < warmup:
            return lr * (step + 1) / warmup
        return lr * max(0.0, (total - step) / max(1, total - warmup))
    return at


# ---------------------------------------------------------------- evaluation


def evaluate(model, rows, task, pad_id, bs):
    """Mean loss over the scored examples/tokens, and each row's logits (numpy, unpadded)."""
    model.eval()
    loss_sum, count, logits = 0.0, 0, []
    with torch.no_grad():
        for b in range(0, len(rows), bs):
            part = rows[b:b + bs]
            ids, tt, mask, y = collate(part, pad_id, task)
            out = model(ids, tt, mask)
            flat = out.reshape(-1, out.shape[-1])
            yf = y.reshape(-1)
            n = int((yf != IGNORE).sum())
            if n > 0:
                loss_sum += float(torch.nn.functional.cross_entropy(flat, yf, ignore_index=IGNORE, reduction='sum'))
                count += n
            for i, r in enumerate(part):
                logits.append(out[i].numpy() if task == 'classification' else out[i, :len(r['ids'])].numpy())
    model.train()
    return (loss_sum / count if count else None), logits


def classification_metrics(rows, logits, labels):
    from sklearn.metrics import f1_score
    truth, pred = [], []
    for r, lg in zip(rows, logits):
        if r['y'][0] < 0:
            continue  # unknown label: reported, not scored
        truth.append(labels[r['y'][0]])
        pred.append(labels[int(np.argmax(lg))])
    if not truth:
        return {'accuracy': None, 'microF1': None, 'macroF1': None, 'scored': 0}
    acc = sum(t == p for t, p in zip(truth, pred)) / len(truth)
    return {
        'accuracy': acc,
        'microF1': float(f1_score(truth, pred, average='micro', zero_division=0)),
        'macroF1': float(f1_score(truth, pred, average='macro', zero_division=0)),
        'scored': len(truth),
    }


def ner_metrics(examples, rows, logits, labels):
    from seqeval.metrics import f1_score as ent_f1, precision_score as ent_p, recall_score as ent_r
    from seqeval.scheme import IOB2
    from sklearn.metrics import f1_score
    known = set(labels)
    truth, pred = [], []
    for e, r, lg in zip(examples, rows, logits):
        truth.append([t if t in known else 'O' for t in e['tags']])
        pred.append([labels[int(np.argmax(lg[t]))] if t >= 0 else 'O' for t in r['first']])
    m = {
        'entityF1': float(ent_f1(truth, pred)),
        'entityPrecision': float(ent_p(truth, pred)),
        'entityRecall': float(ent_r(truth, pred)),
    }
    try:
        m['strictEntityF1'] = float(ent_f1(truth, pred, mode='strict', scheme=IOB2))
    except Exception as err:  # tags that are not IOB2
        log(f'strict IOB2 F1 unavailable: {err}')
        m['strictEntityF1'] = None
    ft = [t for s in truth for t in s]
    fp = [t for s in pred for t in s]
    m['tokenMicroF1'] = float(f1_score(ft, fp, average='micro', zero_division=0))
    m['tokenMacroF1'] = float(f1_score(ft, fp, average='macro', zero_division=0))
    m['scored'] = len(truth)
    return m


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--task', choices=['classification', 'ner'], required=True)
    ap.add_argument('--model', required=True)
    ap.add_argument('--train', required=True)
    ap.add_argument('--dev', required=True)
    ap.add_argument('--test', required=True)
    ap.add_argument('--lr', type=float, required=True)
    ap.add_argument('--epochs', type=int, default=3)
    ap.add_argument('--batch-size', type=int, default=32)
    ap.add_argument('--max-length', type=int, default=128)
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--mode', choices=['full', 'reduced-adapters', 'full-adapters'], default='full',
                    help='full fine-tuning, or adapters (and the head) alone: in layers k+1..N, the layers '
                         'up to k run without dropout as the recycled cache would (reduced-adapters), or in every layer')
    ap.add_argument('--k', type=int, default=0, help='reduced-adapters: the cached layer')
    ap.add_argument('--adapter-size', type=int, default=256)
    ap.add_argument('--warmup-ratio', type=float, default=0.1)
    ap.add_argument('--weight-decay', type=float, default=0.01)
    ap.add_argument('--clip', type=float, default=1.0)
    ap.add_argument('--dropout', type=float, default=0.1)
    ap.add_argument('--patience', type=int, default=10)
    ap.add_argument('--engine-order', action='store_true',
                    help="shuffle each epoch exactly as the engine's fit() does with --seed (its mulberry32 generator), "
                         "instead of torch.randperm")
    ap.add_argument('--init-head', type=Path,
                    help='JSON {"weight": [...], "bias": [...]}: the head\'s initial values (the engine\'s, for a traced run)')
    ap.add_argument('--trace', type=Path, help='write every training step\'s loss and gradient norm before clipping '
                                               '(a JSON list of {loss, gradNorm}) to this file')
    a = ap.parse_args()
    if a.epochs < 1:
        ap.error('--epochs must be >= 1')

    torch.set_num_threads(a.threads)
    random.seed(a.seed)
    np.random.seed(a.seed)
    torch.manual_seed(a.seed)

    task = a.task
    tok = AutoTokenizer.from_pretrained(a.model)
    if not tok.is_fast:
        raise SystemExit('a fast tokenizer (tokenizer.json) is required')
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0

    if task == 'classification':
        train_ex, dev_ex, test_ex = read_jsonl(a.train), read_jsonl(a.dev), read_jsonl(a.test)
        labels = sorted({e['label'] for e in train_ex})
        enc = encode_classification
    else:
        train_ex, dev_ex, test_ex = read_conll(a.train), read_conll(a.dev), read_conll(a.test)
        labels = ['O'] + sorted({t for e in train_ex for t in e['tags']} - {'O'})
        enc = encode_ner
    if not train_ex:
        raise SystemExit('the training set is empty')
    train_rows, train_rep = enc(tok, train_ex, labels, a.max_length)
    dev_rows, dev_rep = enc(tok, dev_ex, labels, a.max_length)
    test_rows, test_rep = enc(tok, test_ex, labels, a.max_length)
    log(f'{task}: {len(labels)} labels; train {len(train_rows)} (truncated {train_rep["truncated"]}), '
        f'dev {len(dev_rows)} (unknown {dev_rep["unknownLabels"]}), test {len(test_rows)} (unknown {test_rep["unknownLabels"]})')

    def metrics_of(examples, rows, logits):
        if task == 'classification':
            return classification_metrics(rows, logits, labels)
        return ner_metrics(examples, rows, logits, labels)

    model = TaskModel(a.model, task, len(labels), a.dropout)
    if a.init_head:
        init = json.loads(a.init_head.read_text())
        with torch.no_grad():
            model.head.weight.copy_(torch.tensor(init['weight'], dtype=torch.float32).reshape(model.head.weight.shape))
            model.head.bias.copy_(torch.tensor(init['bias'], dtype=torch.float32))
    frozen_below = None
    if a.mode != 'full':
        n_layers = model.encoder.config.num_hidden_layers
        first = a.k if a.mode == 'reduced-adapters' else 0
        for p in model.encoder.parameters():
            p.requires_grad_(False)
        add_adapters(model.encoder, range(first, n_layers), a.adapter_size)
        if a.mode == 'reduced-adapters':
            # what a cache of layer k gives: the embeddings and layers 1..k without dropout
            frozen_below = [model.encoder.embeddings] + list(model.encoder.encoder.layer[:a.k])
        log(f'{a.mode}: adapters of size {a.adapter_size} in layers {first + 1}..{n_layers}; '
            f'{sum(p.numel() for p in model.parameters() if p.requires_grad)} trained values')
    model.train()
    if frozen_below:
        for m in frozen_below:
            m.eval()
    opt = torch.optim.AdamW(param_groups(model, a.weight_decay), lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
    trained = [p for p in model.parameters() if p.requires_grad]
    bs = a.batch_size
    per_epoch = math.ceil(len(train_rows) / bs)
    total = per_epoch * a.epochs
    warmup = max(1, int(math.floor(a.warmup_ratio * total + 0.5)))  # JS Math.round, as the engine
    schedule = linear_schedule(a.lr, warmup, total)
    gen = torch.Generator()
    gen.manual_seed(a.seed)
    engine_rand = mulberry32(a.seed)
    trace = []

    epochs, best, best_state, since_best, step = [], None, None, 0, 0
    train_seconds, step_seconds = 0.0, []
    t_start = time.perf_counter()
    for epoch in range(1, a.epochs + 1):
        t0 = time.perf_counter()
        order = (engine_shuffle(len(train_rows), engine_rand) if a.engine_order
                 else torch.randperm(len(train_rows), generator=gen).tolist())
        loss_sum = 0.0
        for b in range(per_epoch):
            ts = time.perf_counter()
            part = [train_rows[i] for i in order[b * bs:(b + 1) * bs]]
            ids, tt, mask, y = collate(part, pad_id, task)
            lr = schedule(step)
            for g in opt.param_groups:
                g['lr'] = lr
            out = model(ids, tt, mask)
            loss = torch.nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1), ignore_index=IGNORE)
            opt.zero_grad(set_to_none=True)
            if torch.isfinite(loss):
                loss.backward()
                norm = float('nan')
                if a.clip and a.clip > 0:
                    norm = float(torch.nn.utils.clip_grad_norm_(trained, a.clip))
                opt.step()
                loss_sum += float(loss)
                trace.append({'loss': float(loss), 'gradNorm': norm})
            # a batch with no scored tokens (all NER tags unknown/truncated) contributes nothing
            step += 1
            step_seconds.append(time.perf_counter() - ts)
            if (b + 1) % 10 == 0 or b + 1 == per_epoch:
                el = time.perf_counter() - t0
                log(f'epoch {epoch} step {b + 1}/{per_epoch} loss {loss_sum / (b + 1):.4f} lr {lr:.3g} '
                    f'{(b + 1) * bs / el:.1f} ex/s')
        ep_train = time.perf_counter() - t0
        train_seconds += ep_train
        dev_loss, dev_logits = evaluate(model, dev_rows, task, pad_id, bs) if dev_rows else (None, [])
        for m in frozen_below or []:  # evaluate() left every module in training mode
            m.eval()
        dev_metrics = metrics_of(dev_ex, dev_rows, dev_logits) if dev_rows else None
        if dev_metrics is not None:
            dev_metrics['unknownLabels'] = dev_rep['unknownLabels']
        rec = {'epoch': epoch, 'trainLoss': loss_sum / per_epoch, 'devLoss': dev_loss, 'devMetrics': dev_metrics,
               'trainSeconds': ep_train, 'seconds': time.perf_counter() - t0}
        score = dev_loss if dev_loss is not None else rec['trainLoss']
        if best is None or score < best[1]:
            best = (epoch, score)
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            since_best = 0
        else:
            since_best += 1
        epochs.append(rec)
        log(f'epoch {epoch}: train loss {rec["trainLoss"]:.4f} dev loss {dev_loss} dev {json.dumps(dev_metrics)}'
            f'{" (best)" if best[0] == epoch else ""}')
        if dev_loss is not None and since_best >= a.patience:
            log(f'early stop: {since_best} epoch(s) without a better dev loss')
            break
    seconds = time.perf_counter() - t_start

    if a.trace:
        a.trace.write_text(json.dumps(trace))
    model.load_state_dict(best_state)
    test_loss, test_logits = evaluate(model, test_rows, task, pad_id, bs)
    test = metrics_of(test_ex, test_rows, test_logits) if test_rows else {}
    test['loss'] = test_loss
    test['unknownLabels'] = test_rep['unknownLabels']
    log(f'test (epoch {best[0]}): {json.dumps(test)}')
    steps_sorted = sorted(step_seconds)
    print(json.dumps({
        'task': task, 'lr': a.lr, 'seed': a.seed, 'bestEpoch': best[0], 'epochs': epochs, 'test': test,
        'seconds': seconds, 'trainSeconds': train_seconds,
        'stepSeconds': {'median': steps_sorted[len(steps_sorted) // 2], 'mean': sum(step_seconds) / len(step_seconds), 'steps': len(step_seconds)},
        'labels': labels, 'hyperparameters': {
            'epochs': a.epochs, 'batchSize': bs, 'maxLength': a.max_length, 'warmupRatio': a.warmup_ratio,
            'warmupSteps': warmup, 'totalSteps': total, 'weightDecay': a.weight_decay, 'clip': a.clip,
            'dropout': a.dropout, 'patience': a.patience, 'threads': a.threads},
        'torch': torch.__version__,
    }))


if __name__ == '__main__':
    main()
