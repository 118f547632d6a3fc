#include "store/segment.h"
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include "kernels/crc32c.h"
#include "kernels/ops.h"

namespace er {
namespace store {

static std::runtime_error sys_error(const std::string& what, int err) {
  return std::runtime_error(what + ": " + std::strerror(err));
}

std::string segment_path(const std::string& dir, uint32_t segment) {
  char name[32];
  std::snprintf(name, sizeof name, "seg-%06u.ers", segment);
  return dir + "/segments/" + name;
}

static void fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

// ---------------------------------------------------------------- lock

StoreLock::StoreLock(const std::string& dir) {
  std::string path = dir + "/LOCK";
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw sys_error(path + ": cannot open the lock file", errno);
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    char pid[32] = {0};
    ssize_t n = ::pread(fd_, pid, sizeof pid - 1, 0);
    ::close(fd_);
    fd_ = -1;
    if (err == EWOULDBLOCK) {
      std::string holder = n > 0 ? std::string(pid, (size_t)n) : std::string("unknown");
      while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
      throw std::runtime_error(dir + ": the store is being written by process " + holder +
                               "; only one writer at a time (wait for it to finish or stop it)");
    }
    throw sys_error(path + ": cannot lock", err);
  }
  std::string me = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_, 0) == 0) {
    ssize_t w = ::pwrite(fd_, me.data(), me.size(), 0);
    (void)w;
  }
}

StoreLock::~StoreLock() {
  if (fd_ >= 0) {
    if (::ftruncate(fd_, 0) != 0) {
    }
    ::flock(fd_, LOCK_UN);
    ::close(fd_);
  }
}

// ---------------------------------------------------------------- writer

std::atomic<uint64_t> SegmentWriter::written_{0};

SegmentWriter::SegmentWriter(std::string dir, const uint8_t* identity, uint64_t max_segment_bytes)
    : dir_(std::move(dir)), max_bytes_(max_segment_bytes) {
  std::memcpy(identity_, identity, kIdentityBytes);
  if (const char* lim = std::getenv("ER_FAULT_WRITE_LIMIT")) fault_limit_ = std::strtoull(lim, nullptr, 10);
  if (const char* n = std::getenv("ER_FAULT_SYNC_FAIL")) fault_sync_ = std::strtoull(n, nullptr, 10);
}

SegmentWriter::~SegmentWriter() {
  for (int fd : unsynced_) ::close(fd);
  if (fd_ >= 0) ::close(fd_);
}

void SegmentWriter::write_all(const void* data, uint64_t n, uint64_t offset) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  std::string path = segment_path(dir_, segment_);
  while (n > 0) {
    uint64_t chunk = n;
    if (fault_limit_) {
      uint64_t done = written_.load();
      if (done >= fault_limit_) throw sys_error(path + ": write failed", ENOSPC);
      if (chunk > fault_limit_ - done) chunk = fault_limit_ - done;  // a short write, then ENOSPC
    }
    ssize_t w = ::pwrite(fd_, p, chunk, (off_t)offset);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw sys_error(path + ": write failed", errno);
    }
    written_ += (uint64_t)w;
    p += w;
    n -= (uint64_t)w;
    offset += (uint64_t)w;
  }
}

void SegmentWriter::create_segment(uint32_t segment) {
  std::string path = segment_path(dir_, segment);
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0 && errno == EEXIST) {
    // an uncommitted segment left by a crash: start it again
    fd = ::open(path.c_str(), O_RDWR | O_TRUNC | O_CLOEXEC);
  }
  if (fd < 0) throw sys_error(path + ": cannot create", errno);
  if (fd_ >= 0) unsynced_.push_back(fd_);
  fd_ = fd;
  segment_ = segment;
  uint8_t header[kSegmentHeaderBytes] = {0};
  std::memcpy(header, kSegmentMagic, 8);
  uint32_t version = kFormatVersion;
  std::memcpy(header + 8, &version, 4);
  std::memcpy(header + 12, &segment, 4);
  std::memcpy(header + 16, identity_, kIdentityBytes);
  write_all(header, sizeof header, 0);
  end_ = kSegmentHeaderBytes;
  if (::fdatasync(fd_) != 0) throw sys_error(path + ": fdatasync failed", errno);
  fsync_dir(dir_ + "/segments");
}

