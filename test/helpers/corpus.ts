import * as fs from 'fs';

const WORDS = ('enzyme inhibitor kidney disease receptor antibody dose cohort patients tumour growth signalling ' +
  'mutation protein expression liver cells treatment trial placebo response insulin glucose gene variant').split(' ');

/** A deterministic corpus of n texts of varied length (some longer than a small window). */
export function makeCorpus(n: number, seed = 7): { id: string; text: string }[] {
  let s = seed;
  const rand = (k: number) => {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    return s % k;
  };
  const out: { id: string; text: string }[] = [];
  for (let i = 0; i < n; i++) {
    const len = 3 + rand(i % 7 === 0 ? 60 : 18);
    const words = Array.from({ length: len }, () => WORDS[rand(WORDS.length)]);
    out.push({ id: `doc-${i}`, text: `${words.join(' ')}.` });
  }
  return out;
}

export function writeJsonl(file: string, items: object[]): void {
  fs.writeFileSync(file, items.map((x) => JSON.stringify(x)).join('\n') + '\n');
}
