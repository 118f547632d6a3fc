/**
 * Model families: how each reads its config.json and names its weights.
 * This file is the single source of truth for checkpoint weight names; the native
 * encoder only knows the canonical slots below.
 *
 * Canonical slots: `embeddings.word|position|token_type`, `embeddings.ln.weight|bias`,
 * and per layer i (0-based): `layer.i.attn.q|k|v|out.weight|bias`,
 * `layer.i.attn.ln.weight|bias`, `layer.i.ffn.in|out.weight|bias`, `layer.i.ffn.ln.weight|bias`;
 * MPNet adds `encoder.rel_bias` (its relative position bias, [buckets, heads]); DeBERTa-v2
 * adds `encoder.rel_embeddings` ([2 span, H]), `encoder.rel_ln.weight|bias` and, without
 * share_att_key, `layer.i.attn.pos_q|pos_k.weight|bias`.
 */

export type FamilyName = 'bert' | 'roberta' | 'distilbert' | 'mpnet' | 'deberta-v2';

/** DeBERTa-v2's disentangled attention, from its config.json. */
export interface DisentangledShape {
  /** relative_attention: the position terms are added to the scores */
  relativeAttention: boolean;
  /** pos_att_type has c2p (content to position) / p2c (position to content) */
  c2p: boolean;
  p2c: boolean;
  /** share_att_key: relative embeddings go through the layer's own query and key projections */
  shareKey: boolean;
  /** norm_rel_ebd has layer_norm: the relative embeddings pass a LayerNorm first */
  relLayerNorm: boolean;
  /** position_buckets (<= 0: no log buckets) */
  buckets: number;
  /** max_relative_positions (defaulted to max_position_embeddings when < 1) */
  maxRelative: number;
  /** position_biased_input: absolute position embeddings are added to the input */
  absolutePositions: boolean;
}

/** The architecture-independent view of a config.json. */
export interface EncoderShape {
  family: FamilyName;
  modelType: string;
  vocabSize: number;
  hidden: number;
  layers: number;
  heads: number;
  intermediate: number;
  maxPositions: number;
  /** 0 when the family has no token-type embeddings */
  typeVocabSize: number;
  layerNormEps: number;
  padTokenId: number;
  /** first position id of real tokens: 0 for BERT, padding_idx + 1 for RoBERTa and MPNet */
  positionOffset: number;
  /** buckets of MPNet's relative position bias (0: none) */
  relativeBuckets: number;
  activation: string;
  /** DeBERTa-v2's disentangled attention (absent for the other families) */
  disentangled?: DisentangledShape;
}

export interface Family {
  name: FamilyName;
  /** config.json model_type values served by this family */
  modelTypes: string[];
  /** prefixes a task checkpoint may put before the base model's names */
  prefixes: string[];
  /** reads the shape from config.json; throws with the missing key's name */
  shape(config: Record<string, unknown>, modelType: string): EncoderShape;
  /** checkpoint names (without prefix) for a canonical slot, the first found wins */
  names(slot: string): string[];
}

function num(config: Record<string, unknown>, key: string, fallback?: number): number {
  const v = config[key];
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (v === undefined && fallback !== undefined) return fallback;
  throw new Error(`config.json: "${key}" must be a number${v === undefined ? ' (missing)' : `, got ${JSON.stringify(v)}`}`);
}

/** Layer sub-names of BERT and RoBERTa (same module tree). */
const BERT_LAYER: Record<string, string[]> = {
  'attn.q': ['attention.self.query'],
  'attn.k': ['attention.self.key'],
  'attn.v': ['attention.self.value'],
  'attn.out': ['attention.output.dense'],
  'attn.ln': ['attention.output.LayerNorm'],
  'ffn.in': ['intermediate.dense'],
  'ffn.out': ['output.dense'],
  'ffn.ln': ['output.LayerNorm'],
};

const DISTILBERT_LAYER: Record<string, string[]> = {
  'attn.q': ['attention.q_lin'],
  'attn.k': ['attention.k_lin'],
  'attn.v': ['attention.v_lin'],
  'attn.out': ['attention.out_lin'],
  'attn.ln': ['sa_layer_norm'],
  'ffn.in': ['ffn.lin1'],
  'ffn.out': ['ffn.lin2'],
  'ffn.ln': ['output_layer_norm'],
};

/** `weight`/`bias` of a LayerNorm may be spelled `gamma`/`beta` in old TF-converted checkpoints. */
function paramNames(module: string, param: string, isLayerNorm: boolean): string[] {
  const names = [`${module}.${param}`];
  if (isLayerNorm) names.push(`${module}.${param === 'weight' ? 'gamma' : 'beta'}`);
  return names;
}

