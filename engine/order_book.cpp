#include "engine/order_book.hpp"

#include <algorithm>
#include <bit>
#include <cassert>
#include <cstddef>
#include <cstring>
#include <limits>
#include <stdexcept>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace bmx {

namespace book_detail {

namespace {

constexpr double kMinusInf = -std::numeric_limits<double>::infinity();

// A shift moves keys and slots together, 8 levels per step (two 32-byte copies of keys, one of
// slots), so a shift has one loop and one exit to predict. Inline copies: the shifts of a book are
// short (most under 64 levels) and of varying length, where a memmove call costs a call, a
// dispatch on the length and its mispredictions.
constexpr size_t kStep = 8;
constexpr size_t steps(size_t n) noexcept {
  return (n + kStep - 1) & ~(kStep - 1);
}

// Copies levels [lo, lo + n) to [lo + 1, lo + n + 1), highest step first; n is a multiple of kStep.
inline void move_up(double* k, uint32_t* s, ptrdiff_t lo, size_t n) noexcept {
#if defined(__AVX2__)
  for (ptrdiff_t i = lo + static_cast<ptrdiff_t>(n); i > lo;) {
    i -= kStep;
    const __m256d k0 = _mm256_loadu_pd(k + i);
    const __m256d k1 = _mm256_loadu_pd(k + i + 4);
    const __m256i s0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i));
    _mm256_storeu_pd(k + i + 5, k1);
    _mm256_storeu_pd(k + i + 1, k0);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(s + i + 1), s0);
  }
#else
  std::memmove(k + lo + 1, k + lo, n * sizeof(double));
  std::memmove(s + lo + 1, s + lo, n * sizeof(uint32_t));
#endif
}

// Copies levels [lo, lo + n) to [lo - 1, lo + n - 1), lowest step first; n is a multiple of kStep.
inline void move_down(double* k, uint32_t* s, ptrdiff_t lo, size_t n) noexcept {
#if defined(__AVX2__)
  for (ptrdiff_t i = lo, e = lo + static_cast<ptrdiff_t>(n); i < e; i += kStep) {
    const __m256d k0 = _mm256_loadu_pd(k + i);
    const __m256d k1 = _mm256_loadu_pd(k + i + 4);
    const __m256i s0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i));
    _mm256_storeu_pd(k + i - 1, k0);
    _mm256_storeu_pd(k + i + 3, k1);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(s + i - 1), s0);
  }
#else
  std::memmove(k + lo - 1, k + lo, n * sizeof(double));
  std::memmove(s + lo - 1, s + lo, n * sizeof(uint32_t));
#endif
}

// How many of the kN keys at `w` are >= x (kStrict: > x). No branch.
template <bool kStrict, int kN>
inline size_t count_not_below(const double* w, double x) noexcept {
  static_assert(kN % 16 == 0);
#if defined(__AVX2__)
  constexpr int kPredicate = kStrict ? _CMP_GT_OQ : _CMP_GE_OQ;
  const __m256d vx = _mm256_set1_pd(x);
  __m256i acc[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                    _mm256_setzero_si256()};
#pragma GCC unroll 64
  for (int i = 0; i < kN / 4; ++i) {
    // A true lane is all ones, i.e. -1 as an int64: subtracting counts it.
    const __m256d m = _mm256_cmp_pd(_mm256_loadu_pd(w + 4 * i), vx, kPredicate);
    acc[i & 3] = _mm256_sub_epi64(acc[i & 3], _mm256_castpd_si256(m));
  }
  const __m256i s =
      _mm256_add_epi64(_mm256_add_epi64(acc[0], acc[1]), _mm256_add_epi64(acc[2], acc[3]));
  const __m128i t = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
  return static_cast<size_t>(_mm_cvtsi128_si64(t) + _mm_extract_epi64(t, 1));
#else
  size_t n = 0;
  for (int i = 0; i < kN; ++i)
    n += kStrict ? w[i] > x : w[i] >= x;
  return n;
#endif
}

// First index in a[0, len) whose key is >= x (kStrict: > x), for len >= 1. Branchless: the
// ternary becomes a conditional move.
template <bool kStrict>
size_t binary_bound(const double* a, size_t len, double x) noexcept {
  size_t base = 0;
  while (len > 1) {
    const size_t half = len / 2;
    const double k = a[base + half - 1];
    // A mask, not a ternary: GCC turns the ternary into a branch, and it is a coin toss.
    base += half & (0 - static_cast<size_t>(kStrict ? k <= x : k < x));
    len -= half;
  }
  return base + static_cast<size_t>(kStrict ? a[base] <= x : a[base] < x);
}

}  // namespace

