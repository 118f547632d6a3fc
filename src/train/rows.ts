/**
 * What the training engine consumes: one model input row (a text, or one window of a
 * sentence) with its labels. The task layer (src/tasks) makes rows from data files.
 */
import type { Encoded } from '../model/tokenizer';

/** Label index used for tokens the loss ignores. */
export const IGNORE = -100;

/** One model input row (a text, or one window of a sentence). */
export interface Row {
  /** index of the example the row belongs to */
  example: number;
  encoding: Encoded;
  /** sequence: one label; token: one per token (IGNORE where not scored) */
  labels: Int32Array;
  /** NER: for each token, the index of the word it starts (its first sub-word), else -1 */
  wordStart?: Int32Array;
}
