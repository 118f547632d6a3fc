/**
 * Typed tensors shared with native code without copies: a flat typed array plus a
 * row-major shape.
 */

/** A dense row-major float32 tensor. `data.length` equals the product of `shape`. */
export interface Tensor {
  readonly data: Float32Array;
  readonly shape: readonly number[];
}

/** Creates a tensor, checking that the data length matches the shape. */
export function tensor(data: Float32Array, shape: readonly number[]): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  if (!shape.every((d) => Number.isInteger(d) && d >= 0)) {
    throw new RangeError(`tensor shape must be non-negative integers, got [${shape.join(', ')}]`);
  }
  if (data.length !== n) {
    throw new RangeError(`tensor data has ${data.length} values but shape [${shape.join(', ')}] needs ${n}`);
  }
  return { data, shape: [...shape] };
}
