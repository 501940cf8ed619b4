#include "engine/order_book.hpp"

#include <algorithm>
#include <bit>
#include <cassert>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <limits>
#include <numeric>
#include <stdexcept>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

// The hot path is a handful of small functions; GCC kept some as calls (each with a prologue that
// realigns the stack for AVX spills). Forced inline, the three operations are one frame each.
#define BMX_HOT_INLINE [[gnu::always_inline]] inline

namespace bmx {

namespace book_detail {

namespace {

constexpr double kMinusInf = -std::numeric_limits<double>::infinity();

// A shift moves keys and slots together, 16 levels per step (four 32-byte copies of keys, two of
// slots), so a shift has one loop and one exit to predict, and the shallow half of the shifts is
// one step. (8 per step mispredicted the exit more often; 32 per step touched more lines.) Inline
// copies: the shifts of a book are short (most under 64 levels) and of varying length, where a
// memmove call costs a call, a dispatch on the length and its mispredictions.
constexpr size_t kStep = 16;
constexpr size_t steps(size_t n) noexcept {
  return (n + kStep - 1) & ~(kStep - 1);
}

#if defined(__AVX2__)
// One step: the 16 levels at i, read whole before any is written, then written at i + d.
BMX_HOT_INLINE void move_step(double* k, uint32_t* s, ptrdiff_t i, ptrdiff_t d) noexcept {
  // Named vectors, not arrays: an array of vectors made GCC realign the stack frame.
  const __m256d k0 = _mm256_loadu_pd(k + i);
  const __m256d k1 = _mm256_loadu_pd(k + i + 4);
  const __m256d k2 = _mm256_loadu_pd(k + i + 8);
  const __m256d k3 = _mm256_loadu_pd(k + i + 12);
  const __m256i s0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i));
  const __m256i s1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i + 8));
  _mm256_storeu_pd(k + i + d, k0);
  _mm256_storeu_pd(k + i + d + 4, k1);
  _mm256_storeu_pd(k + i + d + 8, k2);
  _mm256_storeu_pd(k + i + d + 12, k3);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(s + i + d), s0);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(s + i + d + 8), s1);
}
#endif

// Copies levels [lo, lo + n) to [lo + 1, lo + n + 1), highest step first; n is a multiple of kStep.
BMX_HOT_INLINE void move_up(double* k, uint32_t* s, ptrdiff_t lo, size_t n) noexcept {
#if defined(__AVX2__)
  for (ptrdiff_t i = lo + static_cast<ptrdiff_t>(n); i > lo;) {
    i -= kStep;
    move_step(k, s, i, 1);
  }
#else
  std::memmove(k + lo + 1, k + lo, n * sizeof(double));
  std::memmove(s + lo + 1, s + lo, n * sizeof(uint32_t));
#endif
}

// Copies levels [lo, lo + n) to [lo - 1, lo + n - 1), lowest step first; n is a multiple of kStep.
BMX_HOT_INLINE void move_down(double* k, uint32_t* s, ptrdiff_t lo, size_t n) noexcept {
#if defined(__AVX2__)
  for (ptrdiff_t i = lo, e = lo + static_cast<ptrdiff_t>(n); i < e; i += kStep)
    move_step(k, s, i, -1);
#else
  std::memmove(k + lo - 1, k + lo, n * sizeof(double));
  std::memmove(s + lo - 1, s + lo, n * sizeof(uint32_t));
#endif
}

// How many of the 64 keys at `w` are >= x (kStrict: > x). No branch. Each compare yields a lane
// of all ones or zeros per key; three rounds of saturating packs (order does not matter for a
// count) squeeze the 16 results into two vectors of one byte per key, counted by one popcount: a
// short dependency chain, where summing the 16 results serially took 16 adds.
template <bool kStrict>
BMX_HOT_INLINE size_t count_not_below(const double* w, double x) noexcept {
#if defined(__AVX2__)
  const __m256d vx = _mm256_set1_pd(x);
  // x <= key (x < key): the load folds into the compare.
  const auto cmp = [&](ptrdiff_t i) {
    return _mm256_castpd_si256(
        _mm256_cmp_pd(vx, _mm256_loadu_pd(w + 4 * i), kStrict ? _CMP_LT_OQ : _CMP_LE_OQ));
  };
  // Packed as they come, so that few vectors are live at once.
  const auto quarter = [&](ptrdiff_t i) {
    const __m256i h0 = _mm256_packs_epi32(cmp(4 * i), cmp(4 * i + 1));  // 2 x int16 per key
    const __m256i h1 = _mm256_packs_epi32(cmp(4 * i + 2), cmp(4 * i + 3));
    return _mm256_packs_epi16(h0, h1);  // 2 x int8 per key
  };
  const __m256i b0 = _mm256_packs_epi16(quarter(0), quarter(1));  // 1 x int8 per key
  const __m256i b1 = _mm256_packs_epi16(quarter(2), quarter(3));
  const uint64_t bits = static_cast<uint32_t>(_mm256_movemask_epi8(b0)) |
                        uint64_t{static_cast<uint32_t>(_mm256_movemask_epi8(b1))} << 32;
  return static_cast<size_t>(std::popcount(bits));
#else
  size_t n = 0;
  for (int i = 0; i < 64; ++i)
    n += kStrict ? w[i] > x : w[i] >= x;
  return n;
#endif
}

