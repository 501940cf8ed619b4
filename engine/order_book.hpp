// One symbol's L2 order book, keyed as BitMEX keys it: (side, id) -> (price, size).
//
// Design, in the spirit of charles-cooper/itch-order-book. Three structures, each doing one job
// (the second in one of two forms):
// - A pool of levels (price, size, id), 24 bytes each, that never move while they live: level()
//   and best() hand out references into it. A slot comes from a stack of free slots (LIFO, so a
//   delete followed by an insert reuses a slot that is still in cache) and goes back on delete.
// - Per side, the price order: a dense array of keys (the price, its sign flipped for asks, so
//   that both sides ascend towards the best and one comparison serves both) and, parallel to it,
//   the pool slot of each level. Best is at the back. A search reads keys only (8 levels per
//   cache line instead of 2.7 with whole levels), and counts the 64 keys nearest the best with
//   AVX2 compares in one branch-free pass: 4/5 of the 2021 sessions' inserts and deletes land
//   there. Inserts and deletes shift 12 bytes per level (key + slot) with inline 32-byte copies
//   (no libc memmove call), and only the shorter part: there is free room at both ends.
//   Each side is two such arrays (tiers): the best 64..192 levels, and the rest. Read one after
//   the other they are the side's order (level(i) stays O(1)); apart, a level below the top tier
//   shifts only the levels between it and the nearer end of the deep tier. One level moves
//   between the tiers, O(1), when the top tier leaves its bounds.
// - When the book's prices lie on a grid (every BitMEX book's do: multiples of its tick), the top
//   tier is replaced by a price ladder (book_detail::PriceLadder): one cell per tick for a window
//   of 4096 ticks around the best, holding the level's slot, and a bitmap of the occupied ticks.
//   An insert or delete there is one cell and one bit, with no search and no shift: the tick is
//   the key times a constant, rounded, and checked exact. Levels below the window stay in the
//   deep tier as above; the window follows the market (up when a price lands above it, down when
//   the best comes near its bottom), moving the levels it passes between itself and the deep
//   tier, O(window + levels moved), no allocation. The grid is found when a partial's levels are
//   in (finish_bulk): the fewest decimals that write every price, then the greatest common divisor
//   in those units (a tick of 0.5 is 5 units of 0.1). A price off that grid makes the book look
//   for a finer one holding every level (a partial of whole prices, then a half); a price on no
//   grid of at most 12 decimals, or an equal price, puts the book back in the sorted tiers, every
//   level kept, until its next partial. Both cost O(levels) once and are counted (regrids()).
// - An index (open addressing, buckets of four cells in one cache line, linear probing between
//   buckets, backward-shift deletion: no tombstones, so a long-running book never degrades) maps
//   (side, id) to the slot and the key. An update that keeps the price (every 2021 update) is one
//   probe and one store into the pool: no search, no shift. A delete or a price move has the key
//   in the index line it probed, so its search does not wait for the pool line; the pool only
//   confirms the id, off the critical path. Rows that carry their price (every row since 2023)
//   on a price ladder go the other way round: the price's cell gives the slot, the pool line
//   confirms the id; an update then needs no index line at all, and a delete finds its index
//   cell by tag and slot while the pool line loads. A price that is not the level's falls back
//   to the lookup by id.
// - Before mid-2023 BitMEX derived a level's id from its price (id = 100000000 * symbol index -
//   price / tick size), and its updates and deletes carried no price. When a partial's levels all
//   follow such a rule on the book's grid (id = base - step * tick, learnt from two levels and
//   checked on every one), the book finds a level by its id's tick instead, in the ladder (one
//   cell) or the deep tier (a search by key), and does not keep the index at all: an operation
//   reads no index line, and a delete not even the pool line. The first row that breaks the rule
//   (an insert whose id does not match its price, an update that moves a price, growth) rebuilds
//   the index from the levels, O(levels) once, and the book goes on as below until its next
//   partial. Since 2023 ids are arbitrary: those books always use the index.
//
// The index hash keeps four consecutive ids in one bucket (2021 ids of adjacent ticks are often
// consecutive, so the top of such a book lives in a few hot lines) and scatters the groups by
// multiply-shift hashing with an odd multiplier; arbitrary ids (since 2023) spread as with any
// multiplicative hash, and so do structured ones (multiples of 2^k, consecutive). The guard
// against ids that still collide (crafted against the multiplier, say): an insert that passes
// more than kMaxProbe full buckets re-seeds the multiplier and rebuilds the index in place. That
// costs O(levels) once, allocates nothing, and is counted (rehashes()); a repeat needs ids that
// collide under the new multiplier too, and one insert re-seeds three times at most.
//
// Prices are doubles, compared exactly. A JSON decimal parses to the nearest double, and rounding
// is monotonic, so two different prices as listed by BitMEX (32186.5 down to 1.6425e-06) keep
// their order; negation is exact. No fixed decimal scale is assumed (the grid is learnt, and a
// book off every grid is still exact in the sorted tiers). Both id eras: rows that carry
// a price use it (post-2023 ids are arbitrary); an update without a price keeps the level's price
// (2021 ids encoded the price and updates omitted it); an update with a new price moves the level.
// Equal prices never occur in a sane book, but are kept and found by id.
//
// Memory is sized at construction and again by reserve() when a partial arrives. A book that
// outgrows that while applying deltas grows, which allocates: the caller counts it
// (Stats::book_growths) so that a mis-sized deployment is visible. The worst cases: an insert or
// delete deep in a side moves up to half of its deep tier (12 bytes a level) and searches
// O(log n); recentring an array whose free room at one end ran out moves it once (O(n)); a
// re-seed of the index, a move to a finer grid or off the grid is O(n); a ladder window's move is
// O(4096 / 64 + levels moved). Measured in bench/book_bench.cpp (bench_book).
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <type_traits>
#include <utility>

