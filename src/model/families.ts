/**
 * Model families: how each reads its config.json and names its weights.
 * This file is the single source of truth for checkpoint weight names; the native
 * encoder only knows the canonical slots below.
 *
 * Canonical slots: `embeddings.word|position|token_type`, `embeddings.ln.weight|bias`,
 * and per layer i (0-based): `layer.i.attn.q|k|v|out.weight|bias`,
 * `layer.i.attn.ln.weight|bias`, `layer.i.ffn.in|out.weight|bias`, `layer.i.ffn.ln.weight|bias`;
 * MPNet adds `encoder.rel_bias` (its relative position bias, [buckets, heads]).
 */

export type FamilyName = 'bert' | 'roberta' | 'distilbert' | 'mpnet';

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
  const m = /^layer\.(\d+)\.(attn\.q|attn\.k|attn\.v|attn\.out|attn\.ln|ffn\.in|ffn\.out|ffn\.ln)\.(weight|bias)$/.exec(slot);
  if (!m) return [];
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
];

/** Every model_type this package can load. */
export const SUPPORTED_MODEL_TYPES: readonly string[] = FAMILIES.flatMap((f) => f.modelTypes);

/** Canonical slots of an encoder with this shape, in load order. */
export function canonicalSlots(shape: EncoderShape): string[] {
  const slots = ['embeddings.word', 'embeddings.position'];
  if (shape.typeVocabSize > 0) slots.push('embeddings.token_type');
  slots.push('embeddings.ln.weight', 'embeddings.ln.bias');
  if (shape.relativeBuckets > 0) slots.push('encoder.rel_bias');
  for (let i = 0; i < shape.layers; i++) {
    for (const part of ['attn.q', 'attn.k', 'attn.v', 'attn.out', 'attn.ln', 'ffn.in', 'ffn.out', 'ffn.ln']) {
      slots.push(`layer.${i}.${part}.weight`, `layer.${i}.${part}.bias`);
    }
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
  }
  if (slot.endsWith('ffn.in.weight')) return [I, H];
  if (slot.endsWith('ffn.in.bias')) return [I];
  if (slot.endsWith('ffn.out.weight')) return [H, I];
  if (/attn\.(q|k|v|out)\.weight$/.test(slot)) return [H, H];
  return [H];
}
