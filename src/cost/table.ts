/**
 * The table mode of the cost model: several model shapes and cache dtypes at once,
 * with the break-even for cloud and local storage side by side.
 *
 * Times come, per row, from (in this order): a rows file the user gives; this
 * engine on this machine (measured); or nowhere (the row says so). A row that gives
 * a baseline but no recycled time gets the theoretical one for k = N/2,
 * recycled = baseline / 2, and is labelled "estimated (theory: recycled = baseline/2)".
 */
import * as fs from 'fs';
import * as path from 'path';
import { readModelConfig } from '../model/checkpoint';
import { ChartPanel } from './chart';
import { int, ms, pct, price, pricePerUnit, sig, table as alignTable } from './format';
import { BenchBounds, extrapolate, LayerMeasurement, measureLayerShape, measureRecycling, recycledMs, RecyclingMeasurement } from './measure';
import { bytesPerSequence, computeCost, CostResult, Dtype, DTYPES, INT8_SCALE_BYTES_PER_TOKEN, RECORD_OVERHEAD_BYTES, StoragePrice, units, UnitSystem } from './model';

/** A model shape of the built-in table. */
export interface PresetShape {
  name: string;
  hidden: number;
  layers: number;
  heads: number;
  intermediate: number;
}

/** The shapes of the original analysis and of the models this project runs. */
export const PRESET_SHAPES: readonly PresetShape[] = [
  { name: 'MiniLM-L6-H384', hidden: 384, layers: 6, heads: 12, intermediate: 1536 },
  { name: 'MiniLM-L6-H768', hidden: 768, layers: 6, heads: 12, intermediate: 3072 },
  { name: 'BERT-base', hidden: 768, layers: 12, heads: 12, intermediate: 3072 },
  { name: 'BERT-large', hidden: 1024, layers: 24, heads: 16, intermediate: 4096 },
];
/** Tokens per sequence of the built-in table (as in the original analysis). */
export const PRESET_SEQ_LEN = 512;
/** Cache dtypes of the built-in table. */
export const PRESET_DTYPES: readonly Dtype[] = ['fp16', 'fp32'];

export const THEORY_LABEL = 'estimated (theory: recycled = baseline/2)';

/** Where a price per hour applies. */
export type HourPriceOf = 'gpu' | 'cpu' | 'row';

/** One row of the table, with its times resolved (or missing). */
export interface TableRow {
  name: string;
  hidden: number;
  /** N, when known */
  layers?: number;
  seqLen: number;
  dtype: Dtype;
  batchSize?: number;
  baselineMs?: number;
  recycledMs?: number;
  hourUsd?: number;
  /** where the times came from, for people */
  timeSource: string;
  /** true when recycledMs is the theoretical baseline / 2 */
  estimated: boolean;
}

/** A computed row: per storage price, the model's answer (absent when the row has no times). */
export interface TableResultRow extends TableRow {
  bytesPerSequence: number;
  /** T in months per storage price name; null = never pays; undefined = no times */
  breakEvenMonths: Record<string, number | null | undefined>;
  byStorage?: Record<string, CostResult>;
}

export interface TableResult {
  mode: 'table';
  units: UnitSystem;
  storage: Record<string, StoragePrice>;
  /** the price flag's, used for rows that give no hourUsd */
  hourPrice?: { usd: number; of: 'gpu' | 'cpu' };
  rows: TableResultRow[];
  measurements: (RecyclingMeasurement | LayerMeasurement)[];
}

function field(where: string, row: Record<string, unknown>, key: string, kind: 'int' | 'num' | 'str', required: boolean): number | string | undefined {
  const v = row[key];
  if (v === undefined || v === null) {
    if (required) throw new Error(`${where}: missing "${key}"`);
    return undefined;
  }
  if (kind === 'str') {
    if (typeof v !== 'string' || v === '') throw new Error(`${where}: "${key}" must be a non-empty string, got ${JSON.stringify(v)}`);
    return v;
  }
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || (kind === 'int' && !Number.isSafeInteger(v))) {
    throw new Error(`${where}: "${key}" must be a positive ${kind === 'int' ? 'integer' : 'number'}, got ${JSON.stringify(v)}`);
  }
  return v;
}