#include "shm/types.hpp"

namespace bmx {

struct BookLevel {
  double price;
  int64_t size;
  uint64_t id;
};

namespace book_detail {

// A fixed-length heap array of a trivially copyable T, starting on a cache-line boundary (an index
// bucket is exactly one line). Copies are deep. Allocation only in the constructors and copy
// assignment.
template <class T>
class LineArray {
  static_assert(std::is_trivially_copyable_v<T>);
  static constexpr std::align_val_t kAlign{64};

 public:
  LineArray() = default;
  explicit LineArray(size_t n) : p_(allocate(n)), n_(n) {}
  LineArray(const LineArray& o) : p_(allocate(o.n_)), n_(o.n_) {
    if (n_) std::memcpy(p_, o.p_, n_ * sizeof(T));
  }
  LineArray& operator=(const LineArray& o) {
    if (this == &o) return *this;
    if (n_ != o.n_) {
      LineArray fresh(o.n_);
      swap(fresh);
    }
    if (n_) std::memcpy(p_, o.p_, n_ * sizeof(T));
    return *this;
  }
  LineArray(LineArray&& o) noexcept
      : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  LineArray& operator=(LineArray&& o) noexcept {
    swap(o);
    return *this;
  }
  ~LineArray() {
    if (p_) ::operator delete(p_, kAlign);
  }
  void swap(LineArray& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
  }

  [[nodiscard]] size_t size() const noexcept { return n_; }
  [[nodiscard]] T* data() noexcept { return p_; }
  [[nodiscard]] const T* data() const noexcept { return p_; }
  [[nodiscard]] T& operator[](size_t i) noexcept { return p_[i]; }
  [[nodiscard]] const T& operator[](size_t i) const noexcept { return p_[i]; }

 private:
  static T* allocate(size_t n) {
    if (n == 0) return nullptr;
    // Trivially copyable T are implicit-lifetime types: the storage holds T objects from here on.
    // Zeroed, so that copies and the free room past the levels never hold indeterminate bytes.
    void* p = ::operator new(n * sizeof(T), kAlign);
    std::memset(p, 0, n * sizeof(T));
    return static_cast<T*>(p);
  }

  T* p_ = nullptr;
  size_t n_ = 0;
};

// One tier of a side's price order: keys ascending (best at the back) and the pool slot of each,
// in two parallel arrays with free room at both ends, so that an insert or erase moves whichever
// part is shorter. Each buffer:
//
//   0           kLowPad          begin_        end_             len - kHighPad        len
//   | -inf keys, never a level   | -inf keys   | levels   | free room    | slack for shifts |
//
// Keys below begin_ are always -inf, so the search may read the kTop keys below end_ even when the
// tier holds fewer. Shifts copy whole 16-level steps, rounded away from the level inserted or
// erased: the extra levels they copy come from and go to the free room (past end_, or below
// begin_ where copying -inf down keeps it -inf). Sized by reserve() only; recentring moves levels,
// never allocates.
class alignas(64) SideOrder {  // one line each: four of them per book, all hot
 public:
  static constexpr size_t kTop = 64;       // keys counted first by a search
  static constexpr size_t kLowPad = kTop;  // how far below begin_ a search may read
  static constexpr size_t kHighPad = 32;   // shifts copy up to 16 slots past the end

