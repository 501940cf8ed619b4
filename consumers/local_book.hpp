// A strategy's own copy of the feed's books, kept from a snapshot plus the ring's deltas: the
// reader-side half of "copy the book, then apply ring records newer than its stamp, with no gap and
// no duplicate". Standard library and shm/ only.
//
//   LocalBooks books;
//   books.resync(reader);                  // cursor to the head, then every book copied
//   reader.poll([&](const shm::Delta& d) { books.apply(d); });
//
// Each book is kept as two price-ordered maps plus an id -> price map per side (a moved level's
// record carries its new price only). Clear, not fast: a strategy with its own needs keeps its own
// structure, and this one is the reference the example strategy checks itself with.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "shm/reader.hpp"

namespace bmx::consumer {

struct LocalBook {
  std::map<double, shm::Level, std::greater<>> bids;  // best (highest) first
  std::map<double, shm::Level> asks;                  // best (lowest) first
  std::unordered_map<uint64_t, double> bid_ids, ask_ids;
  uint64_t stamp = 0;  // records with seq <= stamp are already in this book
  bool stale = false;
  bool has_partial = false;
  uint64_t applied = 0;
};

class LocalBooks {
 public:
  // Moves the reader's cursor to the head, then copies every book of the segment (each stamped
  // with the last record it reflects). Returns false when a book could not be copied consistently.
  bool resync(shm::Reader& reader);
  // Applies one ring record; book records only (others are ignored). Records already reflected
  // by a book's snapshot are skipped.
  void apply(const shm::Delta& d);
  // Compares with the segment's current copy of the book; a description of the first difference,
  // or empty when equal. Only meaningful at a frame boundary with the reader caught up.
  [[nodiscard]] std::string check(const shm::Reader& reader, uint16_t table, uint32_t symbol) const;

  [[nodiscard]] const LocalBook* find(uint16_t table, uint32_t symbol) const;
  [[nodiscard]] const std::map<std::pair<uint16_t, uint32_t>, LocalBook>& all() const {
    return books_;
  }
  [[nodiscard]] uint64_t resyncs() const noexcept { return resyncs_; }
  [[nodiscard]] uint64_t problems() const noexcept { return problems_; }

 private:
  std::map<std::pair<uint16_t, uint32_t>, LocalBook> books_;
  uint64_t resyncs_ = 0;
  uint64_t problems_ = 0;  // deltas for levels this copy did not hold (should never happen)
};

// The state as `bitmex-replay --dump-state` writes it: books from `books`, tables from the
// segment's current rows. Same schema, same number formatting.
std::string dump_state(const shm::Reader& reader, const LocalBooks& books);

}  // namespace bmx::consumer