void SideOrder::reserve(size_t levels) {
  const size_t len = kLowPad + 2 * levels + 2 + kHighPad;
  if (len <= len_) return;
  LineArray<double> keys(len);
  LineArray<uint32_t> slots(len);
  std::fill(keys.data(), keys.data() + len, kMinusInf);
  std::fill(slots.data(), slots.data() + len, 0u);
  const size_t n = size();
  const size_t at = kLowPad + (len - kLowPad - kHighPad - n) / 2;
  if (n) {
    std::memcpy(keys.data() + at, keys_.data() + begin_, n * sizeof(double));
    std::memcpy(slots.data() + at, slots_.data() + begin_, n * sizeof(uint32_t));
  }
  keys_ = std::move(keys);
  slots_ = std::move(slots);
  len_ = len;
  begin_ = at;
  end_ = at + n;
}

void SideOrder::clear() noexcept {
  const size_t mid = kLowPad + (len_ - kLowPad - kHighPad) / 2;
  std::fill(keys_.data(), keys_.data() + std::max(end_, mid), kMinusInf);
  begin_ = end_ = mid;
}

void SideOrder::recenter() noexcept {
  const size_t n = size();
  const size_t at = kLowPad + (usable_end() - kLowPad - n) / 2;
  std::memmove(keys_.data() + at, keys_.data() + begin_, n * sizeof(double));
  std::memmove(slots_.data() + at, slots_.data() + begin_, n * sizeof(uint32_t));
  if (at > begin_) std::fill(keys_.data() + begin_, keys_.data() + at, kMinusInf);
  begin_ = at;
  end_ = at + n;
}

void SideOrder::push_back(double key, uint32_t slot) noexcept {
  if (end_ == usable_end()) {  // move the levels to the front once, not to the middle each time
    const size_t n = size();
    std::memmove(keys_.data() + kLowPad, keys_.data() + begin_, n * sizeof(double));
    std::memmove(slots_.data() + kLowPad, slots_.data() + begin_, n * sizeof(uint32_t));
    begin_ = kLowPad;
    end_ = kLowPad + n;
  }
  keys_[end_] = key;
  slots_[end_] = slot;
  ++end_;
}

template <class KeyOf>
void SideOrder::sort_by(KeyOf key_of) {
  recenter();
  uint32_t* s = slots_.data() + begin_;
  std::sort(s, s + size(), [&](uint32_t a, uint32_t b) { return key_of(a) < key_of(b); });
  for (size_t i = begin_; i < end_; ++i)
    keys_[i] = key_of(slots_[i]);
}

// Both ends round the copies up to whole 32-byte chunks, away from the inserted or erased position:
// the extra elements copied lie in the free room (beyond end_, or below begin_ where keys are -inf
// and copying -inf down keeps them so), so the copies never disturb a level.
inline void SideOrder::insert_at(size_t pos, double key, uint32_t slot) noexcept {
  const size_t n = size();
  const bool front = pos < n - pos;  // fewer levels before pos than after it
  if (front ? begin_ == kLowPad : end_ == usable_end()) [[unlikely]] {
    recenter();
  }
  double* k = keys_.data();
  uint32_t* s = slots_.data();
  const auto at = static_cast<ptrdiff_t>(begin_ + pos);
  if (front) {  // [0, pos) -> [-1, pos - 1)
    move_down(k, s, at - static_cast<ptrdiff_t>(steps(pos)), steps(pos));
    --begin_;
    k[at - 1] = key;
    s[at - 1] = slot;
  } else {  // [pos, n) -> [pos + 1, n + 1)
    move_up(k, s, at, steps(n - pos));
    ++end_;
    k[at] = key;
    s[at] = slot;
  }
}

inline void SideOrder::erase_at(size_t pos) noexcept {
  const size_t n = size();
  assert(pos < n);
  double* k = keys_.data();
  uint32_t* s = slots_.data();
  const auto at = static_cast<ptrdiff_t>(begin_ + pos);
  if (pos < n - 1 - pos) {  // [0, pos) -> [1, pos + 1)
    move_up(k, s, at - static_cast<ptrdiff_t>(steps(pos)), steps(pos));
    k[begin_] = kMinusInf;  // below begin_ from now on (pos == 0 copies nothing)
    ++begin_;
  } else {  // [pos + 1, n) -> [pos, n - 1)
    move_down(k, s, at + 1, steps(n - 1 - pos));
    --end_;
  }
}