void SegmentWriter::open_segment(uint32_t segment, uint64_t committed) {
  std::string path = segment_path(dir_, segment);
  if (committed == 0) {
    create_segment(segment);
    return;
  }
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) throw sys_error(path + ": cannot open a committed segment", errno);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    throw sys_error(path + ": cannot stat", e);
  }
  if ((uint64_t)st.st_size < committed) {
    ::close(fd);
    throw std::runtime_error(path + ": the index has records up to byte " + std::to_string(committed) +
                             " but the file has only " + std::to_string(st.st_size) +
                             " bytes; committed data is missing (the store is damaged)");
  }
  if ((uint64_t)st.st_size > committed) {
    // an append that never committed: drop it
    if (::ftruncate(fd, (off_t)committed) != 0) {
      int e = errno;
      ::close(fd);
      throw sys_error(path + ": cannot truncate an interrupted append", e);
    }
    ::fdatasync(fd);
  }
  if (fd_ >= 0) unsynced_.push_back(fd_);
  fd_ = fd;
  segment_ = segment;
  end_ = committed;
}

Location SegmentWriter::append(const uint8_t* key, uint32_t tokens, uint32_t hidden, uint8_t codec,
                               const float* data) {
  if (fd_ < 0) throw std::runtime_error("segment writer has no open segment");
  uint64_t payload = codec_payload_bytes(codec, tokens, hidden);
  if (payload == 0 && tokens > 0) throw std::runtime_error("unknown codec " + std::to_string(codec));
  uint64_t total = record_bytes(payload);
  if (end_ > kSegmentHeaderBytes && end_ + total > max_bytes_) create_segment(segment_ + 1);
  buf_.assign(total, 0);
  RecordHeader h;
  std::memset(&h, 0, sizeof h);
  h.magic = kRecordMagic;
  h.header_bytes = kRecordHeaderBytes;
  h.payload_bytes = payload;
  std::memcpy(h.key, key, kKeyBytes);
  h.tokens = tokens;
  h.hidden = hidden;
  h.codec = codec;
  uint8_t* body = buf_.data() + kRecordHeaderBytes;
  const uint64_t n = (uint64_t)tokens * hidden;
  if (codec == kCodecF32) {
    std::memcpy(body, data, n * 4);
  } else if (codec == kCodecF16) {
    f16_.resize(n);
    ops().f32_to_f16(f16_.data(), data, (int64_t)n);
    std::memcpy(body, f16_.data(), n * 2);
  } else {
    throw std::runtime_error("codec " + std::to_string(codec) + " is not written by format version 1");
  }
  uint32_t crc = crc32c(0, &h, offsetof(RecordHeader, crc));
  crc = crc32c(crc, body, payload);
  h.crc = crc;
  std::memcpy(buf_.data(), &h, sizeof h);
  Location loc{segment_, end_, total, crc};
  write_all(buf_.data(), total, end_);
  end_ += total;
  return loc;
}

void SegmentWriter::sync() {
  // Each descriptor leaves unsynced_ as soon as it is closed, so a failure part way
  // through never leaves a closed number behind to be closed again later (by then it
  // may belong to SQLite or a socket). A file that failed stays listed, still open.
  while (!unsynced_.empty()) {
    int fd = unsynced_.front();
    const bool fault = fault_sync_ != 0 && ++syncs_ == fault_sync_;
    if (fault || ::fdatasync(fd) != 0)
      throw sys_error(dir_ + ": fdatasync of a finished segment failed", fault ? EIO : errno);
    ::close(fd);
    unsynced_.erase(unsynced_.begin());
  }
  if (fd_ >= 0 && ::fdatasync(fd_) != 0) throw sys_error(segment_path(dir_, segment_) + ": fdatasync failed", errno);
}

void SegmentWriter::rollback(uint64_t end) {
  if (fd_ < 0) return;
  if (::ftruncate(fd_, (off_t)end) == 0) end_ = end;
}

// ---------------------------------------------------------------- reader

Mapping::~Mapping() {
  if (data && size) ::munmap(const_cast<uint8_t*>(data), size);
  if (fd >= 0) ::close(fd);
}

static std::runtime_error truncated(const std::string& path, uint64_t end, uint64_t size) {
  return std::runtime_error(path + ": the index points to byte " + std::to_string(end) + " but the file has " +
                            std::to_string(size) +
                            " bytes (it was truncated or replaced; committed data is missing: run er inspect --verify)");
}

