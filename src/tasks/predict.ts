/**
 * Turning logits back into answers: labels with probabilities for classification;
 * per-word tags and entity spans (with character offsets) for NER.
 */
import type { WordsExample } from './data';
import { entitiesDefault } from './metrics';
import type { LabelMap, Row } from './features';

export interface ClassPrediction {
  label: string;
  probabilities: Record<string, number>;
}

export interface EntitySpan {
  type: string;
  /** word indices [start, end) */
  start: number;
  end: number;
  text: string;
  /** character offsets [charStart, charEnd) in the input text (or in the words joined by spaces) */
  charStart: number;
  charEnd: number;
}

export interface NerPrediction {
  tags: string[];
  entities: EntitySpan[];
}

function softmax(z: Float32Array): number[] {
  let mx = -Infinity;
  for (const v of z) mx = Math.max(mx, v);
  const e = Array.from(z, (v) => Math.exp(v - mx));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

export function argmax(z: Float32Array | number[]): number {
  let best = 0;
  for (let i = 1; i < z.length; i++) if (z[i] > z[best]) best = i;
  return best;
}

export function decodeClassification(logits: readonly Float32Array[], labels: LabelMap): ClassPrediction[] {
  return logits.map((z) => {
    const p = softmax(z);
    return { label: labels.labels[argmax(z)], probabilities: Object.fromEntries(labels.labels.map((l, i) => [l, p[i]])) };
  });
}

/**
 * Per-word tags from the rows' token logits (the first sub-word of each word decides),
 * then entity spans. `charStarts` gives each word's character offset in the original
 * text; by default the words are taken as joined by single spaces.
 */
export function decodeNer(examples: readonly WordsExample[], rows: readonly Row[], logits: readonly Float32Array[], labels: LabelMap, charStarts?: readonly (readonly number[])[]): NerPrediction[] {
  const L = labels.size;
  const tags = examples.map((e) => new Array<string>(e.words.length).fill('O'));
  rows.forEach((r, i) => {
    const ws = r.wordStart!;
    for (let t = 0; t < ws.length; t++) {
      if (ws[t] < 0) continue;
      tags[r.example][ws[t]] = labels.labels[argmax(logits[i].subarray(t * L, (t + 1) * L))];
    }
  });
  return examples.map((e, x) => {
    const starts = charStarts?.[x] ?? (() => {
      const s: number[] = [];
      let pos = 0;
      for (const w of e.words) {
        s.push(pos);
        pos += w.length + 1;
      }
      return s;
    })();
    const entities = entitiesDefault(tags[x]).map((en) => ({
      type: en.type, start: en.start, end: en.end, text: e.words.slice(en.start, en.end).join(' '),
      charStart: starts[en.start], charEnd: starts[en.end - 1] + e.words[en.end - 1].length,
    }));
    return { tags: tags[x], entities };
  });
}

/** Splits a raw text into words (by whitespace) with their character offsets. */
export function splitWords(text: string): { words: string[]; starts: number[] } {
  const words: string[] = [], starts: number[] = [];
  const re = /\S+/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text))) {
    words.push(m[0]);
    starts.push(m.index);
  }
  return { words, starts };
}