/**
 * Reads rows `{name, hidden, seqLen, dtype, batchSize, baselineMs, recycledMs, hourUsd}`
 * from JSON text (an array, or an object with a "rows" array). A row named like a
 * built-in shape may leave out hidden (and layers); seqLen defaults to 512 for them;
 * a row without dtype stands for fp16 and fp32; a row without recycledMs gets the
 * theoretical baseline / 2, labelled; a row without hourUsd takes the price flag's.
 */
export function parseRows(text: string, file = 'rows file'): TableRow[] {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`${file}: not valid JSON (${(err as Error).message})`);
  }
  const list = Array.isArray(json) ? json : (json as { rows?: unknown })?.rows;
  if (!Array.isArray(list) || list.length === 0) throw new Error(`${file}: expected a non-empty JSON array of rows (or {"rows": [...]})`);
  const out: TableRow[] = [];
  list.forEach((raw, i) => {
    const where = `${file}: row ${i}`;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error(`${where}: expected an object`);
    const r = raw as Record<string, unknown>;
    const name = field(where, r, 'name', 'str', true) as string;
    const preset = PRESET_SHAPES.find((p) => p.name.toLowerCase() === name.toLowerCase());
    const hidden = (field(where, r, 'hidden', 'int', !preset) as number | undefined) ?? (preset as PresetShape).hidden;
    const layers = (field(where, r, 'layers', 'int', false) as number | undefined) ?? preset?.layers;
    const seqLen = (field(where, r, 'seqLen', 'int', !preset) as number | undefined) ?? PRESET_SEQ_LEN;
    const batchSize = field(where, r, 'batchSize', 'int', true) as number;
    const baselineMs = field(where, r, 'baselineMs', 'num', true) as number;
    const recycled = field(where, r, 'recycledMs', 'num', false) as number | undefined;
    const hourUsd = field(where, r, 'hourUsd', 'num', false) as number | undefined;
    const source = (field(where, r, 'source', 'str', false) as string | undefined) ?? `given in ${path.basename(file)}`;
    let dtypes: readonly Dtype[] = PRESET_DTYPES;
    if (r.dtype !== undefined) {
      if (typeof r.dtype !== 'string' || !DTYPES.includes(r.dtype as Dtype)) {
        throw new Error(`${where}: "dtype" must be one of ${DTYPES.join(', ')}, got ${JSON.stringify(r.dtype)}`);
      }
      dtypes = [r.dtype as Dtype];
    }
    for (const dtype of dtypes) {
      out.push({
        name: preset?.name ?? name,
        hidden,
        layers,
        seqLen,
        dtype,
        batchSize,
        baselineMs,
        recycledMs: recycled ?? baselineMs / 2,
        hourUsd,
        timeSource: recycled === undefined ? `${source}; ${THEORY_LABEL}` : source,
        estimated: recycled === undefined,
      });
    }
  });
  return out;
}

/** Reads a rows file, with errors naming it. */
export function readRowsFile(file: string): TableRow[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`--rows ${file}: cannot read (${(err as Error).message})`);
  }
  return parseRows(text, file);
}

/** The built-in rows (4 shapes x fp16, fp32) with no times yet. */
export function presetRows(seqLen = PRESET_SEQ_LEN): TableRow[] {
  return PRESET_SHAPES.flatMap((s) =>
    PRESET_DTYPES.map((dtype) => ({ name: s.name, hidden: s.hidden, layers: s.layers, seqLen, dtype, timeSource: 'no times', estimated: false })),
  );
}

/** Fills built-in rows with the matching rows of a file (same name, same dtype); the file's other rows follow. */
export function applyRows(base: TableRow[], given: TableRow[]): TableRow[] {
  const same = (a: TableRow, b: TableRow): boolean => a.name.toLowerCase() === b.name.toLowerCase() && a.dtype === b.dtype;
  const filled = base.map((row) => {
    const g = given.find((r) => same(r, row));
    return g ? { ...g, layers: g.layers ?? row.layers } : row;
  });
  return [...filled, ...given.filter((g) => !base.some((b) => same(b, g)))];
}

