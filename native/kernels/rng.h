// The counter-based generator behind dropout, shared by the CPU (kernels/train_ops.cpp)
// and the GPU (kernels/cuda/cuda_ops.cu), so both keep the same elements for the same
// (seed, stream).
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define ER_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define ER_HOST_DEVICE inline
#endif

namespace er {

// 32 random bits for element i of stream `stream`: splitmix64 over a combination of the
// three counters
ER_HOST_DEVICE uint32_t counter_hash(uint64_t seed, uint64_t stream, uint64_t i) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull ^ (stream + 0x632BE59BD9B4E019ull) * 0xC2B2AE3D27D4EB4Full ^ i;
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return (uint32_t)(z >> 32);
}

// The stream of one dropout site in one training step: element i of (step, site, part) is
// kept or dropped the same way on every device. Sites, shared by the CPU trainer
// (model/trainer.cpp, model/layer.cpp) and the GPU trainer (model/cuda_trainer.cpp): 0 the
// embeddings, 1 the head's input, and for layer l from dropout_layer_site(l) on: + 0 the
// attention probabilities, + 1 the attention output, + 2 the FFN output, + 3 DeBERTa-v2's
// relative rows.
enum DropoutSite : uint64_t { kDropoutEmbeddings = 0, kDropoutHead = 1, kDropoutLayerBase = 16 };
ER_HOST_DEVICE uint64_t dropout_stream(uint64_t step, uint64_t site, uint64_t part) {
  return (step << 40) ^ (site << 24) ^ part;
}
ER_HOST_DEVICE uint64_t dropout_layer_site(int64_t layer) { return kDropoutLayerBase + 4 * (uint64_t)layer; }

}  // namespace er
