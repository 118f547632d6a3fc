/**
 * Encoders and read-only stores shared by the sessions of one process: several tasks on
 * one base model (and one store) hold one copy of the weights and one store reader.
 * Each acquire() counts a reference; the encoder or store closes with its last release.
 */
import * as path from 'path';
import { Encoder } from '../model/encoder';
import { ActivationStore } from '../store/store';

interface Entry<T> {
  value: Promise<T>;
  refs: number;
}

const encoders = new Map<string, Entry<Encoder>>();
const stores = new Map<string, Entry<ActivationStore>>();

async function acquire<T>(map: Map<string, Entry<T>>, key: string, open: () => Promise<T>, close: (v: T) => void): Promise<{ value: T; release: () => void }> {
  let e = map.get(key);
  if (!e) {
    e = { value: open(), refs: 0 };
    map.set(key, e);
    e.value.catch(() => map.delete(key));
  }
  e.refs++;
  const entry = e;
  let value: T;
  try {
    value = await entry.value;
  } catch (err) {
    entry.refs--;
    throw err;
  }
  let released = false;
  return {
    value,
    release: () => {
      if (released) return;
      released = true;
      if (--entry.refs === 0 && map.get(key) === entry) {
        map.delete(key);
        close(value);
      }
    },
  };
}

/** The encoder of a model directory (with that many threads), shared. */
export function acquireEncoder(dir: string, threads?: number): Promise<{ value: Encoder; release: () => void }> {
  return acquire(encoders, `${path.resolve(dir)}|${threads ?? 'default'}`, () => Encoder.load(dir, { threads }), (e) => e.close());
}

/** A store opened read-only for `encoder` at `layer`, shared by the sessions that read it. */
export function acquireReadStore(dir: string, encoder: Encoder, layer: number): Promise<{ value: ActivationStore; release: () => void }> {
  return acquire(stores, `${path.resolve(dir)}|${layer}|${path.resolve(encoder.checkpoint.dir)}`, () => ActivationStore.open(dir, { encoder, layer }), (s) => s.close());
}
