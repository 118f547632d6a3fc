// jazzer.js target: the safetensors header and tensor table parser
// (parseSafetensorsHeader, src/model/safetensors.ts) and, for small data sections, the
// whole file path (readSafetensors: the 8-byte length, the header, the tensors loaded
// into typed arrays).
//
// Input: [flags u8][data size u32 LE][header JSON bytes]
//   flags bit 0: the file size is the data size field itself (so it can be shorter than the header)
//   flags bit 1: also write a real file (when the data size is at most 64 KiB) and readSafetensors it
//   flags bit 2: that file's 8-byte length says one byte more than the header has (a lying length)
// Invariants: no crash or hang; every rejection is a CheckpointError with a message;
// an accepted table has every tensor inside the data, spanning exactly its dtype x shape,
// none overlapping; readSafetensors gives each tensor exactly its element count.
'use strict';
const fs = require('fs');
const path = require('path');
const { lib, scratch, expectLibraryError, check } = require('./common');

const { parseSafetensorsHeader, readSafetensors, DTYPE_SIZES } = lib('model/safetensors');
const { CheckpointError } = lib('errors');
const dir = scratch('safetensors');
const file = path.join(dir, 'fuzz.safetensors');

function checkTable(h, fileSize) {
  const dataSize = fileSize - h.dataStart;
  check(dataSize >= 0, 'data region starts past the end of the file');
  const spans = [];
  for (const [name, t] of h.tensors) {
    check(t.name === name, 'tensor name mismatch');
    check(Object.prototype.hasOwnProperty.call(DTYPE_SIZES, t.dtype), `unknown dtype ${t.dtype} accepted`);
    check(Number.isSafeInteger(t.begin) && Number.isSafeInteger(t.end) && t.begin >= 0 && t.begin <= t.end && t.end <= dataSize,
      `tensor ${name} [${t.begin}, ${t.end}) outside the data (${dataSize} bytes)`);
    const count = t.shape.reduce((a, d) => a * d, 1);
    check(count * DTYPE_SIZES[t.dtype] === t.end - t.begin, `tensor ${name} spans the wrong byte count`);
    if (t.end > t.begin) spans.push([t.begin, t.end]);
  }
  spans.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < spans.length; i++) check(spans[i][0] >= spans[i - 1][1], 'overlapping tensors accepted');
}

module.exports.fuzz = function (data) {
  if (data.length < 5) return;
  const flags = data[0];
  const dataSize = data.readUInt32LE(1);
  const header = data.subarray(5);
  const fileSize = flags & 1 ? dataSize : 8 + header.length + dataSize;
  try {
    checkTable(parseSafetensorsHeader('fuzz.safetensors', header, fileSize), fileSize);
  } catch (err) {
    expectLibraryError(err, [CheckpointError]);
  }
  if (flags & 2 && dataSize <= 1 << 16) {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(header.length + (flags & 4 ? 1 : 0)));
    const body = Buffer.alloc(dataSize);
    for (let i = 0; i < dataSize; i++) body[i] = (i * 131) & 0xff;
    fs.writeFileSync(file, Buffer.concat([len, header, body]));
    try {
      const tensors = readSafetensors(file);
      for (const t of tensors.values()) {
        const count = t.shape.reduce((a, d) => a * d, 1);
        check(t.data.length === count, `loaded ${t.data.length} values for shape [${t.shape}]`);
      }
    } catch (err) {
      expectLibraryError(err, [CheckpointError]);
    }
  }
};