// First index in a[0, len) whose key is >= x (kStrict: > x), for len >= 1. Branchless.
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
  if (end_ == usable_end()) [[unlikely]] {  // move the levels to the front once, not to the middle
                                            // each time: a partial appends thousands
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

// A partial lists each side in price order (BitMEX: price descending, so an ask side arrives with
// its keys ascending and a bid side with them descending): one pass finds that, and the sort is
// then nothing or a reversal instead of O(n log n) comparisons that each read two pool levels.
template <class KeyOf>
void SideOrder::sort_by(KeyOf key_of) {
  recenter();
  uint32_t* s = slots_.data() + begin_;
  const size_t n = size();
  const auto less = [&](uint32_t a, uint32_t b) { return key_of(a) < key_of(b); };
  if (std::is_sorted(s, s + n, less)) {
    // already best at the back
  } else if (std::is_sorted(s, s + n, [&](uint32_t a, uint32_t b) { return less(b, a); })) {
    std::reverse(s, s + n);  // non-increasing: reversed, non-decreasing
  } else {
    std::sort(s, s + n, less);
  }
  for (size_t i = begin_; i < end_; ++i)
    keys_[i] = key_of(slots_[i]);
}

// Both ends round the shifts up to whole steps, away from the inserted or erased position: the
// extra levels copied lie in the free room (beyond end_, or below begin_ where keys are -inf and
// copying -inf down keeps them so), so the copies never disturb a level. Network thread; no
// allocation, no exception.
BMX_HOT_INLINE void SideOrder::insert_at(size_t pos, double key, uint32_t slot) noexcept {
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

BMX_HOT_INLINE void SideOrder::erase_at(size_t pos) noexcept {
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
BMX_HOT_INLINE size_t SideOrder::count_top(double key) const noexcept {
  static_assert(kTop == 64, "count_not_below counts 64 keys");
  return count_not_below<kStrict>(keys_.data() + end_ - kTop, key);
}

template <bool kStrict>
BMX_HOT_INLINE size_t SideOrder::bound_below_top(double key) const noexcept {
  const size_t n = size();
  return n <= kTop ? 0 : binary_bound<kStrict>(keys(), n - kTop, key);
}

template <bool kStrict>
BMX_HOT_INLINE size_t SideOrder::bound(double key) const noexcept {
  const size_t top = count_top<kStrict>(key);
  if (top < kTop) [[likely]] {
    return size() - top;
  }
  return bound_below_top<kStrict>(key);
}

BMX_HOT_INLINE size_t SideOrder::find(double key, uint32_t slot) const noexcept {
  const size_t n = size();
  size_t i = bound<false>(key);
  const double* k = keys();
  const uint32_t* s = slots();
  while (i < n && s[i] != slot) {  // equal prices (never in a sane book)
    if (k[i] != key) return kNone;
    ++i;
  }
  return i < n ? i : kNone;
}

BMX_HOT_INLINE void SideOrder::push_front(double key, uint32_t slot) noexcept {
  if (begin_ == kLowPad) [[unlikely]] {
    recenter();
  }
  --begin_;
  keys_[begin_] = key;
  slots_[begin_] = slot;
}

BMX_HOT_INLINE uint32_t SideOrder::pop_back(double& key) noexcept {
  --end_;
  key = keys_[end_];
  return slots_[end_];
}

BMX_HOT_INLINE uint32_t SideOrder::pop_front(double& key) noexcept {
  key = keys_[begin_];
  keys_[begin_] = kMinusInf;  // below begin_ from now on
  return slots_[begin_++];
}

uint32_t PriceLadder::rank(int64_t t) const noexcept {
  if (count_ == 0 || t >= best_) return 0;
  if (t < lo_) return count_;
  const auto i = static_cast<uint64_t>(t - lo_);
  const size_t w = i >> 6;
  // Bits above i in its word ((2 << 63) wraps to 0, leaving none), then the words above it.
  auto r = static_cast<uint32_t>(std::popcount(bits_[w] & ~((uint64_t{2} << (i & 63)) - 1)));
  for (uint64_t ws = w == 63 ? 0 : words_ & ~((uint64_t{2} << w) - 1); ws != 0; ws &= ws - 1)
    r += static_cast<uint32_t>(std::popcount(bits_[static_cast<size_t>(std::countr_zero(ws))]));
  return r;
}

uint32_t PriceLadder::select(uint32_t i) const noexcept {
  size_t w = 0;
  for (uint64_t ws = words_;; ws &= ~(uint64_t{1} << w)) {  // highest word first
    w = 63 - static_cast<size_t>(std::countl_zero(ws));
    const auto c = static_cast<uint32_t>(std::popcount(bits_[w]));
    if (i < c) break;
    i -= c;
  }
  uint64_t m = bits_[w];
  for (; i > 0; --i)  // drop the i highest
    m &= ~(uint64_t{1} << (63 - std::countl_zero(m)));
  return cells_[w * 64 + 63 - static_cast<size_t>(std::countl_zero(m))];
}

void PriceLadder::move_to(int64_t lo) noexcept {
  if (lo == lo_) return;
  if (count_ == 0) {
    reset(lo);
    return;
  }
  // In place: each level moves away from the levels not yet moved.
  const uint64_t ws0 = words_;
  words_ = 0;
  if (lo < lo_) {  // to higher cells, highest first
    const auto d = static_cast<size_t>(lo_ - lo);
    for (uint64_t ws = ws0; ws != 0;) {
      const size_t w = 63 - static_cast<size_t>(std::countl_zero(ws));
      ws &= ~(uint64_t{1} << w);
      const uint64_t m0 = bits_[w];
      bits_[w] = 0;
      for (uint64_t m = m0; m != 0;) {
        const size_t b = 63 - static_cast<size_t>(std::countl_zero(m));
        m &= ~(uint64_t{1} << b);
        const size_t j = w * 64 + b + d;
        cells_[j] = cells_[w * 64 + b];
        bits_[j >> 6] |= uint64_t{1} << (j & 63);
        words_ |= uint64_t{1} << (j >> 6);
      }
    }
  } else {  // to lower cells, lowest first
    const auto d = static_cast<size_t>(lo - lo_);
    for (uint64_t ws = ws0; ws != 0; ws &= ws - 1) {
      const auto w = static_cast<size_t>(std::countr_zero(ws));
      const uint64_t m0 = bits_[w];
      bits_[w] = 0;
      for (uint64_t m = m0; m != 0; m &= m - 1) {
        const size_t i = w * 64 + static_cast<size_t>(std::countr_zero(m));
        const size_t j = i - d;
        cells_[j] = cells_[i];
        bits_[j >> 6] |= uint64_t{1} << (j & 63);
        words_ |= uint64_t{1} << (j >> 6);
      }
    }
  }
  lo_ = lo;
}

void PriceLadder::reset(int64_t lo) noexcept {
  std::fill(bits_.data(), bits_.data() + bits_.size(), uint64_t{0});  // none when moved from
  words_ = 0;
  count_ = 0;
  lo_ = lo;
  best_ = lo;
}

}  // namespace book_detail

namespace {

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

OrderBook::OrderBook(uint32_t capacity) : mult_(kFirstMultiplier) {
  rebuild(std::max<uint32_t>(capacity, 16));
}

void OrderBook::clear() noexcept {
  for (unsigned side = 0; side < 2; ++side) {
    top_[side].clear();
    deep_[side].clear();
    ladder_[side].reset(0);
  }
  grid_ = false;
  linear_ = false;
  for (size_t b = 0; b < buckets_.size(); ++b)
    std::fill(buckets_[b].tag, buckets_[b].tag + 4, kFreeTag);
  free_count_ = capacity_;
  for (uint32_t k = 0; k < capacity_; ++k)
    free_[k] = capacity_ - 1 - k;  // slot 0 on top
}

void OrderBook::reserve(uint32_t levels) {
  if (levels > capacity_) rebuild(levels);
}

// Re-creates every array for `capacity` levels (index load factor <= 1/2 when full), keeping the
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
  for (unsigned side = 0; side < 2; ++side) {
    top_[side].reserve(kTopMax + 1);
    deep_[side].reserve(capacity);
  }
  uint64_t buckets = 8;  // four cells each, two cells per level at capacity
  while (buckets * 4 < static_cast<uint64_t>(capacity) * 2)
    buckets <<= 1;
  buckets_ = book_detail::LineArray<Bucket>(buckets);
  mask_ = buckets - 1;
  bucket_shift_ = 64 - static_cast<uint32_t>(std::countr_zero(buckets));
  assert(bucket_shift_ >= 35);  // home_of_tag: at most 2^29 buckets
  pool_ = std::move(pool);
  free_ = std::move(free_slots);
  free_count_ = free_count;
  capacity_ = capacity;
  reindex();
}

void OrderBook::reindex() noexcept {
  for (size_t b = 0; b < buckets_.size(); ++b)
    std::fill(buckets_[b].tag, buckets_[b].tag + 4, kFreeTag);
  const auto add = [this](unsigned side, uint32_t slot, double key) {
    const uint64_t id = pool_[slot].id;
    const uint32_t tag = tag_of(product(id), id, side);
    uint64_t b = home_of_tag(tag);
    while (tag_mask(buckets_[b], kFreeTag) == 0)
      b = (b + 1) & mask_;
    Bucket& bucket = buckets_[b];
    const auto lane = static_cast<unsigned>(std::countr_zero(tag_mask(bucket, kFreeTag)));
    bucket.tag[lane] = tag;
    bucket.slot[lane] = slot;
    bucket.key[lane] = key;
  };
  for (unsigned side = 0; side < 2; ++side) {
    for (const auto* o : {&top_[side], &deep_[side]})
      for (size_t k = 0; k < o->size(); ++k)
        add(side, o->slots()[k], o->keys()[k]);
    if (grid_)
      ladder_[side].for_each([&](int64_t t, uint32_t slot) { add(side, slot, key_of_tick(t)); });
  }
}

void OrderBook::reseed() noexcept {
  mult_ = mix64(kFirstMultiplier * ++seeds_) | 1;
  ++rehashes_;
  reindex();
}

BMX_HOT_INLINE unsigned OrderBook::tag_mask(const Bucket& b, uint32_t tag) noexcept {
#if defined(__SSE2__)
  const __m128i tags = _mm_load_si128(reinterpret_cast<const __m128i*>(b.tag));
  return static_cast<unsigned>(_mm_movemask_ps(
      _mm_castsi128_ps(_mm_cmpeq_epi32(tags, _mm_set1_epi32(static_cast<int>(tag))))));
#else
  unsigned m = 0;
  for (unsigned i = 0; i < 4; ++i)
    m |= static_cast<unsigned>(b.tag[i] == tag) << i;
  return m;
#endif
}

// Buckets are probed in order from the home bucket. Invariant: a cell lives in bucket b only if
// every bucket from its home up to b - 1 is full. So a lookup may stop at the first bucket with a
// free cell, and an insert takes the first free cell it meets. A tag match is confirmed by the id
// in the pool.
BMX_HOT_INLINE OrderBook::Probe OrderBook::probe(unsigned side, uint64_t id) const noexcept {
  const uint32_t tag = tag_of(product(id), id, side);
  uint64_t b = home_of_tag(tag);
  for (uint32_t length = 0;; ++length, b = (b + 1) & mask_) {
    const Bucket& bucket = buckets_[b];
    for (unsigned m = tag_mask(bucket, tag); m != 0; m &= m - 1) {
      const auto lane = static_cast<unsigned>(std::countr_zero(m));
      if (pool_[bucket.slot[lane]].id == id) return Probe{b * 4 + lane, tag, length, true};
    }
    if (const unsigned f = tag_mask(bucket, kFreeTag)) {
      return Probe{b * 4 + static_cast<unsigned>(std::countr_zero(f)), tag, length, false};
    }
  }
}

template <class Match>
BMX_HOT_INLINE uint64_t OrderBook::find_cell(unsigned side, uint64_t id,
                                             Match match) const noexcept {
  const uint32_t tag = tag_of(product(id), id, side);
  for (uint64_t b = home_of_tag(tag);; b = (b + 1) & mask_) {
    const Bucket& bucket = buckets_[b];
    for (unsigned m = tag_mask(bucket, tag); m != 0; m &= m - 1) {
      const auto lane = static_cast<unsigned>(std::countr_zero(m));
      if (match(bucket, lane)) [[likely]] {
        return b * 4 + lane;
      }
    }
    if (tag_mask(bucket, kFreeTag)) return kNotFound;
  }
}

BMX_HOT_INLINE uint64_t OrderBook::find(unsigned side, uint64_t id) const noexcept {
  return find_cell(side, id,
                   [&](const Bucket& b, unsigned lane) { return pool_[b.slot[lane]].id == id; });
}

BMX_HOT_INLINE uint64_t OrderBook::find_slot(unsigned side, uint64_t id,
                                             uint32_t slot) const noexcept {
  return find_cell(side, id,
                   [slot](const Bucket& b, unsigned lane) { return b.slot[lane] == slot; });
}

const BookLevel& OrderBook::level(Side side, uint32_t i) const noexcept {
  const unsigned s = index(side);
  const auto& d = deep_[s];
  const size_t n = grid_ ? ladder_[s].count() : top_[s].size();
  if (i >= n) return pool_[d.slots()[d.size() - 1 - (i - n)]];
  return pool_[grid_ ? ladder_[s].select(i) : top_[s].slots()[n - 1 - i]];
}

double OrderBook::level_price(Side side, uint64_t id) const noexcept {
  uint32_t slot;
  double key;
  return lookup(index(side), id, slot, key) ? pool_[slot].price : 0;
}

bool OrderBook::lookup(unsigned side, uint64_t id, uint32_t& slot, double& key) const noexcept {
  if (linear_) return locate(side, id, slot, key);
  const uint64_t at = find(side, id);
  if (at == kNotFound) return false;
  slot = buckets_[at >> 2].slot[at & 3];
  key = buckets_[at >> 2].key[at & 3];
  return true;
}

// A free cell in a bucket that had one already changes no probe sequence (nothing probed past the
// bucket): the common case, O(1). Only freeing a full bucket's cell needs refill().
BMX_HOT_INLINE void OrderBook::index_erase(uint64_t cell) noexcept {
  Bucket& bucket = buckets_[cell >> 2];
  const bool was_full = tag_mask(bucket, kFreeTag) == 0;
  bucket.tag[cell & 3] = kFreeTag;
  if (was_full) [[unlikely]] {
    refill(cell >> 2, static_cast<unsigned>(cell & 3));
  }
}

// Backward shift at bucket granularity (no tombstones, so a long-running book never degrades):
// walks the buckets after the hole; a cell whose home is not in (hole, j] probed past the hole's
// bucket and moves into the hole, which then moves to its bucket j. Stops at a bucket that was not
// full: no cell probed past it.
void OrderBook::refill(uint64_t hole, unsigned lane) noexcept {
  for (uint64_t j = (hole + 1) & mask_;; j = (j + 1) & mask_) {
    Bucket& bj = buckets_[j];
    const bool j_was_full = tag_mask(bj, kFreeTag) == 0;
    unsigned moved = 4;
    for (unsigned k = 0; k < 4 && moved == 4; ++k) {
      if (bj.tag[k] == kFreeTag) continue;
      const uint64_t h = home_of_tag(bj.tag[k]);
      const bool between = hole <= j ? (h > hole && h <= j) : (h > hole || h <= j);
      if (!between) {
        Bucket& bh = buckets_[hole];
        bh.tag[lane] = bj.tag[k];
        bh.slot[lane] = bj.slot[k];
        bh.key[lane] = bj.key[k];
        bj.tag[k] = kFreeTag;
        moved = k;
      }
    }
    if (!j_was_full) return;
    if (moved < 4) {
      hole = j;
      lane = moved;
    }
  }
}

BMX_HOT_INLINE uint32_t OrderBook::add_level(uint64_t cell, uint32_t tag, unsigned side,
                                             uint64_t id, double price, int64_t size) noexcept {
  const uint32_t slot = free_[--free_count_];
  pool_[slot] = BookLevel{price, size, id};
  last_slot_ = slot;
  Bucket& b = buckets_[cell >> 2];
  b.tag[cell & 3] = tag;
  b.slot[cell & 3] = slot;
  b.key[cell & 3] = key_of(side, price);
  return slot;
}

// A new level goes after the levels of an equal price (nearer the best). The top tier's count of
// its 64 best keys decides most inserts alone: fewer than 64 keys rank above the new one, so it
// belongs in the top tier (which holds at least kTopMin = 64 levels whenever the deep tier holds
// any). Only a deeper level reads the tier's front key.
BMX_HOT_INLINE void OrderBook::place(unsigned side, uint32_t slot, double key, bool bulk) noexcept {
  if (bulk) {
    deep_[side].push_back(key, slot);  // finish_bulk sorts the deep tier and fills the top one
    return;
  }
  if (grid_) [[likely]] {
    place_ladder(side, slot, key);
    return;
  }
  place_sorted(side, slot, key);
}

BMX_HOT_INLINE void OrderBook::place_sorted(unsigned side, uint32_t slot, double key) noexcept {
  auto& top = top_[side];
  const size_t above = top.count_top<true>(key);
  if (above < kTopMin) [[likely]] {
    top.insert_at(top.size() - above, key, slot);
    if (top.size() > kTopMax) [[unlikely]] {
      spill_top(side);
    }
    return;
  }
  place_deeper(side, slot, key);
}

// The rarer cases out of line, so that the common path of the three operations needs few
// registers and a short frame.
void OrderBook::place_deeper(unsigned side, uint32_t slot, double key) noexcept {
  auto& top = top_[side];
  auto& deep = deep_[side];
  if (deep.empty() || key >= top.front_key()) {
    const size_t pos = top.bound_below_top<true>(key);
    top.insert_at(pos, key, slot);
    if (top.size() > kTopMax) spill_top(side);
  } else {
    const size_t pos = deep.bound<true>(key);
    deep.insert_at(pos, key, slot);
  }
}

BMX_HOT_INLINE void OrderBook::unplace(unsigned side, uint32_t slot, double key) noexcept {
  if (grid_) [[likely]] {
    unplace_ladder(side, slot, key);
    return;
  }
  unplace_sorted(side, slot, key);
}

BMX_HOT_INLINE void OrderBook::unplace_sorted(unsigned side, uint32_t slot, double key) noexcept {
  auto& top = top_[side];
  const size_t n = top.size();
  const size_t above = top.count_top<false>(key);
  const size_t pos = n - above;
  if (above < kTopMin && pos < n && top.slots()[pos] == slot) [[likely]] {
    top.erase_at(pos);
    if (top.size() < kTopMin && !deep_[side].empty()) [[unlikely]] {
      refill_top(side);
    }
    return;
  }
  unplace_deeper(side, slot, key, above);
}

// Deeper than the top tier's 64 best, or an equal price before it (never in a sane book).
void OrderBook::unplace_deeper(unsigned side, uint32_t slot, double key, size_t above) noexcept {
  auto& top = top_[side];
  auto& deep = deep_[side];
  const size_t n = top.size();
  size_t pos = book_detail::SideOrder::kNone;
  if (above < kTopMin) {
    pos = n - above;
    const double* k = top.keys();
    const uint32_t* s = top.slots();
    while (pos < n && s[pos] != slot)  // equal prices
      pos = k[pos] == key ? pos + 1 : book_detail::SideOrder::kNone;
    if (pos == n) pos = book_detail::SideOrder::kNone;
  } else if (deep.empty() || key >= top.front_key()) {
    pos = top.find(key, slot);
  }
  if (pos != book_detail::SideOrder::kNone) {
    top.erase_at(pos);
    if (top.size() < kTopMin && !deep.empty()) refill_top(side);
    return;
  }
  pos = deep.find(key, slot);  // below the top tier, or an equal price at the tiers' seam
  assert(pos != book_detail::SideOrder::kNone);
  deep.erase_at(pos);
}

// One level per call: the top tier stays within [kTopMin, kTopMax] at O(1) a change.
void OrderBook::spill_top(unsigned side) noexcept {
  double key;
  const uint32_t slot = top_[side].pop_front(key);
  deep_[side].push_back(key, slot);
}

void OrderBook::refill_top(unsigned side) noexcept {
  double key;
  const uint32_t slot = deep_[side].pop_back(key);
  top_[side].push_front(key, slot);
}

// ---- The price grid and the ladders ----

namespace {
// round(x) to an integer, in the current rounding mode (to nearest): one instruction.
BMX_HOT_INLINE int64_t round_to_int(double x) noexcept {
#if defined(__SSE2__)
  return _mm_cvtsd_si64(_mm_set_sd(x));
#else
  return std::llrint(x);
#endif
}
// |price * scale| (tick * step) below this: the product is an exact integer in a double, and the
// keys of distinct ticks are distinct doubles (at least 2^-40 apart relatively, a double resolves
// 2^-52).
constexpr double kMaxUnits = 0x1p40;
// How many finer grids a book may move to between partials before it stays in the sorted tiers.
constexpr uint32_t kRegridBudget = 16;
}  // namespace

BMX_HOT_INLINE bool OrderBook::tick_of(double key, int64_t& t) const noexcept {
  if (!(std::fabs(key) < max_key_)) [[unlikely]] {  // NaN too
    return false;
  }
  t = round_to_int(key * mul_);
  return key_of_tick(t) == key;
}

BMX_HOT_INLINE int64_t OrderBook::grid_tick(double key) const noexcept {
  return round_to_int(key * mul_);
}

// A level on the grid: into the ladder's window, or below it into the deep tier. Off the grid (or
// an equal price, never in a sane book): place_off_grid.
BMX_HOT_INLINE void OrderBook::place_ladder(unsigned side, uint32_t slot, double key) noexcept {
  auto& l = ladder_[side];
  int64_t t;
  if (!tick_of(key, t) || (l.within(t) && l.occupied(t))) [[unlikely]] {
    place_off_grid(side, slot, key);
    return;
  }
  place_tick(side, slot, key, t);
}

BMX_HOT_INLINE void OrderBook::place_tick(unsigned side, uint32_t slot, double key,
                                          int64_t t) noexcept {
  auto& l = ladder_[side];
  if (!l.within(t)) [[unlikely]] {
    if (t < l.lo() && !l.empty()) {  // below the window
      auto& deep = deep_[side];
      const size_t pos = deep.bound<true>(key);
      deep.insert_at(pos, key, slot);
      return;
    }
    slide_up(side, t);  // above the window, or into an empty side
  }
  l.set(t, slot);
}

BMX_HOT_INLINE void OrderBook::unplace_ladder(unsigned side, uint32_t slot, double key) noexcept {
  auto& l = ladder_[side];
  auto& deep = deep_[side];
  const int64_t t = grid_tick(key);
  if (t < l.lo()) [[unlikely]] {
    const size_t pos = deep.find(key, slot);
    assert(pos != book_detail::SideOrder::kNone);
    deep.erase_at(pos);
    return;
  }
  assert(l.within(t) && l.occupied(t) && l.slot_at(t) == slot);
  (void)slot;
  l.erase(t);
  if ((l.empty() || l.best() < l.lo() + kHeadroom) && !deep.empty()) [[unlikely]] {
    slide_down(side);
  }
}

// The window moves up so that tick t lies kHeadroom below its top; the levels it leaves behind go
// to the back of the deep tier, in order (all of them are above the deep tier's levels). O(window
// + levels moved), no allocation.
void OrderBook::slide_up(unsigned side, int64_t t) noexcept {
  auto& l = ladder_[side];
  const int64_t lo = t - (book_detail::PriceLadder::kTicks - kHeadroom - 1);
  if (l.empty()) {  // and so is the deep tier
    l.reset(lo);
    return;
  }
  auto& deep = deep_[side];
  l.take_below(lo, [&](int64_t tick, uint32_t slot) { deep.push_back(key_of_tick(tick), slot); });
  l.move_to(lo);
}

// The best has come near the bottom of the window (or the window is empty): the window moves down
// to put it kHeadroom below the top, and takes the deep tier's levels that now fall inside.
void OrderBook::slide_down(unsigned side) noexcept {
  auto& l = ladder_[side];
  auto& deep = deep_[side];
  const int64_t best = l.empty() ? grid_tick(deep.top_key()) : l.best();
  const int64_t lo = best - (book_detail::PriceLadder::kTicks - kHeadroom - 1);
  l.move_to(lo);
  while (!deep.empty()) {
    const int64_t t = grid_tick(deep.top_key());
    if (t < lo) break;
    double key;
    l.set(t, deep.pop_back(key));
  }
}

// A price off the grid: the book leaves it, places the level in the sorted tiers, and looks for a
// finer grid that holds every level, the new one included (a partial whose prices all happened to
// be whole dollars, say). Each such grid is finer than the last, so this happens a few times
// after a partial at most (kRegridBudget bounds it); after that the book stays in the sorted
// tiers until its next partial. No allocation.
void OrderBook::place_off_grid(unsigned side, uint32_t slot, double key) noexcept {
  assert(!linear_);  // insert_linear checks the tick first; a moving update leaves linear_ first
  ++regrids_;
  leave_grid();
  place_sorted(side, slot, key);
  if (regrid_budget_ > 0) {
    --regrid_budget_;
    enter_grid();
  }
}

// The ladder's levels to the back of the deep tier, lowest first (in order when every ladder level
// is above the deep tier's levels), and the ladder emptied.
void OrderBook::pour_ladder(unsigned side) noexcept {
  auto& deep = deep_[side];
  ladder_[side].for_each([&](int64_t t, uint32_t slot) { deep.push_back(key_of_tick(t), slot); });
  ladder_[side].reset(0);
}

// The sorted tiers' invariant from a deep tier holding the whole side: its best kTopFill levels
// (or all) move to the empty top tier.
void OrderBook::fill_top(unsigned side) noexcept {
  auto& deep = deep_[side];
  const size_t fill = std::min(kTopFill, deep.size());
  for (size_t i = 0; i < fill; ++i) {
    double key;
    const uint32_t slot = deep.pop_back(key);
    top_[side].push_front(key, slot);
  }
}

void OrderBook::leave_grid() noexcept {
  if (!grid_) return;
  for (unsigned side = 0; side < 2; ++side) {
    pour_ladder(side);
    fill_top(side);
  }
  grid_ = false;
}

void OrderBook::enter_grid() noexcept {
  for (unsigned side = 0; side < 2; ++side) {
    auto& top = top_[side];
    auto& deep = deep_[side];
    while (!top.empty()) {  // lowest first: above the deep tier's levels
      double key;
      const uint32_t slot = top.pop_front(key);
      deep.push_back(key, slot);
    }
  }
  grid_ = find_grid();
  for (unsigned side = 0; side < 2; ++side) {
    auto& deep = deep_[side];
    if (!grid_) {
      fill_top(side);
      continue;
    }
    auto& l = ladder_[side];
    l.reset(0);
    if (!deep.empty()) slide_down(side);
  }
}

namespace {

// True when every key of k[0, n) lies on the grid (scale, step): k = t * step / scale exactly for
// the integer t = round(k * mul). One pass of independent operations, without early exit, so that
// the divisions overlap (and vectorise where the compiler can). No allocation.
bool all_on_grid(const double* k, size_t n, double mul, double step, double scale,
                 double max_key) noexcept {
  bool ok = true;
  size_t i = 0;
#if defined(__AVX2__)
  const __m256d vmul = _mm256_set1_pd(mul), vstep = _mm256_set1_pd(step);
  const __m256d vscale = _mm256_set1_pd(scale), vmax = _mm256_set1_pd(max_key);
  const __m256d abs_mask = _mm256_castsi256_pd(_mm256_set1_epi64x(INT64_MAX));
  __m256d good = _mm256_castsi256_pd(_mm256_set1_epi64x(-1));
  for (; i + 4 <= n; i += 4) {
    const __m256d key = _mm256_loadu_pd(k + i);
    const __m256d t = _mm256_round_pd(_mm256_mul_pd(key, vmul), _MM_FROUND_CUR_DIRECTION);
    const __m256d back = _mm256_div_pd(_mm256_mul_pd(t, vstep), vscale);
    good = _mm256_and_pd(good, _mm256_cmp_pd(_mm256_and_pd(key, abs_mask), vmax, _CMP_LT_OQ));
    good = _mm256_and_pd(good, _mm256_cmp_pd(back, key, _CMP_EQ_OQ));
  }
  ok = _mm256_movemask_pd(good) == 0xf;
#endif
  for (; i < n; ++i) {
    const double t = std::nearbyint(k[i] * mul);  // the rounding of round_to_int
    ok &= (std::fabs(k[i]) < max_key) & (t * step / scale == k[i]);
  }
  return ok;
}

// The fewest decimals (scale = 10^decimals) that write `key` exactly, at least `scale`; 0 if more
// than kMaxDecimals are needed.
double scale_for(double key, double scale) noexcept {
  for (;;) {
    const double x = key * scale;
    if (std::fabs(x) < kMaxUnits && static_cast<double>(round_to_int(x)) / scale == key) {
      return scale;
    }
    if (scale >= 1e12) return 0;  // 10^kMaxDecimals
    scale *= 10;
  }
}

}  // namespace

// The finest grid of every level's key, both sides (kept sorted in the deep tiers): the fewest
// decimals (a power of ten, scale) that write every price exactly, then the greatest common
// divisor of the prices in those units (step: a tick of 0.5 is 5 units of 0.1). A partial has
// thousands of levels and this runs on each, so the grid is guessed from a sample (the best and
// worst levels of each side and every 16th) and then checked on every key in one pass; only when
// the check fails are all keys taken (a price the sample missed needs a finer grid).
bool OrderBook::find_grid() noexcept {
  if (deep_[0].empty() && deep_[1].empty()) return false;
  for (unsigned side = 0; side < 2; ++side) {  // an equal price: one cell cannot hold both
    const auto& deep = deep_[side];
    const double* k = deep.keys();
    bool equal = false;
    for (size_t i = 1; i < deep.size(); ++i)
      equal |= k[i] == k[i - 1];
    if (equal) return false;
  }
  // Calls f(key) for the sample (the 8 lowest and 8 highest keys of each side, and every 16th) or,
  // with `all`, for every key.
  const auto each = [this](bool all, auto f) {
    for (unsigned side = 0; side < 2; ++side) {
      const double* k = deep_[side].keys();
      const size_t n = deep_[side].size();
      const size_t stride = all ? 1 : 16;
      for (size_t i = 0; i < n; i += stride)
        f(k[i]);
      if (all) continue;
      for (size_t i = 0; i < std::min<size_t>(8, n); ++i) {
        f(k[i]);
        f(k[n - 1 - i]);
      }
    }
  };
  for (const bool all : {false, true}) {
    double scale = 1;
    each(all, [&](double key) {
      if (scale != 0) scale = scale_for(key, scale);
    });
    if (scale == 0) return false;
    uint64_t step = 0;  // the grid includes 0, so that the asks' negated keys lie on it too
    each(all, [&](double key) {
      const auto n = static_cast<uint64_t>(round_to_int(std::fabs(key) * scale));
      if (step == 0 || n % step != 0) step = std::gcd(step, n);
    });
    scale_ = scale;
    step_ = step == 0 ? 1 : static_cast<int64_t>(step);
    mul_ = scale_ / static_cast<double>(step_);
    max_key_ = kMaxUnits / scale_;
    bool ok = true;
    for (unsigned side = 0; side < 2; ++side)
      ok = ok && all_on_grid(deep_[side].keys(), deep_[side].size(), mul_,
                             static_cast<double>(step_), scale_, max_key_);
    if (ok) return true;
  }
  return false;
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
      place(side, add_level(p.cell, p.tag, side, id, price, size), key_of(side, price), bulk);
      return Result::kOk;
    }
    reseed();
  }
}

