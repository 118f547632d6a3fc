/**
 * Metrics of the tasks, with the conventions of scikit-learn (classification) and
 * seqeval (entities), against which they are tested.
 */

export interface ClassificationMetrics {
  accuracy: number;
  microF1: number;
  macroF1: number;
  /** per label: precision, recall, F1 and support (true count) */
  perLabel: Record<string, { precision: number; recall: number; f1: number; support: number }>;
}

const div = (a: number, b: number) => (b === 0 ? 0 : a / b);
const f1 = (p: number, r: number) => (p + r === 0 ? 0 : (2 * p * r) / (p + r));

/**
 * Accuracy, micro-F1 and macro-F1 over the labels present in the truth or the
 * predictions (scikit-learn's `f1_score(average='micro'|'macro')`; an undefined
 * precision or recall counts as 0, as `zero_division=0`). For single-label
 * classification micro-F1 equals accuracy. `exclude` drops labels from the
 * micro/macro averages (e.g. a "no relation" class), as sklearn's `labels=`.
 */
export function classificationMetrics(truth: readonly string[], pred: readonly string[], exclude: readonly string[] = []): ClassificationMetrics {
  if (truth.length !== pred.length) throw new RangeError(`truth has ${truth.length} labels, predictions ${pred.length}`);
  const labels = [...new Set([...truth, ...pred])].sort();
  const perLabel: ClassificationMetrics['perLabel'] = {};
  let tpSum = 0, predSum = 0, trueSum = 0, macro = 0, counted = 0, correct = 0;
  for (let i = 0; i < truth.length; i++) if (truth[i] === pred[i]) correct++;
  for (const l of labels) {
    let tp = 0, np = 0, nt = 0;
    for (let i = 0; i < truth.length; i++) {
      if (pred[i] === l) np++;
      if (truth[i] === l) nt++;
      if (pred[i] === l && truth[i] === l) tp++;
    }
    const p = div(tp, np), r = div(tp, nt);
    perLabel[l] = { precision: p, recall: r, f1: f1(p, r), support: nt };
    if (exclude.includes(l)) continue;
    tpSum += tp;
    predSum += np;
    trueSum += nt;
    macro += f1(p, r);
    counted++;
  }
  const mp = div(tpSum, predSum), mr = div(tpSum, trueSum);
  return { accuracy: div(correct, truth.length), microF1: f1(mp, mr), macroF1: div(macro, counted), perLabel };
}

/** An entity: type and [start, end) token indices within its sentence. */
export interface Entity {
  type: string;
  start: number;
  end: number;
}

function splitTag(tag: string): [string, string] {
  if (tag === 'O' || tag === '') return ['O', ''];
  const m = /^([BIESLU])[-_](.+)$/.exec(tag);
  if (m) return [m[1] === 'L' ? 'E' : m[1] === 'U' ? 'S' : m[1], m[2]];
  // a bare type (IO scheme): inside
  return ['I', tag];
}

/**
 * Entities of a tag sequence as seqeval's default mode reads them (the conlleval
 * rules): a chunk starts at B, S, or at an I / E whose type differs from the
 * previous tag's; it ends before O, B, S, or a change of type.
 */
export function entitiesDefault(tags: readonly string[]): Entity[] {
  const out: Entity[] = [];
  let prevPrefix = 'O', prevType = '', start = -1;
  const seq = [...tags, 'O'];
  for (let i = 0; i < seq.length; i++) {
    const [prefix, type] = splitTag(seq[i]);
    const endOfChunk =
      (prevPrefix === 'E' || prevPrefix === 'S') ||
      (prevPrefix === 'B' && (prefix === 'B' || prefix === 'S' || prefix === 'O')) ||
      (prevPrefix === 'I' && (prefix === 'B' || prefix === 'S' || prefix === 'O')) ||
      (prevPrefix !== 'O' && prevType !== type);
    if (endOfChunk && start >= 0) {
      out.push({ type: prevType, start, end: i });
      start = -1;
    }
    const startOfChunk =
      prefix === 'B' || prefix === 'S' ||
      (prevPrefix === 'E' && (prefix === 'E' || prefix === 'I')) ||
      (prevPrefix === 'S' && (prefix === 'E' || prefix === 'I')) ||
      (prevPrefix === 'O' && (prefix === 'E' || prefix === 'I')) ||
      (prefix !== 'O' && prevType !== type);
    if (startOfChunk && prefix !== 'O') start = i;
    prevPrefix = prefix;
    prevType = type;
  }
  return out;
}

/**
 * Entities under seqeval's strict mode with the IOB2 scheme: an entity is B-X followed
 * by I-X tokens only; an I-X that does not continue a B-X / I-X of the same type
 * starts nothing (the tokens are not an entity).
 */
export function entitiesStrictIOB2(tags: readonly string[]): Entity[] {
  const out: Entity[] = [];
  let cur: Entity | null = null;
  for (let i = 0; i <= tags.length; i++) {
    const [prefix, type] = i < tags.length ? splitTag(tags[i]) : ['O', ''];
    if (cur && prefix === 'I' && type === cur.type) continue;
    if (cur) {
      cur.end = i;
      out.push(cur);
      cur = null;
    }
    if (prefix === 'B') cur = { type, start: i, end: i + 1 };
  }
  return out;
}

export interface EntityMetrics {
  precision: number;
  recall: number;
  f1: number;
  perType: Record<string, { precision: number; recall: number; f1: number; support: number }>;
}

/** Micro precision / recall / F1 over exact entity matches (type and span), per sentence. */
export function entityMetrics(truth: readonly (readonly string[])[], pred: readonly (readonly string[])[], mode: 'default' | 'strict' = 'default'): EntityMetrics {
  if (truth.length !== pred.length) throw new RangeError(`truth has ${truth.length} sentences, predictions ${pred.length}`);
  const extract = mode === 'strict' ? entitiesStrictIOB2 : entitiesDefault;
  const stats = new Map<string, { tp: number; np: number; nt: number }>();
  const get = (t: string) => {
    if (!stats.has(t)) stats.set(t, { tp: 0, np: 0, nt: 0 });
    return stats.get(t)!;
  };
  for (let s = 0; s < truth.length; s++) {
    if (truth[s].length !== pred[s].length) throw new RangeError(`sentence ${s}: ${truth[s].length} true tags, ${pred[s].length} predicted`);
    const te = extract(truth[s]), pe = extract(pred[s]);
    const key = (e: Entity) => `${e.type}\u0000${e.start}\u0000${e.end}`;
    const tset = new Set(te.map(key));
    for (const e of te) get(e.type).nt++;
    for (const e of pe) {
      const st = get(e.type);
      st.np++;
      if (tset.has(key(e))) st.tp++;
    }
  }
  let tp = 0, np = 0, nt = 0;
  const perType: EntityMetrics['perType'] = {};
  for (const [t, s] of [...stats].sort()) {
    const p = div(s.tp, s.np), r = div(s.tp, s.nt);
    perType[t] = { precision: p, recall: r, f1: f1(p, r), support: s.nt };
    tp += s.tp;
    np += s.np;
    nt += s.nt;
  }
  const p = div(tp, np), r = div(tp, nt);
  return { precision: p, recall: r, f1: f1(p, r), perType };
}

/** Token-level micro and macro F1 over the tags (scikit-learn on the flattened tags). */
export function tokenMetrics(truth: readonly (readonly string[])[], pred: readonly (readonly string[])[]): { microF1: number; macroF1: number; accuracy: number } {
  const m = classificationMetrics(truth.flat(), pred.flat());
  return { microF1: m.microF1, macroF1: m.macroF1, accuracy: m.accuracy };
}
