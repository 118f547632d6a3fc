/** A command-line integer option in lo..hi, or undefined when not given; a clear error otherwise. */
export function int(name: string, v: string | undefined, lo: number, hi: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < lo || n > hi) throw new Error(`${name} must be an integer in ${lo}..${hi}, got ${JSON.stringify(v)}`);
  return n;
}