function layerNames(table: Record<string, string[]>, root: string, slot: string): string[] {
  const m = /^layer\.(\d+)\.(attn\.q|attn\.k|attn\.v|attn\.out|attn\.ln|attn\.pos_q|attn\.pos_k|ffn\.in|ffn\.out|ffn\.ln)\.(weight|bias)$/.exec(slot);
  if (!m || !table[m[2]]) return [];
  const [, index, part, param] = m;
  return table[part].flatMap((module) => paramNames(`${root}.${index}.${module}`, param, part.endsWith('.ln')));
}

const bertLike = (name: FamilyName, modelTypes: string[], prefixes: string[], positionOffset: (c: Record<string, unknown>) => number): Family => ({
  name,
  modelTypes,
  prefixes,
  shape(config, modelType) {
    const padTokenId = num(config, 'pad_token_id', 0);
    return {
      family: name,
      modelType,
      vocabSize: num(config, 'vocab_size'),
      hidden: num(config, 'hidden_size'),
      layers: num(config, 'num_hidden_layers'),
      heads: num(config, 'num_attention_heads'),
      intermediate: num(config, 'intermediate_size'),
      maxPositions: num(config, 'max_position_embeddings'),
      typeVocabSize: num(config, 'type_vocab_size', name === 'roberta' ? 1 : 2),
      layerNormEps: num(config, 'layer_norm_eps', 1e-12),
      padTokenId,
      positionOffset: positionOffset(config),
      relativeBuckets: 0,
      activation: typeof config.hidden_act === 'string' ? config.hidden_act : 'gelu',
    };
  },
  names(slot) {
    switch (slot) {
      case 'embeddings.word': return ['embeddings.word_embeddings.weight'];
      case 'embeddings.position': return ['embeddings.position_embeddings.weight'];
      case 'embeddings.token_type': return ['embeddings.token_type_embeddings.weight'];
      case 'embeddings.ln.weight': return paramNames('embeddings.LayerNorm', 'weight', true);
      case 'embeddings.ln.bias': return paramNames('embeddings.LayerNorm', 'bias', true);
      default: return layerNames(BERT_LAYER, 'encoder.layer', slot);
    }
  },
});

const BERT = bertLike('bert', ['bert'], ['', 'bert.'], () => 0);

/** Embedding names of DistilBERT and MPNet (no token types, no gamma/beta spellings); null for other slots. */
function plainEmbeddingNames(slot: string): string[] | null {
  switch (slot) {
    case 'embeddings.word': return ['embeddings.word_embeddings.weight'];
    case 'embeddings.position': return ['embeddings.position_embeddings.weight'];
    case 'embeddings.token_type': return [];
    case 'embeddings.ln.weight': return ['embeddings.LayerNorm.weight'];
    case 'embeddings.ln.bias': return ['embeddings.LayerNorm.bias'];
    default: return null;
  }
}

/** Layer sub-names of MPNet. */
const MPNET_LAYER: Record<string, string[]> = {
  'attn.q': ['attention.attn.q'],
  'attn.k': ['attention.attn.k'],
  'attn.v': ['attention.attn.v'],
  'attn.out': ['attention.attn.o'],
  'attn.ln': ['attention.LayerNorm'],
  'ffn.in': ['intermediate.dense'],
  'ffn.out': ['output.dense'],
  'ffn.ln': ['output.LayerNorm'],
};

/**
 * MPNet (all-mpnet-base-v2): BERT-like post-LayerNorm blocks, positions numbered from
 * padding_idx + 1 as in RoBERTa, no token types, and a relative position bias (bucketed,
 * bidirectional, one table shared by every layer) added to the attention scores.
 */
const MPNET: Family = {
  name: 'mpnet',
  modelTypes: ['mpnet'],
  prefixes: ['', 'mpnet.'],
  shape(config, modelType) {
    // BERT's config keys; MPNet's own: positions from the pad id, no token types, the buckets
    const padTokenId = num(config, 'pad_token_id', 1);
    return {
      ...BERT.shape(config, modelType),
      family: 'mpnet',
      typeVocabSize: 0,
      padTokenId,
      positionOffset: padTokenId + 1,
      relativeBuckets: num(config, 'relative_attention_num_buckets', 32),
    };
  },
  names(slot) {
    if (slot === 'encoder.rel_bias') return ['encoder.relative_attention_bias.weight'];
    return plainEmbeddingNames(slot) ?? layerNames(MPNET_LAYER, 'encoder.layer', slot);
  },
};

/** Layer sub-names of DeBERTa-v2 (and v3). */
const DEBERTA_V2_LAYER: Record<string, string[]> = {
  'attn.q': ['attention.self.query_proj'],
  'attn.k': ['attention.self.key_proj'],
  'attn.v': ['attention.self.value_proj'],
  'attn.pos_q': ['attention.self.pos_query_proj'],
  'attn.pos_k': ['attention.self.pos_key_proj'],
  'attn.out': ['attention.output.dense'],
  'attn.ln': ['attention.output.LayerNorm'],
  'ffn.in': ['intermediate.dense'],
  'ffn.out': ['output.dense'],
  'ffn.ln': ['output.LayerNorm'],
};

