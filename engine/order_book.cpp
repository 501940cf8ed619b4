#include "engine/order_book.hpp"

#include <algorithm>
#include <cassert>
#include <cstddef>
#include <cstring>
#include <stdexcept>

namespace bmx {

OrderBook::OrderBook(uint32_t capacity) {
  rebuild(std::max<uint32_t>(capacity, 16));
}

void OrderBook::clear() noexcept {
  order_[0].clear();
  order_[1].clear();
  free_.clear();
  next_slot_ = 0;
  std::fill(index_slots_.begin(), index_slots_.end(), kEmpty);
}

void OrderBook::reserve(uint32_t levels) {
  if (levels > slots_.size()) rebuild(levels);
}

// Re-creates every array at `capacity` levels and re-indexes the live levels. Cold path.
void OrderBook::rebuild(uint32_t capacity) {
  if (capacity >= kSideBit) throw std::length_error("OrderBook: more than 2^31 levels");
  slots_.resize(capacity);
  free_.reserve(capacity);
  order_[0].reserve(capacity);
  order_[1].reserve(capacity);
  uint64_t n = 32;
  while (n < static_cast<uint64_t>(capacity) * 2)
    n <<= 1;
  mask_ = n - 1;
  index_keys_.assign(n, 0);
  index_slots_.assign(n, kEmpty);
  for (int side = 0; side < 2; ++side) {
    for (const Entry& e : order_[side]) {
      index_insert(static_cast<Side>(side), slots_[e.slot].id, e.slot);
    }
  }
}

uint64_t OrderBook::find_index(Side side, uint64_t id) const noexcept {
  const uint32_t side_bit = cell(0, side);
  for (uint64_t i = home(id, side_bit) & mask_;; i = (i + 1) & mask_) {
    const uint32_t c = index_slots_[i];
    if (c == kEmpty) return mask_ + 1;
    if (index_keys_[i] == id && (c & kSideBit) == side_bit) return i;
  }
}

void OrderBook::index_insert(Side side, uint64_t id, uint32_t slot) noexcept {
  uint64_t i = home(id, cell(0, side)) & mask_;
  while (index_slots_[i] != kEmpty)
    i = (i + 1) & mask_;
  index_keys_[i] = id;
  index_slots_[i] = cell(slot, side);
}

// Backward-shift deletion: keeps probe chains intact without tombstones, so a long-running book
// never degrades.
void OrderBook::index_erase(uint64_t pos) noexcept {
  uint64_t hole = pos;
  for (uint64_t i = (pos + 1) & mask_; index_slots_[i] != kEmpty; i = (i + 1) & mask_) {
    const uint64_t h = home(index_keys_[i], index_slots_[i] & kSideBit) & mask_;
    // Move entry i into the hole if its home is not within (hole, i] cyclically.
    const bool between = hole <= i ? (h > hole && h <= i) : (h > hole || h <= i);
    if (!between) {
      index_keys_[hole] = index_keys_[i];
      index_slots_[hole] = index_slots_[i];
      hole = i;
    }
  }
  index_slots_[hole] = kEmpty;
}

namespace {

// First index in `o` (best at the back) whose entry is not worse than `price`, i.e. whose price is
// >= it for bids and <= it for asks; `strict` makes it the first entry strictly better. Branchless
// (the ternary becomes a conditional move): a deep level costs a chain of loads, not a
// misprediction per halving. Multiplying by +-1 is exact, so the order is exact.
size_t search(const std::vector<OrderBook::Entry>& o, double price, double sign,
              bool strict) noexcept {
  size_t len = o.size();
  if (len == 0) return 0;
  const OrderBook::Entry* base = o.data();
  const double x = price * sign;
  while (len > 1) {
    const size_t half = len / 2;
    const double k = base[half - 1].price * sign;
    base += (strict ? k <= x : k < x) ? half : 0;
    len -= half;
  }
  const double k = base->price * sign;
  return static_cast<size_t>(base - o.data()) + ((strict ? k <= x : k < x) ? 1 : 0);
}

}  // namespace

size_t OrderBook::position(Side side, double price, uint32_t slot) const noexcept {
  const auto& o = order_[index(side)];
  // Always the branchless search: in the recorded sessions a touched level is ~10 deep on average,
  // so a scan from the top costs a misprediction at its data-dependent exit and rarely wins.
  size_t i = search(o, price, side == Side::kBuy ? 1.0 : -1.0, false);
  while (i < o.size() && o[i].slot != slot)
    ++i;  // equal prices (never in a sane book)
  assert(i < o.size());
  return i;
}

void OrderBook::order_insert(Side side, double price, uint32_t slot) noexcept {
  auto& o = order_[index(side)];
  const size_t pos = search(o, price, side == Side::kBuy ? 1.0 : -1.0, true);
  // Capacity was reserved for every slot, so this never reallocates.
  o.insert(o.begin() + static_cast<std::ptrdiff_t>(pos), Entry{price, slot});
}

OrderBook::Result OrderBook::insert(Side side, uint64_t id, double price, int64_t size) {
  const uint64_t at = find_index(side, id);
  if (at <= mask_) {
    update(side, id, size, true, price);
    return Result::kDuplicateInsert;
  }
  const uint32_t slot = take_slot();
  slots_[slot] = BookLevel{price, size, id};
  index_insert(side, id, slot);
  order_insert(side, price, slot);
  return Result::kOk;
}

// A free slot: a recycled one, else the next never-used one, else the book doubles (allocates).
uint32_t OrderBook::take_slot() {
  if (!free_.empty()) {
    const uint32_t slot = free_.back();
    free_.pop_back();
    return slot;
  }
  if (next_slot_ == slots_.size()) {
    rebuild(static_cast<uint32_t>(slots_.size()) * 2);
    grew_ = true;
  }
  return next_slot_++;
}

OrderBook::Result OrderBook::bulk_insert(Side side, uint64_t id, double price, int64_t size) {
  const uint64_t at = find_index(side, id);
  if (at <= mask_) {  // repeated level inside one partial: the last one wins
    const uint32_t slot = slot_of(index_slots_[at]);
    slots_[slot].price = price;
    slots_[slot].size = size;
    for (Entry& e : order_[index(side)]) {
      if (e.slot == slot) e.price = price;
    }
    return Result::kDuplicateInsert;
  }
  const uint32_t slot = take_slot();
  slots_[slot] = BookLevel{price, size, id};
  index_insert(side, id, slot);
  order_[index(side)].push_back(Entry{price, slot});
  return Result::kOk;
}

void OrderBook::finish_bulk() {
  auto& bids = order_[0];
  auto& asks = order_[1];
  std::sort(bids.begin(), bids.end(),
            [](const Entry& a, const Entry& b) { return a.price < b.price; });
  std::sort(asks.begin(), asks.end(),
            [](const Entry& a, const Entry& b) { return a.price > b.price; });
}

OrderBook::Result OrderBook::update(Side side, uint64_t id, int64_t size, bool has_price,
                                    double price) noexcept {
  const uint64_t at = find_index(side, id);
  if (at > mask_) return Result::kUnknownLevel;
  const uint32_t slot = slot_of(index_slots_[at]);
  BookLevel& lvl = slots_[slot];
  lvl.size = size;
  if (has_price && price != lvl.price) {
    auto& o = order_[index(side)];
    o.erase(o.begin() + static_cast<std::ptrdiff_t>(position(side, lvl.price, slot)));
    lvl.price = price;
    order_insert(side, price, slot);
  }
  return Result::kOk;
}

OrderBook::Result OrderBook::remove(Side side, uint64_t id) noexcept {
  const uint64_t at = find_index(side, id);
  if (at > mask_) return Result::kUnknownLevel;
  const uint32_t slot = slot_of(index_slots_[at]);
  auto& o = order_[index(side)];
  o.erase(o.begin() + static_cast<std::ptrdiff_t>(position(side, slots_[slot].price, slot)));
  index_erase(at);
  free_.push_back(slot);
  return Result::kOk;
}

}  // namespace bmx
