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
  for (uint32_t s = static_cast<uint32_t>(slots_.size()); s-- > 0;)
    free_.push_back(s);
  std::fill(index_slots_.begin(), index_slots_.end(), kEmpty);
}

void OrderBook::reserve(uint32_t levels) {
  if (levels > slots_.size()) rebuild(levels);
}

// Re-creates every array at `capacity` levels and re-indexes the live levels. Cold path.
void OrderBook::rebuild(uint32_t capacity) {
  if (capacity >= kSideBit) throw std::length_error("OrderBook: more than 2^31 levels");
  const auto old_cap = static_cast<uint32_t>(slots_.size());
  slots_.resize(capacity);
  free_.reserve(capacity);
  for (uint32_t s = old_cap; s < capacity; ++s)
    free_.push_back(s);
  // free_ pops from the back: hand out low slots first, for locality.
  std::sort(free_.begin(), free_.end(), std::greater<>());
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

size_t OrderBook::position(Side side, double price, uint32_t slot) const noexcept {
  const auto& o = order_[index(side)];
  // Near the top (the back) is by far the common case: look there first.
  const size_t n = o.size();
  for (size_t k = 0; k < 8 && k < n; ++k) {
    if (o[n - 1 - k].slot == slot) return n - 1 - k;
  }
  auto it = side == Side::kBuy
                ? std::lower_bound(o.begin(), o.end(), price,
                                   [](const Entry& e, double p) { return e.price < p; })
                : std::lower_bound(o.begin(), o.end(), price,
                                   [](const Entry& e, double p) { return e.price > p; });
  while (it != o.end() && it->slot != slot)
    ++it;  // equal prices (never in a sane book)
  assert(it != o.end());
  return static_cast<size_t>(it - o.begin());
}

void OrderBook::order_insert(Side side, double price, uint32_t slot) noexcept {
  auto& o = order_[index(side)];
  // Walk from the best end while the entry there is better than `price`.
  size_t pos = o.size();
  const bool bid = side == Side::kBuy;
  size_t steps = 0;
  while (pos > 0 && (bid ? o[pos - 1].price > price : o[pos - 1].price < price)) {
    --pos;
    if (++steps == 16) {  // deep insert: binary search the rest
      auto it = bid ? std::upper_bound(o.begin(), o.begin() + static_cast<std::ptrdiff_t>(pos),
                                       price, [](double p, const Entry& e) { return p < e.price; })
                    : std::upper_bound(o.begin(), o.begin() + static_cast<std::ptrdiff_t>(pos),
                                       price, [](double p, const Entry& e) { return p > e.price; });
      pos = static_cast<size_t>(it - o.begin());
      break;
    }
  }
  // Capacity was reserved for every slot, so this never reallocates.
  o.insert(o.begin() + static_cast<std::ptrdiff_t>(pos), Entry{price, slot});
}

OrderBook::Result OrderBook::insert(Side side, uint64_t id, double price, int64_t size) {
  const uint64_t at = find_index(side, id);
  if (at <= mask_) {
    update(side, id, size, true, price);
    return Result::kDuplicateInsert;
  }
  if (free_.empty()) {
    rebuild(static_cast<uint32_t>(slots_.size()) * 2);
    grew_ = true;
  }
  const uint32_t slot = free_.back();
  free_.pop_back();
  slots_[slot] = BookLevel{price, size, id};
  index_insert(side, id, slot);
  order_insert(side, price, slot);
  return Result::kOk;
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
  if (free_.empty()) {
    rebuild(static_cast<uint32_t>(slots_.size()) * 2);
    grew_ = true;
  }
  const uint32_t slot = free_.back();
  free_.pop_back();
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
