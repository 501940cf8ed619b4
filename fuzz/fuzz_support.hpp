// What the libFuzzer targets share: an invariant check that aborts with a message, frames copied
// into padded buffers the way the engine's callers hand them over, a small engine configuration
// (a fresh engine per input keeps every crash reproducible from its input alone), and the fixed
// partials that give deltas something to apply to.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <simdjson.h>

#include "engine/feed_engine.hpp"

// A broken invariant: say which and abort (libFuzzer records the input as a crash).
#define BMX_FUZZ_CHECK(cond, ...)                                                               \
  do {                                                                                          \
    if (!(cond)) {                                                                              \
      std::fprintf(stderr, "\ninvariant violated at %s:%d: %s\n  ", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                                                        \
      std::fprintf(stderr, "\n");                                                               \
      std::abort();                                                                             \
    }                                                                                           \
  } while (0)

namespace bmx::fuzz {

// One frame in a heap buffer of exactly its length plus simdjson's padding, so that
// AddressSanitizer sees any read past the padding. The engine promises to accept any padding
// content: it is filled with quotes and braces rather than the spaces or zeros that would hide a
// read of it.
class PaddedFrame {
 public:
  explicit PaddedFrame(std::string_view text)
      : len_(text.size()),
        capacity_(text.size() + simdjson::SIMDJSON_PADDING),
        buf_(std::make_unique<char[]>(capacity_)) {
    if (len_) std::memcpy(buf_.get(), text.data(), len_);
    for (size_t i = len_; i < capacity_; ++i)
      buf_[i] = i % 2 ? '"' : '}';
  }
  [[nodiscard]] const char* data() const noexcept { return buf_.get(); }
  [[nodiscard]] size_t size() const noexcept { return len_; }
  [[nodiscard]] size_t capacity() const noexcept { return capacity_; }

 private:
  size_t len_, capacity_;
  std::unique_ptr<char[]> buf_;
};

// Small enough that a fresh engine per input is cheap, large enough for every code path: frames
// over 64 KiB take the oversized path, books start small so that growth is exercised.
inline EngineConfig small_engine() {
  EngineConfig c;
  c.max_frame_bytes = 64u << 10;
  c.max_symbols = 64;
  c.max_tables = 16;
  c.max_fields_per_row = 64;
  c.book_capacity = 16;
  return c;
}

// Partials of every kind of table the engine keeps: two books (2021 ids with prices, and the
// post-2023 form), a keyed table covered whole, a keyed table with a filter, trade and quote.
inline constexpr std::string_view kWarmUp[] = {
    R"({"table":"orderBookL2","action":"partial","keys":["symbol","id","side"],"types":{},"filter":{"symbol":"XBTUSD"},"data":[{"symbol":"XBTUSD","id":8799000000,"side":"Sell","size":100,"price":10000},{"symbol":"XBTUSD","id":8799000050,"side":"Sell","size":150,"price":9999.5},{"symbol":"XBTUSD","id":8799000150,"side":"Buy","size":300,"price":9998.5},{"symbol":"XBTUSD","id":8799000200,"side":"Buy","size":400,"price":9998}]})",
    R"({"table":"orderBookL2_25","action":"partial","keys":["symbol","id","side"],"filter":{"symbol":"ETHUSD"},"data":[{"symbol":"ETHUSD","id":1001,"side":"Sell","size":10,"price":301.5},{"symbol":"ETHUSD","id":1002,"side":"Buy","size":20,"price":300.25}]})",
    R"({"table":"instrument","action":"partial","keys":["symbol"],"filter":{},"data":[{"symbol":"XBTUSD","state":"Open","lastPrice":9998.5,"timestamp":"2021-07-22T22:16:07.123Z"},{"symbol":"ETHUSD","state":"Open","lastPrice":300.75}]})",
    R"({"table":"order","action":"partial","keys":["orderID"],"filter":{"account":1},"data":[{"orderID":"a1","account":1,"symbol":"XBTUSD","side":"Buy","price":9990,"orderQty":5}]})",
    R"({"table":"trade","action":"partial","keys":[],"filter":{"symbol":"XBTUSD"},"data":[{"timestamp":"2021-07-22T22:16:07.123Z","symbol":"XBTUSD","side":"Buy","size":100,"price":9998.5}]})",
    R"({"table":"quote","action":"partial","keys":[],"filter":{"symbol":"XBTUSD"},"data":[]})",
};

inline FrameResult feed(FeedEngine& e, std::string_view text, int64_t recv_ns = 1) {
  const PaddedFrame f(text);
  return e.on_frame(f.data(), f.size(), f.capacity(), recv_ns);
}

// The input's frames: lines, as in a capture file (a trailing '\r' kept: the engine sees what the
// line held).
inline std::vector<std::string_view> split_lines(const uint8_t* data, size_t size) {
  std::vector<std::string_view> out;
  const std::string_view all(reinterpret_cast<const char*>(data), size);
  size_t at = 0;
  while (at <= all.size()) {
    size_t nl = all.find('\n', at);
    if (nl == std::string_view::npos) nl = all.size();
    out.push_back(all.substr(at, nl - at));
    at = nl + 1;
  }
  return out;
}

// What the engine promises about its state after every frame, checked from its public accessors:
//  - every book side is ordered best first, its best() is its first level, every price is finite
//    and > 0 (the engine refuses the others);
//  - a book not marked stale is not crossed (best bid < best ask), computed here from the levels;
//  - every row of every keyed table is found by its key, and that key is the one its own key
//    fields make under the table's keys.
inline void check_engine(const FeedEngine& e) {
  std::vector<RawField> fields;
  std::string key;
  for (const FeedEngine::TableEntry& t : e.tables()) {
    for (uint32_t s = 0; s < t.books.size(); ++s) {
      const FeedEngine::BookEntry* b = t.books[s].get();
      if (!b) continue;
      const OrderBook& book = b->book;
      for (const Side side : {Side::kBuy, Side::kSell}) {
        const uint32_t n = book.depth(side);
        BMX_FUZZ_CHECK((n == 0) == (book.best(side) == nullptr), "%s symbol %u", t.name.c_str(), s);
        for (uint32_t i = 0; i < n; ++i) {
          const double p = book.level(side, i).price;
          BMX_FUZZ_CHECK(p > 0 && std::isfinite(p), "%s symbol %u level %u price %g",
                         t.name.c_str(), s, i, p);
          if (i == 0) {
            BMX_FUZZ_CHECK(&book.level(side, 0) == book.best(side), "%s symbol %u", t.name.c_str(),
                           s);
            continue;
          }
          const double better = book.level(side, i - 1).price;
          BMX_FUZZ_CHECK(side == Side::kBuy ? better >= p : better <= p,
                         "%s symbol %u side %d level %u: %g after %g", t.name.c_str(), s,
                         static_cast<int>(side), i, p, better);
        }
      }
      if (!b->stale && book.depth(Side::kBuy) && book.depth(Side::kSell)) {
        const double bid = book.level(Side::kBuy, 0).price, ask = book.level(Side::kSell, 0).price;
        BMX_FUZZ_CHECK(bid < ask, "%s symbol %u not stale but crossed: bid %g ask %g",
                       t.name.c_str(), s, bid, ask);
      }
    }
    if (!t.generic || t.generic->keyless()) continue;
    const GenericTable& g = *t.generic;
    g.for_each([&](std::string_view k, const GenericTable::Row& row) {
      BMX_FUZZ_CHECK(g.find(k) == &row, "%s row '%.*s' not found by its key", t.name.c_str(),
                     static_cast<int>(k.size()), k.data());
      fields.clear();
      for (const GenericTable::Field& f : row.fields)
        fields.push_back(RawField{f.name, std::string_view(row.text).substr(f.offset, f.length)});
      BMX_FUZZ_CHECK(g.make_key(fields, key) && key == k,
                     "%s row stored under '%.*s' has key fields that make '%s'", t.name.c_str(),
                     static_cast<int>(k.size()), k.data(), key.c_str());
    });
  }
}

}  // namespace bmx::fuzz
