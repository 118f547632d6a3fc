/**
 * embedding-recycler: run the first k layers of a pretrained encoder once, keep
 * their activations, and run the layers above k for every task after that.
 */
export { Encoder } from './model/encoder';
export type { Batch, LoadOptions, ForwardOptions, ForwardFromOptions, Precision, Device, EmbedOptions } from './model/encoder';
export type { TokenizeOptions, Encoded } from './model/tokenizer';
export { TextTokenizer } from './model/tokenizer';
export { readCheckpoint, readModelConfig, weightFingerprint } from './model/checkpoint';
export type { Checkpoint } from './model/checkpoint';
export { FAMILIES, SUPPORTED_MODEL_TYPES } from './model/families';
export type { EncoderShape, FamilyName } from './model/families';
export { readSafetensorsHeader, parseSafetensorsHeader, readSafetensors } from './model/safetensors';
export type { Tensor } from './tensor/tensor';
export { tensor } from './tensor/tensor';
export { CheckpointError } from './errors';
export { cpuInfo, cudaInfo } from './native/info';
// the cost model (`er cost`): the whole API under `cost`, the main entry points by name
export * as cost from './cost';
export { computeCost, measureRecycling } from './cost';
export type { CostInputs, CostResult } from './cost';
export { ActivationStore, StoreError, storeIdentity } from './store/store';
export type { EncodeItem, CreateStoreOptions, OpenStoreOptions, EncodeOptions, EncodeProgress, WindowRef, StoreBatch, BatchOptions, VerifyResult, MergeOptions, MergeResult } from './store/store';
export { pushStore, pullStore, parseS3Url } from './scale/s3';
export type { S3Location, TransferOptions, TransferProgress, TransferResult, PushedStore, PushedFile } from './scale/s3';
export { FORMAT_VERSION, windowKey } from './store/format';
export type { StoreDtype, StoreIdentity, Manifest } from './store/format';
export { readJsonl, InputError } from './store/input';
export { TaskModel, linearSchedule, TRAIN_MODES, HEAD_KINDS, TRAIN_DEFAULTS } from './train/model';
export type { TaskModelOptions, TrainInput, StepOptions, TaskManifest, TrainMode, HeadKind } from './train/model';
export { fit, evaluate } from './train/loop';
export { trainTask } from './tasks/runner';
export { evalTask } from './infer/evaluate-task';
export { InferenceSession } from './infer/session';
export { QueueFullError } from './infer/session';
export type { PredictInput, PredictOptions, SessionOptions, SessionMetrics } from './infer/session';
export { createServer, SERVE_DEFAULTS } from './serve/server';
export type { Server, ServerOptions, ServedSession, RequestLog } from './serve/server';
export type { HistogramSnapshot } from './infer/histogram';
export { readJsonlExamples, readConll } from './tasks/data';
export { classificationMetrics, entityMetrics, tokenMetrics } from './tasks/metrics';
export { LabelMap } from './tasks/features';