SegmentReader::SegmentReader(std::string dir, const uint8_t* identity) : dir_(std::move(dir)) {
  std::memcpy(identity_, identity, kIdentityBytes);
}

std::shared_ptr<const Mapping> SegmentReader::map(uint32_t segment, uint64_t end) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = maps_.find(segment);
  if (it != maps_.end() && it->second->size >= end) {
    struct stat st;
    if (::fstat(it->second->fd, &st) != 0) throw sys_error(segment_path(dir_, segment) + ": cannot stat", errno);
    if ((uint64_t)st.st_size < end) throw truncated(segment_path(dir_, segment), end, (uint64_t)st.st_size);
    return it->second;
  }
  std::string path = segment_path(dir_, segment);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw sys_error(path + ": cannot open", errno);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    throw sys_error(path + ": cannot stat", e);
  }
  uint64_t size = (uint64_t)st.st_size;
  if (size < end || size < kSegmentHeaderBytes) {
    ::close(fd);
    throw truncated(path, end < kSegmentHeaderBytes ? kSegmentHeaderBytes : end, size);
  }
  auto m = std::make_shared<Mapping>();
  m->fd = fd;
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  int e = errno;
  if (p == MAP_FAILED) throw sys_error(path + ": cannot map", e);
  m->data = static_cast<const uint8_t*>(p);
  m->size = size;
  if (size < kSegmentHeaderBytes || std::memcmp(m->data, kSegmentMagic, 8) != 0)
    throw std::runtime_error(path + ": not a segment file (bad magic)");
  if (std::memcmp(m->data + 16, identity_, kIdentityBytes) != 0)
    throw std::runtime_error(path + ": belongs to another store (identity differs from manifest.json)");
  maps_[segment] = m;
  return m;
}

void SegmentReader::unmap_all() {
  std::lock_guard<std::mutex> lock(mu_);
  maps_.clear();
}

// The checks every read of a record makes before its payload: header, key, shape, codec and
// payload size against the bytes available. Fills *h and *payload.
static std::string check_record(const uint8_t* rec, uint64_t avail, const uint8_t* key, uint32_t tokens,
                                uint32_t hidden, RecordHeader* h, uint64_t* payload) {
  if (avail < kRecordHeaderBytes) return "record header runs past the end of the file";
  std::memcpy(h, rec, sizeof *h);
  if (h->magic != kRecordMagic || h->header_bytes != kRecordHeaderBytes) return "bad record magic";
  if (key && std::memcmp(h->key, key, kKeyBytes) != 0) return "record key differs from the index";
  if (h->tokens != tokens || h->hidden != hidden)
    return "record holds " + std::to_string(h->tokens) + " x " + std::to_string(h->hidden) +
           " values, the index expects " + std::to_string(tokens) + " x " + std::to_string(hidden);
  *payload = codec_payload_bytes(h->codec, h->tokens, h->hidden);
  if (*payload != h->payload_bytes || (*payload == 0 && tokens > 0)) return "bad record codec or payload size";
  if (avail - kRecordHeaderBytes < *payload) return "record payload runs past the end of the file";
  return "";
}

std::string record_copy_f16(const uint8_t* rec, uint64_t avail, const uint8_t* key, uint32_t tokens,
                            uint32_t hidden, bool verify, uint16_t* out) {
  RecordHeader h;
  uint64_t payload = 0;
  std::string err = check_record(rec, avail, key, tokens, hidden, &h, &payload);
  if (!err.empty()) return err;
  if (h.codec != kCodecF16)
    return h.codec == kCodecF32 ? "the record holds fp32 values; fp16 batches need an fp16 store"
                                : "codec " + std::to_string(h.codec) + " is not readable by format version 1";
  const uint8_t* body = rec + kRecordHeaderBytes;
  if (verify) {
    uint32_t crc = crc32c(0, &h, offsetof(RecordHeader, crc));
    crc = crc32c(crc, body, payload);
    if (crc != h.crc) return "checksum mismatch (the record is corrupt)";
  }
  if (out) std::memcpy(out, body, (size_t)payload);
  return "";
}