OrderBook::Result OrderBook::insert(Side side, uint64_t id, double price, int64_t size,
                                    double& old_price) {
  const unsigned s = index(side);
  if (linear_) {
    Result r;
    if (insert_linear(s, id, price, size, old_price, r)) [[likely]] {
      return r;
    }
  }
  const Probe p = probe(s, id);
  if (p.found) [[unlikely]] {
    update(side, id, size, true, price, old_price);
    return Result::kDuplicateInsert;
  }
  if (p.length > kMaxProbe || free_count_ == 0) [[unlikely]] {  // == size() >= capacity_
    return insert_slow(s, id, price, size, false);
  }
  place(s, add_level(p.cell, p.tag, s, id, price, size), key_of(s, price), false);
  return Result::kOk;
}

OrderBook::Result OrderBook::bulk_insert(Side side, uint64_t id, double price, int64_t size,
                                         double& old_price) {
  const unsigned s = index(side);
  if (linear_) leave_linear();  // a partial clear()s first; this is a bulk onto a live book
  const Probe p = probe(s, id);
  if (p.found) {  // repeated level inside one partial: the last one wins (finish_bulk sorts)
    old_price = key_of(s, key_at(p.cell));
    last_slot_ = slot_at(p.cell);
    pool_[last_slot_] = BookLevel{price, size, id};
    key_at(p.cell) = key_of(s, price);
    return Result::kDuplicateInsert;
  }
  if (p.length > kMaxProbe || free_count_ == 0) {
    return insert_slow(s, id, price, size, true);
  }
  place(s, add_level(p.cell, p.tag, s, id, price, size), key_of(s, price), true);
  return Result::kOk;
}

