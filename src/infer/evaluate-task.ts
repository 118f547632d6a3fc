/**
 * `er eval`: a task directory evaluated on a labeled file, through an inference session
 * (the same model, store and batching a server uses).
 */
import type { PrepareReport } from '../tasks/features';
import { DataOptions, loadData, reportPrep, rowsOf, taskMetrics } from '../tasks/runner';
import { readTaskDir } from '../tasks/taskdir';
import { evaluate } from '../train/loop';
import { InferenceSession, SessionOptions } from './session';

/** Evaluates a task directory on a labeled file. */
export async function evalTask(taskDir: string, file: string, o: DataOptions & { model?: string; store?: string; threads?: number; batchSize?: number } & Pick<SessionOptions, 'device' | 'gpu' | 'gpuPrecision'> = {}): Promise<{ metrics: Record<string, unknown>; loss: number; unknown: PrepareReport['unknown'] }> {
  const spec = readTaskDir(taskDir);
  const session = await InferenceSession.open(taskDir, { model: o.model, store: o.store, threads: o.threads, batchSize: o.batchSize, device: o.device, gpu: o.gpu, gpuPrecision: o.gpuPrecision });
  try {
    const data = loadData(spec.task, file, { ...o, fields: o.fields ?? spec.fields, tagColumn: o.tagColumn ?? spec.fields.tagColumn }, true);
    const { rows, report } = await rowsOf(spec.task, session.encoder, data, session.labels, spec.maxLength);
    reportPrep(file, report, spec.task, o.warn);
    const ev = await evaluate(session.model, rows, { store: session.store, batchSize: o.batchSize });
    return { metrics: taskMetrics(spec.task, session.labels, data, rows, ev.logits), loss: ev.loss, unknown: report.unknown };
  } finally {
    await session.close();
  }
}