export interface PresetMeasureOptions extends BenchBounds {
  batchSize: number;
  seqLen: number;
  threads?: number;
  /** the real all-MiniLM-L6-v2, measured as is for the MiniLM-L6-H384 row when present */
  minilmDir?: string;
  /** progress lines */
  progress?: (line: string) => void;
}

/**
 * Measures the built-in shapes with this engine on this machine (k = N/2):
 * MiniLM-L6-H384 on the real model when `minilmDir` holds it, the others (and
 * MiniLM without the model) from one layer of their shape on synthetic weights,
 * extrapolated to N layers. `maxSeconds` bounds the whole run.
 */
export async function measurePresetRows(rows: TableRow[], opts: PresetMeasureOptions): Promise<{ rows: TableRow[]; measurements: (RecyclingMeasurement | LayerMeasurement)[] }> {
  const maxSeconds = opts.maxSeconds ?? 60;
  const want = PRESET_SHAPES.filter((s) => rows.some((r) => r.name === s.name && r.timeSource === 'no times'));
  const real = opts.minilmDir && hasShape(opts.minilmDir, PRESET_SHAPES[0]) ? opts.minilmDir : undefined;
  const jobs: { key: string; run: (budget: number) => Promise<RecyclingMeasurement | LayerMeasurement> }[] = [];
  const bounds = (budget: number): BenchBounds => ({ warmup: opts.warmup, reps: opts.reps, maxSeconds: budget });
  const layerKey = (s: PresetShape): string => `${s.hidden}/${s.heads}/${s.intermediate}`;
  for (const s of want) {
    if (s.name === PRESET_SHAPES[0].name && real) {
      jobs.push({
        key: s.name,
        run: (b) => measureRecycling({ model: real, layer: s.layers / 2, batchSize: opts.batchSize, seqLen: opts.seqLen, dtypes: ['fp32', 'fp16'], threads: opts.threads, ...bounds(b) }),
      });
    } else if (!jobs.some((j) => j.key === layerKey(s))) {
      jobs.push({
        key: layerKey(s),
        run: (b) => measureLayerShape(s, { batchSize: opts.batchSize, seqLen: opts.seqLen, dtypes: ['fp32', 'fp16'], threads: opts.threads, ...bounds(b) }),
      });
    }
  }
  const results = new Map<string, RecyclingMeasurement | LayerMeasurement>();
  const start = performance.now();
  for (let i = 0; i < jobs.length; i++) {
    const left = maxSeconds - (performance.now() - start) / 1000;
    const budget = Math.max(0.001, left / (jobs.length - i));
    opts.progress?.(`measuring ${jobs[i].key.includes('/') ? `one layer of hidden ${jobs[i].key.split('/')[0]} (synthetic weights)` : `${jobs[i].key} (${real})`}, batch ${opts.batchSize} x ${opts.seqLen} tokens, up to ${budget.toFixed(0)} s`);
    results.set(jobs[i].key, await jobs[i].run(budget));
  }
  const out = rows.map((row) => {
    const s = PRESET_SHAPES.find((p) => p.name === row.name);
    if (!s || row.timeSource !== 'no times') return row;
    const k = s.layers / 2;
    const direct = results.get(s.name);
    if (direct && direct.kind === 'model') {
      return {
        ...row,
        batchSize: opts.batchSize,
        baselineMs: direct.baselineMs,
        recycledMs: recycledMs(direct, row.dtype),
        timeSource: `measured: ${path.basename(direct.model)} with this engine on this machine`,
        estimated: false,
      };
    }
    const m = results.get(layerKey(s)) as LayerMeasurement;
    const t = extrapolate(m, s.layers, k, row.dtype);
    return {
      ...row,
      batchSize: opts.batchSize,
      ...t,
      timeSource: 'measured: one layer of this shape (synthetic weights) with this engine on this machine, extrapolated to N layers',
      estimated: false,
    };
  });
  return { rows: out, measurements: [...results.values()] };
}