  [[nodiscard]] size_t size() const noexcept { return end_ - begin_; }
  [[nodiscard]] bool empty() const noexcept { return end_ == begin_; }
  [[nodiscard]] const double* keys() const noexcept { return keys_.data() + begin_; }
  [[nodiscard]] const uint32_t* slots() const noexcept { return slots_.data() + begin_; }
  [[nodiscard]] double top_key() const noexcept { return keys_[end_ - 1]; }
  [[nodiscard]] uint32_t top_slot() const noexcept { return slots_[end_ - 1]; }
  [[nodiscard]] double front_key() const noexcept { return keys_[begin_]; }
  static constexpr size_t kNone = SIZE_MAX;

  // Room for `levels` levels at any mix of ends, keeping the levels held. Cold path; allocates.
  void reserve(size_t levels);
  // No allocation. O(buffer) (refills the -inf keys).
  void clear() noexcept;

  // The hot operations, defined in order_book.cpp (the only caller). No allocation, no exception.
  // Precondition of inserts: size() < levels reserved.
  void insert_at(size_t pos, double key, uint32_t slot) noexcept;
  void erase_at(size_t pos) noexcept;
  // First position whose key is >= key (kStrict: > key).
  template <bool kStrict>
  [[nodiscard]] size_t bound(double key) const noexcept;
  // The two halves of bound(): how many of the kTop keys below end_ are >= key (kStrict: > key),
  // and, when that is all kTop, the position among the others.
  template <bool kStrict>
  [[nodiscard]] size_t count_top(double key) const noexcept;
  template <bool kStrict>
  [[nodiscard]] size_t bound_below_top(double key) const noexcept;
  // Position of the level held in `slot` with `key`, or kNone.
  [[nodiscard]] size_t find(double key, uint32_t slot) const noexcept;

  // The ends, O(1) (a recentre when an end has no room: O(n), rare). No allocation. push_back
  // also serves as the unsorted append of a partial's levels, sorted by sort_by().
  void push_back(double key, uint32_t slot) noexcept;
  void push_front(double key, uint32_t slot) noexcept;
  uint32_t pop_back(double& key) noexcept;
  uint32_t pop_front(double& key) noexcept;
  // Sorts the levels by key_of(slot) and rewrites their keys. Cold path; no allocation.
  template <class KeyOf>
  void sort_by(KeyOf key_of);
  // Moves the levels to the middle of the buffer. O(n), no allocation.
  void recenter() noexcept;

 private:
  [[nodiscard]] size_t usable_end() const noexcept { return len_ - kHighPad; }

  LineArray<double> keys_;
  LineArray<uint32_t> slots_;
  size_t len_ = 0;  // length of both buffers
  size_t begin_ = 0, end_ = 0;
};

// The best levels of one side while its prices lie on a grid (see OrderBook): one cell per tick of
// a window of kTicks ticks, [lo, lo + kTicks), holding the pool slot of the level at that tick; a
// bitmap of the occupied cells, and a summary word with a bit for each bitmap word that has any.
// Ticks ascend towards the best (for asks they are the negated price's ticks, as keys are). An
// insert or delete is one cell and one bit: no search, no shift. The best tick is kept; losing it
// finds the next one below with two bit scans. Ranks and the i-th best level count bits. Memory is
// allocated once, by the constructor (16 KiB of cells, 512 bytes of bitmap); nothing else
// allocates.
class PriceLadder {
 public:
  // 4096 ticks: 96% of the recorded sessions' inserts land in the window (1024 ticks: 79%); the
  // rest pay the deep tier's search and shift. bench_book prints the share.
  static constexpr int64_t kTicks = 4096;
  static constexpr size_t kWords = kTicks / 64;
  static_assert(kWords <= 64, "one summary word");

  PriceLadder() : cells_(kTicks), bits_(kWords) {}