// The kTop = 64 keys below end_ first: they take most of the traffic and are hot in cache, and
// counting them is one pass of compares with no branch to mispredict (keys below begin_ are -inf
// and never count). Only a level deeper than that pays a binary search of the rest (a chain of
// dependent loads that miss: the 2021 XBTUSD book has 5557 bids).
template <bool kStrict>
inline size_t SideOrder::bound(double key) const noexcept {
  const size_t n = size();
  const size_t top = count_not_below<kStrict, kTop>(keys_.data() + end_ - kTop, key);
  if (top < kTop || n <= kTop) [[likely]] {
    return n - top;
  }
  return binary_bound<kStrict>(keys(), n - kTop, key);
}

inline size_t SideOrder::position(double key, uint32_t slot) const noexcept {
  size_t i = bound<false>(key);
  const uint32_t* s = slots();
  while (s[i] != slot)
    ++i;  // equal prices (never in a sane book)
  assert(i < size());
  return i;
}

}  // namespace book_detail

namespace {

constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ULL;  // 2^64 / golden ratio, odd

uint64_t mix64(uint64_t k) noexcept {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  k ^= k >> 33;
  return k;
}

// How often one insert may re-seed the index before it accepts a long probe.
constexpr int kMaxReseeds = 3;

}  // namespace

OrderBook::OrderBook(uint32_t capacity) : mult_(kGolden) {
  rebuild(std::max<uint32_t>(capacity, 16));
}

void OrderBook::clear() noexcept {
  order_[0].clear();
  order_[1].clear();
  for (size_t i = 0; i < cells_.size(); ++i)
    cells_[i].side = kFree;
  free_count_ = capacity_;
  for (uint32_t k = 0; k < capacity_; ++k)
    free_[k] = capacity_ - 1 - k;  // slot 0 on top
}

void OrderBook::reserve(uint32_t levels) {
  if (levels > capacity_) rebuild(levels);
}

// Re-creates every array for `capacity` levels (index load factor <= 2/3 when full), keeping the
// levels and their slots. Cold path; allocates.
void OrderBook::rebuild(uint32_t capacity) {
  if (capacity >= (1u << 30)) throw std::length_error("OrderBook: more than 2^30 levels");
  book_detail::LineArray<BookLevel> pool(capacity);
  if (capacity_) std::memcpy(pool.data(), pool_.data(), capacity_ * sizeof(BookLevel));
  book_detail::LineArray<uint32_t> free_slots(capacity);
  uint32_t free_count = 0;
  for (uint32_t k = capacity; k-- > capacity_;)
    free_slots[free_count++] = k;  // the new slots below the free ones we had
  for (uint32_t k = 0; k < free_count_; ++k)
    free_slots[free_count++] = free_[k];
  order_[0].reserve(capacity);
  order_[1].reserve(capacity);
  uint64_t cells = 32;
  while (cells < static_cast<uint64_t>(capacity) * 3 / 2)
    cells <<= 1;
  cells_ = book_detail::LineArray<Cell>(cells);
  mask_ = cells - 1;
  group_shift_ = 64 - static_cast<uint32_t>(std::countr_zero(cells / 4));
  pool_ = std::move(pool);
  free_ = std::move(free_slots);
  free_count_ = free_count;
  capacity_ = capacity;
  reindex();
}

void OrderBook::reindex() noexcept {
  for (size_t i = 0; i < cells_.size(); ++i)
    cells_[i].side = kFree;
  for (unsigned side = 0; side < 2; ++side) {
    const auto& o = order_[side];
    for (size_t k = 0; k < o.size(); ++k) {
      const uint32_t slot = o.slots()[k];
      const uint64_t id = pool_[slot].id;
      uint64_t i = home(id);
      while (cells_[i].side != kFree)
        i = (i + 1) & mask_;
      cells_[i] = Cell{id, slot, side};
    }
  }
}

void OrderBook::reseed() noexcept {
  mult_ = mix64(kGolden * ++seeds_) | 1;
  ++rehashes_;
  reindex();
}

OrderBook::Probe OrderBook::probe(unsigned side, uint64_t id) const noexcept {
  uint64_t i = home(id);
  for (uint32_t length = 0;; ++length, i = (i + 1) & mask_) {
    const Cell& c = cells_[i];
    if (matches(c, side, id)) return Probe{i, length, true};
    if (c.side == kFree) return Probe{i, length, false};
  }
}

uint64_t OrderBook::find(unsigned side, uint64_t id) const noexcept {
  for (uint64_t i = home(id);; i = (i + 1) & mask_) {
    const Cell& c = cells_[i];
    if (matches(c, side, id)) return i;
    if (c.side == kFree) return kNotFound;
  }
}

