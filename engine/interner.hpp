// Fixed-capacity string interning: a short string (symbol, table or field name) becomes a dense
// integer id, once, and every later lookup of the same bytes returns it without allocating.
//
// Why not std::unordered_map<std::string, ...>: that allocates a node per new key and hashes
// through std::hash; here all memory is taken in the constructor, the table is open addressing with
// linear probing over (hash, id) pairs, and the names live in one arena. Nothing is ever removed:
// ids are stable for the life of the process, which is what the segment's directory needs.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bmx {

class Interner {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;

  // `capacity` names at most, `max_len` bytes each. Allocates everything now.
  Interner(uint32_t capacity, uint32_t max_len)
      : capacity_(capacity), max_len_(max_len), mask_(slots_for(capacity) - 1) {
    slots_.assign(mask_ + 1, Slot{0, kNone});
    offsets_.reserve(capacity);
    lengths_.reserve(capacity);
    // 32 spare bytes after the last name let json::short_equal read any name as 32 bytes.
    arena_.reserve(static_cast<size_t>(capacity) * max_len + kSlack);
  }

  // Id of `s`, or kNone. Any thread that owns the interner; no allocation.
  [[nodiscard]] uint32_t find(std::string_view s) const noexcept {
    const uint64_t h = hash(s);
    for (uint64_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& slot = slots_[i];
      if (slot.id == kNone) return kNone;
      if (slot.hash == h && name(slot.id) == s) return slot.id;
    }
  }

  // Id of `s`, adding it if new. kNone when full or when `s` is empty or longer than max_len.
  // No allocation: the arena and tables were sized by the constructor.
  [[nodiscard]] uint32_t intern(std::string_view s) noexcept {
    if (s.empty() || s.size() > max_len_) return kNone;
    const uint64_t h = hash(s);
    uint64_t i = h & mask_;
    for (;; i = (i + 1) & mask_) {
      const Slot& slot = slots_[i];
      if (slot.id == kNone) break;
      if (slot.hash == h && name(slot.id) == s) return slot.id;
    }
    if (size() >= capacity_) return kNone;
    const auto id = static_cast<uint32_t>(offsets_.size());
    offsets_.push_back(static_cast<uint32_t>(arena_.size()));
    lengths_.push_back(static_cast<uint32_t>(s.size()));
    arena_.append(s.data(), s.size());  // within reserved capacity: no reallocation
    padded_end();
    slots_[i] = Slot{h, id};
    return id;
  }

  [[nodiscard]] std::string_view name(uint32_t id) const noexcept {
    return {arena_.data() + offsets_[id], lengths_[id]};
  }
  [[nodiscard]] uint32_t size() const noexcept { return static_cast<uint32_t>(offsets_.size()); }
  [[nodiscard]] uint32_t capacity() const noexcept { return capacity_; }

  // FNV-1a over 8-byte words: names are short, and this is cheap and good enough for them.
  static uint64_t hash(std::string_view s) noexcept {
    uint64_t h = 0xcbf29ce484222325ULL;
    size_t i = 0;
    for (; i + 8 <= s.size(); i += 8) {
      uint64_t w;
      std::memcpy(&w, s.data() + i, 8);
      h = (h ^ w) * 0x100000001b3ULL;
      h ^= h >> 29;
    }
    uint64_t tail = 0;
    std::memcpy(&tail, s.data() + i, s.size() - i);
    h = (h ^ tail ^ (s.size() << 56)) * 0x100000001b3ULL;
    h ^= h >> 32;
    return h;
  }

 private:
  static constexpr size_t kSlack = 32;
  // Keeps kSlack zero bytes readable after the last name, inside the reserved arena.
  void padded_end() noexcept {
    const size_t used = arena_.size();
    arena_.append(kSlack, '\0');
    arena_.resize(used);
  }
  struct Slot {
    uint64_t hash;
    uint32_t id;
  };
  static uint64_t slots_for(uint32_t capacity) {
    uint64_t n = 16;
    while (n < static_cast<uint64_t>(capacity) * 2)
      n <<= 1;
    return n;
  }

  uint32_t capacity_;
  uint32_t max_len_;
  uint64_t mask_;
  std::vector<Slot> slots_;
  std::vector<uint32_t> offsets_;
  std::vector<uint32_t> lengths_;
  std::string arena_;
};

}  // namespace bmx
