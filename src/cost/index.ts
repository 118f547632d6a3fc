/**
 * The cost model's public API: when does a cache of layer-k activations pay for itself?
 * See `er cost` and src/cost/model.ts for the formulas.
 */
export {
  bytesPerSequence,
  bytesPerValue,
  computeCost,
  customPrice,
  monthlyCosts,
  presetPrice,
  sequencesForTokens,
  units,
  BYTES_PER_VALUE,
  DTYPES,
  GB,
  GIB,
  INT8_SCALE_BYTES_PER_TOKEN,
  MS_PER_HOUR,
  RECORD_OVERHEAD_BYTES,
  STORAGE_PRESETS,
  TB,
  TIB,
} from './model';
export type { CorpusTotals, CostInputs, CostResult, Dtype, StoragePreset, StoragePrice, UnitSystem, Units } from './model';
export { measureLayerShape, measureRecycling, extrapolate } from './measure';
export type { LayerMeasurement, LayerShape, MeasureOptions, RecyclingMeasurement } from './measure';
export { computeTable, formatTable, parseRows, PRESET_SHAPES, PRESET_SEQ_LEN } from './table';
export type { TableResult, TableResultRow, TableRow } from './table';
export { renderChart, breakEvenRate } from './chart';
export type { ChartLine, ChartPanel, ChartOptions } from './chart';
