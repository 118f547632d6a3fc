// Our tokenizer wrapper against the Python `tokenizers` library on accents, CJK,
// emoji, very long words, whitespace, pairs and overflowing windows.
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { TextTokenizer } from '../../src/model/tokenizer';
import { FIXTURES, ROOT, requireMiniLM } from '../helpers/fixtures';

interface Case {
  tokenizer: string; text: string; pair: string | null; ids: number[]; typeIds: number[];
  offsets: [number, number][]; offsetsUtf16?: [number, number][]; wordIds: (number | null)[];
  maxLength?: number; stride?: number; windows?: { ids: number[] }[];
}
const parity = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'tokenizer-parity.json'), 'utf8')) as {
  tokenizers: Record<string, string>; cases: Case[];
};

describe('tokenizer parity with Python tokenizers', () => {
  const loaded = new Map<string, TextTokenizer>();
  const get = (name: string): TextTokenizer => {
    if (!loaded.has(name)) {
      if (name === 'minilm') requireMiniLM();
      loaded.set(name, TextTokenizer.load(path.dirname(path.join(ROOT, parity.tokenizers[name])), 0));
    }
    return loaded.get(name)!;
  };

  it('has cases for every tokenizer, including accents, CJK and emoji', () => {
    expect(new Set(parity.cases.map((c) => c.tokenizer))).toEqual(new Set(Object.keys(parity.tokenizers)));
    const all = parity.cases.map((c) => c.text).join(' ');
    for (const probe of ['é', '日本', '🤗']) expect(all).toContain(probe);
  });

  for (const [i, c] of parity.cases.entries()) {
    const label = `${c.tokenizer} #${i}: ${JSON.stringify(c.text.slice(0, 40))}${c.pair !== null ? ' + pair' : ''}${c.windows ? ' (windows)' : ''}`;
    it(label, async () => {
      const tok = get(c.tokenizer);
      if (c.windows) {
        const w = await tok.encodeWindows(c.text, c.maxLength!, c.stride!, c.pair ?? undefined);
        expect(w.windows.map((x) => x.ids)).toEqual(c.windows.map((x) => x.ids));
        return;
      }
      const [e] = await tok.encode([c.text], { pairs: c.pair !== null ? [c.pair] : undefined });
      expect(e.ids).toEqual(c.ids);
      expect(e.typeIds).toEqual(c.typeIds);
      expect(e.wordIds).toEqual(c.wordIds);
      expect(e.offsets).toEqual(c.offsetsUtf16 ?? c.offsets);
    });
  }
});
