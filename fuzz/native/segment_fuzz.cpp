// libFuzzer target for the activation store's segment record reader
// (native/store/segment.cpp): er::store::record_decode and record_copy_f16 on arbitrary bytes as one record
// and as a sequence of records, and er::store::verify_segment on the same bytes as a
// whole segment file (through a memfd). Built with -fsanitize=fuzzer,address,undefined
// by scripts/fuzz.sh. The input is the bytes of a segment file (seeds: real ones).
//
// Invariants beyond "no crash, ASan/UBSan clean": the input lives in a heap buffer of
// exactly its size, so any read past it is an ASan report; a decode that succeeds has
// a payload inside the given bytes, writes exactly tokens x hidden values (checked with
// poisoned guard values around the output) and gives the same values whether verified
// or not, contiguous or strided; verify_segment never counts more bytes than committed.
#include <sys/mman.h>
#include <unistd.h>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>
#include "store/format.h"
#include "store/segment.h"
#include "kernels/crc32c.h"

using namespace er::store;

static void fail(const char* what) {
  std::fprintf(stderr, "invariant violated: %s\n", what);
  std::abort();
}

static const uint64_t kMaxValues = 1 << 14;  // largest output we allocate for a decode (64 KiB: keeps an input under a millisecond)
static const float kGuard = -12345.5f;

// record_copy_f16 (the fp16 batches a GPU model reads) against record_decode on the same
// bytes: it accepts exactly the fp16 records the decode accepts (verified or not), refuses
// every other codec, writes exactly tokens x hidden codes (guards around the output), and
// those codes are the payload's.
static void copy_f16_agrees(const uint8_t* rec, uint64_t avail, const RecordHeader& h, const std::string& e_plain,
                            const std::string& e_nover) {
  const uint64_t n = (uint64_t)h.tokens * h.hidden;
  const bool fp16 = avail >= sizeof h && h.codec == kCodecF16;
  const std::string c_plain = record_copy_f16(rec, avail, nullptr, h.tokens, h.hidden, true, nullptr);
  const std::string c_nover = record_copy_f16(rec, avail, nullptr, h.tokens, h.hidden, false, nullptr);
  if (fp16 && (c_plain.empty() != e_plain.empty() || c_nover.empty() != e_nover.empty()))
    fail("fp16 copy and decode disagree on a record");
  if (!fp16 && (c_plain.empty() || c_nover.empty()) && avail >= sizeof h) fail("fp16 copy accepted a record of another codec");
  if (!c_plain.empty() || n == 0 || n > kMaxValues) return;
  const uint16_t guard = 0xBEEF;
  std::vector<uint16_t> out(n + 16, guard);
  if (!record_copy_f16(rec, avail, h.key, h.tokens, h.hidden, true, out.data() + 8).empty()) fail("fp16 copy refused its own key");
  for (int i = 0; i < 8; i++)
    if (out[i] != guard || out[n + 8 + i] != guard) fail("fp16 copy wrote outside its output");
  if (std::memcmp(out.data() + 8, rec + kRecordHeaderBytes, (size_t)n * 2) != 0) fail("fp16 copy changed the payload");
}

// Decodes the record at rec (avail bytes) in every mode and checks the results agree.
static void decode_all_ways(const uint8_t* rec, uint64_t avail) {
  RecordHeader h;
  if (avail >= sizeof h) std::memcpy(&h, rec, sizeof h);
  else std::memset(&h, 0, sizeof h);
  const uint64_t n = (uint64_t)h.tokens * h.hidden;
  // without an output: header, sizes, CRC
  std::string e_plain = record_decode(rec, avail, nullptr, h.tokens, h.hidden, true, nullptr, 0);
  std::string e_nover = record_decode(rec, avail, nullptr, h.tokens, h.hidden, false, nullptr, 0);
  // the wrong expectations must be refused
  if (avail >= sizeof h) {
    uint8_t other[kKeyBytes];
    std::memcpy(other, h.key, kKeyBytes);
    other[0] ^= 1;
    if (record_decode(rec, avail, other, h.tokens, h.hidden, false, nullptr, 0).empty()) fail("a wrong key was accepted");
    if (record_decode(rec, avail, nullptr, h.tokens, h.hidden + 1, false, nullptr, 0).empty()) fail("a wrong hidden size was accepted");
  }
  if (e_plain.empty()) {
    uint64_t payload = codec_payload_bytes(h.codec, h.tokens, h.hidden);
    if (payload != h.payload_bytes || avail - kRecordHeaderBytes < payload) fail("accepted a payload outside the bytes");
    if (!e_nover.empty()) fail("verified decode accepted what the unverified one refused");
  }
  copy_f16_agrees(rec, avail, h, e_plain, e_nover);
  if (n == 0 || n > kMaxValues || h.hidden > kMaxValues) return;
  // with an output, contiguous and strided (stride hidden + 3), verified and not
  const uint64_t stride = (uint64_t)h.hidden + 3;
  std::vector<float> a(n + 16, kGuard), b(n + 16, kGuard), c(h.tokens * stride + 16, kGuard);
  std::string ea = record_decode(rec, avail, h.key, h.tokens, h.hidden, true, a.data() + 8, h.hidden);
  std::string eb = record_decode(rec, avail, h.key, h.tokens, h.hidden, false, b.data() + 8, h.hidden);
  std::string ec = record_decode(rec, avail, h.key, h.tokens, h.hidden, true, c.data() + 8, stride);
  if (ea != e_plain || ec != e_plain) fail("the output mode changed the verdict");
  for (int i = 0; i < 8; i++) {
    if (std::memcmp(&a[i], &kGuard, 4) || std::memcmp(&a[n + 8 + i], &kGuard, 4)) fail("decode wrote outside its output");
    if (std::memcmp(&b[i], &kGuard, 4) || std::memcmp(&b[n + 8 + i], &kGuard, 4)) fail("decode wrote outside its output");
  }
  if (!ea.empty()) return;
  if (!eb.empty()) fail("unverified decode refused a record the verified one accepted");
  if (std::memcmp(a.data(), b.data(), a.size() * 4) != 0) fail("verified and unverified decodes differ");
  for (uint32_t t = 0; t < h.tokens; t++) {
    if (std::memcmp(&a[8 + (uint64_t)t * h.hidden], &c[8 + t * stride], (size_t)h.hidden * 4) != 0)
      fail("strided decode differs from contiguous");
    for (int j = 0; j < 3; j++)
      if (std::memcmp(&c[8 + t * stride + h.hidden + j], &kGuard, 4)) fail("strided decode wrote into the row gap");
  }
}

