// `er cost` through commander (the same program `er` runs) and through runCost:
// the --json shape, the human explanation, the table, the chart, and clear errors.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { runCost } from '../../src/cli/cost';
import { buildProgram } from '../../src/cli/main';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'er-cost-test-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const GIVEN = ['--hidden', '768', '--seq-len', '512', '--dtype', 'fp16', '--batch-size', '128', '--baseline-ms', '647', '--recycled-ms', '343', '--gpu-hour-usd', '1.4175'];

/** Runs `er cost ARGS` in process; resolves to stdout, rejects with the error `er` would print. */
async function er(args: string[]): Promise<string> {
  let out = '';
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  });
  try {
    const program = buildProgram().exitOverride().configureOutput({ writeErr: () => undefined, writeOut: () => undefined });
    for (const c of program.commands) c.exitOverride();
    await program.parseAsync(['node', 'er', 'cost', ...args]);
    return out;
  } finally {
    spy.mockRestore();
  }
}

describe('er cost --json (given times)', () => {
  it('prints one object with the answer and the inputs it used', async () => {
    const j = JSON.parse(await er([...GIVEN, '--storage', 'cloud', '--json']));
    expect(j.mode).toBe('given');
    expect(j.units).toBe('binary');
    expect(j.unit).toBe('GiB');
    expect(j.inputs).toMatchObject({
      hidden: 768, seqLen: 512, dtype: 'fp16', batchSize: 128, baselineMs: 647, recycledMs: 343, hourUsd: 1.4175, hourPriceOf: 'gpu',
      storage: { source: 'cloud', usdPerUnitMonth: 0.01, unit: 'GiB', units: 'binary' },
    });
    // 512 x 768 x 2 + 64
    expect(j.bytesPerSequence).toBe(786_496);
    // 786,496 / 2^30 x 0.01
    expect(j.storageUsdPerSequenceMonth).toBeCloseTo(7.324814796447754e-6, 18);
    // 304 / 128 / 3.6e6 x 1.4175
    expect(j.savedUsdPerSequenceReprocess).toBeCloseTo(9.3515625e-7, 18);
    // 9.3515625e-7 / 7.324814796447754e-6
    expect(j.breakEvenMonths).toBeCloseTo(0.12766961022052242, 12);
    expect(j.assumptions.length).toBeGreaterThan(0);
    expect(j.reason).toBeUndefined();
  });

  it('local storage, --reprocess-per-month and --corpus-tokens', async () => {
    const j = JSON.parse(await er([...GIVEN, '--storage', 'local', '--reprocess-per-month', '0.5', '--corpus-tokens', '4900', '--json']));
    expect(j.breakEvenMonths).toBeCloseTo(5.569718948129395, 10);
    // 0.5 x 9.3515625e-7 - 1.679000787488702e-7 = 4.67578125e-7 - 1.679000787488702e-7 = 2.996780462511298e-7
    expect(j.atRate.monthlySavingUsdPerSequence).toBeCloseTo(2.996780462511298e-7, 18);
    // ceil(4900 / 512) = 10 sequences
    expect(j.corpus.sequences).toBe(10);
    expect(j.inputs.corpusTokens).toBe(4900);
  });

  it('a custom storage price and decimal units', async () => {
    const j = JSON.parse(await er([...GIVEN, '--storage-usd-per-gb-month', '0.02', '--decimal', '--json']));
    expect(j.units).toBe('decimal');
    expect(j.inputs.storage).toMatchObject({ source: 'custom', unit: 'GB', usdPerUnitMonth: 0.02 });
    // 786,496 / 1e9 x 0.02 = 1.572992e-5
    expect(j.storageUsdPerSequenceMonth).toBeCloseTo(1.572992e-5, 18);
  });

  it('recycled not faster: breakEvenMonths null and a reason, in JSON and in words', async () => {
    const args = GIVEN.map((a) => (a === '343' ? '700' : a));
    const j = JSON.parse(await er([...args, '--storage', 'cloud', '--json']));
    expect(j.breakEvenMonths).toBeNull();
    expect(j.minReprocessPerMonth).toBeNull();
    expect(j.reason).toMatch(/never pays/);
    const text = await er([...args, '--storage', 'cloud']);
    expect(text).toMatch(/No break-even: .*never pays/);
    expect(text).not.toMatch(/Break-even T =/);
  });
});

describe('er cost (words)', () => {
  it('explains how the answer was reached, with the numbers and the units', async () => {
    const text = await er([...GIVEN, '--storage', 'cloud', '--corpus-docs', '1000000', '--reprocess-per-month', '10']);
    expect(text).toMatch(/storage units: binary \(GiB = 2\^30 bytes\)/);
    expect(text).toMatch(/Bytes per sequence = 512 x 768 x 2 \(fp16\) \+ 64 \(record overhead\)/);
    expect(text).toMatch(/= 786,496 bytes/);
    expect(text).toMatch(/\(647 - 343\) ms \/ 128 \/ 3\.6e6 ms\/h x \$1\.4175\/h/);
    expect(text).toMatch(/Break-even T = .* = 0\.128 months/);
    expect(text).toMatch(/at least 7\.83 times a month/);
    expect(text).toMatch(/Corpus: 1,000,000 sequences/);
    expect(text).toMatch(/saves \$2\.03 a month/);
    expect(text).toMatch(/Assumptions:/);
  });
});