function hasShape(dir: string, s: PresetShape): boolean {
  try {
    if (!fs.existsSync(path.join(dir, 'model.safetensors'))) return false;
    const { shape } = readModelConfig(dir);
    return shape.hidden === s.hidden && shape.layers === s.layers && shape.heads === s.heads && shape.intermediate === s.intermediate;
  } catch {
    return false;
  }
}

/** Runs the model for every row and storage price. Rows without times get no results. */
export function computeTable(rows: TableRow[], storage: Record<string, StoragePrice>, hourPrice?: { usd: number; of: 'gpu' | 'cpu' }): TableResult {
  const system = Object.values(storage)[0]?.units ?? 'binary';
  const out: TableResultRow[] = rows.map((row) => {
    const hourUsd = row.hourUsd ?? hourPrice?.usd;
    const r: TableResultRow = { ...row, hourUsd, bytesPerSequence: bytesPerSequence(row.hidden, row.seqLen, row.dtype), breakEvenMonths: {} };
    const hasTimes = row.baselineMs !== undefined && row.recycledMs !== undefined && row.batchSize !== undefined;
    if (hasTimes && hourUsd === undefined) {
      throw new Error(`row ${row.name} ${row.dtype} has no hourUsd: give it in the rows file or set a price with --gpu-hour-usd or --cpu-hour-usd`);
    }
    for (const key of Object.keys(storage)) r.breakEvenMonths[key] = undefined;
    if (hasTimes) {
      r.byStorage = {};
      for (const [key, price] of Object.entries(storage)) {
        const c = computeCost({
          hidden: row.hidden,
          seqLen: row.seqLen,
          dtype: row.dtype,
          batchSize: row.batchSize as number,
          baselineMs: row.baselineMs as number,
          recycledMs: row.recycledMs as number,
          hourUsd: hourUsd as number,
          storage: price,
        });
        r.byStorage[key] = c;
        r.breakEvenMonths[key] = c.breakEvenMonths;
      }
    }
    return r;
  });
  return { mode: 'table', units: system, storage, hourPrice, rows: out, measurements: [] };
}