  [[nodiscard]] uint32_t count() const noexcept { return count_; }
  [[nodiscard]] bool empty() const noexcept { return count_ == 0; }
  [[nodiscard]] int64_t lo() const noexcept { return lo_; }
  // The highest occupied tick and its level's slot. Precondition: !empty().
  [[nodiscard]] int64_t best() const noexcept { return best_; }
  [[nodiscard]] uint32_t best_slot() const noexcept { return cells_[best_ - lo_]; }
  [[nodiscard]] bool within(int64_t t) const noexcept {
    return static_cast<uint64_t>(t - lo_) < static_cast<uint64_t>(kTicks);
  }
  // Preconditions: within(t).
  [[nodiscard]] bool occupied(int64_t t) const noexcept {
    const auto i = static_cast<uint64_t>(t - lo_);
    return (bits_[i >> 6] >> (i & 63)) & 1;
  }
  [[nodiscard]] uint32_t slot_at(int64_t t) const noexcept { return cells_[t - lo_]; }
  // Precondition: within(t), !occupied(t).
  void set(int64_t t, uint32_t slot) noexcept {
    const auto i = static_cast<uint64_t>(t - lo_);
    cells_[i] = slot;
    bits_[i >> 6] |= uint64_t{1} << (i & 63);
    words_ |= uint64_t{1} << (i >> 6);
    best_ = count_++ == 0 || t > best_ ? t : best_;
  }
  // Precondition: occupied(t). The best moves down to the next occupied tick when t was it.
  void erase(int64_t t) noexcept {
    const auto i = static_cast<uint64_t>(t - lo_);
    uint64_t& word = bits_[i >> 6];
    word &= ~(uint64_t{1} << (i & 63));
    words_ &= ~(uint64_t{word == 0} << (i >> 6));
    if (--count_ != 0 && t == best_) best_ = highest_below(i);
  }
  // Occupied ticks above t. No allocation.
  [[nodiscard]] uint32_t rank(int64_t t) const noexcept;
  // Slot of the i-th best level. Precondition: i < count().
  [[nodiscard]] uint32_t select(uint32_t i) const noexcept;
  // Calls f(tick, slot) for every level, lowest tick first.
  template <class F>
  void for_each(F f) const {
    for (uint64_t ws = words_; ws != 0; ws &= ws - 1) {
      const auto w = static_cast<size_t>(std::countr_zero(ws));
      for (uint64_t m = bits_[w]; m != 0; m &= m - 1) {
        const size_t i = w * 64 + static_cast<size_t>(std::countr_zero(m));
        f(lo_ + static_cast<int64_t>(i), cells_[i]);
      }
    }
  }
  // Takes out every level below tick `t`, lowest first, handing each to f(tick, slot).
  template <class F>
  void take_below(int64_t t, F f) {
    for (uint64_t ws = words_; ws != 0; ws &= ws - 1) {
      const auto w = static_cast<size_t>(std::countr_zero(ws));
      if (lo_ + static_cast<int64_t>(w * 64) >= t) break;
      for (uint64_t m = bits_[w]; m != 0; m &= m - 1) {
        const size_t i = w * 64 + static_cast<size_t>(std::countr_zero(m));
        if (lo_ + static_cast<int64_t>(i) >= t) break;
        f(lo_ + static_cast<int64_t>(i), cells_[i]);
        bits_[w] &= ~(uint64_t{1} << (i & 63));
        --count_;
      }
      words_ &= ~(uint64_t{bits_[w] == 0} << w);
    }
  }
  // Moves the window to start at `lo`. Precondition: every level lies in [lo, lo + kTicks).
  // O(kTicks / 64 + levels).
  void move_to(int64_t lo) noexcept;
  // Empties the ladder and puts its window at `lo`.
  void reset(int64_t lo) noexcept;

 private:
  // The highest occupied cell below cell i. Precondition: there is one.
  [[nodiscard]] int64_t highest_below(uint64_t i) const noexcept {
    size_t w = i >> 6;
    uint64_t m = bits_[w] & ((uint64_t{1} << (i & 63)) - 1);
    if (m == 0) {
      w = 63 - static_cast<size_t>(std::countl_zero(words_ & ((uint64_t{1} << w) - 1)));
      m = bits_[w];
    }
    return lo_ + static_cast<int64_t>(w * 64 + 63 - static_cast<size_t>(std::countl_zero(m)));
  }

  LineArray<uint32_t> cells_;
  LineArray<uint64_t> bits_;
  uint64_t words_ = 0;  // bit w: bits_[w] != 0
  int64_t lo_ = 0;
  int64_t best_ = 0;
  uint32_t count_ = 0;
};

}  // namespace book_detail

class OrderBook {
 public:
  enum class Result : uint8_t {
    kOk,
    kUnknownLevel,     // update or delete of a (side, id) that the book does not hold
    kDuplicateInsert,  // insert of a (side, id) already held: applied as a replacement
  };

  // An insert that passes more full index buckets (4 cells each) than this re-seeds the index
  // hash (see above).
  static constexpr uint32_t kMaxProbe = 16;
  // The index hash's multiplier until the first re-seed (tests craft colliding ids from it).
  static constexpr uint64_t kFirstMultiplier = 0x9e3779b97f4a7c15ULL;  // 2^64 / golden ratio