function bool(config: Record<string, unknown>, key: string, fallback: boolean): boolean {
  const v = config[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'boolean') throw new Error(`config.json: "${key}" must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

/** pos_att_type: "p2c|c2p" or ["p2c", "c2p"] (transformers accepts both). */
function posAttTypes(config: Record<string, unknown>): string[] {
  const v = config.pos_att_type;
  if (v === undefined || v === null) return [];
  const list = typeof v === 'string' ? v.toLowerCase().split('|').map((x) => x.trim()).filter(Boolean) : v;
  if (!Array.isArray(list) || list.some((x) => typeof x !== 'string')) {
    throw new Error(`config.json: "pos_att_type" must be a string like "p2c|c2p" or a list of strings, got ${JSON.stringify(v)}`);
  }
  for (const t of list as string[]) {
    if (t !== 'c2p' && t !== 'p2c') throw new Error(`config.json: "pos_att_type" entry ${JSON.stringify(t)} is not supported; DeBERTa-v2 has "c2p" and "p2c"`);
  }
  return list as string[];
}

/**
 * DeBERTa-v2 (and DeBERTa-v3, the same architecture): disentangled attention, where each
 * score adds content-to-position and position-to-content terms over log-bucketed relative
 * positions; no absolute position embeddings when position_biased_input is false; the
 * embeddings multiplied by the attention mask. The convolution layer of the larger v2
 * checkpoints (conv_kernel_size) and a factorised embedding (embedding_size) are refused by
 * name.
 */
const DEBERTA_V2: Family = {
  name: 'deberta-v2',
  modelTypes: ['deberta-v2'],
  prefixes: ['', 'deberta.'],
  shape(config, modelType) {
    const hidden = num(config, 'hidden_size');
    const heads = num(config, 'num_attention_heads');
    const conv = num(config, 'conv_kernel_size', 0);
    if (conv > 0) {
      throw new Error(`config.json: "conv_kernel_size" is ${conv}: the convolution layer of the larger DeBERTa-v2 checkpoints is not supported (models with conv_kernel_size 0 or absent, such as DeBERTa-v3, are)`);
    }
    const embeddingSize = num(config, 'embedding_size', hidden);
    if (embeddingSize !== hidden) {
      throw new Error(`config.json: "embedding_size" ${embeddingSize} differs from hidden_size ${hidden}: a projected embedding is not supported`);
    }
    const headSize = num(config, 'attention_head_size', hidden / heads);
    if (headSize !== hidden / heads) {
      throw new Error(`config.json: "attention_head_size" ${headSize} is not hidden_size / num_attention_heads (${hidden / heads}); only that head size is supported`);
    }
    const types = posAttTypes(config);
    const maxPositions = num(config, 'max_position_embeddings');
    const maxRel = num(config, 'max_relative_positions', -1);
    const norm = config.norm_rel_ebd;
    if (norm !== undefined && typeof norm !== 'string') throw new Error(`config.json: "norm_rel_ebd" must be a string such as "layer_norm", got ${JSON.stringify(norm)}`);
    const relativeAttention = bool(config, 'relative_attention', false);
    return {
      family: 'deberta-v2',
      modelType,
      vocabSize: num(config, 'vocab_size'),
      hidden,
      layers: num(config, 'num_hidden_layers'),
      heads,
      intermediate: num(config, 'intermediate_size'),
      maxPositions,
      typeVocabSize: num(config, 'type_vocab_size', 0),
      layerNormEps: num(config, 'layer_norm_eps', 1e-7),
      padTokenId: num(config, 'pad_token_id', 0),
      positionOffset: 0,
      relativeBuckets: 0,
      activation: typeof config.hidden_act === 'string' ? config.hidden_act : 'gelu',
      disentangled: {
        relativeAttention,
        c2p: types.includes('c2p'),
        p2c: types.includes('p2c'),
        shareKey: bool(config, 'share_att_key', false),
        relLayerNorm: (norm ?? 'none').toLowerCase().split('|').map((x) => x.trim()).includes('layer_norm'),
        buckets: num(config, 'position_buckets', -1),
        maxRelative: maxRel < 1 ? maxPositions : maxRel,
        absolutePositions: bool(config, 'position_biased_input', true),
      },
    };
  },
  names(slot) {
    switch (slot) {
      case 'embeddings.word': return ['embeddings.word_embeddings.weight'];
      case 'embeddings.position': return ['embeddings.position_embeddings.weight'];
      case 'embeddings.token_type': return ['embeddings.token_type_embeddings.weight'];
      case 'embeddings.ln.weight': return ['embeddings.LayerNorm.weight'];
      case 'embeddings.ln.bias': return ['embeddings.LayerNorm.bias'];
      case 'encoder.rel_embeddings': return ['encoder.rel_embeddings.weight'];
      case 'encoder.rel_ln.weight': return ['encoder.LayerNorm.weight'];
      case 'encoder.rel_ln.bias': return ['encoder.LayerNorm.bias'];
      default: return layerNames(DEBERTA_V2_LAYER, 'encoder.layer', slot);
    }
  },
};

/** Rows of DeBERTa-v2's relative embedding table: 2 x (position_buckets, or max_relative_positions). */
export function disentangledSpan(d: DisentangledShape): number {
  return d.buckets > 0 ? d.buckets : d.maxRelative;
}

/** The encoder families the engine runs (BERT, RoBERTa, DistilBERT, MPNet, ...): each one's config keys, weight names and shape rules. */
export const FAMILIES: readonly Family[] = [
  BERT,
  // RoBERTa numbers real tokens from padding_idx + 1 (position ids are offset by the pad id).
  bertLike('roberta', ['roberta', 'xlm-roberta', 'camembert'], ['', 'roberta.'], (c) => num(c, 'pad_token_id', 1) + 1),
  {
    name: 'distilbert',
    modelTypes: ['distilbert'],
    prefixes: ['', 'distilbert.'],
    shape(config, modelType) {
      return {
        family: 'distilbert',
        modelType,
        vocabSize: num(config, 'vocab_size'),
        hidden: num(config, 'dim'),
        layers: num(config, 'n_layers'),
        heads: num(config, 'n_heads'),
        intermediate: num(config, 'hidden_dim'),
        maxPositions: num(config, 'max_position_embeddings'),
        typeVocabSize: 0,
        layerNormEps: 1e-12,
        padTokenId: num(config, 'pad_token_id', 0),
        positionOffset: 0,
        relativeBuckets: 0,
        activation: typeof config.activation === 'string' ? config.activation : 'gelu',
      };
    },
    names(slot) {
      return plainEmbeddingNames(slot) ?? layerNames(DISTILBERT_LAYER, 'transformer.layer', slot);
    },
  },
  MPNET,
  DEBERTA_V2,
];

/** Every model_type this package can load. */
export const SUPPORTED_MODEL_TYPES: readonly string[] = FAMILIES.flatMap((f) => f.modelTypes);

/** Canonical slots of an encoder with this shape, in load order. */
export function canonicalSlots(shape: EncoderShape): string[] {
  const dis = shape.disentangled;
  const slots = ['embeddings.word'];
  if (!dis || dis.absolutePositions) slots.push('embeddings.position');
  if (shape.typeVocabSize > 0) slots.push('embeddings.token_type');
  slots.push('embeddings.ln.weight', 'embeddings.ln.bias');
  if (shape.relativeBuckets > 0) slots.push('encoder.rel_bias');
  const relative = dis?.relativeAttention === true;
  if (relative) slots.push('encoder.rel_embeddings');
  if (relative && dis.relLayerNorm) slots.push('encoder.rel_ln.weight', 'encoder.rel_ln.bias');
  const parts = ['attn.q', 'attn.k', 'attn.v', 'attn.out', 'attn.ln', 'ffn.in', 'ffn.out', 'ffn.ln'];
  // DeBERTa-v2 without share_att_key: pos_key_proj for c2p, pos_query_proj for p2c
  if (relative && !dis.shareKey) {
    if (dis.p2c) parts.push('attn.pos_q');
    if (dis.c2p) parts.push('attn.pos_k');
  }
  for (let i = 0; i < shape.layers; i++) {
    for (const part of parts) slots.push(`layer.${i}.${part}.weight`, `layer.${i}.${part}.bias`);
  }
  return slots;
}

/** Expected shape of a canonical slot. */
export function slotShape(shape: EncoderShape, slot: string): number[] {
  const H = shape.hidden, I = shape.intermediate;
  switch (slot) {
    case 'embeddings.word': return [shape.vocabSize, H];
    case 'embeddings.position': return [shape.maxPositions, H];
    case 'embeddings.token_type': return [shape.typeVocabSize, H];
    case 'encoder.rel_bias': return [shape.relativeBuckets, shape.heads];
    case 'encoder.rel_embeddings': return [2 * disentangledSpan(shape.disentangled!), H];
  }
  if (/attn\.pos_(q|k)\.weight$/.test(slot)) return [H, H];
  if (slot.endsWith('ffn.in.weight')) return [I, H];
  if (slot.endsWith('ffn.in.bias')) return [I];
  if (slot.endsWith('ffn.out.weight')) return [H, I];
  if (/attn\.(q|k|v|out)\.weight$/.test(slot)) return [H, H];
  return [H];
}