/** The table for people: one line per row, break-even months per storage price side by side, with footnotes. */
export function formatTable(t: TableResult): string {
  const u = units(t.units);
  const keys = Object.keys(t.storage);
  const notes: string[] = [];
  const note = (s: string): string => {
    let i = notes.indexOf(s);
    if (i < 0) i = notes.push(s) - 1;
    return `(${String.fromCharCode(97 + i)})`;
  };
  const head = ['model', 'dtype', 'N', 'k', 'hidden', 'seq', 'batch', 'baseline', 'recycled', 'speed-up', '$/hour', 'bytes/seq', ...keys.map((k) => `${k}: T months`), 'times'];
  const lines: string[][] = [head];
  let never = false;
  for (const r of t.rows) {
    const k = r.layers !== undefined ? String(r.layers / 2) : '';
    const cells = [
      r.name,
      r.dtype,
      r.layers !== undefined ? String(r.layers) : '?',
      k,
      String(r.hidden),
      String(r.seqLen),
      r.batchSize !== undefined ? String(r.batchSize) : '-',
      r.baselineMs !== undefined ? ms(r.baselineMs) : '-',
      r.recycledMs !== undefined ? ms(r.recycledMs) : '-',
      r.baselineMs !== undefined && r.recycledMs !== undefined ? pct(r.baselineMs / r.recycledMs - 1) : '-',
      r.hourUsd !== undefined ? price(r.hourUsd) : '-',
      int(r.bytesPerSequence),
      ...keys.map((key) => {
        const v = r.breakEvenMonths[key];
        if (v === undefined) return '-';
        if (v === null) { never = true; return 'never'; }
        return sig(v, 3);
      }),
      note(r.timeSource),
    ];
    lines.push(cells);
  }
  const out: string[] = [];
  out.push(`Break-even of embedding recycling (cache layer k = N/2): reprocess the corpus at least once every T months for the cache to pay.`);
  out.push(`units: ${t.units} (${u.unit} = ${t.units === 'binary' ? '2^30' : '10^9'} bytes, ${u.bigUnit} = ${t.units === 'binary' ? '2^40' : '10^12'} bytes)`);
  for (const [key, p] of Object.entries(t.storage)) out.push(`storage ${key}: ${pricePerUnit(p.usdPerUnitMonth, t.units)} (${p.description})`);
  if (t.hourPrice) out.push(`compute: ${price(t.hourPrice.usd)} per ${t.hourPrice.of.toUpperCase()}-hour${t.rows.some((r) => r.hourUsd !== t.hourPrice?.usd) ? ' for rows that give no hourUsd' : ''}; times are ms per batch`);
  else out.push('compute: each row\'s hourUsd ($/hour); times are ms per batch');
  out.push('');
  out.push(alignTable(lines, 2));
  out.push('');
  out.push(`T = compute saved per reprocessing / storage per month, per sequence; bytes/seq = seq x hidden x bytes per value (+ ${INT8_SCALE_BYTES_PER_TOKEN} bytes a token of scales for int8) + ${RECORD_OVERHEAD_BYTES} bytes of record overhead.`);
  if (never) out.push('never: the recycled time is not smaller than the baseline, so recycling saves no compute and the cache never pays.');
  notes.forEach((n, i) => out.push(`(${String.fromCharCode(97 + i)}) ${n === 'no times' ? 'no times: give them with --rows FILE or measure with --measure' : n}`));
  for (const m of t.measurements) {
    const what = m.kind === 'model' ? `${path.basename(m.model)} split at layer ${m.layer}` : `one layer of hidden ${m.hidden}, ${m.heads} heads, intermediate ${m.intermediate}: embeddings ${ms(m.embeddingsMs)}, layer ${ms(m.layerMs)}`;
    out.push(
      `    measured ${what}; batch ${m.batchSize} x ${m.seqLen} tokens, ${m.threads} threads, median of ${m.repetitions} repetition(s)` +
        `${m.stoppedBy === 'max-seconds' ? ' (stopped by the time bound)' : ''}; cache decode fp16 ${ms(m.cacheDecodeMs.fp16 ?? NaN)}, fp32 ${ms(m.cacheDecodeMs.fp32 ?? NaN)}`,
    );
  }
  if (t.measurements.length) {
    out.push('    measured recycled times include decoding the cache in memory (the store\'s native fp16 / fp32 decode over B x T x H values), not reading it from disk.');
    if (t.measurements.some((m) => m.kind === 'layer')) out.push('    extrapolated: baseline = embeddings + N x layer; recycled = (N - k) x layer + cache decode.');
  }
  return out.join('\n') + '\n';
}

/** Chart panels for the table: per row with times, recompute vs store + recycle per storage price, per 1,000,000 sequences. */
export function tablePanels(t: TableResult, perSequences = 1e6): ChartPanel[] {
  const colors: Record<string, string> = { cloud: '#1f77b4', local: '#2ca02c', custom: '#9467bd' };
  return t.rows
    .filter((r) => r.byStorage)
    .map((r) => {
      const any = Object.values(r.byStorage as Record<string, CostResult>)[0];
      return {
        title: `${r.name} ${r.dtype}`,
        subtitle: `hidden ${r.hidden}, ${r.seqLen} tokens, ${ms(r.baselineMs as number)} -> ${ms(r.recycledMs as number)} per batch of ${r.batchSize}${r.estimated ? ' (recycled estimated)' : ''}`,
        recompute: { label: 'recompute every time', color: '#d62728', fixedUsdPerMonth: 0, usdPerReprocess: any.baselineUsdPerSequence * perSequences },
        recycle: Object.entries(r.byStorage as Record<string, CostResult>).map(([key, c]) => ({
          label: `store (${key}) + recycle`,
          color: colors[key] ?? '#8c564b',
          dash: key === 'local' ? '7 4' : undefined,
          fixedUsdPerMonth: c.storageUsdPerSequenceMonth * perSequences,
          usdPerReprocess: c.recycledUsdPerSequence * perSequences,
        })),
      };
    });
}