void OrderBook::finish_bulk() {
  for (unsigned side = 0; side < 2; ++side) {
    auto& top = top_[side];
    auto& deep = deep_[side];
    double key;
    // Levels from before the bulk (none after clear()): sorted with it.
    if (grid_) pour_ladder(side);
    while (!top.empty()) {
      const uint32_t slot = top.pop_back(key);
      deep.push_back(key, slot);
    }
    deep.sort_by([this, side](uint32_t slot) { return key_of(side, pool_[slot].price); });
  }
  grid_ = false;
  regrid_budget_ = kRegridBudget;
  enter_grid();
  linear_ = grid_ && learn_linear();
}

OrderBook::Result OrderBook::update(Side side, uint64_t id, int64_t size, bool has_price,
                                    double price, double& old_price) {
  const unsigned s = index(side);
  if (linear_) {
    uint32_t slot;
    double key;
    if (!locate(s, id, slot, key)) return Result::kUnknownLevel;
    if (has_price && key_of(s, price) != key) [[unlikely]] {  // a move: not in the encoding
      leave_linear();
      return update(side, id, size, has_price, price, old_price);
    }
    pool_[slot].size = size;  // the only line read or written: the level's
    old_price = key_of(s, key);
    last_slot_ = slot;
    return Result::kOk;
  }
  if (grid_ && has_price) {  // since 2023: the price first, the index not at all
    const uint32_t slot = slot_at_price(s, id, key_of(s, price));
    if (slot != kNoSlot) [[likely]] {
      pool_[slot].size = size;
      old_price = price;
      last_slot_ = slot;
      return Result::kOk;
    }
  }
  const uint64_t at = find(s, id);
  if (at == kNotFound) return Result::kUnknownLevel;
  const uint32_t slot = slot_at(at);
  last_slot_ = slot;
  BookLevel& l = pool_[slot];
  l.size = size;
  const double key = key_at(at);
  old_price = key_of(s, key);  // the key is its price, sign-flipped for asks: flipping is exact
  if (has_price && key_of(s, price) != key) [[unlikely]] {
    move_level(s, at, price);
  }
  return Result::kOk;  // the price kept (all 2021 updates): no search
}

