// One mapping of a feed's shared-memory segment: created read-write by the producer, attached
// read-only by consumers. Knows where each region lies; what goes into them is writer.hpp's and
// reader.hpp's business.
#pragma once

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>

#include "shm/layout.hpp"

namespace bmx::shm {

// Why attaching failed, in one sentence a person can act on.
class AttachError : public std::runtime_error {
 public:
  enum class Why { kMissing, kNotReady, kLayout, kCorrupt, kPermission };
  AttachError(Why why, const std::string& what) : std::runtime_error(what), why_(why) {}
  [[nodiscard]] Why why() const noexcept { return why_; }

 private:
  Why why_;
};

class Segment {
 public:
  // Producer side. Creates the object `name` (mode `mode`, 0600 by default) or, when one of the
  // same size and layout exists, re-initialises it in place with a new epoch so that attached
  // readers notice the restart; a different size replaces it (attached readers then see the old
  // producer as dead and re-attach). Throws std::runtime_error with the reason on failure.
  static Segment create(const std::string& name, const SegmentConfig& config, unsigned mode = 0600);

  // Consumer side: maps `name` read-only and waits up to `timeout` for `ready`. Throws AttachError.
  static Segment attach(const std::string& name,
                        std::chrono::milliseconds timeout = std::chrono::milliseconds(2000));

  // Removes the name (mappings stay valid until unmapped). False when there was none.
  static bool remove(const std::string& name) noexcept;

  Segment(Segment&&) noexcept;
  Segment& operator=(Segment&&) noexcept;
  ~Segment();

  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  [[nodiscard]] bool writable() const noexcept { return writable_; }
  [[nodiscard]] uint64_t size() const noexcept;

  // Raw region access. Readers must only read (their mapping is read-only: a write faults).
  [[nodiscard]] Header& header() const noexcept { return *reinterpret_cast<Header*>(base_); }
  [[nodiscard]] Stats& stats() const noexcept { return at<Stats>(header().stats_offset); }
  [[nodiscard]] Directory& directory() const noexcept { return at<Directory>(header().dir_offset); }
  [[nodiscard]] DirEntry& symbol_entry(uint32_t id) const noexcept {
    return (&at<DirEntry>(header().dir_offset + sizeof(Directory)))[id];
  }
  [[nodiscard]] DirEntry& table_entry(uint32_t id) const noexcept {
    return symbol_entry(header().max_symbols + id);
  }
  [[nodiscard]] Record& slot(uint64_t seq) const noexcept {
    return (&at<Record>(header().ring_offset))[seq & (header().ring_slots - 1)];
  }
  [[nodiscard]] Book& book(uint32_t i) const noexcept {
    return at<Book>(header().books_offset + uint64_t{i} * header().book_bytes);
  }
  [[nodiscard]] BookSlot* book_slots(const Book& b) const noexcept {
    return reinterpret_cast<BookSlot*>(const_cast<Book*>(&b) + 1);
  }
  [[nodiscard]] TradeQuote& trade_quote(uint32_t symbol) const noexcept {
    return (&at<TradeQuote>(header().trades_offset))[symbol];
  }
  [[nodiscard]] RowSlot& row_slot(uint32_t i) const noexcept {
    return at<RowSlot>(header().rows_offset + uint64_t{i} * (sizeof(RowSlot) + header().row_bytes));
  }
  [[nodiscard]] char* row_text(RowSlot& s) const noexcept {
    return reinterpret_cast<char*>(&s + 1);
  }

 private:
  struct Mapping;
  Segment(std::string name, std::unique_ptr<Mapping> m, bool writable);
  template <class T>
  T& at(uint64_t offset) const noexcept {
    return *reinterpret_cast<T*>(base_ + offset);
  }

  std::string name_;
  std::unique_ptr<Mapping> mapping_;
  char* base_ = nullptr;
  bool writable_ = false;
};

// CLOCK_MONOTONIC and CLOCK_REALTIME in nanoseconds (vDSO: no system call).
int64_t monotonic_ns() noexcept;
int64_t realtime_ns() noexcept;

}  // namespace bmx::shm
