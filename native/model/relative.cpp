// MPNet's relative position buckets, the bias they gather and its backward, apart from the encoder so that
// the GPU backend (which does not link the CPU engine) computes them with the same code.
#include <cmath>
#include "model/encoder.h"

namespace er {

int64_t relative_bucket(int64_t relative_position, int64_t buckets, int64_t max_distance) {
  int64_t ret = 0;
  int64_t n = -relative_position;
  const int64_t half = buckets / 2;
  if (n < 0) ret += half;
  n = n < 0 ? -n : n;
  const int64_t max_exact = half / 2;
  if (n < max_exact) return ret + n;
  // float32, as torch computes it: log(n / max_exact) / log(max_distance / max_exact) * (half - max_exact)
  const float ratio = std::log((float)n / (float)max_exact) / (float)std::log((double)max_distance / (double)max_exact);
  int64_t large = max_exact + (int64_t)(ratio * (float)(half - max_exact));
  if (large > half - 1) large = half - 1;
  return ret + large;
}

void relative_bias(const EncoderConfig& c, const float* table, int64_t T, std::vector<float>& out) {
  if (c.rel_buckets <= 0 || !table) {
    out.clear();
    return;
  }
  const int64_t W = 2 * T - 1, heads = c.heads;
  out.resize((size_t)(heads * W));
  for (int64_t d = -(T - 1); d <= T - 1; d++) {
    const int64_t bucket = relative_bucket(d, c.rel_buckets, c.rel_max_distance);
    for (int64_t h = 0; h < heads; h++) out[h * W + d + T - 1] = table[bucket * heads + h];
  }
}

void relative_bias_backward(const EncoderConfig& c, float* gtable, const float* drel, int64_t T) {
  const int64_t W = 2 * T - 1, heads = c.heads;
  for (int64_t d = -(T - 1); d <= T - 1; d++) {
    const int64_t bucket = relative_bucket(d, c.rel_buckets, c.rel_max_distance);
    for (int64_t h = 0; h < heads; h++) gtable[bucket * heads + h] += drel[h * W + d + T - 1];
  }
}

}  // namespace er
