#include "kernels/crc32c.h"
#include <cstring>
#include <nmmintrin.h>

namespace er {

static const uint32_t* table() {
  static uint32_t t[256];
  static bool init = [] {
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t c = i;
      for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
      t[i] = c;
    }
    return true;
  }();
  (void)init;
  return t;
}

uint32_t crc32c_reference(uint32_t crc, const void* data, size_t n) {
  const uint32_t* t = table();
  const uint8_t* p = static_cast<const uint8_t*>(data);
  crc = ~crc;
  for (size_t i = 0; i < n; i++) crc = t[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

// The crc32 instruction has a latency of 3 cycles and a throughput of 1 per cycle, so
// one dependent stream runs at a third of its speed. Long buffers are cut into chunks
// of three lanes of kLane bytes, whose CRCs run interleaved and are then combined:
// for the raw (un-inverted) register, raw(r, A || B) = shift_|B|(raw(r, A)) ^ raw(0, B),
// where shift_L(x) = raw(x, L zero bytes) is linear in x and is applied with tables.
static const size_t kLane = 4096;

// shift_L as four 256-entry tables (one per byte of x), built with the instruction.
struct ShiftTable {
  uint32_t t[4][256];
};

__attribute__((target("sse4.2"))) static uint32_t raw_zeros(uint32_t x, size_t n) {
  uint64_t c = x;
  for (size_t i = 0; i < n / 8; i++) c = _mm_crc32_u64(c, 0);
  return (uint32_t)c;
}

__attribute__((target("sse4.2"))) static ShiftTable make_shift(size_t n) {
  ShiftTable s;
  for (int k = 0; k < 4; k++)
    for (uint32_t b = 0; b < 256; b++) s.t[k][b] = raw_zeros(b << (8 * k), n);
  return s;
}

static inline uint32_t shift(const ShiftTable& s, uint32_t x) {
  return s.t[0][x & 0xff] ^ s.t[1][(x >> 8) & 0xff] ^ s.t[2][(x >> 16) & 0xff] ^ s.t[3][x >> 24];
}

__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const void* data,
                                                               size_t n) {
  static const ShiftTable by1 = make_shift(kLane), by2 = make_shift(2 * kLane);
  const uint8_t* p = static_cast<const uint8_t*>(data);
  uint32_t r = ~crc;
  while (n >= 3 * kLane) {
    uint64_t c0 = r, c1 = 0, c2 = 0;
    for (size_t i = 0; i < kLane; i += 8) {
      uint64_t v0, v1, v2;
      std::memcpy(&v0, p + i, 8);
      std::memcpy(&v1, p + kLane + i, 8);
      std::memcpy(&v2, p + 2 * kLane + i, 8);
      c0 = _mm_crc32_u64(c0, v0);
      c1 = _mm_crc32_u64(c1, v1);
      c2 = _mm_crc32_u64(c2, v2);
    }
    r = shift(by2, (uint32_t)c0) ^ shift(by1, (uint32_t)c1) ^ (uint32_t)c2;
    p += 3 * kLane;
    n -= 3 * kLane;
  }
  uint64_t c = r;
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c = _mm_crc32_u64(c, v);
    p += 8;
    n -= 8;
  }
  uint32_t c32 = (uint32_t)c;
  while (n--) c32 = _mm_crc32_u8(c32, *p++);
  return ~c32;
}

uint32_t crc32c(uint32_t crc, const void* data, size_t n) {
  static const bool hw = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2");
  }();
  return hw ? crc32c_sse42(crc, data, n) : crc32c_reference(crc, data, n);
}

}  // namespace er
