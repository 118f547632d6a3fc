// Segment files of the activation store: appending records (writer), mapping and
// decoding them (reader), scanning them (verify). Layout in store/format.h.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>
#include "store/format.h"

namespace er {
namespace store {

std::string segment_path(const std::string& dir, uint32_t segment);

struct Location {
  uint32_t segment = 0;
  uint64_t offset = 0;  // of the record header in the segment file
  uint64_t bytes = 0;   // header + payload + padding
  uint32_t crc = 0;
};

// The one writer's exclusive lock: flock() on <dir>/LOCK, released by the kernel
// if the process dies. Throws std::runtime_error naming the holder's pid.
class StoreLock {
 public:
  explicit StoreLock(const std::string& dir);
  ~StoreLock();
  StoreLock(const StoreLock&) = delete;
  StoreLock& operator=(const StoreLock&) = delete;

 private:
  int fd_ = -1;
};

class SegmentWriter {
 public:
  // identity: kIdentityBytes; max_segment_bytes: rotate to a new file past this size.
  SegmentWriter(std::string dir, const uint8_t* identity, uint64_t max_segment_bytes);
  ~SegmentWriter();
  // Continues segment `segment` at its committed length: bytes past it (an
  // interrupted append) are truncated; a file shorter than `committed` is an error.
  // A segment that does not exist yet is created with its header.
  void open_segment(uint32_t segment, uint64_t committed);
  // Appends one record (no fsync). data: tokens x hidden fp32 values.
  Location append(const uint8_t* key, uint32_t tokens, uint32_t hidden, uint8_t codec,
                  const float* data);
  // Makes every appended byte durable (fdatasync of each file touched since the last sync).
  void sync();
  // Truncates the current segment back to `end` after a failed append.
  void rollback(uint64_t end);
  uint32_t segment() const { return segment_; }
  uint64_t end() const { return end_; }

 private:
  void write_all(const void* data, uint64_t n, uint64_t offset);
  void create_segment(uint32_t segment);
  std::string dir_;
  uint8_t identity_[kIdentityBytes];
  uint64_t max_bytes_;
  int fd_ = -1;
  uint32_t segment_ = 0;
  uint64_t end_ = 0;
  std::vector<int> unsynced_;  // rotated-away files still to fdatasync
  std::vector<uint16_t> f16_;
  std::vector<uint8_t> buf_;
  uint64_t fault_limit_ = 0;  // ER_FAULT_WRITE_LIMIT: simulated ENOSPC past this many bytes
  uint64_t fault_sync_ = 0;   // ER_FAULT_SYNC_FAIL=N: the Nth fdatasync of a finished segment fails (EIO)
  uint64_t syncs_ = 0;
  static std::atomic<uint64_t> written_;
};

// A read-only mapping of a prefix of a segment file. The file stays open so that every
// read can check, with one fstat, that the file still holds the bytes it is about to
// touch: a segment truncated under a live mapping (by another process or a disk tool)
// is then an error naming the file, not a SIGBUS. What remains: a truncation that lands
// between that check and the read itself still raises SIGBUS, as with any mmap-based
// store (LMDB documents the same); segment files are append-only and no part of this
// library truncates committed bytes, so only an outside tool can do that.
struct Mapping {
  const uint8_t* data = nullptr;
  uint64_t size = 0;
  int fd = -1;
  ~Mapping();
};

class SegmentReader {
 public:
  SegmentReader(std::string dir, const uint8_t* identity);
  // A mapping covering [0, end) of the segment (re-mapped when the file has grown).
  // Throws std::runtime_error naming the file when it is missing, is not this store's,
  // or is shorter than `end` (checked on every call, mapped or not).
  std::shared_ptr<const Mapping> map(uint32_t segment, uint64_t end);
  const std::string& dir() const { return dir_; }
  // Drops the cached mappings (a mapping still used by a prefetch in flight lives on
  // until that read ends); later reads map again.
  void unmap_all();

 private:
  std::string dir_;
  uint8_t identity_[kIdentityBytes];
  std::mutex mu_;
  std::unordered_map<uint32_t, std::shared_ptr<const Mapping>> maps_;
};

// Decodes one record into out (tokens x hidden fp32). Checks the header against the
// expected key, tokens and hidden size, and the CRC when verify is true. Returns an
// empty string or a message (without the file name, which the caller adds).
std::string record_decode(const uint8_t* rec, uint64_t avail, const uint8_t* key,
                          uint32_t tokens, uint32_t hidden, bool verify, float* out,
                          uint64_t row_stride);

// The same checks for an fp16 record whose values are wanted as they are: out (tokens x
// hidden fp16) receives the payload unchanged. A record of another codec is refused.
std::string record_copy_f16(const uint8_t* rec, uint64_t avail, const uint8_t* key, uint32_t tokens,
                            uint32_t hidden, bool verify, uint16_t* out);

struct VerifyReport {
  uint64_t records = 0;
  uint64_t bytes = 0;  // committed bytes scanned
  std::vector<std::string> problems;
};
// Scans [header, committed) of a segment file: header, every record's layout and CRC.
VerifyReport verify_segment(const std::string& path, const uint8_t* identity, uint32_t segment,
                            uint64_t committed);

}  // namespace store
}  // namespace er
