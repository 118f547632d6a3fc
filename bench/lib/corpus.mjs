// Texts for the store benchmark: real sentences from ../shared/data (read in place, never copied into
// the repository), grouped into documents long enough to span several 128-token windows; or, where
// that folder is missing, deterministic synthetic text.
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** Deterministic PRNG (mulberry32). */
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Fisher-Yates shuffle of a copy, seeded. */
export function shuffled(xs, seed) {
  const r = rng(seed);
  const a = xs.slice();
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

/** The id of document i (the store benchmark's corpus). */
export const docId = (i) => `doc-${String(i).padStart(6, '0')}`;

export const DEFAULT_DATA_DIR = resolve(new URL('.', import.meta.url).pathname, '..', '..', '..', 'shared', 'data');

// SciCite citation sentences first (plain prose), then ChemProt (relation sentences with entity markers)
const SOURCES = ['scicite/train.jsonl', 'scicite/dev.jsonl', 'scicite/test.jsonl', 'chemprot/train.jsonl', 'chemprot/dev.jsonl', 'chemprot/test.jsonl'];

function realSentences(dataDir) {
  const out = [];
  const used = [];
  for (const rel of SOURCES) {
    const f = join(dataDir, rel);
    if (!existsSync(f)) continue;
    used.push(rel);
    for (const line of readFileSync(f, 'utf8').split('\n')) {
      if (!line.trim()) continue;
      try {
        const t = JSON.parse(line).text;
        if (typeof t === 'string' && t.trim()) out.push(t.replace(/\s+/g, ' ').trim());
      } catch {
        /* skip a bad line */
      }
    }
  }
  return { sentences: out, used };
}

const WORDS = (
  'the of and in to a is that for with was were by as on from this these cells protein expression ' +
  'activity levels patients study results analysis increased decreased significantly observed model ' +
  'method data showed reported previously associated receptor binding inhibition response treatment ' +
  'gene mutation pathway function role effect effects between during after within using based ' +
  'compared control group samples measured concentration signal structure sequence region domain ' +
  'mechanism induced mediated dependent specific human mouse tissue clinical trial analysis approach'
).split(/\s+/);

function syntheticSentence(r) {
  const n = 12 + Math.floor(r() * 20);
  const w = [];
  for (let i = 0; i < n; i++) w.push(WORDS[Math.floor(r() * WORDS.length)]);
  w[0] = w[0][0].toUpperCase() + w[0].slice(1);
  if (r() < 0.3) w.splice(1 + Math.floor(r() * (n - 2)), 0, `(${2000 + Math.floor(r() * 24)})`);
  return w.join(' ') + '.';
}

/**
 * `count` documents `{ id, text }`, each `perDoc` consecutive sentences (about 150-350 tokens with
 * MiniLM's tokenizer: 2-4 windows of 128 tokens at stride 32). Deterministic for given arguments.
 */
export function makeDocs(count, { perDoc = 6, dataDir = DEFAULT_DATA_DIR, synthetic = false } = {}) {
  let sentences = [];
  let source = 'synthetic (deterministic, seed 7)';
  if (!synthetic) {
    const real = realSentences(dataDir);
    if (real.sentences.length > 0) {
      sentences = real.sentences;
      source = `${dataDir}: ${real.used.join(', ')} (${perDoc} consecutive sentences per document)`;
    }
  }
  const r = rng(7);
  const docs = [];
  for (let i = 0; i < count; i++) {
    const parts = [];
    for (let k = 0; k < perDoc; k++) {
      const j = i * perDoc + k;
      // past the end of the real data: synthetic sentences (so any count works)
      parts.push(j < sentences.length ? sentences[j] : syntheticSentence(r));
    }
    docs.push({ id: docId(i), text: parts.join(' ') });
  }
  const realUsed = Math.min(sentences.length, count * perDoc);
  return { docs, source, realSentences: realUsed, syntheticSentences: count * perDoc - realUsed };
}
