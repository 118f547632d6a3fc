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

// One stream of 8-byte crc32 instructions: bound by the instruction's 3-cycle
// latency, about 8 bytes per 3 cycles (several GB/s), which is what a record read
// pays on top of decoding.
__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const void* data,
                                                               size_t n) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  uint64_t c = ~crc & 0xffffffffu;
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
