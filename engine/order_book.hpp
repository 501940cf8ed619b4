// One symbol's L2 order book, keyed as BitMEX keys it: (side, id) -> (price, size).
//
// Design, in the spirit of charles-cooper/itch-order-book:
// - Each side is one vector of levels (price, size, id) sorted so that the *best* price is at the
//   back. Best bid/ask is `back()` (O(1)), a ladder is a backwards walk over contiguous memory, and
//   almost all BitMEX traffic lands near the back, so inserts and deletes move few entries.
// - An open-addressing index maps (side, id) to the level's price, so an update or delete by id is
//   one probe plus a search for that price. The search looks at the 64 levels nearest the top first
//   (hot in cache) and is branchless; a deep level costs a binary search of the rest. Keeping the
//   levels themselves in the sorted vectors (no separate slot array) saves a cache miss per row,
//   which measured as the larger part of the cost of applying a row.
// - Prices are doubles, compared exactly. A JSON decimal parses to the nearest double, and
//   rounding is monotonic, so two different prices as listed by BitMEX (32186.5 down to 1.6425e-06)
//   keep their order. No fixed decimal scale is assumed.
// - Both id eras: rows that carry a price use it (post-2023 ids are arbitrary); an update without a
//   price takes the level's stored price (2021 ids encoded the price and updates omitted it).
//
// Memory is sized at construction and again by reserve() when a partial arrives (room for twice the
// partial's levels). A book that outgrows that while applying deltas grows, which allocates: the
// caller counts it (Stats::book_growths) so that a mis-sized deployment is visible.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "shm/types.hpp"

namespace bmx {

struct BookLevel {
  double price;
  int64_t size;
  uint64_t id;
};

// One side's levels, sorted, in an array with free room at *both* ends: an insert or erase moves
// whichever part of the array is shorter. A std::vector would move everything behind the touched
// level, and with the best price at the back a delete of a deep level moved the whole top of the
// book (the 2021 XBTUSD replay spent more of its memmove on that than on anything else). Sized by
// reserve() only; recentring when one end runs out of room moves elements, never allocates.
class LevelArray {
 public:
  LevelArray() = default;
  // Copies keep the source's capacity and layout. Cold path; allocates unless the target already
  // holds a buffer of the same capacity.
  LevelArray(const LevelArray& other) { *this = other; }
  LevelArray& operator=(const LevelArray& other);
  LevelArray(LevelArray&&) noexcept = default;
  LevelArray& operator=(LevelArray&&) noexcept = default;

  [[nodiscard]] size_t size() const noexcept { return end_ - begin_; }
  [[nodiscard]] bool empty() const noexcept { return end_ == begin_; }
  [[nodiscard]] const BookLevel* data() const noexcept { return buf_.get() + begin_; }
  [[nodiscard]] BookLevel* begin() noexcept { return buf_.get() + begin_; }
  [[nodiscard]] BookLevel* end() noexcept { return buf_.get() + end_; }
  [[nodiscard]] const BookLevel* begin() const noexcept { return buf_.get() + begin_; }
  [[nodiscard]] const BookLevel* end() const noexcept { return buf_.get() + end_; }
  [[nodiscard]] const BookLevel& operator[](size_t i) const noexcept { return buf_[begin_ + i]; }
  [[nodiscard]] BookLevel& operator[](size_t i) noexcept { return buf_[begin_ + i]; }
  [[nodiscard]] const BookLevel& back() const noexcept { return buf_[end_ - 1]; }

  void clear() noexcept { begin_ = end_ = cap_ / 2; }
  // Room for `levels` levels at any mix of ends. Cold path; allocates.
  void reserve(size_t levels);
  // Precondition: size() < levels reserved. No allocation.
  void insert_at(size_t pos, const BookLevel& level) noexcept;
  void erase_at(size_t pos) noexcept;
  // Unsorted appends (a partial's levels, sorted afterwards): when the back runs out, the levels
  // move to the front once, not to the middle again and again. No allocation.
  void push_back(const BookLevel& level) noexcept {
    if (end_ == cap_) {
      const size_t n = size();
      std::memmove(buf_.get(), buf_.get() + begin_, n * sizeof(BookLevel));
      begin_ = 0;
      end_ = n;
    }
    buf_[end_++] = level;
  }
  // Moves the levels to the middle of the buffer, leaving equal room at both ends. O(n).
  void recenter() noexcept;