  explicit OrderBook(uint32_t capacity = 256);
  // Copies are deep and independent (benchmarks replay deltas on copies of one image). Cold path.
  OrderBook(const OrderBook&) = default;
  OrderBook& operator=(const OrderBook&) = default;
  OrderBook(OrderBook&&) noexcept = default;
  OrderBook& operator=(OrderBook&&) noexcept = default;

  // Empties the book, keeping its memory. Network thread; no allocation. O(capacity).
  void clear() noexcept;
  // Makes room for `levels` levels without further allocation. Cold path (partials).
  [[gnu::cold]] void reserve(uint32_t levels);

  // The three delta operations. Network thread only; no lock, no syscall; no allocation unless
  // the book outgrows its capacity (then `grew()` turns true until reset_grew()); no exception
  // except std::bad_alloc from that growth. Each sets `old_price` to the level's price before the
  // operation when the book held (side, id), and leaves it alone otherwise: what a publisher needs
  // to find the level in its own copy, from the index line the operation probed anyway (no second
  // lookup).
  Result insert(Side side, uint64_t id, double price, int64_t size, double& old_price);
  Result insert(Side side, uint64_t id, double price, int64_t size) {
    double old_price;
    return insert(side, id, price, size, old_price);
  }
  // A partial's levels, appended unsorted; finish_bulk() sorts each side once. A partial lists
  // ~10k levels in price order, which would make one-by-one sorted inserts quadratic on one side.
  // Cold path.
  Result bulk_insert(Side side, uint64_t id, double price, int64_t size, double& old_price);
  Result bulk_insert(Side side, uint64_t id, double price, int64_t size) {
    double old_price;
    return bulk_insert(side, id, price, size, old_price);
  }
  void finish_bulk();
  // `has_price` false: keep the level's price (2021 era). A new price moves the level. On a price
  // ladder an update that carries its level's price (since 2023) finds the level by the price,
  // without the index.
  // Every price handed to the book must be > 0 (BitMEX prices are; FeedEngine checks).
  Result update(Side side, uint64_t id, int64_t size, bool has_price, double price,
                double& old_price);
  Result update(Side side, uint64_t id, int64_t size, bool has_price, double price) {
    double old_price;
    return update(side, id, size, has_price, price, old_price);
  }
  Result remove(Side side, uint64_t id, double& old_price) noexcept;
  // A delete that carries the level's price (every row since 2023): the same result; on a price
  // ladder it finds the level from the price first, so that the index line and the pool line load
  // side by side instead of one after the other. A price that is not the level's falls back to
  // the lookup by id.
  Result remove(Side side, uint64_t id, bool has_price, double price, double& old_price) noexcept;
  Result remove(Side side, uint64_t id) noexcept {
    double old_price;
    return remove(side, id, old_price);
  }

  // The pool slot of the level the last insert, update or remove held (before a remove gave it
  // back). A level keeps its slot while it lives, whatever moves in the price order, so that a
  // publisher can keep its own copy of each level in the same slot and change it with one store.
  // Slots are below the largest number of levels the book has held at once since its last
  // clear(): the free slots are handed out lowest first, and given back ones first. O(1).
  [[nodiscard]] uint32_t last_slot() const noexcept { return last_slot_; }
  // The slot of the side's best level, or kNoSlot when the side is empty. O(1).
  static constexpr uint32_t kNoSlot = UINT32_MAX;
  [[nodiscard]] uint32_t best_slot(Side side) const noexcept {
    const unsigned s = index(side);
    if (grid_) return ladder_[s].empty() ? kNoSlot : ladder_[s].best_slot();
    return top_[s].empty() ? kNoSlot : top_[s].top_slot();
  }

  // The price of level (side, id), or 0 when the book does not hold it. No allocation.
  [[nodiscard, gnu::cold]] double level_price(Side side, uint64_t id) const noexcept;

