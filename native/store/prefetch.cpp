#include "store/prefetch.h"
#include <sys/mman.h>
#include <unistd.h>
#include <chrono>
#include <cstdlib>
#include <cstring>

namespace er {
namespace store {

static uint64_t now_ns() {
  return (uint64_t)std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::unique_ptr<uint8_t[]> RingPool::take(uint64_t bytes, uint64_t* capacity) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    size_t best = free_.size();
    for (size_t i = 0; i < free_.size(); i++)
      if (free_[i].first >= bytes && (best == free_.size() || free_[i].first < free_[best].first)) best = i;
    // a block much larger than asked for stays for a loop that needs it
    if (best < free_.size() && free_[best].first <= 2 * bytes + (1 << 20)) {
      *capacity = free_[best].first;
      std::unique_ptr<uint8_t[]> b = std::move(free_[best].second);
      held_ -= free_[best].first;
      free_.erase(free_.begin() + (long)best);
      return b;
    }
  }
  *capacity = bytes;
  return std::unique_ptr<uint8_t[]>(new uint8_t[bytes]);
}

void RingPool::give(std::unique_ptr<uint8_t[]> block, uint64_t capacity) {
  if (!block) return;
  std::lock_guard<std::mutex> lock(mu_);
  // make room by dropping the smallest blocks first; a block larger than the pool is freed
  while (held_ + capacity > max_bytes_ && !free_.empty()) {
    size_t small = 0;
    for (size_t i = 1; i < free_.size(); i++)
      if (free_[i].first < free_[small].first) small = i;
    held_ -= free_[small].first;
    free_.erase(free_.begin() + (long)small);
  }
  if (held_ + capacity > max_bytes_) return;
  held_ += capacity;
  free_.emplace_back(capacity, std::move(block));
}

void RingPool::clear() {
  std::lock_guard<std::mutex> lock(mu_);
  free_.clear();
  held_ = 0;
}

Prefetcher::Prefetcher(std::shared_ptr<SegmentReader> reader, Plan plan, int depth, bool verify,
                       uint32_t max_rows, uint32_t max_tokens, std::shared_ptr<RingPool> pool, bool fp16)
    : reader_(std::move(reader)),
      pool_(std::move(pool)),
      plan_(std::move(plan)),
      verify_(verify),
      fp16_(fp16),
      threaded_(depth > 0),
      max_rows_(max_rows),
      max_tokens_(max_tokens),
      slots_(depth > 0 ? depth + 1 : 1) {
  const uint64_t H = plan_.hidden;
  const uint64_t cells = (uint64_t)max_rows_ * max_tokens_;
  const uint64_t bytes = cells * (H + 1) * 4;
  try {
    for (Slot& s : slots_) {
      s.block = pool_ ? pool_->take(bytes, &s.capacity) : std::unique_ptr<uint8_t[]>(new uint8_t[bytes]);
      if (!pool_) s.capacity = bytes;
      s.hidden = reinterpret_cast<float*>(s.block.get());
      s.mask = reinterpret_cast<int32_t*>(s.block.get() + cells * H * 4);
    }
  } catch (...) {
    free_buffers();
    throw;
  }
  if (const char* ra = std::getenv("ER_PREFETCH_READAHEAD")) read_ahead_ = std::string(ra) != "0";
  if (threaded_) thread_ = std::thread([this] { run(); });
}

uint64_t Prefetcher::ring_bytes(int depth, uint32_t max_rows, uint32_t max_tokens, uint32_t hidden) {
  return (uint64_t)(depth > 0 ? depth + 1 : 1) * max_rows * max_tokens * ((uint64_t)hidden + 1) * 4;
}

Prefetcher::~Prefetcher() {
  stop();
  free_buffers();
}

void Prefetcher::free_buffers() {
  std::lock_guard<std::mutex> lock(mu_);
  for (Slot& s : slots_) {
    if (pool_) pool_->give(std::move(s.block), s.capacity);
    s.block.reset();
    s.hidden = nullptr;
    s.mask = nullptr;
  }
}

void Prefetcher::stop() {
  Ready waiter;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    waiter = std::move(waiter_);
    waiter_ = nullptr;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (waiter) waiter(-1, "the prefetcher was stopped");
}

// Asks the kernel to read a batch's records ahead (large requests instead of one page
// fault at a time when the pages are not cached). Advisory: failures are ignored.
void Prefetcher::advise(uint64_t batch) {
  if (batch >= plan_.batches()) return;
  static const uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
  // one request per run of records that follow each other in a segment (a sequential
  // schedule is one request per batch), not one per record
  uint32_t seg = 0;
  uint64_t lo = 0, hi = 0;
  std::shared_ptr<const Mapping> m;
  auto flush = [&] {
    if (m && hi > lo) {
      uint64_t start = lo / page * page;
      madvise(const_cast<uint8_t*>(m->data) + start, hi - start, MADV_WILLNEED);
    }
  };
  for (uint32_t r = plan_.batch_start[batch]; r < plan_.batch_start[batch + 1]; r++) {
    const PlanRecord& rec = plan_.records[r];
    const uint64_t end = rec.offset + rec.bytes;
    if (m && rec.segment == seg && rec.offset >= lo && rec.offset <= hi + page && end <= m->size) {
      if (end > hi) hi = end;
      continue;
    }
    flush();
    try {
      m = reader_->map(rec.segment, end);
    } catch (const std::exception&) {
      return;  // the read itself reports the problem
    }
    seg = rec.segment;
    lo = rec.offset;
    hi = end;
  }
  flush();
}

void Prefetcher::fill(Slot& s, uint64_t batch) {
  uint64_t t0 = now_ns();
  // the thread reads ahead: ask the kernel for the next batch's pages while this one decodes
  if (threaded_ && read_ahead_) advise(batch + 1);
  const uint32_t H = plan_.hidden;
  uint32_t first = plan_.batch_start[batch], last = plan_.batch_start[batch + 1];
  uint32_t rows = last - first, T = 0;
  for (uint32_t r = first; r < last; r++) T = plan_.records[r].tokens > T ? plan_.records[r].tokens : T;
  s.rows = rows;
  s.tokens = T;
  s.batch = (int64_t)batch;
  s.error.clear();
  uint64_t bytes = 0;
  if (rows > max_rows_ || T > max_tokens_) {
    s.error = "batch " + std::to_string(batch) + " is larger than the prefetch buffers";
  } else if (!s.hidden || !s.mask) {
    s.error = "the prefetcher's buffers were freed";
  }
  for (uint32_t r = 0; r < rows && s.error.empty(); r++) {
    const PlanRecord& rec = plan_.records[first + r];
    float* out = s.hidden + (uint64_t)r * T * H;
    uint16_t* out16 = reinterpret_cast<uint16_t*>(s.hidden) + (uint64_t)r * T * H;
    int32_t* mask = s.mask + (uint64_t)r * T;
    try {
      auto m = reader_->map(rec.segment, rec.offset + rec.bytes);
      std::string err = fp16_ ? record_copy_f16(m->data + rec.offset, m->size - rec.offset, rec.key, rec.tokens, H,
                                                verify_, out16)
                              : record_decode(m->data + rec.offset, m->size - rec.offset, rec.key,
                                              rec.tokens, H, verify_, out, H);
      if (!err.empty()) {
        s.error = segment_path(reader_->dir(), rec.segment) + " at byte " +
                  std::to_string(rec.offset) + ": " + err;
        break;
      }
    } catch (const std::exception& e) {
      s.error = e.what();
      break;
    }
    bytes += rec.bytes;
    // zero padding past the row's tokens, mask 1 on real tokens
    if (fp16_) std::memset(out16 + (uint64_t)rec.tokens * H, 0, (uint64_t)(T - rec.tokens) * H * sizeof(uint16_t));
    else std::memset(out + (uint64_t)rec.tokens * H, 0, (uint64_t)(T - rec.tokens) * H * sizeof(float));
    for (uint32_t t = 0; t < T; t++) mask[t] = t < rec.tokens ? 1 : 0;
  }
  uint64_t dt = now_ns() - t0;
  std::lock_guard<std::mutex> lock(mu_);
  stats_.decode_ns += dt;
  stats_.bytes_read += bytes;
  stats_.batches++;
}

void Prefetcher::run() {
  for (;;) {
    Slot* target = nullptr;
    uint64_t batch;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] {
        if (stop_ || next_fill_ >= plan_.batches()) return true;
        for (Slot& s : slots_)
          if (s.state == Slot::kFree) return true;
        return false;
      });
      if (stop_ || next_fill_ >= plan_.batches()) return;
      for (Slot& s : slots_)
        if (s.state == Slot::kFree) {
          target = &s;
          break;
        }
      target->state = Slot::kFilling;
      batch = next_fill_++;
    }
    fill(*target, batch);
    Ready waiter;
    int slot = -1;
    {
      std::lock_guard<std::mutex> lock(mu_);
      target->state = Slot::kReady;
      if (waiter_ && (int64_t)waiter_index_ == target->batch) {
        slot = (int)(target - slots_.data());
        target->state = Slot::kHeld;
        next_take_++;
        stats_.consumer_wait_ns += now_ns() - waiter_t0_;
        waiter = std::move(waiter_);
        waiter_ = nullptr;
      }
    }
    cv_.notify_all();
    if (waiter) waiter(slot, slots_[slot].error);
  }
}

