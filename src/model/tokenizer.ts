/**
 * Tokenization through Hugging Face's own `tokenizers` library (the Rust
 * implementation, via its Node binding), so token ids equal Python's exactly.
 * A `tokenizer.json` is used as is; a directory with only `vocab.txt` gets the
 * standard BERT WordPiece pipeline.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tk from '@anush008/tokenizers';
import { CheckpointError } from '../errors';

/** Options of {@link TextTokenizer.encode}. */
export interface TokenizeOptions {
  /** Second segments (text pairs); same length as the texts. */
  pairs?: readonly string[];
  /** Longest sequence, special tokens included. Longer inputs are truncated (longest-first for pairs). */
  maxLength?: number;
  /** `'longest'` (default) pads to the longest row, `'max_length'` to `maxLength`, `false` needs equal lengths. */
  padding?: 'longest' | 'max_length' | false;
  /** Whether to add [CLS]/[SEP] (or <s>/</s>); default true. */
  addSpecialTokens?: boolean;
}

/** One tokenized sequence before padding. */
export interface Encoded {
  ids: number[];
  typeIds: number[];
  /** UTF-16 offsets [start, end) into the text (or into the pair text for segment 1), for `String.slice` */
  offsets: [number, number][];
  /** index of the word each token belongs to; null for special tokens */
  wordIds: (number | null)[];
  /** which input segment each token comes from (0, 1), null for special tokens */
  sequenceIds: (number | null)[];
}

/** Windows of a long text: the main encoding and its overflowing windows, in order. */
export interface EncodedWindows {
  windows: Encoded[];
}

/**
 * Maps code-point indices (what the Rust library reports) to UTF-16 indices (what
 * JavaScript strings use), so `text.slice(start, end)` gives the token's text.
 */
function codePointToUtf16(text: string): Int32Array | null {
  let astral = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) { astral = true; break; }
  }
  if (!astral) return null; // identical indices
  const map: number[] = [];
  let u = 0;
  for (const ch of text) {
    map.push(u);
    u += ch.length;
  }
  map.push(u);
  return Int32Array.from(map);
}

function toEncoded(e: tk.Encoding, text: string, pair?: string): Encoded {
  const sequenceIds = e.getSequenceIds().map((s) => (s === undefined || s === null ? null : s));
  const maps = [codePointToUtf16(text), pair !== undefined ? codePointToUtf16(pair) : null];
  const offsets = e.getOffsets().map((o, i) => {
    const m = maps[sequenceIds[i] ?? 0];
    return (m ? [m[Math.min(o[0], m.length - 1)], m[Math.min(o[1], m.length - 1)]] : [o[0], o[1]]) as [number, number];
  });
  return {
    ids: e.getIds(),
    typeIds: e.getTypeIds(),
    offsets,
    wordIds: e.getWordIds().map((w) => (w === undefined || w === null ? null : w)),
    sequenceIds,
  };
}

/** A loaded tokenizer. Calls are serialized: the underlying object's truncation settings are per call. */
export class TextTokenizer {
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(private readonly inner: tk.Tokenizer, readonly source: string, readonly padId: number) {}

  /** Loads `tokenizer.json`, or builds a BERT WordPiece tokenizer from `vocab.txt`. */
  static load(dir: string, padTokenId: number): TextTokenizer {
    const json = path.join(dir, 'tokenizer.json');
    const vocab = path.join(dir, 'vocab.txt');
    if (fs.existsSync(json)) {
      let inner: tk.Tokenizer;
      try {
        inner = tk.Tokenizer.fromFile(json);
      } catch (err) {
        throw new CheckpointError(`${json}: cannot load tokenizer: ${(err as Error).message}`);
      }
      inner.disablePadding();
      inner.disableTruncation();
      return new TextTokenizer(inner, json, padTokenId);
    }
    if (fs.existsSync(vocab)) return TextTokenizer.fromVocab(dir, vocab, padTokenId);
    throw new CheckpointError(`${dir}: no tokenizer.json or vocab.txt; copy the model's tokenizer files into the directory`);
  }

