// The safetensors header parser: every way a header can lie, plus a property test
// that random corruption only ever yields a valid parse or a CheckpointError.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { CheckpointError } from '../../src/errors';
import { DTYPE_SIZES, parseSafetensorsHeader, readSafetensorsHeader } from '../../src/model/safetensors';
import { FIXTURES } from '../helpers/fixtures';

function file(header: object | string, dataBytes: number): { bytes: Uint8Array; size: number } {
  const json = typeof header === 'string' ? header : JSON.stringify(header);
  const bytes = new TextEncoder().encode(json);
  return { bytes, size: 8 + bytes.length + dataBytes };
}

function parse(header: object | string, dataBytes: number) {
  const f = file(header, dataBytes);
  return parseSafetensorsHeader('x.safetensors', f.bytes, f.size);
}

describe('parseSafetensorsHeader', () => {
  it('accepts a well-formed header and reports absolute offsets', () => {
    const h = parse({ a: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] }, b: { dtype: 'F16', shape: [4], data_offsets: [24, 32] }, __metadata__: { format: 'pt' } }, 32);
    expect(h.tensors.get('a')).toMatchObject({ dtype: 'F32', shape: [2, 3], begin: 0, end: 24 });
    expect(h.metadata).toEqual({ format: 'pt' });
    expect(h.dataStart).toBe(8 + file({ a: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] }, b: { dtype: 'F16', shape: [4], data_offsets: [24, 32] }, __metadata__: { format: 'pt' } }, 0).bytes.length);
  });

  const bad: [string, object | string, number, RegExp][] = [
    ['not JSON', '{"a": ', 0, /not valid UTF-8 JSON/],
    ['an array', '[1,2]', 0, /not a JSON object/],
    ['unknown dtype', { a: { dtype: 'F12', shape: [1], data_offsets: [0, 4] } }, 4, /unknown dtype "F12"/],
    ['negative shape', { a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, 4, /invalid shape/],
    ['fractional shape', { a: { dtype: 'F32', shape: [1.5], data_offsets: [0, 4] } }, 4, /invalid shape/],
    ['offsets past the end', { a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, 8, /runs past the end of the data \(8 bytes\)/],
    ['reversed offsets', { a: { dtype: 'F32', shape: [1], data_offsets: [8, 4] } }, 8, /invalid data_offsets/],
    ['byte count not matching the shape', { a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, 8, /spans 8 bytes but F32\[3\] needs 12/],
    ['overlapping tensors', { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, 12, /overlap/],
    ['metadata not strings', { __metadata__: { a: 1 } }, 0, /__metadata__\.a is not a string/],
    ['entry not an object', { a: 5 }, 0, /entry "a" is not an object/],
  ];
  for (const [what, header, data, msg] of bad) {
    it(`rejects ${what}`, () => {
      expect(() => parse(header, data)).toThrow(CheckpointError);
      expect(() => parse(header, data)).toThrow(msg);
    });
  }

  it('rejects invalid UTF-8 in the header', () => {
    const bytes = new Uint8Array([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]);
    expect(() => parseSafetensorsHeader('x', bytes, 8 + bytes.length)).toThrow(/not valid UTF-8 JSON/);
  });

  it('property: random corruption of a real header never escapes as anything but CheckpointError, and accepted headers keep their invariants', () => {
    const real = fs.readFileSync(path.join(FIXTURES, 'tiny-bert', 'model.safetensors'));
    const n = Number(real.readBigUInt64LE(0));
    const header = real.subarray(8, 8 + n);
    let seed = 12345;
    const rand = (k: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % k;
    };
    let accepted = 0, rejected = 0;
    for (let trial = 0; trial < 3000; trial++) {
      const mutated = Uint8Array.from(header);
      const edits = 1 + rand(4);
      for (let e = 0; e < edits; e++) {
        const pos = rand(mutated.length);
        // digits and structural characters make the most interesting lies
        const alphabet = '0123456789[]{},:"-.eE ';
        mutated[pos] = rand(2) ? alphabet.charCodeAt(rand(alphabet.length)) : rand(256);
      }
      const size = rand(4) === 0 ? real.length - 1 - rand(1000) : real.length;
      try {
        const h = parseSafetensorsHeader('fuzz', mutated, size);
        accepted++;
        const dataSize = size - h.dataStart;
        const ranges = [...h.tensors.values()].sort((a, b) => a.begin - b.begin);
        for (const t of ranges) {
          expect(t.end).toBeLessThanOrEqual(dataSize);
          expect(t.end - t.begin).toBe(t.shape.reduce((a, b) => a * b, 1) * DTYPE_SIZES[t.dtype]);
        }
        for (let i = 1; i < ranges.length; i++) {
          if (ranges[i].end > ranges[i].begin) expect(ranges[i].begin).toBeGreaterThanOrEqual(ranges[i - 1].end);
        }
      } catch (err) {
        if (!(err instanceof CheckpointError)) throw err;
        rejected++;
      }
    }
    expect(accepted + rejected).toBe(3000);
    expect(rejected).toBeGreaterThan(0);
  });
});

describe('readSafetensorsHeader on files', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'er-st-'));
  const real = fs.readFileSync(path.join(FIXTURES, 'tiny-bert', 'model.safetensors'));

  it('rejects a file shorter than 8 bytes', () => {
    const p = path.join(tmp, 'short.safetensors');
    fs.writeFileSync(p, Buffer.from([1, 2, 3]));
    expect(() => readSafetensorsHeader(p)).toThrow(/shorter than the 8-byte header length/);
  });

  it('rejects a header length that lies', () => {
    const p = path.join(tmp, 'lies.safetensors');
    const b = Buffer.from(real);
    b.writeBigUInt64LE(BigInt(real.length * 2), 0);
    fs.writeFileSync(p, b);
    expect(() => readSafetensorsHeader(p)).toThrow(/header length \d+ is longer than the rest of the file/);
  });

  it('rejects a truncated file at every cut point past the header (sampled)', () => {
    const n = Number(real.readBigUInt64LE(0));
    for (const cut of [8 + n + 1, Math.floor((8 + n + real.length) / 2), real.length - 1]) {
      const p = path.join(tmp, `cut-${cut}.safetensors`);
      fs.writeFileSync(p, real.subarray(0, cut));
      expect(() => readSafetensorsHeader(p)).toThrow(/runs past the end of the data.*truncated/);
    }
  });

  it('names a missing file', () => {
    expect(() => readSafetensorsHeader(path.join(tmp, 'nope.safetensors'))).toThrow(/nope\.safetensors: cannot open/);
  });
});