// Rewrites the CRC of every record whose header and payload fit, so that mutated
// headers and payloads get past the checksum and reach the decoding itself.
static void fix_crcs(uint8_t* d, uint64_t size, uint64_t off) {
  while (off < size && size - off >= kRecordHeaderBytes) {
    RecordHeader h;
    std::memcpy(&h, d + off, sizeof h);
    if (h.payload_bytes > size - off - kRecordHeaderBytes) return;
    uint32_t crc = er::crc32c(0, d + off, offsetof(RecordHeader, crc));
    crc = er::crc32c(crc, d + off + kRecordHeaderBytes, h.payload_bytes);
    std::memcpy(d + off + offsetof(RecordHeader, crc), &crc, 4);
    off += record_bytes(h.payload_bytes);
  }
}

static void walk_records(const uint8_t* data, uint64_t size) {
  for (uint64_t off = kSegmentHeaderBytes; off < size;) {
    decode_all_ways(data + off, size - off);
    RecordHeader h;
    if (size - off < sizeof h) break;
    std::memcpy(&h, data + off, sizeof h);
    uint64_t step = record_bytes(h.payload_bytes);
    if (h.payload_bytes > size || step == 0) step = kRecordAlign;  // walk on, as a scanner would
    off += step;
  }
}

// The bytes as a segment file, through a memfd: its own identity and number, with a
// committed length of the whole file, another segment number, and a committed length
// past the end (missing data).
static void check_segment_file(const uint8_t* data, size_t size) {
  int fd = memfd_create("segment", MFD_CLOEXEC);
  if (fd < 0) return;
  if (size > 0 && write(fd, data, size) != (ssize_t)size) {
    close(fd);
    return;
  }
  uint8_t identity[kIdentityBytes] = {0};
  uint32_t seg = 0;
  if (size >= kSegmentHeaderBytes) {
    std::memcpy(identity, data + 16, kIdentityBytes);
    std::memcpy(&seg, data + 12, 4);
  }
  std::string path = "/proc/self/fd/" + std::to_string(fd);
  VerifyReport r = verify_segment(path, identity, seg, size);
  if (r.bytes > size) fail("verify_segment scanned past the committed length");
  if (r.problems.empty() && size >= kSegmentHeaderBytes) {
    // a clean segment: every record must decode on its own
    uint64_t off = kSegmentHeaderBytes, count = 0;
    while (off < size) {
      RecordHeader h;
      std::memcpy(&h, data + off, sizeof h);
      if (!record_decode(data + off, size - off, nullptr, h.tokens, h.hidden, true, nullptr, 0).empty())
        fail("verify_segment passed a record that does not decode");
      off += record_bytes(h.payload_bytes);
      count++;
    }
    if (count != r.records) fail("verify_segment miscounted the records");
  }
  (void)verify_segment(path, identity, seg ^ 1, size);
  (void)verify_segment(path, identity, seg, size + 64);
  close(fd);
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // 0. the same bytes with every record's CRC made right (a copy of exactly the same size)
  {
    uint8_t* p = size ? static_cast<uint8_t*>(std::malloc(size)) : nullptr;
    if (p) {
      std::memcpy(p, data, size);
      fix_crcs(p, size, 0);
      decode_all_ways(p, size);
      std::memcpy(p, data, size);
      fix_crcs(p, size, kSegmentHeaderBytes);
      walk_records(p, size);
      check_segment_file(p, size);
      std::free(p);
    }
  }
  // 1. the bytes as one record, then as a segment: header, then records at multiples of 64
  decode_all_ways(data, size);
  walk_records(data, size);

  check_segment_file(data, size);
  return 0;
}