// An update with a new price: the level moves in its side's order.
void OrderBook::move_level(unsigned side, uint64_t cell, double price) noexcept {
  const uint32_t slot = slot_at(cell);
  unplace(side, slot, key_at(cell));
  pool_[slot].price = price;
  key_at(cell) = key_of(side, price);
  place(side, slot, key_at(cell), false);
}

OrderBook::Result OrderBook::remove(Side side, uint64_t id, double& old_price) noexcept {
  const unsigned s = index(side);
  if (linear_) {  // the tick from the id: no index line, no pool line
    uint32_t slot;
    double key;
    if (!locate(s, id, slot, key)) return Result::kUnknownLevel;
    old_price = key_of(s, key);
    last_slot_ = slot;
    unplace(s, slot, key);
    free_[free_count_++] = slot;
    return Result::kOk;
  }
  const uint64_t at = find(s, id);
  if (at == kNotFound) return Result::kUnknownLevel;
  const uint32_t slot = slot_at(at);
  const double key = key_at(at);
  old_price = key_of(s, key);
  last_slot_ = slot;
  unplace(s, slot, key);  // the key from the index line: no wait for the pool line
  free_[free_count_++] = slot;
  index_erase(at);
  return Result::kOk;
}

BMX_HOT_INLINE uint32_t OrderBook::slot_at_price(unsigned side, uint64_t id,
                                                 double key) const noexcept {
  int64_t t;
  const auto& l = ladder_[side];
  if (!tick_of(key, t) || !l.within(t) || !l.occupied(t)) return kNoSlot;
  const uint32_t slot = l.slot_at(t);  // one level per cell on the grid
  return pool_[slot].id == id ? slot : kNoSlot;
}

