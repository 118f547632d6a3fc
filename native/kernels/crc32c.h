// CRC32C (Castagnoli). SSE4.2 crc32 instructions where the CPU has them (picked at
// load time), a table-driven reference otherwise.
#pragma once
#include <cstddef>
#include <cstdint>

namespace er {

// Continues a CRC: pass 0 to start; crc32c(crc32c(0, a), b) == crc32c(0, a ++ b).
uint32_t crc32c(uint32_t crc, const void* data, size_t n);
uint32_t crc32c_reference(uint32_t crc, const void* data, size_t n);

}  // namespace er