std::string record_decode(const uint8_t* rec, uint64_t avail, const uint8_t* key,
                          uint32_t tokens, uint32_t hidden, bool verify, float* out,
                          uint64_t row_stride) {
  RecordHeader h;
  uint64_t payload = 0;
  std::string bad = check_record(rec, avail, key, tokens, hidden, &h, &payload);
  if (!bad.empty()) return bad;
  const uint8_t* body = rec + kRecordHeaderBytes;
  const OpsTable& K = ops();
  const bool contiguous = row_stride == hidden;
  if (h.codec != kCodecF32 && h.codec != kCodecF16)
    return "codec " + std::to_string(h.codec) + " is not readable by format version 1";
  if (verify && out && contiguous) {
    // one pass: checksum a block, then decode it while it is still in cache
    const uint64_t block = 3 * 4096 * 4;
    uint32_t crc = crc32c(0, &h, offsetof(RecordHeader, crc));
    const uint64_t vsize = h.codec == kCodecF32 ? 4 : 2;
    for (uint64_t off = 0; off < payload; off += block) {
      uint64_t n = payload - off < block ? payload - off : block;
      crc = crc32c(crc, body + off, n);
      float* dst = out + off / vsize;
      if (h.codec == kCodecF32) std::memcpy(dst, body + off, n);
      else K.f16_to_f32(dst, reinterpret_cast<const uint16_t*>(body + off), (int64_t)(n / 2));
    }
    if (crc != h.crc) return "checksum mismatch (the record is corrupt)";
    return "";
  }
  if (verify) {
    uint32_t crc = crc32c(0, &h, offsetof(RecordHeader, crc));
    crc = crc32c(crc, body, payload);
    if (crc != h.crc) return "checksum mismatch (the record is corrupt)";
  }
  if (!out) return "";
  for (uint32_t t = 0; t < tokens; t++) {
    float* dst = out + (uint64_t)t * row_stride;
    if (h.codec == kCodecF32) {
      std::memcpy(dst, body + (uint64_t)t * hidden * 4, (size_t)hidden * 4);
    } else {
      // the payload is 2-byte aligned (records start at multiples of 64)
      K.f16_to_f32(dst, reinterpret_cast<const uint16_t*>(body) + (uint64_t)t * hidden, hidden);
    }
  }
  return "";
}

VerifyReport verify_segment(const std::string& path, const uint8_t* identity, uint32_t segment,
                            uint64_t committed) {
  VerifyReport r;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    r.problems.push_back(path + ": cannot open: " + std::strerror(errno));
    return r;
  }
  struct stat st;
  ::fstat(fd, &st);
  uint64_t size = (uint64_t)st.st_size;
  if (size < committed) {
    r.problems.push_back(path + ": " + std::to_string(size) + " bytes but the index commits " +
                         std::to_string(committed) + " (committed data is missing)");
    committed = size;
  }
  if (committed < kSegmentHeaderBytes) {
    ::close(fd);
    if (committed > 0) r.problems.push_back(path + ": shorter than the segment header");
    return r;
  }
  void* p = ::mmap(nullptr, committed, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) {
    r.problems.push_back(path + ": cannot map: " + std::strerror(errno));
    return r;
  }
  const uint8_t* d = static_cast<const uint8_t*>(p);
  uint32_t seg_no;
  std::memcpy(&seg_no, d + 12, 4);
  if (std::memcmp(d, kSegmentMagic, 8) != 0) r.problems.push_back(path + ": bad segment magic");
  else if (seg_no != segment) r.problems.push_back(path + ": header says segment " + std::to_string(seg_no));
  else if (std::memcmp(d + 16, identity, kIdentityBytes) != 0) r.problems.push_back(path + ": belongs to another store");
  uint64_t off = kSegmentHeaderBytes;
  bool header_ok = r.problems.empty();
  while (header_ok && off < committed) {
    RecordHeader h;
    if (committed - off < kRecordHeaderBytes) {
      r.problems.push_back(path + " at byte " + std::to_string(off) + ": record header cut short");
      break;
    }
    std::memcpy(&h, d + off, sizeof h);
    std::string err = record_decode(d + off, committed - off, nullptr, h.tokens, h.hidden, true, nullptr, 0);
    if (!err.empty()) {
      r.problems.push_back(path + " at byte " + std::to_string(off) + ": " + err);
      // a bad checksum under a sound header: the next record is still findable
      if (err.rfind("checksum", 0) != 0) break;
    }
    r.records++;
    off += record_bytes(h.payload_bytes);
  }
  r.bytes = committed;
  ::munmap(p, committed);
  return r;
}

}  // namespace store
}  // namespace er
