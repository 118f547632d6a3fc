#include "model/weights.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include "kernels/ops.h"

namespace er {

MappedFile::~MappedFile() {
  if (data && size) munmap(const_cast<uint8_t*>(data), size);
}

const MappedFile& WeightSet::map(const std::string& path) {
  for (auto& f : files_)
    if (f->path == path) return *f;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error(path + ": cannot open: " + std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    throw std::runtime_error(path + ": cannot stat: " + std::strerror(e));
  }
  auto mf = std::make_unique<MappedFile>();
  mf->path = path;
  mf->size = (uint64_t)st.st_size;
  if (mf->size > 0) {
    void* p = mmap(nullptr, mf->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      throw std::runtime_error(path + ": cannot map: " + std::strerror(e));
    }
    mf->data = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
  files_.push_back(std::move(mf));
  return *files_.back();
}

const float* WeightSet::tensor(const std::string& path, uint64_t offset, uint64_t bytes,
                               WeightDtype dtype, uint64_t count) {
  const MappedFile& f = map(path);
  uint64_t width = dtype == WeightDtype::F32 ? 4 : 2;
  if (count == 0 || bytes / width != count || bytes % width != 0)
    throw std::runtime_error(path + ": tensor at byte " + std::to_string(offset) + " holds " +
                             std::to_string(bytes) + " bytes, expected " +
                             std::to_string(count * width));
  if (offset > f.size || bytes > f.size - offset)
    throw std::runtime_error(path + ": tensor at byte " + std::to_string(offset) + " (" +
                             std::to_string(bytes) + " bytes) runs past the end of the file (" +
                             std::to_string(f.size) + " bytes)");
  const uint8_t* src = f.data + offset;
  if (dtype == WeightDtype::F32 && reinterpret_cast<uintptr_t>(src) % alignof(float) == 0)
    return reinterpret_cast<const float*>(src);
  owned_.emplace_back(count);
  float* dst = owned_.back().data();
  if (dtype == WeightDtype::F32) {
    std::memcpy(dst, src, bytes);
  } else {
    std::vector<uint16_t> tmp(count);  // the source may be unaligned for uint16_t
    std::memcpy(tmp.data(), src, bytes);
    if (dtype == WeightDtype::F16)
      ops().f16_to_f32(dst, tmp.data(), (int64_t)count);
    else
      ops().bf16_to_f32(dst, tmp.data(), (int64_t)count);
  }
  return dst;
}

uint64_t WeightSet::mapped_bytes() const {
  uint64_t n = 0;
  for (auto& f : files_) n += f->size;
  return n;
}

uint64_t WeightSet::owned_bytes() const {
  uint64_t n = 0;
  for (auto& v : owned_) n += v.size() * sizeof(float);
  return n;
}

}  // namespace er