OrderBook::Result OrderBook::remove(Side side, uint64_t id, bool has_price, double price,
                                    double& old_price) noexcept {
  const unsigned s = index(side);
  if (!linear_ && grid_ && has_price) {
    const double key = key_of(s, price);
    const uint32_t slot = slot_at_price(s, id, key);
    // The index cell loads beside the pool line (the id's confirmation), not after it. It is
    // always there (every level has one off the 2021 encoding); were it not, the id path decides.
    const uint64_t at = slot == kNoSlot ? kNotFound : find_slot(s, id, slot);
    if (at != kNotFound) [[likely]] {
      old_price = price;
      last_slot_ = slot;
      unplace(s, slot, key);
      free_[free_count_++] = slot;
      index_erase(at);
      return Result::kOk;
    }
  }
  return remove(side, id, old_price);
}

// ---- The 2021 id encoding ----

namespace {
constexpr int64_t kMaxLinearId = int64_t{1} << 50;  // see OrderBook::linear_
constexpr int64_t kMaxIdStep = int64_t{1} << 20;
}  // namespace

BMX_HOT_INLINE bool OrderBook::tick_of_id(unsigned side, uint64_t id, int64_t& t) const noexcept {
  if (id >= static_cast<uint64_t>(kMaxLinearId)) return false;
  const int64_t d = id_base_ - static_cast<int64_t>(id);  // |d| < 2^51: exact in a double
  // d / id_step_ by a multiplication: |d| < 2^51 keeps its error under 1/2, so the rounded
  // quotient is right whenever the division is exact, which the product then checks.
  const int64_t tp = round_to_int(static_cast<double>(d) * inv_id_step_);
  if (!((tp * id_step_ == d) & (tp > 0) & (tp <= max_tick_))) return false;
  t = side == 0 ? tp : -tp;  // asks' keys are negated prices
  return true;
}