  // Best-first access; i = 0 is the best level. Precondition: i < depth(side). References stay
  // valid until the next change of the book. level() is O(1) in the sorted tiers and counts bits
  // in a price ladder (a popcount a word, 64 words at most): tools and dumps, not the hot path.
  [[nodiscard]] uint32_t depth(Side side) const noexcept {
    const unsigned s = index(side);
    return static_cast<uint32_t>((grid_ ? ladder_[s].count() : top_[s].size()) + deep_[s].size());
  }
  [[nodiscard, gnu::cold]] const BookLevel& level(Side side, uint32_t i) const noexcept;
  [[nodiscard]] const BookLevel* best(Side side) const noexcept {
    const unsigned s = index(side);
    if (grid_) {  // the ladder is empty only when the side is
      return ladder_[s].empty() ? nullptr : &pool_[ladder_[s].best_slot()];
    }
    const auto& t = top_[s];  // empty only when the side is
    return t.empty() ? nullptr : &pool_[t.top_slot()];
  }
  // True when both sides are non-empty and best bid >= best ask: the book cannot be right.
  [[nodiscard]] bool crossed() const noexcept {
    if (grid_) {  // ticks of ask keys are the negated ticks of their prices
      const auto& b = ladder_[0];
      const auto& a = ladder_[1];
      return !b.empty() && !a.empty() && b.best() >= -a.best();
    }
    const auto& b = top_[0];
    const auto& a = top_[1];
    return !b.empty() && !a.empty() && b.top_key() >= -a.top_key();  // ask keys are -price
  }
  // True while the book keeps its best levels in price ladders (its prices lie on a grid, see
  // above); false while it keeps them in sorted tiers. For tests and benchmarks.
  [[nodiscard]] bool on_grid() const noexcept { return grid_; }
  // How many of the side's levels are in its price ladder (its best ones; 0 off the grid).
  [[nodiscard]] uint32_t ladder_levels(Side side) const noexcept {
    return grid_ ? ladder_[index(side)].count() : 0;
  }
  // True while the book finds its levels from their ids' ticks, without its index (the 2021 id
  // encoding, see above). For tests and benchmarks.
  [[nodiscard]] bool ids_encode_prices() const noexcept { return linear_; }
  // How often a row broke that encoding and the index was rebuilt (O(levels) each).
  [[nodiscard]] uint64_t index_rebuilds() const noexcept { return index_rebuilds_; }
  // How often a price off the grid made the book find a finer grid or leave it (O(levels) each).
  [[nodiscard]] uint64_t regrids() const noexcept { return regrids_; }
  [[nodiscard]] uint32_t size() const noexcept { return depth(Side::kBuy) + depth(Side::kSell); }
  [[nodiscard]] uint32_t capacity() const noexcept { return capacity_; }
  [[nodiscard]] bool grew() const noexcept { return grew_; }
  void reset_grew() noexcept { grew_ = false; }
  // How often an insert found the index clustered and re-seeded its hash (pathological ids).
  [[nodiscard]] uint64_t rehashes() const noexcept { return rehashes_; }

 private:
  // An index bucket: one cache line of four cells, each field's four values side by side so that
  // one compare tests all four tags. A cell is addressed as bucket * 4 + lane. A cell holds the
  // level's key (signed price) beside its slot, so that a delete or a price move has the price in
  // the line it has just probed, instead of waiting for the pool line first: the pool is read
  // only to confirm the id, off the critical path (that branch is always predicted right).
  struct alignas(64) Bucket {
    uint32_t tag[4];  // see tag(); kFreeTag: free
    uint32_t slot[4];
    double key[4];
  };
  static_assert(sizeof(Bucket) == 64);
  static constexpr uint32_t kFreeTag = UINT32_MAX;

  // Bids keep their price as key, asks its negation: both sides ascend towards the best. Flipping
  // the sign bit is exact and has no branch (side comes from the data: a branch on it would be a
  // coin toss).
  static double key_of(unsigned side, double price) noexcept {
    return std::bit_cast<double>(std::bit_cast<uint64_t>(price) ^ (uint64_t{side} << 63));
  }

