import * as fs from 'fs';
import * as path from 'path';
import type { Command } from 'commander';
import { renderChart, ChartPanel } from '../cost/chart';
import { bytes as fmtBytes, int, months, ms, pct, price, pricePerUnit, sig, table as alignTable, usd } from '../cost/format';
import { measureRecycling, recycledMs, RecyclingMeasurement } from '../cost/measure';
import {
  computeCost,
  CostInputs,
  CostResult,
  customPrice,
  Dtype,
  DTYPES,
  INT8_SCALE_BYTES_PER_TOKEN,
  presetPrice,
  RECORD_OVERHEAD_BYTES,
  StoragePreset,
  StoragePrice,
  STORAGE_PRESETS,
  units,
  UnitSystem,
  BYTES_PER_VALUE,
} from '../cost/model';
import { applyRows, computeTable, formatTable, measurePresetRows, presetRows, PRESET_SEQ_LEN, readRowsFile, tablePanels, TableRow } from '../cost/table';
import { DEFAULT_MODEL_DIR } from './demo';
import { makeDir } from '../util/fs';

/** The options of `er cost`, as commander hands them over (strings, unparsed). */
export interface CostCliOptions {
  hidden?: string;
  seqLen?: string;
  dtype?: string;
  batchSize?: string;
  baselineMs?: string;
  recycledMs?: string;
  gpuHourUsd?: string;
  cpuHourUsd?: string;
  storage?: string;
  storageUsdPerGibMonth?: string;
  storageUsdPerGbMonth?: string;
  decimal?: boolean;
  reprocessPerMonth?: string;
  corpusDocs?: string;
  corpusTokens?: string;
  measure?: boolean;
  model?: string;
  layer?: string;
  maxSeconds?: string;
  reps?: string;
  threads?: string;
  presetTable?: boolean;
  rows?: string;
  json?: boolean;
  chart?: string;
}

const DEFAULT_MEASURE_SEQ_LEN = 128;
const DEFAULT_MEASURE_BATCH = 8;
const DEFAULT_MAX_SECONDS = 30;
const DEFAULT_TABLE_MAX_SECONDS = 60;
const DEFAULT_REPS = 5;

const ASSUMPTIONS = [
  'the cache is written during a pass over the corpus that runs anyway (layer k is a by-product of the full encoder), so writing it costs no extra compute',
  'moving data between storage and compute is free',
  'the recycled time includes reading the cache (in measured mode: decoding it in memory; reading from disk is not measured)',
  'one cached sequence per document (--corpus-docs) or ceil(tokens / seq-len) sequences (--corpus-tokens)',
];

/** Parses a flag's value as a positive number (or integer); the error names the flag and what it expects. */
function positive(flag: string, v: string | undefined, what: string, integer = false): number | undefined {
  if (v === undefined) return undefined;
  const x = typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
  if (!Number.isFinite(x) || x <= 0 || (integer && !Number.isSafeInteger(x))) {
    throw new Error(`${flag} must be a positive ${integer ? 'integer' : 'number'} (${what}), got ${JSON.stringify(v)}`);
  }
  return x;
}

function nonNegativeInt(flag: string, v: string | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  const x = v.trim() !== '' ? Number(v) : NaN;
  if (!Number.isSafeInteger(x) || x < 0) throw new Error(`${flag} must be an integer >= 0 (${what}), got ${JSON.stringify(v)}`);
  return x;
}

function parseDtype(v: string | undefined): Dtype {
  const d = (v ?? 'fp16').toLowerCase();
  if (!DTYPES.includes(d as Dtype)) throw new Error(`--dtype must be one of ${DTYPES.join(', ')}, got ${JSON.stringify(v)}`);
  return d as Dtype;
}

/** Flags given (not undefined / false), as their command-line spelling. */
function given(o: CostCliOptions, keys: (keyof CostCliOptions)[]): string[] {
  return keys.filter((k) => o[k] !== undefined && o[k] !== false).map((k) => '--' + k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase()));
}

