// Read-only weight storage: safetensors files memory-mapped (zero copy for F32
// tensors that are 4-byte aligned), other dtypes converted once to owned F32.
// The TypeScript side parses and validates the safetensors headers; this side
// re-checks every range against the mapped file before taking a pointer.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace er {

enum class WeightDtype : int32_t { F32 = 0, F16 = 1, BF16 = 2 };

struct MappedFile {
  std::string path;
  const uint8_t* data = nullptr;
  uint64_t size = 0;
  ~MappedFile();
};

class WeightSet {
 public:
  // Maps a file (once per path). Throws std::runtime_error naming the path on failure.
  const MappedFile& map(const std::string& path);
  // Pointer to `count` F32 values of a tensor stored at [offset, offset + bytes) of a
  // mapped file, converting when dtype is not F32. Throws std::runtime_error on a
  // range past the end of the file or a byte count that does not match.
  const float* tensor(const std::string& path, uint64_t offset, uint64_t bytes, WeightDtype dtype,
                      uint64_t count);
  uint64_t mapped_bytes() const;
  uint64_t owned_bytes() const;

 private:
  std::vector<std::unique_ptr<MappedFile>> files_;
  std::vector<std::vector<float>> owned_;
};

}  // namespace er
