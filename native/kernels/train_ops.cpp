#include "kernels/train_ops.h"
#include "kernels/rng.h"
#include <cmath>
#include <vector>

namespace er {

void dropout_forward(float* out, uint8_t* mask, const float* inp, int64_t n, float p,
                     uint64_t seed, uint64_t stream) {
  const uint32_t threshold = (uint32_t)std::fmin(4294967295.0, (double)p * 4294967296.0);
  const float scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; i++) {
    uint8_t keep = counter_hash(seed, stream, (uint64_t)i) >= threshold;
    mask[i] = keep;
    out[i] = keep ? inp[i] * scale : 0.0f;
  }
}

void dropout_backward(float* dinp, const uint8_t* mask, const float* dout, int64_t n, float p) {
  const float scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; i++) dinp[i] = mask[i] ? dout[i] * scale : 0.0f;
}

void relu_forward(float* out, const float* inp, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = inp[i] > 0 ? inp[i] : 0.0f;
}

void relu_backward(float* dinp, const float* inp, const float* dout, int64_t n) {
  for (int64_t i = 0; i < n; i++) dinp[i] = inp[i] > 0 ? dout[i] : 0.0f;
}

double cross_entropy_forward_backward(float* dlogits, const float* logits, const int32_t* targets,
                                      const float* weights, const uint8_t* mask, int64_t N,
                                      int64_t L, float scale) {
  double wsum = 0, loss = 0;
  std::vector<double> prob(L);
  for (int64_t i = 0; i < N; i++) {
    if (targets[i] < 0) continue;
    wsum += weights ? weights[targets[i]] : 1.0;
  }
  for (int64_t i = 0; i < N; i++) {
    const float* z = logits + i * L;
    const uint8_t* mk = mask ? mask + i * L : nullptr;
    float* dz = dlogits ? dlogits + i * L : nullptr;
    if (targets[i] < 0 || wsum == 0) {
      if (dz)
        for (int64_t j = 0; j < L; j++) dz[j] = 0.0f;
      continue;
    }
    double mx = -INFINITY;
    for (int64_t j = 0; j < L; j++)
      if (!mk || mk[j]) mx = std::fmax(mx, (double)z[j]);
    double sum = 0;
    for (int64_t j = 0; j < L; j++) {
      prob[j] = (!mk || mk[j]) ? std::exp((double)z[j] - mx) : 0.0;
      sum += prob[j];
    }
    const int32_t y = targets[i];
    const double w = weights ? weights[y] : 1.0;
    loss += w * -(((double)z[y] - mx) - std::log(sum));
    if (dz) {
      for (int64_t j = 0; j < L; j++) {
        double g = prob[j] / sum - (j == y ? 1.0 : 0.0);
        dz[j] = (float)(scale * w * g / wsum);
      }
    }
  }
  return wsum > 0 ? loss / wsum : 0.0;
}

void adamw_update(float* param, float* m, float* v, const float* grad, int64_t n, float lr,
                  float beta1, float beta2, float eps, float weight_decay, int64_t t,
                  float grad_scale) {
  const float bc1 = 1.0f - (float)std::pow((double)beta1, (double)t);
  const float bc2_sqrt = (float)std::sqrt(1.0 - std::pow((double)beta2, (double)t));
  const float step = lr / bc1;
  const float decay = 1.0f - lr * weight_decay;
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; i++) {
    float g = grad[i] * grad_scale;
    float mi = beta1 * m[i] + (1.0f - beta1) * g;
    float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    float p = param[i] * decay;
    param[i] = p - step * mi / (std::sqrt(vi) / bc2_sqrt + eps);
  }
}

double sum_squares(const float* x, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
  return s;
}

void embedding_backward(float* dtable, const float* dout, const int32_t* index, int64_t N,
                        int64_t C) {
  for (int64_t i = 0; i < N; i++) {
    float* row = dtable + (int64_t)index[i] * C;
    const float* d = dout + i * C;
    for (int64_t c = 0; c < C; c++) row[c] += d[c];
  }
}

}  // namespace er
