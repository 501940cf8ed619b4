#include "engine/order_book.hpp"

#include <algorithm>
#include <cassert>
#include <cstddef>
#include <cstring>
#include <stdexcept>

namespace bmx {

namespace {

// First index in `a[0, len)` (best at the back) whose level is not worse than `x` (in key space:
// price * sign, ascending); `strict`: the first strictly better. Branchless within the range (the
// ternary becomes a conditional move). Multiplying by +-1 is exact, so the order is exact.
size_t search_range(const BookLevel* a, size_t len, double x, double sign, bool strict) noexcept {
  if (len == 0) return 0;
  const BookLevel* base = a;
  while (len > 1) {
    const size_t half = len / 2;
    const double k = base[half - 1].price * sign;
    base += (strict ? k <= x : k < x) ? half : 0;
    len -= half;
  }
  const double k = base->price * sign;
  return static_cast<size_t>(base - a) + ((strict ? k <= x : k < x) ? 1 : 0);
}

// The same over a whole side, trying the 64 levels nearest the top first: they are hot in cache
// and take most of the traffic, while a binary search over a deep book is a chain of dependent
// loads that miss (the 2021 XBTUSD book has 5557 bids).
size_t search(const LevelArray& o, double price, double sign, bool strict) noexcept {
  constexpr size_t kTop = 64;
  const size_t n = o.size();
  const double x = price * sign;
  if (n > kTop) {
    const size_t top = n - kTop;
    const double k = o[top - 1].price * sign;
    if (strict ? k <= x : k < x) return top + search_range(o.data() + top, kTop, x, sign, strict);
    return search_range(o.data(), top, x, sign, strict);
  }
  return search_range(o.data(), n, x, sign, strict);
}

double sign_of(Side side) noexcept {
  return side == Side::kBuy ? 1.0 : -1.0;
}

}  // namespace

void LevelArray::reserve(size_t levels) {
  const size_t cap = 2 * levels + 2;
  if (cap <= cap_) return;
  auto buf = std::make_unique_for_overwrite<BookLevel[]>(cap);
  const size_t n = size();
  const size_t at = (cap - n) / 2;
  if (n) std::memcpy(buf.get() + at, buf_.get() + begin_, n * sizeof(BookLevel));
  buf_ = std::move(buf);
  cap_ = cap;
  begin_ = at;
  end_ = at + n;
}

LevelArray& LevelArray::operator=(const LevelArray& other) {
  if (this == &other) return *this;
  if (cap_ != other.cap_) {
    buf_ = other.cap_ ? std::make_unique_for_overwrite<BookLevel[]>(other.cap_) : nullptr;
    cap_ = other.cap_;
  }
  begin_ = other.begin_;
  end_ = other.end_;
  if (!other.empty()) std::memcpy(begin(), other.begin(), size() * sizeof(BookLevel));
  return *this;
}

void LevelArray::recenter() noexcept {
  const size_t n = size();
  const size_t at = (cap_ - n) / 2;
  std::memmove(buf_.get() + at, buf_.get() + begin_, n * sizeof(BookLevel));
  begin_ = at;
  end_ = at + n;
}

void LevelArray::insert_at(size_t pos, const BookLevel& level) noexcept {
  const size_t n = size();
  assert(n + 2 < cap_);
  const bool front = pos < n - pos;  // fewer levels before pos than after it
  if ((front && begin_ == 0) || (!front && end_ == cap_)) recenter();
  BookLevel* b = buf_.get();
  if (front) {
    std::memmove(b + begin_ - 1, b + begin_, pos * sizeof(BookLevel));
    --begin_;
  } else {
    std::memmove(b + begin_ + pos + 1, b + begin_ + pos, (n - pos) * sizeof(BookLevel));
    ++end_;
  }
  b[begin_ + pos] = level;
}

void LevelArray::erase_at(size_t pos) noexcept {
  const size_t n = size();
  assert(pos < n);
  BookLevel* b = buf_.get();
  if (pos < n - 1 - pos) {
    std::memmove(b + begin_ + 1, b + begin_, pos * sizeof(BookLevel));
    ++begin_;
  } else {
    std::memmove(b + begin_ + pos, b + begin_ + pos + 1, (n - 1 - pos) * sizeof(BookLevel));
    --end_;
  }
}

OrderBook::OrderBook(uint32_t capacity) {
  rebuild(std::max<uint32_t>(capacity, 16));
}

void OrderBook::clear() noexcept {
  order_[0].clear();
  order_[1].clear();
  for (Cell& c : index_)
    c.key = 0;
}

void OrderBook::reserve(uint32_t levels) {
  if (levels > capacity_) rebuild(levels);
}

// Re-creates the index for `capacity` levels (load factor <= 2/3 when full, linear probing) and
// re-indexes the live levels.
// Cold path.
void OrderBook::rebuild(uint32_t capacity) {
  if (capacity >= (1u << 30)) throw std::length_error("OrderBook: more than 2^30 levels");
  capacity_ = capacity;
  order_[0].reserve(capacity);
  order_[1].reserve(capacity);
  uint64_t n = 32;
  while (n < static_cast<uint64_t>(capacity) * 3 / 2)
    n <<= 1;
  mask_ = n - 1;
  index_.assign(n, Cell{0, 0});
  for (int side = 0; side < 2; ++side) {
    for (const BookLevel& l : order_[side])
      index_insert(static_cast<Side>(side), l.id, l.price);
  }
}

void OrderBook::make_room() {
  if (size() >= capacity_) {
    rebuild(capacity_ * 2);
    grew_ = true;
  }
}

uint64_t OrderBook::find_index(Side side, uint64_t id) const noexcept {
  const bool sell = side == Side::kSell;
  for (uint64_t i = home(id, sell) & mask_;; i = (i + 1) & mask_) {
    const Cell& c = index_[i];
    if (c.key == 0) return mask_ + 1;
    if (c.id == id && (c.key < 0) == sell) return i;
  }
}

void OrderBook::index_insert(Side side, uint64_t id, double price) noexcept {
  assert(price > 0);
  uint64_t i = home(id, side == Side::kSell) & mask_;
  while (index_[i].key != 0)
    i = (i + 1) & mask_;
  index_[i] = Cell{id, key_of(side, price)};
}

// Backward-shift deletion: keeps probe chains intact without tombstones, so a long-running book
// never degrades.
void OrderBook::index_erase(uint64_t pos) noexcept {
  uint64_t hole = pos;
  for (uint64_t i = (pos + 1) & mask_; index_[i].key != 0; i = (i + 1) & mask_) {
    const uint64_t h = home(index_[i].id, index_[i].key < 0) & mask_;
    // Move entry i into the hole if its home is not within (hole, i] cyclically.
    const bool between = hole <= i ? (h > hole && h <= i) : (h > hole || h <= i);
    if (!between) {
      index_[hole] = index_[i];
      hole = i;
    }
  }
  index_[hole].key = 0;
}

size_t OrderBook::position(Side side, double price, uint64_t id) const noexcept {
  const auto& o = order_[index(side)];
  size_t i = search(o, price, sign_of(side), false);
  while (i < o.size() && o[i].id != id)
    ++i;  // equal prices (never in a sane book)
  assert(i < o.size());
  return i;
}

void OrderBook::order_insert(Side side, const BookLevel& level) noexcept {
  auto& o = order_[index(side)];
  const size_t pos = search(o, level.price, sign_of(side), true);
  o.insert_at(pos, level);  // room was reserved for every level: no allocation
}

OrderBook::Result OrderBook::insert(Side side, uint64_t id, double price, int64_t size) {
  if (find_index(side, id) <= mask_) {
    update(side, id, size, true, price);
    return Result::kDuplicateInsert;
  }
  make_room();
  index_insert(side, id, price);
  order_insert(side, BookLevel{price, size, id});
  return Result::kOk;
}

OrderBook::Result OrderBook::bulk_insert(Side side, uint64_t id, double price, int64_t size) {
  const uint64_t at = find_index(side, id);
  if (at <= mask_) {  // repeated level inside one partial: the last one wins (sides unsorted yet)
    index_[at].key = key_of(side, price);
    for (BookLevel& l : order_[index(side)]) {
      if (l.id == id) l = BookLevel{price, size, id};
    }
    return Result::kDuplicateInsert;
  }
  make_room();
  index_insert(side, id, price);
  order_[index(side)].push_back(BookLevel{price, size, id});
  return Result::kOk;
}

void OrderBook::finish_bulk() {
  order_[0].recenter();
  order_[1].recenter();
  std::sort(order_[0].begin(), order_[0].end(),
            [](const BookLevel& a, const BookLevel& b) { return a.price < b.price; });
  std::sort(order_[1].begin(), order_[1].end(),
            [](const BookLevel& a, const BookLevel& b) { return a.price > b.price; });
}

OrderBook::Result OrderBook::update(Side side, uint64_t id, int64_t size, bool has_price,
                                    double price) {
  const uint64_t at = find_index(side, id);
  if (at > mask_) return Result::kUnknownLevel;
  Cell& c = index_[at];
  auto& o = order_[index(side)];
  const double old_price = price_of(c.key);
  const size_t pos = position(side, old_price, id);
  if (!has_price || price == old_price) {
    o[pos].size = size;
    return Result::kOk;
  }
  o.erase_at(pos);  // the level moves to its new price
  c.key = key_of(side, price);
  order_insert(side, BookLevel{price, size, id});
  return Result::kOk;
}

OrderBook::Result OrderBook::remove(Side side, uint64_t id) noexcept {
  const uint64_t at = find_index(side, id);
  if (at > mask_) return Result::kUnknownLevel;
  auto& o = order_[index(side)];
  o.erase_at(position(side, price_of(index_[at].key), id));
  index_erase(at);
  return Result::kOk;
}

}  // namespace bmx