BMX_HOT_INLINE bool OrderBook::locate(unsigned side, uint64_t id, uint32_t& slot,
                                      double& key) const noexcept {
  int64_t t;
  return tick_of_id(side, id, t) && locate_tick(side, t, slot, key);
}

BMX_HOT_INLINE bool OrderBook::locate_tick(unsigned side, int64_t t, uint32_t& slot,
                                           double& key) const noexcept {
  const auto& l = ladder_[side];
  if (l.within(t)) [[likely]] {
    if (!l.occupied(t)) return false;
    slot = l.slot_at(t);
    key = key_of_tick(t);
    return true;
  }
  if (t >= l.lo() || l.empty()) return false;  // above the window, or an empty side
  key = key_of_tick(t);  // the deep tier's keys are exactly these (they passed tick_of)
  const auto& deep = deep_[side];
  const size_t pos = deep.bound<false>(key);
  if (pos == deep.size() || deep.keys()[pos] != key) return false;
  slot = deep.slots()[pos];  // one level per tick: no equal prices on the grid
  return true;
}

BMX_HOT_INLINE bool OrderBook::insert_linear(unsigned side, uint64_t id, double price, int64_t size,
                                             double& old_price, Result& result) noexcept {
  const double key = key_of(side, price);
  int64_t t, at;
  if (!tick_of(key, t) || !tick_of_id(side, id, at) || at != t || free_count_ == 0) [[unlikely]] {
    leave_linear();
    return false;
  }
  uint32_t slot;
  double held;
  if (locate_tick(side, t, slot, held)) [[unlikely]] {  // held at this very price: a replacement
    pool_[slot].size = size;
    old_price = price;
    last_slot_ = slot;
    result = Result::kDuplicateInsert;
    return true;
  }
  slot = free_[--free_count_];
  pool_[slot] = BookLevel{price, size, id};
  last_slot_ = slot;
  place_tick(side, slot, key, t);
  result = Result::kOk;
  return true;
}

