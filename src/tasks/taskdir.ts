/**
 * A trained task on disk: task.json (what it is and what it was trained on),
 * model.safetensors (the trained parameters, with the TaskModel manifest) and
 * log.json (every epoch).
 */
import * as fs from 'fs';
import * as path from 'path';
import type { HeadKind, TaskManifest, TrainMode } from '../train/model';
import type { TaskKind } from './features';

export const TASK_FILES = ['task.json', 'model.safetensors'] as const;

export interface TaskSpec {
  format: 'embedding-recycler-task-dir';
  version: 1;
  task: TaskKind;
  labels: string[];
  mode: TrainMode;
  k: number;
  head: HeadKind;
  /** the base model directory at training time (absolute) */
  modelDir: string;
  /** SHA-256 over the base model's shape and all its weights */
  modelFingerprint: string;
  /** the store the task read (recycled modes), and its identity hash */
  storeDir: string | null;
  storeIdentity: string | null;
  maxLength: number;
  adapter: TaskManifest['adapter'];
  fields: { id?: string; text?: string; pair?: string; label?: string; tagColumn?: number };
  hyperparameters: Record<string, unknown>;
  bestEpoch: number;
  devMetrics: Record<string, unknown> | null;
  createdAt: string;
}

/** Reads task.json, checking that the directory is complete; the message lists what is missing. */
export function readTaskDir(dir: string): TaskSpec {
  const abs = path.resolve(dir);
  if (!fs.existsSync(abs) || !fs.statSync(abs).isDirectory()) throw new Error(`task directory ${abs} does not exist; train one with er train --out ${dir}`);
  const missing = TASK_FILES.filter((f) => !fs.existsSync(path.join(abs, f)));
  if (missing.length) throw new Error(`${abs}: incomplete task directory, missing ${missing.join(' and ')} (was training interrupted? train again with er train --out ${dir})`);
  let spec: TaskSpec;
  try {
    spec = JSON.parse(fs.readFileSync(path.join(abs, 'task.json'), 'utf8'));
  } catch (err) {
    throw new Error(`${path.join(abs, 'task.json')}: not valid JSON (${(err as Error).message})`);
  }
  if (spec.format !== 'embedding-recycler-task-dir' || spec.version !== 1) throw new Error(`${path.join(abs, 'task.json')}: not a task written by this version of er train`);
  for (const k of ['task', 'labels', 'mode', 'modelDir', 'maxLength'] as const) {
    if (spec[k] === undefined) throw new Error(`${path.join(abs, 'task.json')}: missing field ${k}`);
  }
  return spec;
}

export function writeJsonAtomic(file: string, value: unknown): void {
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, JSON.stringify(value, null, 2) + '\n');
  fs.renameSync(tmp, file);
}
