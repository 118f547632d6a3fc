import * as fs from 'fs';
import * as path from 'path';

function rng(seed: number) {
  let s = seed >>> 0;
  return (k: number) => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return (s >>> 8) % k;
  };
}

const FILLER = 'the patients were followed for several months and the results were recorded in the study group'.split(' ');
const TOPICS: Record<string, string[]> = {
  renal: ['kidney', 'renal', 'dialysis', 'nephropathy'],
  metabolic: ['insulin', 'glucose', 'diabetes', 'obesity'],
  cardiac: ['heart', 'cardiac', 'arrhythmia', 'infarction'],
};

/** A generated classification task: the label is the topic of the keywords a text carries. */
export function writeClassification(dir: string, n: number, seed: number, file: string): string {
  const r = rng(seed);
  const labels = Object.keys(TOPICS);
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    // an imbalanced label distribution, so the majority baseline is not trivial to beat by chance
    const label = labels[r(10) < 5 ? 0 : r(10) < 6 ? 1 : 2];
    const words = Array.from({ length: 6 + r(10) }, () => FILLER[r(FILLER.length)]);
    for (let k = 0; k < 2; k++) words.splice(r(words.length), 0, TOPICS[label][r(4)]);
    lines.push(JSON.stringify({ id: `${file}-${i}`, text: words.join(' '), label }));
  }
  const p = path.join(dir, `${file}.jsonl`);
  fs.writeFileSync(p, lines.join('\n') + '\n');
  return p;
}

const DISEASES = [['diabetes'], ['asthma'], ['kidney', 'disease'], ['breast', 'cancer'], ['hepatitis']];
const CHEMS = [['aspirin'], ['insulin'], ['ibuprofen'], ['metformin']];

/** A generated NER task in CoNLL: diseases and chemicals from small lexicons in filler text. */
export function writeNer(dir: string, n: number, seed: number, file: string): string {
  const r = rng(seed);
  const out: string[] = ['-DOCSTART- O', ''];
  for (let i = 0; i < n; i++) {
    const toks: [string, string][] = [];
    const len = 5 + r(8);
    for (let w = 0; w < len; w++) {
      const x = r(10);
      if (x < 2) DISEASES[r(DISEASES.length)].forEach((t, j) => toks.push([t, `${j === 0 ? 'B' : 'I'}-Disease`]));
      else if (x < 3) CHEMS[r(CHEMS.length)].forEach((t, j) => toks.push([t, `${j === 0 ? 'B' : 'I'}-Chemical`]));
      else toks.push([FILLER[r(FILLER.length)], 'O']);
    }
    toks.push(['.', 'O']);
    for (const [t, tag] of toks) out.push(`${t} NN ${tag}`);
    out.push('');
  }
  const p = path.join(dir, `${file}.conll`);
  fs.writeFileSync(p, out.join('\n'));
  return p;
}
