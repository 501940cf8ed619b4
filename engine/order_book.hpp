// One symbol's L2 order book, keyed as BitMEX keys it: (side, id) -> (price, size).
//
// Design, in the spirit of charles-cooper/itch-order-book:
// - Levels live in a slot array; an open-addressing index maps (side, id) to a slot, so an update
//   or delete by id is one probe, whatever the depth of the book.
// - Each side keeps a vector of (price, slot) sorted so that the *best* price is at the back.
//   Almost all BitMEX traffic is at the top of the book, so inserts and deletes move only the few
//   entries behind the touched level, best bid/ask is `back()` (O(1)), and a ladder read walks
//   the vector backwards. The worst case, an insert or delete deep in a large book, is a memmove
//   of 16-byte entries found by binary search: still cache friendly.
// - Prices are doubles, compared exactly. A JSON decimal parses to the nearest double, and
//   rounding is monotonic, so two different prices as listed by BitMEX (32186.5 down to 1.6425e-06)
//   keep their order. No fixed decimal scale is assumed.
// - Both id eras: rows that carry a price use it (post-2023 ids are arbitrary); an update without a
//   price takes the level's stored price (2021 ids encoded the price and updates omitted it).
//
// Memory is sized at construction and again by reserve() when a partial arrives (capacity for twice
// the partial's levels). A book that outgrows that while applying deltas grows, which allocates:
// the caller counts it (Stats::book_growths) so that a mis-sized deployment is visible.
#pragma once

#include <cstdint>
#include <vector>

#include "shm/types.hpp"

namespace bmx {

struct BookLevel {
  double price;
  int64_t size;
  uint64_t id;
};

class OrderBook {
 public:
  enum class Result : uint8_t {
    kOk,
    kUnknownLevel,     // update or delete of a (side, id) that the book does not hold
    kDuplicateInsert,  // insert of a (side, id) already held: applied as a replacement
  };

  explicit OrderBook(uint32_t capacity = 256);

  // Empties the book, keeping its memory. Network thread; no allocation.
  void clear() noexcept;
  // Makes room for `levels` levels without further allocation. Cold path (partials).
  void reserve(uint32_t levels);

  // The three delta operations. Network thread; no allocation unless the book outgrows its
  // capacity (then `grew()` turns true until reset_grew()); no exception except std::bad_alloc
  // from that growth.
  Result insert(Side side, uint64_t id, double price, int64_t size);
  // A partial's levels, appended unsorted; finish_bulk() sorts each side once. A partial lists
  // ~10k levels in price order, which would make one-by-one sorted inserts quadratic on one side.
  // Cold path.
  Result bulk_insert(Side side, uint64_t id, double price, int64_t size);
  void finish_bulk();
  // `has_price` false: keep the level's price (2021 era). A new price moves the level.
  Result update(Side side, uint64_t id, int64_t size, bool has_price, double price) noexcept;
  Result remove(Side side, uint64_t id) noexcept;

  // Best-first access; i = 0 is the best level. Precondition: i < depth(side).
  [[nodiscard]] uint32_t depth(Side side) const noexcept {
    return static_cast<uint32_t>(order_[index(side)].size());
  }
  [[nodiscard]] const BookLevel& level(Side side, uint32_t i) const noexcept {
    const auto& o = order_[index(side)];
    return slots_[o[o.size() - 1 - i].slot];
  }
  [[nodiscard]] const BookLevel* best(Side side) const noexcept {
    const auto& o = order_[index(side)];
    return o.empty() ? nullptr : &slots_[o.back().slot];
  }
  // True when both sides are non-empty and best bid >= best ask: the book cannot be right.
  [[nodiscard]] bool crossed() const noexcept {
    const auto& b = order_[0];
    const auto& a = order_[1];
    return !b.empty() && !a.empty() && b.back().price >= a.back().price;
  }
  [[nodiscard]] uint32_t size() const noexcept { return depth(Side::kBuy) + depth(Side::kSell); }
  [[nodiscard]] uint32_t capacity() const noexcept { return static_cast<uint32_t>(slots_.size()); }
  [[nodiscard]] bool grew() const noexcept { return grew_; }
  void reset_grew() noexcept { grew_ = false; }

 public:
  // One entry of a side's price order (best at the back).
  struct Entry {
    double price;
    uint32_t slot;
  };

 private:
  static constexpr uint32_t kEmpty = UINT32_MAX;

  // Index cells hold the level id and, in one word, the slot with the side in its top bit: a full
  // 64-bit id and its side are both compared, so no two (side, id) keys can collide.
  static constexpr uint32_t kSideBit = 1u << 31;
  static uint32_t cell(uint32_t slot, Side side) noexcept {
    return slot | (side == Side::kSell ? kSideBit : 0u);
  }
  static uint32_t slot_of(uint32_t c) noexcept { return c & ~kSideBit; }
  static uint64_t home(uint64_t id, uint32_t side_bit) noexcept {
    uint64_t k = id ^ (side_bit ? 0x9e3779b97f4a7c15ULL : 0);
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return k;
  }
  // Position of (side, id) in the index, or mask_ + 1.
  [[nodiscard]] uint64_t find_index(Side side, uint64_t id) const noexcept;
  void index_insert(Side side, uint64_t id, uint32_t slot) noexcept;
  void index_erase(uint64_t pos) noexcept;
  void rebuild(uint32_t capacity);
  uint32_t take_slot();

  // Position in order_[side] of the entry for `slot` at `price`.
  [[nodiscard]] size_t position(Side side, double price, uint32_t slot) const noexcept;
  void order_insert(Side side, double price, uint32_t slot) noexcept;

  std::vector<BookLevel> slots_;
  std::vector<uint32_t> free_;   // slots given back by deletes
  uint32_t next_slot_ = 0;       // slots from here up are unused since clear()
  std::vector<Entry> order_[2];  // [kBuy]: ascending price; [kSell]: descending; best at back
  std::vector<uint64_t> index_keys_;
  std::vector<uint32_t> index_slots_;  // cell(slot, side); kEmpty marks a free cell
  uint64_t mask_ = 0;
  bool grew_ = false;
};

}  // namespace bmx