 private:
  std::unique_ptr<BookLevel[]> buf_;
  size_t cap_ = 0;  // slots in buf_
  size_t begin_ = 0, end_ = 0;
};

class OrderBook {
 public:
  enum class Result : uint8_t {
    kOk,
    kUnknownLevel,     // update or delete of a (side, id) that the book does not hold
    kDuplicateInsert,  // insert of a (side, id) already held: applied as a replacement
  };

  explicit OrderBook(uint32_t capacity = 256);
  // Copies are deep and independent (benchmarks replay deltas on copies of one image). Cold path.
  OrderBook(const OrderBook&) = default;
  OrderBook& operator=(const OrderBook&) = default;
  OrderBook(OrderBook&&) noexcept = default;
  OrderBook& operator=(OrderBook&&) noexcept = default;

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
  // Every price handed to the book must be > 0 (BitMEX prices are; FeedEngine checks).
  Result update(Side side, uint64_t id, int64_t size, bool has_price, double price);
  Result remove(Side side, uint64_t id) noexcept;

  // Best-first access; i = 0 is the best level. Precondition: i < depth(side).
  [[nodiscard]] uint32_t depth(Side side) const noexcept {
    return static_cast<uint32_t>(order_[index(side)].size());
  }
  [[nodiscard]] const BookLevel& level(Side side, uint32_t i) const noexcept {
    const auto& o = order_[index(side)];
    return o[o.size() - 1 - i];
  }
  [[nodiscard]] const BookLevel* best(Side side) const noexcept {
    const auto& o = order_[index(side)];
    return o.empty() ? nullptr : &o.back();
  }
  // True when both sides are non-empty and best bid >= best ask: the book cannot be right.
  [[nodiscard]] bool crossed() const noexcept {
    const auto& b = order_[0];
    const auto& a = order_[1];
    return !b.empty() && !a.empty() && b.back().price >= a.back().price;
  }
  [[nodiscard]] uint32_t size() const noexcept { return depth(Side::kBuy) + depth(Side::kSell); }
  [[nodiscard]] uint32_t capacity() const noexcept { return capacity_; }
  [[nodiscard]] bool grew() const noexcept { return grew_; }
  void reset_grew() noexcept { grew_ = false; }

 private:
  // An index cell: the level's id and its current price, signed by side (+ bid, - ask), so that a
  // cell is 16 bytes and four fit a cache line. Prices are > 0 (the engine rejects others), so
  // key 0 marks a free cell.
  struct Cell {
    uint64_t id;
    double key;
  };
  static double key_of(Side side, double price) noexcept {
    return side == Side::kBuy ? price : -price;
  }
  static double price_of(double key) noexcept { return key < 0 ? -key : key; }

  static uint64_t home(uint64_t id, bool sell) noexcept {
    uint64_t k = id ^ (sell ? 0x9e3779b97f4a7c15ULL : 0);
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return k;
  }
  // Position of (side, id) in the index, or mask_ + 1.
  [[nodiscard]] uint64_t find_index(Side side, uint64_t id) const noexcept;
  void index_insert(Side side, uint64_t id, double price) noexcept;
  void index_erase(uint64_t pos) noexcept;
  void rebuild(uint32_t capacity);
  void make_room();  // before adding a level: grow when the book is at capacity

  // Position in order_[side] of the level `id` at `price`.
  [[nodiscard]] size_t position(Side side, double price, uint64_t id) const noexcept;
  void order_insert(Side side, const BookLevel& level) noexcept;

  LevelArray order_[2];  // [kBuy]: ascending price; [kSell]: descending; best at back
  std::vector<Cell> index_;
  uint64_t mask_ = 0;
  uint32_t capacity_ = 0;
  bool grew_ = false;
};

}  // namespace bmx
