// The consumer's side of a segment: a read-only mapping, the reader's own ring cursor, and
// consistent copies of books, tops, trades, quotes and rows (each read under its seqlock and
// retried until whole). Links the standard library and Boost.Interprocess only.
//
// Typical strategy loop:
//   auto r = shm::Reader::attach("/bitmex-testnet");
//   r.seek_to_head();                       // or resync(): copy books first, then follow the ring
//   for (;;) {
//     auto p = r.poll([&](const shm::Delta& d) { ... });
//     if (p.lapped || p.restarted) { ...resync... }
//     if (p.records == 0) shm::idle_pause();   // nothing new: leave the producer's line alone
//   }
// A reader never writes to the segment (its mapping is read-only) and the producer never waits for
// it: a reader that falls more than the ring's size behind is told how many records it lost.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shm/layout.hpp"
#include "shm/segment.hpp"
#include "shm/types.hpp"
#include "shm/words.hpp"

namespace bmx::shm {

// What a reader spinning on poll() does when poll() found nothing: the CPU's spin-wait hint (PAUSE
// on x86, YIELD on Arm), as Aeron's and the Disruptor's busy-spin strategies do. A reader that
// finds nothing is reading the ring slot the producer writes next; without the hint, a reader
// re-reads it every few cycles and each producer store to that line first has to take it back
// from every spinning reader. The hint spaces those reads (tens of ns), so the producer keeps its
// speed with many readers attached. No system call: the reader stays on its core.
inline void idle_pause() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// One record as the reader sees it. `text` (kRow) is valid during the callback only.
struct Delta {
  uint64_t seq = 0;
  RecordBody body{};
  std::string_view text;
  [[nodiscard]] RecordKind kind() const noexcept { return static_cast<RecordKind>(body.kind); }
  [[nodiscard]] bool last_in_frame() const noexcept { return body.flags & kFlagLastInFrame; }
  [[nodiscard]] Side side() const noexcept {
    return body.flags & kFlagSell ? Side::kSell : Side::kBuy;
  }
  [[nodiscard]] Action row_action() const noexcept {
    return static_cast<Action>((body.flags >> kRowActionShift) & 3);
  }
};

struct PollResult {
  uint32_t records = 0;    // handed to the callback
  uint64_t lost = 0;       // records overwritten before this reader got to them
  bool lapped = false;     // lost > 0: the cursor moved to the head; resync the state
  bool restarted = false;  // the producer re-initialised the segment: re-attach and resync
};

// A book copied whole: levels best first (bids by price descending, asks ascending; equal prices,
// which a sane book never has, by slot, the higher first).
struct BookCopy {
  uint16_t table = 0;
  uint32_t symbol = kNoSymbol;
  uint64_t stamp = 0;  // the ring sequence of the last record it reflects
  bool stale = false;
  std::vector<Level> bids, asks;
  // copy_book's scratch (the slots as copied, their order), kept to spare later copies allocations.
  std::vector<BookSlot> raw;
  std::vector<uint32_t> order;
};

struct Top {
  bool has_bid = false, has_ask = false, stale = false;
  Level bid{}, ask{};
  uint64_t stamp = 0;
  uint64_t updates = 0;
  int64_t last_recv_ns = 0;  // receive time of the last frame that changed the book
};

enum class Liveness { kLive, kStale, kDead, kRestarted, kStopped };
std::string_view to_string(Liveness l) noexcept;

class Reader {
 public:
  // Attaches read-only; throws AttachError with one clear sentence.
  static Reader attach(const std::string& name,
                       std::chrono::milliseconds timeout = std::chrono::milliseconds(2000));
  explicit Reader(Segment segment);

  // ---- ring ------------------------------------------------------------------------------------
  [[nodiscard]] uint64_t cursor() const noexcept { return cursor_; }
  // The sequence the producer will write next (a frame boundary).
  [[nodiscard]] uint64_t head() const noexcept {
    return seg_.header().next_seq.load(std::memory_order_acquire);
  }
  void seek(uint64_t seq) noexcept { cursor_ = seq; }
  void seek_to_head() noexcept { cursor_ = head(); }

  // Hands up to `max` available records to `f(const Delta&)`, oldest first, and advances the
  // cursor. Stops at the first record not yet written. No allocation (text goes to a buffer
  // reserved at attach), no lock, no system call.
  template <class F>
  PollResult poll(F&& f, uint32_t max = 4096);