  // Multiply-shift hashing of id / 4 with the odd multiplier mult_: groups of four consecutive ids
  // (2021: adjacent ticks) share a home bucket, groups are scattered (the top bits of the product
  // depend on every bit of the id).
  [[nodiscard]] uint64_t product(uint64_t id) const noexcept { return (id >> 2) * mult_; }
  // A cell's tag: the product's top 29 bits, the id's low 2 bits, the side. The home bucket is the
  // tag's top bits (the index has at most 2^29 buckets), so moving cells back after a delete needs
  // no id; distinct (side, id) share a tag only when their products share 29 top bits.
  static uint32_t tag_of(uint64_t product, uint64_t id, unsigned side) noexcept {
    const auto t = static_cast<uint32_t>((product >> 32) & ~uint64_t{7}) |
                   static_cast<uint32_t>((id & 3) << 1) | side;
    return t == kFreeTag ? t ^ 2 : t;  // never the free mark (ids ...10 and ...11 then share it)
  }
  [[nodiscard]] uint64_t home_of_tag(uint32_t tag) const noexcept {
    return tag >> (bucket_shift_ - 32);
  }
  // Bit i set: cell i of `b` has this tag / is free.
  static unsigned tag_mask(const Bucket& b, uint32_t tag) noexcept;
  [[nodiscard]] uint32_t& slot_at(uint64_t cell) noexcept {
    return buckets_[cell >> 2].slot[cell & 3];
  }
  [[nodiscard]] double& key_at(uint64_t cell) noexcept { return buckets_[cell >> 2].key[cell & 3]; }
  // Cell of (side, id), or kNotFound.
  static constexpr uint64_t kNotFound = UINT64_MAX;
  [[nodiscard]] uint64_t find(unsigned side, uint64_t id) const noexcept;
  // The probe both share: the first cell on (side, id)'s probe sequence whose tag matches and for
  // which match(bucket, lane) holds, or kNotFound.
  template <class Match>
  [[nodiscard]] uint64_t find_cell(unsigned side, uint64_t id, Match match) const noexcept;
  // Cell of (side, id) whose level is known to be in `slot`: tag and slot compared, no pool read.
  [[nodiscard]] uint64_t find_slot(unsigned side, uint64_t id, uint32_t slot) const noexcept;
  // The slot of the level at `price` on `side` when a ladder cell holds one and its id is `id`,
  // else kNoSlot. On the grid only; reads the cell and the level's pool line.
  [[nodiscard]] uint32_t slot_at_price(unsigned side, uint64_t id, double key) const noexcept;
  // One probe for an insert: the cell holding (side, id) (found), or else the first free cell on
  // its probe sequence, and how many full buckets were passed on the way.
  struct Probe {
    uint64_t cell;
    uint32_t tag;
    uint32_t length;
    bool found;
  };
  [[nodiscard]] Probe probe(unsigned side, uint64_t id) const noexcept;
  void index_erase(uint64_t cell) noexcept;
  // index_erase of a cell whose bucket was full: moves back cells that probed past it.
  [[gnu::noinline]] void refill(uint64_t bucket, unsigned lane) noexcept;
  // Re-creates the index for the live levels with the current multiplier. No allocation.
  [[gnu::cold]] void reindex() noexcept;
  [[gnu::cold]] void reseed() noexcept;  // a new multiplier, then reindex()
  [[gnu::cold]] void rebuild(uint32_t capacity);
  // Slow paths of insert/bulk_insert: growth, or a probe longer than kMaxProbe. Cold.
  Result insert_slow(unsigned side, uint64_t id, double price, int64_t size, bool bulk);
  // The new level's cell, slot and pool entry; the caller places it in the side's order.
  uint32_t add_level(uint64_t cell, uint32_t tag, unsigned side, uint64_t id, double price,
                     int64_t size) noexcept;
  // Puts `slot` with `key` into its side's order: sorted, or appended unsorted (`bulk`).
  void place(unsigned side, uint32_t slot, double key, bool bulk) noexcept;
  // Takes `slot` (with `key`) out of its side's order.
  void unplace(unsigned side, uint32_t slot, double key) noexcept;
  // The same in the sorted tiers (off the grid).
  void place_sorted(unsigned side, uint32_t slot, double key) noexcept;
  void unplace_sorted(unsigned side, uint32_t slot, double key) noexcept;
  // Their rarer cases, out of line: below the top tier's 64 best levels, equal prices.
  [[gnu::noinline]] void place_deeper(unsigned side, uint32_t slot, double key) noexcept;
  [[gnu::noinline]] void unplace_deeper(unsigned side, uint32_t slot, double key,
                                        size_t above) noexcept;
  // An update with a new price. Out of line.
  [[gnu::noinline]] void move_level(unsigned side, uint64_t cell, double price) noexcept;
  [[gnu::noinline]] void spill_top(
      unsigned side) noexcept;  // top tier above kTopMax: its worst level to the deep
  [[gnu::noinline]] void refill_top(
      unsigned side) noexcept;  // top tier below kTopMin: the deep's best level to it

  // Each side's order in two tiers: the best kTopMin..kTopMax levels, and the rest. Together they
  // read as one array, deep first (level() is still O(1)); apart, an insert or delete below the
  // top tier shifts only the levels between it and the nearer end of the deep tier, not the top
  // tier as well (the 2021 sessions put 1/5 of their inserts and deletes at depths 64-255).
  static constexpr size_t kTopMin = 64, kTopMax = 192, kTopFill = 128;
  book_detail::SideOrder top_[2];   // [kBuy], [kSell]; holds min(kTopMin, depth) levels or more
  book_detail::SideOrder deep_[2];  // every key <= top_'s front key (or below the ladder's window)