describe('er cost: errors name the flag and what it expects', () => {
  it.each([
    [['--baseline-ms', '0'], /--baseline-ms must be a positive number/],
    [['--baseline-ms', '-3'], /--baseline-ms must be a positive number/],
    [['--recycled-ms', 'fast'], /--recycled-ms must be a positive number .*got "fast"/],
    [['--batch-size', '1.5'], /--batch-size must be a positive integer/],
    [['--dtype', 'bf16'], /--dtype must be one of fp32, fp16, int8, got "bf16"/],
  ])('%j', async (bad, msg) => {
    const args = [...GIVEN];
    const i = args.indexOf(bad[0]);
    expect(i).toBeGreaterThanOrEqual(0);
    args[i + 1] = bad[1];
    await expect(er([...args, '--storage', 'cloud'])).rejects.toThrow(msg);
  });
  it('unknown storage preset', async () => {
    await expect(er([...GIVEN, '--storage', 's3'])).rejects.toThrow(/--storage must be one of cloud, local, got "s3"/);
  });
  it('missing storage price', async () => {
    await expect(er(GIVEN)).rejects.toThrow(/missing the storage price: --storage cloud\|local/);
  });
  it('missing compute price', async () => {
    await expect(er([...GIVEN.slice(0, 12), '--storage', 'cloud'])).rejects.toThrow(/missing the compute price: --gpu-hour-usd/);
  });
  it('both compute prices', async () => {
    await expect(er([...GIVEN, '--cpu-hour-usd', '1', '--storage', 'cloud'])).rejects.toThrow(/--gpu-hour-usd or --cpu-hour-usd, not both/);
  });
  it('missing times and shape, listed', async () => {
    await expect(er(['--storage', 'cloud', '--gpu-hour-usd', '1'])).rejects.toThrow(/missing --hidden, --seq-len, --batch-size, --baseline-ms, --recycled-ms/);
  });
  it('both corpus sizes', async () => {
    await expect(er([...GIVEN, '--storage', 'cloud', '--corpus-docs', '5', '--corpus-tokens', '5'])).rejects.toThrow(/--corpus-docs or --corpus-tokens, not both/);
  });
  it('measure-only flags without --measure', async () => {
    await expect(er([...GIVEN, '--storage', 'cloud', '--layer', '3'])).rejects.toThrow(/--layer: only used with --measure/);
  });
  it('--preset-table without a time source or a price', async () => {
    await expect(er(['--preset-table'])).rejects.toThrow(/--preset-table .* needs its price: --cpu-hour-usd X/);
  });
});