function hourPrice(o: CostCliOptions, required: string | null): { usd: number; of: 'gpu' | 'cpu' } | undefined {
  if (o.gpuHourUsd !== undefined && o.cpuHourUsd !== undefined) throw new Error('give --gpu-hour-usd or --cpu-hour-usd, not both');
  if (o.gpuHourUsd !== undefined) return { usd: positive('--gpu-hour-usd', o.gpuHourUsd, 'USD per GPU-hour') as number, of: 'gpu' };
  if (o.cpuHourUsd !== undefined) return { usd: positive('--cpu-hour-usd', o.cpuHourUsd, 'USD per CPU-machine-hour') as number, of: 'cpu' };
  if (required) throw new Error(`missing the compute price: ${required}`);
  return undefined;
}

function customStorage(o: CostCliOptions, system: UnitSystem): StoragePrice | undefined {
  if (o.storageUsdPerGibMonth !== undefined && o.storageUsdPerGbMonth !== undefined) {
    throw new Error('give --storage-usd-per-gib-month or --storage-usd-per-gb-month, not both');
  }
  if (o.storageUsdPerGibMonth !== undefined) return customPrice(positive('--storage-usd-per-gib-month', o.storageUsdPerGibMonth, 'USD per GiB-month') as number, 'GiB', system);
  if (o.storageUsdPerGbMonth !== undefined) return customPrice(positive('--storage-usd-per-gb-month', o.storageUsdPerGbMonth, 'USD per GB-month') as number, 'GB', system);
  return undefined;
}

function storagePrice(o: CostCliOptions, system: UnitSystem): StoragePrice {
  const custom = customStorage(o, system);
  if (o.storage !== undefined && custom) throw new Error('give --storage or a custom storage price (--storage-usd-per-gib-month / --storage-usd-per-gb-month), not both');
  if (custom) return custom;
  if (o.storage === undefined) {
    throw new Error(`missing the storage price: --storage ${STORAGE_PRESETS.join('|')} or --storage-usd-per-gib-month X (or --storage-usd-per-gb-month X)`);
  }
  const p = o.storage.toLowerCase();
  if (!STORAGE_PRESETS.includes(p as StoragePreset)) {
    throw new Error(`--storage must be one of ${STORAGE_PRESETS.join(', ')}, got ${JSON.stringify(o.storage)} (for another price use --storage-usd-per-gib-month X)`);
  }
  return presetPrice(p as StoragePreset, system);
}

function bounds(o: CostCliOptions, defaultMax: number): { reps: number; maxSeconds: number; threads?: number } {
  return {
    reps: positive('--reps', o.reps, 'timed repetitions at most', true) ?? DEFAULT_REPS,
    maxSeconds: positive('--max-seconds', o.maxSeconds, 'time bound of the measurement in seconds') ?? defaultMax,
    threads: positive('--threads', o.threads, 'native threads', true),
  };
}

function writeChart(file: string, panels: ChartPanel[], title: string, yLabel: string, note: string): string {
  if (panels.length === 0) throw new Error('--chart: no row has times to chart');
  const svg = renderChart(panels, { title, yLabel, note });
  const abs = path.resolve(file);
  try {
    makeDir(path.dirname(abs));
    fs.writeFileSync(abs, svg);
  } catch (err) {
    throw new Error(`--chart ${file}: cannot write (${(err as Error).message})`);
  }
  return abs;
}

// ---------------------------------------------------------------------------- one row