describe('safetensors: the header length must be exact', () => {
  it('a header length one byte short (or long) of the real header is refused, naming the invariant', () => {
    const buf = fs.readFileSync(path.join(FIXTURES, 'tiny-bert', 'model.safetensors'));
    const n = Number(buf.readBigUInt64LE(0));
    // give the header trailing spaces (the format allows them) so that a one-byte-short
    // header is still valid JSON: only the data-coverage invariant can catch it
    const json = buf.subarray(8, 8 + n).toString('utf8').trimEnd() + '        ';
    const data = buf.subarray(8 + n);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'er-st-len-'));
    const write = (len: number) => {
      const head = Buffer.alloc(8);
      head.writeBigUInt64LE(BigInt(len));
      const f = path.join(dir, `len-${len}.safetensors`);
      fs.writeFileSync(f, Buffer.concat([head, Buffer.from(json), data]));
      return f;
    };
    const real = Buffer.byteLength(json);
    expect(() => readSafetensorsHeader(write(real))).not.toThrow();
    expect(() => readSafetensorsHeader(write(real - 1))).toThrow(/the tensors cover \d+ bytes but the data section after the \d+-byte header has \d+; the header length is wrong/);
    expect(() => readSafetensorsHeader(write(real + 1))).toThrow(CheckpointError);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  it('a gap between tensors is refused', () => {
    const header = Buffer.from(JSON.stringify({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } }));
    expect(() => parseSafetensorsHeader('g.safetensors', header, 8 + header.length + 12)).toThrow(/bytes \[4, 8\) of the data belong to no tensor/);
  });
});