describe('er cost: the table', () => {
  const rowsFile = path.join(tmp, 'rows.json');
  beforeEach(() => {
    fs.writeFileSync(
      rowsFile,
      JSON.stringify([
        { name: 'BERT-base', dtype: 'fp16', batchSize: 128, baselineMs: 647, recycledMs: 343, hourUsd: 1.4175 },
        { name: 'BERT-large', batchSize: 128, baselineMs: 2000 },
        { name: 'custom-enc', hidden: 512, seqLen: 256, dtype: 'int8', batchSize: 32, baselineMs: 100, recycledMs: 120 },
      ]),
    );
  });
  afterEach(() => fs.rmSync(rowsFile, { force: true }));

  it('--rows FILE --json: cloud and local break-even per row, theory rows labelled, slower rows null', async () => {
    const j = JSON.parse(await er(['--rows', rowsFile, '--gpu-hour-usd', '1.4175', '--json']));
    expect(j.mode).toBe('table');
    expect(j.rows).toHaveLength(4); // BERT-base fp16; BERT-large fp16 + fp32 (no dtype given); custom-enc
    const base = j.rows[0];
    expect(base).toMatchObject({ name: 'BERT-base', hidden: 768, layers: 12, seqLen: 512, dtype: 'fp16', bytesPerSequence: 786_496, estimated: false });
    expect(base.breakEvenMonths.cloud).toBeCloseTo(0.12766961022052242, 12);
    expect(base.breakEvenMonths.local).toBeCloseTo(5.569718948129395, 10);
    const large = j.rows.filter((r: { name: string }) => r.name === 'BERT-large');
    expect(large.map((r: { dtype: string }) => r.dtype)).toEqual(['fp16', 'fp32']);
    for (const r of large) {
      expect(r.recycledMs).toBe(1000); // theory: 2000 / 2
      expect(r.estimated).toBe(true);
      expect(r.timeSource).toMatch(/estimated \(theory: recycled = baseline\/2\)/);
    }
    const slow = j.rows[3];
    expect(slow.breakEvenMonths).toEqual({ cloud: null, local: null });
    expect(slow.byStorage.cloud.reason).toMatch(/never pays/);
  });

  it('the table in words: cloud and local side by side, footnoted sources', async () => {
    const text = await er(['--rows', rowsFile, '--gpu-hour-usd', '1.4175']);
    expect(text).toMatch(/cloud: T months\s+local: T months/);
    expect(text).toMatch(/BERT-base\s+fp16\s+12\s+6\s+768\s+512\s+128.*0\.128\s+5\.57/);
    expect(text).toMatch(/never\s+never/);
    expect(text).toMatch(/estimated \(theory: recycled = baseline\/2\)/);
    expect(text).toMatch(/units: binary/);
  });

  it('--preset-table --rows FILE: the built-in rows, filled from the file where it has them', async () => {
    const j = JSON.parse(await er(['--preset-table', '--rows', rowsFile, '--gpu-hour-usd', '1.4175', '--json']));
    const names = j.rows.map((r: { name: string; dtype: string }) => `${r.name} ${r.dtype}`);
    expect(names.slice(0, 8)).toEqual([
      'MiniLM-L6-H384 fp16', 'MiniLM-L6-H384 fp32', 'MiniLM-L6-H768 fp16', 'MiniLM-L6-H768 fp32',
      'BERT-base fp16', 'BERT-base fp32', 'BERT-large fp16', 'BERT-large fp32',
    ]);
    expect(j.rows[0].timeSource).toBe('no times');
    expect(j.rows[0].breakEvenMonths).toEqual({});
    expect(j.rows[4].breakEvenMonths.cloud).toBeCloseTo(0.12766961022052242, 12);
    expect(names[8]).toBe('custom-enc int8');
  });

  it('--chart writes an SVG with both strategies, labelled axes and the break-even marked', async () => {
    const svg = path.join(tmp, 'table.svg');
    const text = await er(['--rows', rowsFile, '--gpu-hour-usd', '1.4175', '--chart', svg]);
    expect(text).toMatch(/chart written to/);
    const s = fs.readFileSync(svg, 'utf8');
    expect(s.startsWith('<svg')).toBe(true);
    expect(s.trim().endsWith('</svg>')).toBe(true);
    expect(s).toMatch(/recompute every time/);
    expect(s).toMatch(/store \(cloud\) \+ recycle/);
    expect(s).toMatch(/store \(local\) \+ recycle/);
    expect(s).toMatch(/reprocessings of the corpus per month \(log scale\)/);
    expect(s).toMatch(/USD per month \(log scale\)/);
    expect(s).toMatch(/break-even: every 0\.128 mo/);
    expect(s).toMatch(/never pays/);
    expect(s).not.toMatch(/NaN|Infinity|undefined/);
    // as many opening as closing text tags
    expect((s.match(/<text/g) ?? []).length).toBe((s.match(/<\/text>/g) ?? []).length);
  });

  it('single-row --chart', async () => {
    const svg = path.join(tmp, 'one.svg');
    const j = JSON.parse(await er([...GIVEN, '--storage', 'cloud', '--corpus-docs', '1000000', '--chart', svg, '--json']));
    expect(j.chart).toBe(svg);
    const s = fs.readFileSync(svg, 'utf8');
    expect(s).toMatch(/for the corpus of 1,000,000 sequences/);
    expect(s).toMatch(/break-even 7\.83\/month/);
  });

  it('rows file errors name the file, the row and the field', async () => {
    fs.writeFileSync(rowsFile, JSON.stringify([{ name: 'mystery', batchSize: 8, baselineMs: 10 }]));
    await expect(runCost({ rows: rowsFile, gpuHourUsd: '1' })).rejects.toThrow(/rows\.json: row 0: missing "hidden"/);
    fs.writeFileSync(rowsFile, JSON.stringify([{ name: 'BERT-base', batchSize: 8, baselineMs: -10 }]));
    await expect(runCost({ rows: rowsFile, gpuHourUsd: '1' })).rejects.toThrow(/row 0: "baselineMs" must be a positive number, got -10/);
    fs.writeFileSync(rowsFile, JSON.stringify([{ name: 'BERT-base', batchSize: 8, baselineMs: 10, dtype: 'bf16' }]));
    await expect(runCost({ rows: rowsFile, gpuHourUsd: '1' })).rejects.toThrow(/"dtype" must be one of fp32, fp16, int8/);
    fs.writeFileSync(rowsFile, JSON.stringify([{ name: 'BERT-base', batchSize: 8, baselineMs: 10 }]));
    await expect(runCost({ rows: rowsFile })).rejects.toThrow(/has no hourUsd: .*--gpu-hour-usd or --cpu-hour-usd/);
    fs.writeFileSync(rowsFile, '{oops');
    await expect(runCost({ rows: rowsFile })).rejects.toThrow(/not valid JSON/);
  });
});
