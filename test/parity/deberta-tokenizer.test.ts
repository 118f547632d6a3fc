// DeBERTa-v2's SentencePiece tokenizer through our tokenizer: the tiny-deberta-v2 fixture's
// tokenizer.json is transformers' conversion of a SentencePiece unigram model (what loading a
// DeBERTa-v3 checkpoint does). Our ids, types and word ids equal transformers' on accents, CJK,
// emoji, whitespace and pairs; the fixture also holds sentencepiece's own ids, which the
// conversion (and so we) follow except where its normaliser differs (scripts/make_deberta_fixtures.py
// counts those cases).
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { TextTokenizer } from '../../src/model/tokenizer';
import { FIXTURES } from '../helpers/fixtures';

interface Case { text: string; pair: string | null; ids: number[]; typeIds: number[]; wordIds: (number | null)[]; slowIds: number[] }
const dir = path.join(FIXTURES, 'tiny-deberta-v2');
const parity = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer-parity.json'), 'utf8')) as { slowDiffers: number; cases: Case[] };

describe('DeBERTa-v2 SentencePiece tokenizer parity with transformers', () => {
  const tok = TextTokenizer.load(dir, 0);

  it('has cases with accents, CJK, emoji and pairs', () => {
    const all = parity.cases.map((c) => c.text + (c.pair ?? '')).join(' ');
    for (const probe of ['é', '日本', '🤗', '🚉']) expect(all).toContain(probe);
    expect(parity.cases.some((c) => c.pair !== null)).toBe(true);
  });

  for (const [i, c] of parity.cases.entries()) {
    it(`#${i}: ${JSON.stringify(c.text.slice(0, 40))}${c.pair !== null ? ' + pair' : ''}`, async () => {
      const [e] = await tok.encode([c.text], { pairs: c.pair !== null ? [c.pair] : undefined });
      expect(e.ids).toEqual(c.ids);
      expect(e.typeIds).toEqual(c.typeIds);
      expect(e.wordIds).toEqual(c.wordIds);
      expect(e.ids[0]).toBe(1); // [CLS]
    });
  }

  it("follows sentencepiece's own ids except where transformers' converted normaliser differs", async () => {
    let same = 0;
    for (const c of parity.cases) {
      const [e] = await tok.encode([c.text], { pairs: c.pair !== null ? [c.pair] : undefined });
      if (JSON.stringify(e.ids) === JSON.stringify(c.slowIds)) same++;
    }
    expect(same).toBe(parity.cases.length - parity.slowDiffers);
    expect(parity.slowDiffers).toBeLessThanOrEqual(1);
  });
});
