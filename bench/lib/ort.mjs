// onnxruntime-node peer: the engine a Node user would otherwise pick for an ONNX export of the model.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

export function ortVersion() {
  try {
    return require('onnxruntime-node/package.json').version;
  } catch {
    return null;
  }
}

export class OrtEngine {
  static async load(path, threads) {
    const ort = require('onnxruntime-node');
    const options = {
      executionProviders: ['cpu'],
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
    };
    const session = await ort.InferenceSession.create(path, options);
    return new OrtEngine(ort, session, options);
  }

  constructor(ort, session, options) {
    this.ort = ort;
    this.session = session;
    this.options = options;
    this.feedsCache = new Map();
  }

  /** int64 feeds built from the same ids as the native batch. */
  feeds(batch) {
    const key = `${batch.batchSize}x${batch.seqLen}`;
    let f = this.feedsCache.get(key);
    if (!f) {
      const dims = [batch.batchSize, batch.seqLen];
      const i64 = (a) => new this.ort.Tensor('int64', BigInt64Array.from(a, (x) => BigInt(x)), dims);
      f = {
        input_ids: i64(batch.inputIds),
        attention_mask: i64(batch.attentionMask),
        token_type_ids: i64(batch.tokenTypeIds),
      };
      this.feedsCache.set(key, f);
    }
    return f;
  }

  async run(batch) {
    const out = await this.session.run(this.feeds(batch));
    const t = out.last_hidden_state;
    return { data: t.data, shape: t.dims };
  }

  async close() {
    await this.session.release();
  }
}
