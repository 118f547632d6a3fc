// The activation store's on-disk format. This header is the single definition of
// the byte layout; src/store/format.ts mirrors the constants for TypeScript.
//
// FORMAT VERSION 1
//
// A store is a directory:
//   manifest.json        identity of what produced the activations (written atomically)
//   index.sqlite         SQLite (WAL) index: key -> record location, documents -> windows,
//                        committed length of every segment
//   LOCK                 flock()ed by the one writer; holds the writer's pid as text
//   segments/seg-NNNNNN.ers   append-only segment files
//
// Segment file:
//   [0, 64)   file header
//     0   u8[8]  magic "ERSTSEG1"
//     8   u32    format version (1)
//     12  u32    segment number
//     16  u8[16] store identity (first 16 bytes of the manifest's identity hash)
//     32  u8[32] zero
//   then records, each starting at a multiple of 64 bytes:
//     0   u32    record magic 0x52435245 ("ERCR" little endian)
//     4   u32    header bytes (64)
//     8   u64    payload bytes
//     16  u8[32] key (SHA-256 of the store identity and the window's token ids)
//     48  u32    tokens (real tokens only; padding is never stored)
//     52  u32    hidden size
//     56  u8     codec: 0 = fp32, 1 = fp16 (IEEE binary16); 2 = int8 with one fp32
//                scale per token (reserved, not written by version 1)
//     57  u8[3]  zero
//     60  u32    CRC32C of bytes [0, 60) of this header and of the payload
//     64  payload: tokens x hidden values in the codec, row-major; then zero
//         padding up to the next multiple of 64
// All integers little endian. A record is committed when the index says so; the
// writer makes the segment bytes durable (fdatasync) before it commits the index,
// so a committed record is always whole. Bytes past a segment's committed length
// are an interrupted append and are truncated by the next writer.
#pragma once
#include <cstdint>

namespace er {
namespace store {

constexpr uint32_t kFormatVersion = 1;
constexpr char kSegmentMagic[8] = {'E', 'R', 'S', 'T', 'S', 'E', 'G', '1'};
constexpr uint32_t kSegmentHeaderBytes = 64;
constexpr uint32_t kRecordMagic = 0x52435245u;
constexpr uint32_t kRecordHeaderBytes = 64;
constexpr uint32_t kRecordAlign = 64;
constexpr uint32_t kKeyBytes = 32;
constexpr uint32_t kIdentityBytes = 16;

enum Codec : uint8_t { kCodecF32 = 0, kCodecF16 = 1, kCodecI8Scaled = 2 };

inline uint64_t codec_payload_bytes(uint8_t codec, uint64_t tokens, uint64_t hidden) {
  switch (codec) {
    case kCodecF32: return tokens * hidden * 4;
    case kCodecF16: return tokens * hidden * 2;
    case kCodecI8Scaled: return tokens * hidden + tokens * 4;
    default: return 0;
  }
}

inline uint64_t record_bytes(uint64_t payload) {
  uint64_t n = kRecordHeaderBytes + payload;
  return (n + kRecordAlign - 1) / kRecordAlign * kRecordAlign;
}

struct RecordHeader {
  uint32_t magic;
  uint32_t header_bytes;
  uint64_t payload_bytes;
  uint8_t key[kKeyBytes];
  uint32_t tokens;
  uint32_t hidden;
  uint8_t codec;
  uint8_t reserved[3];
  uint32_t crc;
};
static_assert(sizeof(RecordHeader) == kRecordHeaderBytes, "record header is 64 bytes");

}  // namespace store
}  // namespace er