// Backward-shift deletion: keeps probe chains intact without tombstones.
void OrderBook::index_erase(uint64_t pos) noexcept {
  uint64_t hole = pos;
  for (uint64_t i = (pos + 1) & mask_; cells_[i].side != kFree; i = (i + 1) & mask_) {
    const uint64_t h = home(cells_[i].id);
    // Move cell i into the hole if its home is not within (hole, i] cyclically.
    const bool between = hole <= i ? (h > hole && h <= i) : (h > hole || h <= i);
    if (!between) {
      cells_[hole] = cells_[i];
      hole = i;
    }
  }
  cells_[hole].side = kFree;
}

uint32_t OrderBook::add_level(uint64_t cell, unsigned side, uint64_t id, double price,
                              int64_t size) noexcept {
  const uint32_t slot = free_[--free_count_];
  pool_[slot] = BookLevel{price, size, id};
  cells_[cell] = Cell{id, slot, side};
  return slot;
}

void OrderBook::place(unsigned side, uint32_t slot, double price, bool bulk) noexcept {
  auto& o = order_[side];
  const double key = key_of(side, price);
  if (bulk) {
    o.push_back(key, slot);
  } else {
    o.insert_at(o.bound<true>(key), key, slot);  // after levels of an equal price
  }
}

// Growth (allocates) and probes longer than kMaxProbe (re-seeds the index). (side, id) is known
// not to be in the book.
OrderBook::Result OrderBook::insert_slow(unsigned side, uint64_t id, double price, int64_t size,
                                         bool bulk) {
  if (this->size() >= capacity_) {
    rebuild(capacity_ * 2);
    grew_ = true;
  }
  for (int reseeds = 0;; ++reseeds) {
    const Probe p = probe(side, id);
    if (p.length <= kMaxProbe || reseeds == kMaxReseeds) {
      place(side, add_level(p.cell, side, id, price, size), price, bulk);
      return Result::kOk;
    }
    reseed();
  }
}

OrderBook::Result OrderBook::insert(Side side, uint64_t id, double price, int64_t size) {
  const unsigned s = index(side);
  const Probe p = probe(s, id);
  if (p.found) [[unlikely]] {
    update(side, id, size, true, price);
    return Result::kDuplicateInsert;
  }
  if (p.length > kMaxProbe || this->size() >= capacity_) [[unlikely]] {
    return insert_slow(s, id, price, size, false);
  }
  place(s, add_level(p.cell, s, id, price, size), price, false);
  return Result::kOk;
}

OrderBook::Result OrderBook::bulk_insert(Side side, uint64_t id, double price, int64_t size) {
  const unsigned s = index(side);
  const Probe p = probe(s, id);
  if (p.found) {  // repeated level inside one partial: the last one wins (finish_bulk sorts)
    pool_[cells_[p.cell].slot] = BookLevel{price, size, id};
    return Result::kDuplicateInsert;
  }
  if (p.length > kMaxProbe || this->size() >= capacity_) {
    return insert_slow(s, id, price, size, true);
  }
  place(s, add_level(p.cell, s, id, price, size), price, true);
  return Result::kOk;
}

void OrderBook::finish_bulk() {
  for (unsigned side = 0; side < 2; ++side)
    order_[side].sort_by([this, side](uint32_t slot) { return key_of(side, pool_[slot].price); });
}

OrderBook::Result OrderBook::update(Side side, uint64_t id, int64_t size, bool has_price,
                                    double price) {
  const unsigned s = index(side);
  const uint64_t at = find(s, id);
  if (at == kNotFound) return Result::kUnknownLevel;
  const uint32_t slot = cells_[at].slot;
  BookLevel& l = pool_[slot];
  l.size = size;
  if (!has_price || price == l.price) return Result::kOk;  // in place: no search
  auto& o = order_[s];
  o.erase_at(o.position(key_of(s, l.price), slot));  // the level moves to its new price
  l.price = price;
  place(s, slot, price, false);
  return Result::kOk;
}

OrderBook::Result OrderBook::remove(Side side, uint64_t id) noexcept {
  const unsigned s = index(side);
  const uint64_t at = find(s, id);
  if (at == kNotFound) return Result::kUnknownLevel;
  const uint32_t slot = cells_[at].slot;
  auto& o = order_[s];
  o.erase_at(o.position(key_of(s, pool_[slot].price), slot));
  free_[free_count_++] = slot;
  index_erase(at);
  return Result::kOk;
}

}  // namespace bmx
