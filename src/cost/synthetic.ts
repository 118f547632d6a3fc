/**
 * A BERT checkpoint of random weights of a given shape, for timing shapes whose real
 * weights are not at hand (compute time does not depend on the weights' values).
 * Written as a normal Hugging Face directory (config.json, model.safetensors in F16,
 * vocab.txt) so it loads through the public {@link Encoder.load}.
 */
import * as fs from 'fs';
import * as path from 'path';
import { floatToHalf } from './codec';

export interface SyntheticShape {
  hidden: number;
  heads: number;
  intermediate: number;
  layers: number;
  maxPositions: number;
  /** vocabulary size (default 128; the embedding lookup's cost does not depend on it) */
  vocab?: number;
}

const SPECIALS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'];

/** Writes the checkpoint into `dir` (which must exist); returns the vocabulary size. */
export function writeSyntheticBert(dir: string, s: SyntheticShape): number {
  const vocab = s.vocab ?? 128;
  if (vocab <= SPECIALS.length) throw new Error(`vocab must exceed ${SPECIALS.length}`);
  const H = s.hidden, I = s.intermediate;
  const config = {
    architectures: ['BertModel'],
    model_type: 'bert',
    hidden_size: H,
    num_attention_heads: s.heads,
    intermediate_size: I,
    num_hidden_layers: s.layers,
    max_position_embeddings: s.maxPositions,
    vocab_size: vocab,
    type_vocab_size: 2,
    hidden_act: 'gelu',
    layer_norm_eps: 1e-12,
    pad_token_id: 0,
    _comment: 'synthetic random weights written by er cost for timing only',
  };
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));
  const words = Array.from({ length: vocab - SPECIALS.length }, (_, i) => `w${i}`);
  fs.writeFileSync(path.join(dir, 'vocab.txt'), [...SPECIALS, ...words].join('\n') + '\n');

  const tensors: [string, number[], 'rand' | 'one' | 'zero'][] = [
    ['embeddings.word_embeddings.weight', [vocab, H], 'rand'],
    ['embeddings.position_embeddings.weight', [s.maxPositions, H], 'rand'],
    ['embeddings.token_type_embeddings.weight', [2, H], 'rand'],
    ['embeddings.LayerNorm.weight', [H], 'one'],
    ['embeddings.LayerNorm.bias', [H], 'zero'],
  ];
  for (let l = 0; l < s.layers; l++) {
    const p = `encoder.layer.${l}.`;
    for (const m of ['attention.self.query', 'attention.self.key', 'attention.self.value', 'attention.output.dense']) {
      tensors.push([`${p}${m}.weight`, [H, H], 'rand'], [`${p}${m}.bias`, [H], 'zero']);
    }
    tensors.push(
      [`${p}attention.output.LayerNorm.weight`, [H], 'one'],
      [`${p}attention.output.LayerNorm.bias`, [H], 'zero'],
      [`${p}intermediate.dense.weight`, [I, H], 'rand'],
      [`${p}intermediate.dense.bias`, [I], 'zero'],
      [`${p}output.dense.weight`, [H, I], 'rand'],
      [`${p}output.dense.bias`, [H], 'zero'],
      [`${p}output.LayerNorm.weight`, [H], 'one'],
      [`${p}output.LayerNorm.bias`, [H], 'zero'],
    );
  }
  // F16 values of a N(0, 0.02)-like spread, drawn by index from a small table
  const table = new Uint16Array(256);
  for (let i = 0; i < 256; i++) table[i] = floatToHalf(((i + 0.5) / 256 - 0.5) * 0.07);
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const [name, shape] of tensors) {
    const bytes = shape.reduce((a, b) => a * b, 1) * 2;
    header[name] = { dtype: 'F16', shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const file = path.join(dir, 'model.safetensors');
  const fd = fs.openSync(file, 'w');
  try {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    fs.writeSync(fd, len);
    fs.writeSync(fd, Buffer.from(json, 'ascii'));
    let seed = 0x9e3779b9;
    for (const [, shape, kind] of tensors) {
      const n = shape.reduce((a, b) => a * b, 1);
      const v = new Uint16Array(n);
      if (kind === 'one') v.fill(0x3c00);
      else if (kind === 'rand') {
        for (let i = 0; i < n; i++) {
          seed ^= seed << 13; seed >>>= 0;
          seed ^= seed >>> 17;
          seed ^= seed << 5; seed >>>= 0;
          v[i] = table[seed & 255];
        }
      }
      fs.writeSync(fd, Buffer.from(v.buffer, v.byteOffset, v.byteLength));
    }
  } finally {
    fs.closeSync(fd);
  }
  return vocab;
}

/** Removes a directory written by {@link writeSyntheticBert}. */
export function removeSyntheticBert(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}
