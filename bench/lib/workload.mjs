// The benchmark's model shapes, workloads and inputs, shared by every engine.

/** Model shapes. `dir` is the folder name under bench/.work/models (built by bench/peers/make_models.py). */
export const MODELS = {
  minilm: { dir: 'minilm-l6-h384', label: 'MiniLM-L6-H384', layers: 6, hidden: 384, heads: 12, intermediate: 1536 },
  'bert-base': { dir: 'bert-base', label: 'BERT-base', layers: 12, hidden: 768, heads: 12, intermediate: 3072 },
};

/** Full runs: both issue-2 workloads (4096 tokens each). Quick runs: small ones to smoke-test the harness. */
export const WORKLOADS = [
  { batch: 32, seq: 128 },
  { batch: 8, seq: 512 },
];
export const QUICK_WORKLOADS = [
  { batch: 4, seq: 32 },
  { batch: 2, seq: 64 },
];

/**
 * The token id at row b, column t of a B x T batch: [CLS] ... [SEP], the middle a fixed pseudo-random
 * walk over the vocabulary. bench/peers/torch_encoder.py builds the very same ids.
 */
export function tokenId(b, t, T) {
  if (t === 0) return 101;
  if (t === T - 1) return 102;
  return 1000 + (((b * T + t) * 7919) % 29000);
}

/** A batch for Encoder.forward: no padding, token types 0, positions 0..T-1. */
export function makeBatch(B, T) {
  const n = B * T;
  const inputIds = new Int32Array(n);
  const positionIds = new Int32Array(n);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      inputIds[b * T + t] = tokenId(b, t, T);
      positionIds[b * T + t] = t;
    }
  }
  return {
    batchSize: B,
    seqLen: T,
    inputIds,
    attentionMask: new Int32Array(n).fill(1),
    tokenTypeIds: new Int32Array(n),
    positionIds,
    encodings: [],
  };
}

/**
 * FLOPs of one full-encoder forward, counting the matrix products only: per layer the dense GEMMs
 * 2*M*(4*H*H + 2*H*I) (Q, K, V, attention output, FFN up, FFN down; M = B*T) plus attention
 * 2*2*B*T*T*H (scores and the weighted sum of values). Embeddings, LayerNorm, softmax, GELU are not counted.
 */
export function modelFlops(m, B, T) {
  const M = B * T;
  const H = m.hidden;
  const I = m.intermediate;
  const dense = 2 * M * (4 * H * H + 2 * H * I);
  const attn = 2 * 2 * B * T * T * H;
  return { total: m.layers * (dense + attn), dense: m.layers * dense, attention: m.layers * attn };
}
