// The prefetcher: a native thread that follows a schedule of batches, reads each
// batch's records through the segment maps, checks them, decodes them to fp32
// into a padded [B, T, H] buffer with its [B, T] attention mask, and keeps up to
// `depth` batches ready in a ring of reusable buffers. The consumer takes batches
// in schedule order; a batch's buffer goes back to the ring when the consumer
// takes the next one. With depth 0 there is no thread: each batch is decoded when
// the consumer asks for it (the baseline the benchmark compares against).
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>
#include "store/segment.h"

namespace er {
namespace store {

struct PlanRecord {
  uint32_t segment;
  uint64_t offset;
  uint64_t bytes;
  uint32_t tokens;
  uint8_t key[kKeyBytes];
};

struct Plan {
  uint32_t hidden = 0;
  std::vector<uint32_t> batch_start;  // (batches + 1) offsets into records
  std::vector<PlanRecord> records;
  uint64_t batches() const { return batch_start.empty() ? 0 : batch_start.size() - 1; }
};

// Ring memory reused across the prefetchers of one store: each batches() loop (one per
// epoch, per evaluation) would otherwise get fresh pages that the kernel must fault in and
// zero while the loop runs. Blocks are uninitialised; the pool keeps at most max_bytes.
class RingPool {
 public:
  explicit RingPool(uint64_t max_bytes) : max_bytes_(max_bytes) {}
  // A block of at least `bytes` (the smallest free one that fits, else a new one: may
  // throw std::bad_alloc); its capacity in *capacity.
  std::unique_ptr<uint8_t[]> take(uint64_t bytes, uint64_t* capacity);
  // Keeps a block for later, or frees it when the pool is full.
  void give(std::unique_ptr<uint8_t[]> block, uint64_t capacity);
  void clear();
  uint64_t held() const { return held_; }

 private:
  std::mutex mu_;
  std::vector<std::pair<uint64_t, std::unique_ptr<uint8_t[]>>> free_;
  uint64_t held_ = 0, max_bytes_;
};

// A ring buffer: one block holding the hidden states (max_rows, max_tokens, H) and then
// the mask (max_rows, max_tokens). fill() writes every byte a batch exposes (values, zero
// padding and mask), so the block needs no initialisation. Given back to the pool by
// free_buffers() or the destructor.
struct Slot {
  std::unique_ptr<uint8_t[]> block;
  uint64_t capacity = 0;
  float* hidden = nullptr;
  int32_t* mask = nullptr;
  uint32_t rows = 0, tokens = 0;
  int64_t batch = -1;
  std::string error;
  enum State { kFree, kFilling, kReady, kHeld } state = kFree;
};

struct PrefetchStats {
  uint64_t consumer_wait_ns = 0;  // time acquire() spent waiting for data
  uint64_t decode_ns = 0;         // time spent reading and decoding batches
  uint64_t bytes_read = 0;        // record bytes read from the maps
  uint64_t batches = 0;
};

class Prefetcher {
 public:
  // Throws std::bad_alloc when the ring cannot be allocated (the binding reports the size).
  // fp16: a batch's hidden states stay fp16 as the records hold them (checked as in decode:
  // header, key, CRC), (rows, tokens, H) uint16 at the start of the slot's hidden area;
  // records of an fp32 store are refused then.
  Prefetcher(std::shared_ptr<SegmentReader> reader, Plan plan, int depth, bool verify,
             uint32_t max_rows, uint32_t max_tokens, std::shared_ptr<RingPool> pool = nullptr, bool fp16 = false);
  // Bytes of the ring: (depth + 1) slots (one without a thread) of max_rows x max_tokens x (H + 1) x 4.
  static uint64_t ring_bytes(int depth, uint32_t max_rows, uint32_t max_tokens, uint32_t hidden);
  ~Prefetcher();
  // Waits for batch `index` (the next in schedule order) and returns its slot, or -1
  // with *err set (a corrupt record, a stopped prefetcher, out of order).
  int acquire(uint64_t index, std::string* err);
  // The same without waiting (threaded prefetchers only): when batch `index` is ready (or an
  // error is known) done(slot, err) runs now, on the calling thread; otherwise it runs
  // later on the prefetch thread once the batch is decoded, or from stop() with the
  // error "stopped". One waiter at a time.
  using Ready = std::function<void(int slot, std::string err)>;
  void acquire_async(uint64_t index, Ready done);
  bool threaded() const { return threaded_; }
  void release(int slot);
  void stop();
  // Frees the ring's memory. Only after stop() and once no acquire() is running and no
  // view of a slot is left (the binding tracks both).
  void free_buffers();
  Slot& slot(int i) { return slots_[i]; }
  uint32_t hidden() const { return plan_.hidden; }
  bool fp16() const { return fp16_; }
  size_t slot_count() const { return slots_.size(); }
  uint64_t batches() const { return plan_.batches(); }
  PrefetchStats stats();

 private:
  void fill(Slot& s, uint64_t batch);
  // under mu_: the ready slot holding batch `index`, or -1
  int ready_slot(uint64_t index) const;
  void advise(uint64_t batch);
  void run();
  std::shared_ptr<SegmentReader> reader_;
  std::shared_ptr<RingPool> pool_;
  Plan plan_;
  bool verify_;
  bool fp16_ = false;
  // the thread asks the kernel (madvise WILLNEED) for the next batch's pages while it
  // decodes the current one; ER_PREFETCH_READAHEAD=0 switches that off (measurements)
  bool read_ahead_ = true;
  bool threaded_;
  uint32_t max_rows_, max_tokens_;
  std::vector<Slot> slots_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t next_fill_ = 0;
  uint64_t next_take_ = 0;
  bool stop_ = false;
  // the batch an acquire_async() waits for, its callback and when it began waiting
  uint64_t waiter_index_ = 0, waiter_t0_ = 0;
  Ready waiter_;
  PrefetchStats stats_;
  std::thread thread_;
};

}  // namespace store
}  // namespace er