/** The explanation of one answer, with the numbers, for people. */
export function explain(inputs: CostInputs, r: CostResult, hourOf: 'gpu' | 'cpu', m?: RecyclingMeasurement): string {
  const system = inputs.storage.units;
  const u = units(system);
  const out: string[] = [];
  const add = (s = ''): void => { out.push(s); };
  add(`Cost model of embedding recycling (${m ? 'times measured here' : 'times given'}); storage units: ${system} (${u.unit} = ${system === 'binary' ? '2^30' : '10^9'} bytes)`);
  add();
  if (m) {
    add(`Measured with this engine on this machine: ${m.model}, ${m.layers} layers, cache layer k = ${m.layer}, hidden ${m.hidden},`);
    add(`  ${m.threads} threads, batch ${m.batchSize} x ${m.seqLen} tokens, median of ${m.repetitions} repetition(s) after ${m.warmup} warm-up${m.stoppedBy === 'max-seconds' ? ` (stopped by --max-seconds ${m.maxSeconds})` : ''}:`);
    const rows = [
      [`  plain encoder (embeddings + layers 1..${m.layers})`, ms(m.baselineMs), 'a batch'],
      [`  recycled: layers ${m.layer + 1}..${m.layers} from the cache`, ms(m.suffixMs), ''],
      [`          + decoding the ${inputs.dtype} cache to fp32`, ms(m.cacheDecodeMs[inputs.dtype] as number), '(in memory, the store\'s native decode; disk reads not measured)'],
      ['          = recycled', ms(inputs.recycledMs), 'a batch'],
    ];
    add(alignTable(rows, ['l', 'r', 'l']));
    add();
  }
  add(`Inputs: hidden ${inputs.hidden}, ${inputs.seqLen} tokens a sequence, cache dtype ${inputs.dtype}, batch ${inputs.batchSize}`);
  add(`  plain encoder ${ms(inputs.baselineMs)}, recycled ${ms(inputs.recycledMs)} a batch (speed-up ${pct(r.speedup)})`);
  add(`  compute ${price(inputs.hourUsd)} per ${hourOf.toUpperCase()}-hour; storage ${pricePerUnit(inputs.storage.usdPerUnitMonth, system)} (${inputs.storage.description})`);
  add();
  const bpv = BYTES_PER_VALUE[inputs.dtype];
  const scales = inputs.dtype === 'int8' ? ` + ${inputs.seqLen} x ${INT8_SCALE_BYTES_PER_TOKEN} (per-token scales)` : '';
  add(`1. Bytes per sequence = ${inputs.seqLen} x ${inputs.hidden} x ${bpv} (${inputs.dtype})${scales} + ${RECORD_OVERHEAD_BYTES} (record overhead)`);
  add(`     = ${int(r.bytesPerSequence)} bytes (${fmtBytes(r.bytesPerSequence, system)})`);
  add(`2. Storage per sequence-month = ${int(r.bytesPerSequence)} bytes / ${int(u.unitBytes)} bytes per ${u.unit} x ${price(inputs.storage.usdPerUnitMonth)} = ${usd(r.storageUsdPerSequenceMonth)}`);
  add(`3. Compute saved per sequence per reprocessing = (${sig(inputs.baselineMs, 6)} - ${sig(inputs.recycledMs, 6)}) ms / ${inputs.batchSize} / 3.6e6 ms/h x ${price(inputs.hourUsd)}/h`);
  add(`     = ${usd(r.savedUsdPerSequenceReprocess)} (${sig(r.savedMsPerSequence, 3)} ms of compute)`);
  if (r.breakEvenMonths === null) {
    add(`4. No break-even: ${r.reason}.`);
  } else {
    add(`4. Break-even T = saved / storage = ${usd(r.savedUsdPerSequenceReprocess)} / ${usd(r.storageUsdPerSequenceMonth)} = ${months(r.breakEvenMonths)}`);
    add(`   => the cache pays if the corpus is reprocessed at least once every ${sig(r.breakEvenMonths, 3)} months,`);
    add(`      i.e. at least ${sig(r.minReprocessPerMonth as number, 3)} times a month; less often, recomputing is cheaper.`);
  }
  if (r.atRate) {
    const a = r.atRate;
    add(`5. At ${sig(a.reprocessPerMonth, 3)} reprocessing(s) a month: saving = ${sig(a.reprocessPerMonth, 3)} x ${usd(r.savedUsdPerSequenceReprocess)} - ${usd(r.storageUsdPerSequenceMonth)}`);
    add(`     = ${usd(a.monthlySavingUsdPerSequence)} per sequence-month (${a.pays ? 'recycling pays' : 'a loss: recomputing is cheaper'})`);
  }
  if (r.corpus) {
    const c = r.corpus;
    add();
    add(`Corpus: ${int(c.sequences)} sequences${c.from === 'tokens' ? ` (ceil(${int(c.tokens as number)} tokens / ${inputs.seqLen}))` : ''}`);
    add(`  cache size ${fmtBytes(c.bytes, system)}, storage ${usd(c.storageUsdPerMonth)} a month`);
    add(`  a full pass of the plain encoder costs ${usd(c.baselineUsdPerReprocess)}; recycling saves ${usd(c.savedUsdPerReprocess)} (${sig(c.computeHoursSavedPerReprocess, 3)} ${hourOf.toUpperCase()}-hours) per reprocessing`);
    if (c.monthlySavingUsd !== undefined) add(`  at ${sig(r.atRate!.reprocessPerMonth, 3)} reprocessing(s) a month: ${c.monthlySavingUsd >= 0 ? 'saves' : 'loses'} ${usd(Math.abs(c.monthlySavingUsd))} a month`);
  }
  add();
  add('Assumptions: ' + ASSUMPTIONS.join('; ') + '.');
  return out.join('\n') + '\n';
}