int Prefetcher::ready_slot(uint64_t index) const {
  for (size_t i = 0; i < slots_.size(); i++)
    if (slots_[i].state == Slot::kReady && slots_[i].batch == (int64_t)index) return (int)i;
  return -1;
}

void Prefetcher::acquire_async(uint64_t index, Ready done) {
  if (!threaded_) {  // the binding decodes on demand with acquire() instead
    done(-1, "acquire_async needs a prefetch thread (depth >= 1)");
    return;
  }
  int slot = -1;
  std::string err;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) {
      err = "the prefetcher was stopped";
    } else if (index != next_take_ || index >= plan_.batches() || waiter_) {
      err = "batches must be taken in schedule order, one at a time";
    } else if ((slot = ready_slot(index)) >= 0) {
      slots_[slot].state = Slot::kHeld;
      next_take_++;
      err = slots_[slot].error;
    } else {
      waiter_index_ = index;
      waiter_t0_ = now_ns();
      waiter_ = std::move(done);
      return;
    }
  }
  done(slot, err);
}

int Prefetcher::acquire(uint64_t index, std::string* err) {
  uint64_t t0 = now_ns();
  if (!threaded_) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) { *err = "the prefetcher was stopped"; return -1; }
      if (index != next_take_ || index >= plan_.batches() || slots_[0].state != Slot::kFree) {
        *err = "batches must be taken in schedule order, one at a time";
        return -1;
      }
      slots_[0].state = Slot::kFilling;
      next_take_++;
    }
    fill(slots_[0], index);
    std::lock_guard<std::mutex> lock(mu_);
    slots_[0].state = Slot::kHeld;
    stats_.consumer_wait_ns += now_ns() - t0;
    if (!slots_[0].error.empty()) { *err = slots_[0].error; }
    return 0;
  }
  std::unique_lock<std::mutex> lock(mu_);
  if (index != next_take_ || index >= plan_.batches()) {
    *err = "batches must be taken in schedule order, one at a time";
    return -1;
  }
  int found = -1;
  cv_.wait(lock, [&] { return stop_ || (found = ready_slot(index)) >= 0; });
  stats_.consumer_wait_ns += now_ns() - t0;
  if (found < 0) {
    *err = "the prefetcher was stopped";
    return -1;
  }
  slots_[found].state = Slot::kHeld;
  next_take_++;
  if (!slots_[found].error.empty()) *err = slots_[found].error;
  return found;
}

void Prefetcher::release(int slot) {
  if (slot < 0 || (size_t)slot >= slots_.size()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (slots_[slot].state == Slot::kHeld) slots_[slot].state = Slot::kFree;
  }
  cv_.notify_all();
}

PrefetchStats Prefetcher::stats() {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

}  // namespace store
}  // namespace er
