// Runtime choice of the kernel table by CPU features (never -march=native).
// ER_CPU_LEVEL=generic|avx2|avx512 forces a level (for tests); a level the CPU
// lacks falls back to the best supported one.
#include <cstdlib>
#include <cstring>
#include "kernels/ops.h"

namespace er {
namespace isa_generic { const OpsTable& table(); }
namespace isa_avx2 { const OpsTable& table(); }
namespace isa_avx512 { const OpsTable& table(); }

static bool cpu_has_avx2() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
}
static bool cpu_has_avx512() {
  return cpu_has_avx2() && __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512dq");
}

const OpsTable* ops_for_level(const char* level) {
  if (!level) return nullptr;
  if (!std::strcmp(level, "generic")) return &isa_generic::table();
  if (!std::strcmp(level, "avx2")) return cpu_has_avx2() ? &isa_avx2::table() : nullptr;
  if (!std::strcmp(level, "avx512")) return cpu_has_avx512() ? &isa_avx512::table() : nullptr;
  if (!std::strcmp(level, "reference")) return &ops_reference();
  return nullptr;
}

static const OpsTable* choose() {
  __builtin_cpu_init();
  const char* forced = std::getenv("ER_CPU_LEVEL");
  if (forced && *forced) {
    if (const OpsTable* t = ops_for_level(forced)) return t;
  }
  if (cpu_has_avx512()) return &isa_avx512::table();
  if (cpu_has_avx2()) return &isa_avx2::table();
  return &isa_generic::table();
}

const OpsTable& ops() {
  static const OpsTable* chosen = choose();
  return *chosen;
}

void round_to_f16(float* x, int64_t n) {
  const OpsTable& K = ops();
  uint16_t tmp[4096];
  for (int64_t i = 0; i < n; i += 4096) {
    const int64_t m = n - i < 4096 ? n - i : 4096;
    K.f32_to_f16(tmp, x + i, m);
    K.f16_to_f32(x + i, tmp, m);
  }
}

}  // namespace er