// Once the partial's levels are on the grid: the rule id = base - step * tick from two levels of
// different ticks, then checked on every level of both sides. O(levels), no allocation.
bool OrderBook::learn_linear() noexcept {
  int64_t t0 = 0, id0 = 0, t1 = 0, id1 = 0;
  int found = 0;
  const auto sample = [&](unsigned side, int64_t t, uint32_t slot) {
    const int64_t tp = side == 0 ? t : -t;
    const uint64_t id = pool_[slot].id;
    if (found == 2 || id >= static_cast<uint64_t>(kMaxLinearId)) return;  // checked below
    if (found == 0) {
      t0 = tp;
      id0 = static_cast<int64_t>(id);
      found = 1;
    } else if (tp != t0) {
      t1 = tp;
      id1 = static_cast<int64_t>(id);
      found = 2;
    }
  };
  for (unsigned side = 0; side < 2; ++side)
    ladder_[side].for_each([&](int64_t t, uint32_t slot) { sample(side, t, slot); });
  if (found < 2) return false;
  const int64_t dt = t0 - t1;  // |dt| < 2^41, |id1 - id0| < 2^50
  if ((id1 - id0) % dt != 0) return false;
  const int64_t step = (id1 - id0) / dt;
  if (step == 0 || step >= kMaxIdStep || step <= -kMaxIdStep) return false;
  const int64_t base = id0 + step * t0;  // |step * t0| < 2^61
  if (base >= kMaxLinearId || base <= -kMaxLinearId) return false;
  id_base_ = base;
  id_step_ = step;
  inv_id_step_ = 1.0 / static_cast<double>(step);
  max_tick_ = static_cast<int64_t>(kMaxUnits) / step_;
  bool ok = true;
  for (unsigned side = 0; side < 2; ++side) {
    ladder_[side].for_each([&](int64_t t, uint32_t slot) {
      int64_t at;
      ok = ok && tick_of_id(side, pool_[slot].id, at) && at == t;
    });
    const auto& deep = deep_[side];
    for (size_t i = 0; i < deep.size() && ok; ++i) {
      int64_t at;
      ok = tick_of_id(side, pool_[deep.slots()[i]].id, at) && at == grid_tick(deep.keys()[i]);
    }
  }
  return ok;
}

void OrderBook::leave_linear() noexcept {
  linear_ = false;
  ++index_rebuilds_;
  reindex();
}

}  // namespace bmx

#undef BMX_HOT_INLINE