function singlePanel(inputs: CostInputs, r: CostResult, perSequences: number, label: string): ChartPanel {
  return {
    title: `hidden ${inputs.hidden}, ${inputs.seqLen} tokens, ${inputs.dtype} cache`,
    subtitle: `${ms(inputs.baselineMs)} -> ${ms(inputs.recycledMs)} per batch of ${inputs.batchSize}; ${label}`,
    recompute: { label: 'recompute every time', color: '#d62728', fixedUsdPerMonth: 0, usdPerReprocess: r.baselineUsdPerSequence * perSequences },
    recycle: [
      {
        label: `store (${inputs.storage.source}) + recycle`,
        color: '#1f77b4',
        fixedUsdPerMonth: r.storageUsdPerSequenceMonth * perSequences,
        usdPerReprocess: r.recycledUsdPerSequence * perSequences,
      },
    ],
  };
}

async function runSingle(o: CostCliOptions, progress: (s: string) => void): Promise<string> {
  const system: UnitSystem = o.decimal ? 'decimal' : 'binary';
  const measured = !!o.measure;
  const priceHint = measured
    ? "--cpu-hour-usd X (this engine runs on the CPU; give this machine's price per hour) or --gpu-hour-usd X"
    : '--gpu-hour-usd X or --cpu-hour-usd X (the price per hour of the machine the times were measured on)';
  if (measured) {
    const conflicts = given(o, ['baselineMs', 'recycledMs', 'hidden']);
    if (conflicts.length) throw new Error(`${conflicts.join(', ')}: not used with --measure (the times and hidden size come from the model)`);
  } else {
    const stray = given(o, ['model', 'layer', 'maxSeconds', 'reps', 'threads']);
    if (stray.length) throw new Error(`${stray.join(', ')}: only used with --measure`);
    const need: (keyof CostCliOptions)[] = ['hidden', 'seqLen', 'batchSize', 'baselineMs', 'recycledMs'];
    const missing = need.filter((k) => o[k] === undefined).map((k) => '--' + k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase()));
    if (missing.length) {
      throw new Error(
        `missing ${missing.join(', ')}: the given-times form needs --hidden --seq-len --batch-size --baseline-ms --recycled-ms, ` +
          'a compute price and a storage price (or use --measure to time this engine, or --preset-table / --rows FILE for a table)',
      );
    }
  }
  const dtype = parseDtype(o.dtype);
  const hour = hourPrice(o, priceHint) as { usd: number; of: 'gpu' | 'cpu' };
  const storage = storagePrice(o, system);
  const corpusDocs = positive('--corpus-docs', o.corpusDocs, 'number of documents, one cached sequence each', true);
  const corpusTokens = positive('--corpus-tokens', o.corpusTokens, 'number of tokens in the corpus', true);
  if (corpusDocs !== undefined && corpusTokens !== undefined) throw new Error('give --corpus-docs or --corpus-tokens, not both');
  const reprocessPerMonth = positive('--reprocess-per-month', o.reprocessPerMonth, 'reprocessings of the corpus per month');
  let seqLen = positive('--seq-len', o.seqLen, 'tokens per sequence', true);
  let batchSize = positive('--batch-size', o.batchSize, 'sequences per batch', true);

  let measurement: RecyclingMeasurement | undefined;
  let hidden: number;
  let baselineMs: number;
  let recycled: number;
  if (measured) {
    seqLen ??= DEFAULT_MEASURE_SEQ_LEN;
    batchSize ??= DEFAULT_MEASURE_BATCH;
    const model = o.model ?? DEFAULT_MODEL_DIR;
    if (!fs.existsSync(model)) throw new Error(`--model ${model}: no such directory${o.model ? '' : '; run `npm run fetch-model` first or pass --model DIR'}`);
    const layer = nonNegativeInt('--layer', o.layer, 'the layer whose output is cached');
    const b = bounds(o, DEFAULT_MAX_SECONDS);
    progress(`measuring ${model}: batch ${batchSize} x ${seqLen} tokens, up to ${b.reps} repetitions or ${b.maxSeconds} s`);
    try {
      measurement = await measureRecycling({ model, layer, batchSize, seqLen, dtypes: [dtype], ...b });
    } catch (err) {
      const msg = (err as Error).message;
      if (/^layer must be/.test(msg)) throw new Error(`--layer: ${msg.replace(/^layer /, '')}`);
      if (/^sequence length must be/.test(msg)) throw new Error(`--seq-len: ${msg.replace(/^sequence length /, '')}`);
      throw err;
    }
    hidden = measurement.hidden;
    baselineMs = measurement.baselineMs;
    recycled = recycledMs(measurement, dtype);
  } else {
    hidden = positive('--hidden', o.hidden, 'hidden size of the encoder', true) as number;
    baselineMs = positive('--baseline-ms', o.baselineMs, 'ms per batch of the plain encoder') as number;
    recycled = positive('--recycled-ms', o.recycledMs, 'ms per batch with recycling') as number;
  }
  const inputs: CostInputs = {
    hidden,
    seqLen: seqLen as number,
    dtype,
    batchSize: batchSize as number,
    baselineMs,
    recycledMs: recycled,
    hourUsd: hour.usd,
    storage,
    reprocessPerMonth,
    corpusDocs,
    corpusTokens,
  };
  const r = computeCost(inputs);
  let chart: string | undefined;
  if (o.chart) {
    const per = r.corpus?.sequences ?? 1e6;
    const label = r.corpus ? `for the corpus of ${int(per)} sequences` : `per ${int(per)} sequences`;
    chart = writeChart(
      o.chart,
      [singlePanel(inputs, r, per, label)],
      'Monthly cost: recompute every time vs store + recycle',
      label,
      `compute ${price(hour.usd)} per ${hour.of.toUpperCase()}-hour; storage ${pricePerUnit(storage.usdPerUnitMonth, system)} (${storage.source}); ${system} units`,
    );
  }
  if (o.json) {
    const { storage: s, ...rest } = inputs;
    const json = {
      mode: measured ? 'measured' : 'given',
      units: system,
      unit: units(system).unit,
      inputs: { ...rest, hourPriceOf: hour.of, storage: s, ...(measurement ? { model: measurement.model, layer: measurement.layer, layers: measurement.layers } : {}) },
      ...r,
      ...(measurement ? { measurement } : {}),
      assumptions: ASSUMPTIONS,
      ...(chart ? { chart } : {}),
    };
    return JSON.stringify(json, null, 2) + '\n';
  }
  return explain(inputs, r, hour.of, measurement) + (chart ? `\nchart written to ${chart}\n` : '');
}