  // ---- state
  // -------------------------------------------------------------------------------------
  [[nodiscard]] std::optional<uint32_t> symbol_id(std::string_view name) const noexcept;
  [[nodiscard]] std::string_view symbol_name(uint32_t id) const noexcept;
  [[nodiscard]] std::optional<uint16_t> table_id(std::string_view name) const noexcept;
  [[nodiscard]] std::string_view table_name(uint16_t id) const noexcept;
  [[nodiscard]] TableKind table_kind(uint16_t id) const noexcept;
  // True once a partial of table `id` was published (its rows region is then meaningful).
  [[nodiscard]] bool table_has_partial(uint16_t id) const noexcept;
  // True while the producer cannot trust table `id`'s rows (an update for a row it did not hold, a
  // frame lost, the link lost), until the table's next partial.
  [[nodiscard]] bool table_stale(uint16_t id) const noexcept;
  [[nodiscard]] uint32_t symbol_count() const noexcept;
  [[nodiscard]] uint32_t table_count() const noexcept;

  // Every (table, symbol) that has a book slot.
  [[nodiscard]] std::vector<std::pair<uint16_t, uint32_t>> books() const;
  // A whole book, consistent (seqlock). False when there is no such book, its state is impossible,
  // its seqlock stayed odd and unchanged for ~20 ms while the producer's process is gone (died
  // mid-frame), for 250 ms while it exists (a producer kept off its core mid-frame gets that long),
  // or kept changing for 100000 tries (retry later). top() likewise.
  bool copy_book(uint16_t table, uint32_t symbol, BookCopy& out) const;
  bool top(uint16_t table, uint32_t symbol, Top& out) const noexcept;
  bool trade_quote(uint32_t symbol, TradeQuoteBody& out) const noexcept;
  // The current JSON text of the row of `table` whose key (values joined by '|') is `key`.
  bool find_row(uint16_t table, std::string_view key, std::string& json) const;
  // Every live row of `table` as (key, json). Consistent per row.
  std::vector<std::pair<std::string, std::string>> rows(uint16_t table) const;

  // ---- producer
  // ----------------------------------------------------------------------------------
  [[nodiscard]] Liveness liveness(
      std::chrono::nanoseconds stale_after = std::chrono::seconds(1)) const noexcept;
  [[nodiscard]] uint64_t epoch() const noexcept { return epoch_; }
  [[nodiscard]] LinkState link_state() const noexcept {
    return static_cast<LinkState>(seg_.header().link_state.load(std::memory_order_acquire));
  }
  [[nodiscard]] const Header& header() const noexcept { return seg_.header(); }
  [[nodiscard]] const Stats& stats() const noexcept { return seg_.stats(); }
  [[nodiscard]] const Segment& segment() const noexcept { return seg_; }

 private:
  [[nodiscard]] const Book* find_book(uint16_t table, uint32_t symbol) const noexcept;
  [[nodiscard]] std::string_view dir_name(const DirEntry& e) const noexcept;
  PollResult lapped(PollResult r) noexcept;

  Segment seg_;
  uint64_t epoch_ = 0;
  uint64_t cursor_ = 1;
  uint64_t ring_mask_ = 0;
  std::string text_;  // reserved to the largest row the ring can carry
};

template <class F>
PollResult Reader::poll(F&& f, uint32_t max) {
  PollResult r;
  if (seg_.header().epoch.load(std::memory_order_acquire) != epoch_) {
    r.restarted = true;
    return r;
  }
  while (r.records < max) {
    const Record& rec = seg_.slot(cursor_);
    const uint64_t s1 = rec.seq.load(std::memory_order_acquire);
    if (s1 != cursor_) {
      if (s1 == kBusy || s1 < cursor_) break;  // not written yet
      return lapped(r);
    }
    Delta d;
    d.seq = cursor_;
    load_words(&d.body, &rec.body, sizeof(RecordBody) / 8);
    if (!slot_unchanged(rec.seq, s1)) return lapped(r);
    uint64_t slots = 0;
    if (d.body.kind == static_cast<uint8_t>(RecordKind::kRow)) {
      const uint64_t bytes = static_cast<uint64_t>(d.body.size);
      slots = (bytes + kTextSlotBytes - 1) / kTextSlotBytes;
      if (bytes > text_.size() || slots > ring_mask_) return lapped(r);  // hostile or torn
      for (uint64_t i = 0; i < slots; ++i) {
        const auto& t = reinterpret_cast<const TextSlot&>(seg_.slot(cursor_ + 1 + i));
        const uint64_t ts = t.seq.load(std::memory_order_acquire);
        if (ts != cursor_ + 1 + i) return lapped(r);
        char chunk[kTextSlotBytes];
        load_words(chunk, t.bytes, kTextSlotBytes / 8);
        if (!slot_unchanged(t.seq, ts)) return lapped(r);
        const uint64_t at = i * kTextSlotBytes;
        std::memcpy(text_.data() + at, chunk, std::min<uint64_t>(kTextSlotBytes, bytes - at));
      }
      d.text = std::string_view(text_.data(), bytes);
    }
    cursor_ += 1 + slots;
    ++r.records;
    f(static_cast<const Delta&>(d));
  }
  return r;
}

}  // namespace bmx::shm
