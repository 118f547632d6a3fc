// Our metrics against scikit-learn and seqeval on the same predictions
// (fixtures from scripts/make_metric_fixtures.py).
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { classificationMetrics, entitiesDefault, entitiesStrictIOB2, entityMetrics, tokenMetrics } from '../../src/tasks/metrics';
import { FIXTURES } from '../helpers/fixtures';

const fx = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'metrics.json'), 'utf8'));

describe('classification metrics equal scikit-learn', () => {
  fx.classification.forEach((c: any, i: number) => {
    it(`case ${i}: ${new Set(c.truth).size} labels, ${c.truth.length} examples${c.exclude.length ? ', one label excluded' : ''}`, () => {
      const m = classificationMetrics(c.truth, c.pred, c.exclude);
      expect(m.accuracy).toBeCloseTo(c.accuracy, 12);
      expect(m.microF1).toBeCloseTo(c.microF1, 12);
      expect(m.macroF1).toBeCloseTo(c.macroF1, 12);
      for (const [l, f] of Object.entries(c.perLabelF1)) expect(m.perLabel[l].f1).toBeCloseTo(f as number, 12);
    });
  });
});

describe('entity and token metrics equal seqeval and scikit-learn', () => {
  fx.ner.forEach((c: any, i: number) => {
    it(`case ${i}: ${c.truth.length} sentences`, () => {
      const d = entityMetrics(c.truth, c.pred, 'default');
      const s = entityMetrics(c.truth, c.pred, 'strict');
      for (const k of ['precision', 'recall', 'f1'] as const) {
        expect(d[k]).toBeCloseTo(c.default[k], 12);
        expect(s[k]).toBeCloseTo(c.strict[k], 12);
      }
      expect(d.f1).not.toBe(s.f1); // the cases contain invalid I- tags, so the modes differ
      const t = tokenMetrics(c.truth, c.pred);
      expect(t.microF1).toBeCloseTo(c.tokenMicroF1, 12);
      expect(t.macroF1).toBeCloseTo(c.tokenMacroF1, 12);
    });
  });

  it('reads chunks like conlleval by default and like IOB2 in strict mode', () => {
    const tags = ['I-PER', 'I-PER', 'O', 'B-LOC', 'I-ORG', 'B-LOC', 'B-LOC'];
    expect(entitiesDefault(tags)).toEqual([
      { type: 'PER', start: 0, end: 2 }, { type: 'LOC', start: 3, end: 4 }, { type: 'ORG', start: 4, end: 5 },
      { type: 'LOC', start: 5, end: 6 }, { type: 'LOC', start: 6, end: 7 },
    ]);
    expect(entitiesStrictIOB2(tags)).toEqual([
      { type: 'LOC', start: 3, end: 4 }, { type: 'LOC', start: 5, end: 6 }, { type: 'LOC', start: 6, end: 7 },
    ]);
  });
});