// ---------------------------------------------------------------------------- table

async function runTable(o: CostCliOptions, progress: (s: string) => void): Promise<string> {
  const system: UnitSystem = o.decimal ? 'decimal' : 'binary';
  const stray = given(o, ['hidden', 'baselineMs', 'recycledMs', 'dtype', 'layer', 'storage', 'corpusDocs', 'corpusTokens', 'reprocessPerMonth']);
  if (stray.length) {
    throw new Error(`${stray.join(', ')}: not used with the table (its rows give the shapes and times; it shows cloud and local storage side by side, plus a custom price if given)`);
  }
  const storage: Record<string, StoragePrice> = { cloud: presetPrice('cloud', system), local: presetPrice('local', system) };
  const custom = customStorage(o, system);
  if (custom) storage.custom = custom;
  const hour = hourPrice(o, null);
  const fileRows: TableRow[] | undefined = o.rows !== undefined ? readRowsFile(o.rows) : undefined;
  let rows: TableRow[];
  const measurements: Awaited<ReturnType<typeof measurePresetRows>>['measurements'] = [];
  if (o.presetTable) {
    const seqLen = positive('--seq-len', o.seqLen, 'tokens per sequence', true) ?? PRESET_SEQ_LEN;
    rows = presetRows(seqLen);
    if (fileRows) rows = applyRows(rows, fileRows);
    const measure = o.measure || !fileRows;
    if (measure && rows.some((r) => r.timeSource === 'no times')) {
      if (!hour) {
        throw new Error(
          '--preset-table measures the table\'s shapes with this engine on this machine and needs its price: --cpu-hour-usd X ' +
            '(or --gpu-hour-usd X); or give the times with --rows FILE',
        );
      }
      const batchSize = positive('--batch-size', o.batchSize, 'sequences per batch', true) ?? DEFAULT_MEASURE_BATCH;
      const b = bounds(o, DEFAULT_TABLE_MAX_SECONDS);
      const model = o.model ?? DEFAULT_MODEL_DIR;
      const m = await measurePresetRows(rows, { batchSize, seqLen, ...b, minilmDir: model, progress });
      rows = m.rows;
      measurements.push(...m.measurements);
    } else {
      const stray2 = given(o, ['batchSize', 'model', 'maxSeconds', 'reps', 'threads']);
      if (stray2.length) throw new Error(`${stray2.join(', ')}: only used when the table is measured (--measure)`);
    }
  } else {
    const stray2 = given(o, ['measure', 'seqLen', 'batchSize', 'model', 'maxSeconds', 'reps', 'threads']);
    if (stray2.length) throw new Error(`${stray2.join(', ')}: only used with --preset-table (a --rows table takes everything from its file)`);
    rows = fileRows as TableRow[];
  }
  const t = computeTable(rows, storage, hour);
  t.measurements = measurements;
  let chart: string | undefined;
  if (o.chart) {
    chart = writeChart(
      o.chart,
      tablePanels(t),
      'Monthly cost against reprocessing frequency: recompute every time vs store + recycle',
      'per 1,000,000 sequences',
      `${hour ? `compute ${price(hour.usd)} per ${hour.of.toUpperCase()}-hour (rows without hourUsd); ` : ''}storage: cloud ${pricePerUnit(storage.cloud.usdPerUnitMonth, system)}, local ${pricePerUnit(storage.local.usdPerUnitMonth, system)}${custom ? `, custom ${pricePerUnit(custom.usdPerUnitMonth, system)}` : ''}; ${system} units; cache layer k = N/2`,
    );
  }
  if (o.json) return JSON.stringify({ ...t, ...(chart ? { chart } : {}) }, null, 2) + '\n';
  return formatTable(t) + (chart ? `\nchart written to ${chart}\n` : '');
}