  // The price grid (see above): a key k lies on it when k = t * step_ / scale_ exactly for an
  // integer tick t, found as t = round(k * mul_) (mul_ = scale_ / step_) and then checked.
  // On the grid, each side's best levels are a PriceLadder instead of the top tier: ladder_[side]
  // holds the levels whose ticks fall in its window, deep_[side] those below it, and top_ is empty.
  static constexpr int64_t kHeadroom = book_detail::PriceLadder::kTicks / 4;
  [[nodiscard]] bool tick_of(double key, int64_t& t) const noexcept;  // false: off the grid
  [[nodiscard]] int64_t grid_tick(double key) const noexcept;  // a key known to be on the grid
  [[nodiscard]] double key_of_tick(int64_t t) const noexcept {
    return static_cast<double>(t * step_) / scale_;
  }
  void place_ladder(unsigned side, uint32_t slot, double key) noexcept;
  // place_ladder for a level known to be on the grid at tick t, in no occupied cell.
  void place_tick(unsigned side, uint32_t slot, double key, int64_t t) noexcept;
  void unplace_ladder(unsigned side, uint32_t slot, double key) noexcept;
  [[gnu::noinline]] void place_off_grid(unsigned side, uint32_t slot, double key) noexcept;
  [[gnu::noinline]] void slide_up(unsigned side, int64_t t) noexcept;
  [[gnu::noinline]] void slide_down(unsigned side) noexcept;
  // Every level into the sorted tiers (top_ filled from deep_). O(levels), no allocation.
  [[gnu::cold]] void leave_grid() noexcept;
  void pour_ladder(unsigned side) noexcept;  // ladder_ -> back of deep_, ladder_ emptied
  void fill_top(unsigned side) noexcept;     // the best kTopFill levels of deep_ -> empty top_
  // From the sorted tiers onto the finest grid that holds every level, when there is one (distinct
  // prices, at most 12 decimals). O(levels), no allocation.
  [[gnu::cold]] void enter_grid() noexcept;
  [[nodiscard, gnu::cold]] bool find_grid() noexcept;
  // The 2021 id encoding (see above): while linear_, every level of either side has
  // id = id_base_ - id_step_ * (its price's tick), and the index is not kept (rebuilt on leaving).
  // Bounds: ids and |id_base_| below 2^50, |id_step_| below 2^20, ticks up to max_tick_
  // (= 2^40 / step_: key_of_tick cannot overflow), so that every product below is exact.
  [[nodiscard, gnu::cold]] bool learn_linear() noexcept;
  [[gnu::cold]] void leave_linear() noexcept;  // reindex(), O(levels)
  // The key tick of (side, id) under the encoding; false for an id that no level can have.
  [[nodiscard]] bool tick_of_id(unsigned side, uint64_t id, int64_t& t) const noexcept;
  // Slot and key of level (side, id) found from its tick; false when the book does not hold it.
  [[nodiscard]] bool locate(unsigned side, uint64_t id, uint32_t& slot, double& key) const noexcept;
  // The same from the tick: the level at key tick t, if any.
  [[nodiscard]] bool locate_tick(unsigned side, int64_t t, uint32_t& slot,
                                 double& key) const noexcept;
  // Slot and key of level (side, id) from the index or, while linear_, from its tick.
  [[nodiscard]] bool lookup(unsigned side, uint64_t id, uint32_t& slot, double& key) const noexcept;
  // insert() while linear_: false when the row breaks the encoding or the book is full (the book
  // has then left it, and the caller goes on with the index).
  [[nodiscard]] bool insert_linear(unsigned side, uint64_t id, double price, int64_t size,
                                   double& old_price, Result& result) noexcept;
  bool linear_ = false;
  int64_t id_base_ = 0, id_step_ = 0, max_tick_ = 0;
  double inv_id_step_ = 0;
  uint64_t index_rebuilds_ = 0;
  book_detail::PriceLadder ladder_[2];
  double scale_ = 1, mul_ = 1, max_key_ = 0;
  int64_t step_ = 1;
  bool grid_ = false;
  uint32_t regrid_budget_ = 0;  // finer grids still allowed since the last partial
  uint64_t regrids_ = 0;
  uint32_t last_slot_ = 0;  // last_slot()
  book_detail::LineArray<BookLevel> pool_;
  book_detail::LineArray<uint32_t> free_;  // stack of free slots, free_count_ of them
  // (capacity_ - size(): the book is full when it is 0)
  book_detail::LineArray<Bucket> buckets_;
  uint64_t mask_ = 0;          // buckets - 1
  uint64_t mult_ = 0;          // odd
  uint32_t bucket_shift_ = 0;  // 64 - log2(buckets), >= 35
  uint32_t free_count_ = 0;
  uint32_t capacity_ = 0;
  uint64_t rehashes_ = 0;
  uint64_t seeds_ = 0;  // multipliers drawn so far
  bool grew_ = false;
};

}  // namespace bmx