  private static fromVocab(dir: string, vocab: string, padTokenId: number): TextTokenizer {
    let lowercase = true;
    const cfgPath = path.join(dir, 'tokenizer_config.json');
    if (fs.existsSync(cfgPath)) {
      try {
        const cfg = JSON.parse(fs.readFileSync(cfgPath, 'utf8')) as Record<string, unknown>;
        if (typeof cfg.do_lower_case === 'boolean') lowercase = cfg.do_lower_case;
      } catch (err) {
        throw new CheckpointError(`${cfgPath}: not valid JSON (${(err as Error).message})`);
      }
    }
    const tokens = fs.readFileSync(vocab, 'utf8').split(/\r?\n/);
    if (tokens.length > 0 && tokens[tokens.length - 1] === '') tokens.pop();
    const map: Record<string, number> = Object.create(null); // a token "__proto__" is a token
    tokens.forEach((t, i) => {
      // the binding passes tokens to Rust as C strings: a NUL would throw a bare Error there (found by fuzzing)
      if (t.includes('\0')) throw new CheckpointError(`${vocab}: line ${i + 1} holds a NUL character; not a vocabulary file`);
      map[t] = i;
    });
    for (const special of ['[UNK]', '[CLS]', '[SEP]']) {
      if (!(special in map)) throw new CheckpointError(`${vocab}: has no ${special} token; cannot build a BERT tokenizer from it`);
    }
    let inner: tk.Tokenizer;
    try {
      inner = new tk.Tokenizer(tk.WordPiece.init(map, { unkToken: '[UNK]' }));
      inner.setNormalizer(tk.bertNormalizer({ lowercase, cleanText: true, handleChineseChars: true }));
      inner.setPreTokenizer(tk.bertPreTokenizer());
      inner.setPostProcessor(tk.bertProcessing(['[SEP]', map['[SEP]']], ['[CLS]', map['[CLS]']]));
    } catch (err) {
      throw new CheckpointError(`${vocab}: cannot build a BERT tokenizer from it: ${(err as Error).message}`);
    }
    return new TextTokenizer(inner, vocab, padTokenId);
  }

  /** Vocabulary size including added tokens. */
  get vocabSize(): number {
    return this.inner.getVocabSize(true);
  }

  /** Id of a token string, or null. */
  tokenToId(token: string): number | null {
    return this.inner.tokenToId(token);
  }

  private serial<T>(job: () => Promise<T>): Promise<T> {
    const run = this.queue.then(job, job);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Tokenizes texts (and optional pairs), truncating to maxLength when given. No padding. */
  encode(texts: readonly string[], opts: { pairs?: readonly string[]; maxLength?: number; addSpecialTokens?: boolean } = {}): Promise<Encoded[]> {
    return this.serial(async () => {
      if (opts.maxLength !== undefined) this.inner.setTruncation(opts.maxLength);
      else this.inner.disableTruncation();
      const options = { addSpecialTokens: opts.addSpecialTokens ?? true };
      const pairs = opts.pairs;
      if (pairs) {
        // the binding's batch call takes single texts only; pairs go one by one (each on the pool)
        const encs = await Promise.all(texts.map((t, i) => this.inner.encode(t, pairs[i], options)));
        return encs.map((e, i) => toEncoded(e, texts[i], pairs[i]));
      }
      const encs = await this.inner.encodeBatch([...texts], options);
      return encs.map((e, i) => toEncoded(e, texts[i]));
    });
  }

  /** Splits one text into windows of at most maxLength tokens overlapping by `stride` tokens. */
  encodeWindows(text: string, maxLength: number, stride: number, pair?: string): Promise<EncodedWindows> {
    return this.serial(async () => {
      this.inner.setTruncation(maxLength, { stride });
      const e = await this.inner.encode(text, pair ?? null);
      return { windows: [e, ...e.getOverflowing()].map((w) => toEncoded(w, text, pair)) };
    });
  }
}