/**
 * Runs `er cost` with commander's options and returns what it prints on stdout.
 * Progress lines of the measured modes go to `progress` (stderr in the CLI).
 */
export async function runCost(o: CostCliOptions, progress: (line: string) => void = () => undefined): Promise<string> {
  if (o.presetTable || o.rows !== undefined) return runTable(o, progress);
  return runSingle(o, progress);
}

/** `er cost`: when does a cache of layer-k activations pay for itself? */
export function registerCost(program: Command): void {
  program
    .command('cost')
    .description(
      'when does a cache pay for itself: bytes per sequence, storage per month, compute saved per reprocessing, ' +
        'and the break-even (reprocess at least once every T months), from given or measured times',
    )
    .option('--hidden <n>', 'hidden size of the encoder (given-times form)')
    .option('--seq-len <n>', `tokens per sequence (measured default ${DEFAULT_MEASURE_SEQ_LEN}; table default ${PRESET_SEQ_LEN})`)
    .option('--dtype <dtype>', `cache dtype: ${DTYPES.join(', ')} (default fp16)`)
    .option('--batch-size <n>', `sequences per batch the times are for (measured default ${DEFAULT_MEASURE_BATCH})`)
    .option('--baseline-ms <ms>', 'ms per batch of the plain encoder (all N layers)')
    .option('--recycled-ms <ms>', 'ms per batch with recycling (reading the cache + layers k+1..N)')
    .option('--gpu-hour-usd <usd>', 'compute price, USD per GPU-hour (the original analysis: 5.67 / 4 = 1.4175, one A10G)')
    .option('--cpu-hour-usd <usd>', 'compute price, USD per hour of the CPU machine')
    .option('--storage <preset>', `storage price preset: cloud ($0.01 per GiB-month) or local ($16.9 per TiB over 6 years)`)
    .option('--storage-usd-per-gib-month <usd>', 'storage price, USD per GiB-month (instead of --storage)')
    .option('--storage-usd-per-gb-month <usd>', 'storage price, USD per GB-month (instead of --storage)')
    .option('--decimal', 'decimal units (GB, TB; presets quoted per GB / TB) instead of binary (GiB, TiB)')
    .option('--reprocess-per-month <r>', 'reprocessings of the corpus per month, for the monthly saving')
    .option('--corpus-docs <n>', 'corpus size in documents (one cached sequence each), for totals')
    .option('--corpus-tokens <n>', 'corpus size in tokens (ceil(tokens / seq-len) sequences), for totals')
    .option('--measure', 'time the plain encoder and the recycled path with this engine on this machine')
    .option('--model <dir>', 'model directory for --measure (default models/all-MiniLM-L6-v2)')
    .option('--layer <k>', 'cached layer k for --measure (default N/2)')
    .option('--max-seconds <s>', `time bound of the measurement (default ${DEFAULT_MAX_SECONDS}; table ${DEFAULT_TABLE_MAX_SECONDS})`)
    .option('--reps <n>', `timed repetitions at most, median taken (default ${DEFAULT_REPS})`)
    .option('--threads <n>', 'native threads for the measurement (default: every core)')
    .option('--preset-table', 'table of MiniLM-L6-H384, MiniLM-L6-H768, BERT-base, BERT-large at 512 tokens in fp16 and fp32 (measured here unless --rows gives times)')
    .option('--rows <file.json>', 'table rows [{name, hidden, seqLen, dtype, batchSize, baselineMs, recycledMs, hourUsd}]')
    .option('--json', 'print one JSON object')
    .option('--chart <file.svg>', 'write an SVG chart of monthly cost against reprocessing frequency, break-even marked')
    .action(async (opts: CostCliOptions) => {
      const text = await runCost(opts, (line) => process.stderr.write(`er cost: ${line}\n`));
      process.stdout.write(text);
    });
}

