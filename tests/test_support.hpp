// Small helpers shared by the engine tests: feeding frames with the padding simdjson needs, and
// reading books back as plain ladders.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <simdjson.h>

#include "engine/feed_engine.hpp"
#include "engine/order_book.hpp"
#include "reference_model.hpp"

// Readable gtest failure messages for the engine's enums (found by argument-dependent lookup).
namespace bmx {
inline void PrintTo(FrameKind k, std::ostream* os) {
  *os << to_string(k);
}
inline void PrintTo(Side s, std::ostream* os) {
  *os << to_string(s);
}
inline void PrintTo(Action a, std::ostream* os) {
  *os << to_string(a);
}
inline void PrintTo(OrderBook::Result r, std::ostream* os) {
  constexpr const char* kNames[] = {"kOk", "kUnknownLevel", "kDuplicateInsert"};
  *os << kNames[static_cast<int>(r)];
}
}  // namespace bmx

namespace bmxtest {

// Hands `text` to the engine as the live feed would: in a buffer with SIMDJSON_PADDING spare bytes.
inline bmx::FrameResult feed(bmx::FeedEngine& engine, std::string_view text, int64_t recv_ns = 0) {
  const simdjson::padded_string frame(text);
  return engine.on_frame(frame.data(), frame.size(), frame.size() + simdjson::SIMDJSON_PADDING,
                         recv_ns);
}

// Best first, as the engine's accessors see it.
inline Ladder ladder(const bmx::OrderBook& book, bmx::Side side) {
  Ladder out;
  for (uint32_t i = 0; i < book.depth(side); ++i) {
    const bmx::BookLevel& l = book.level(side, i);
    out.emplace_back(l.price, l.size);
  }
  return out;
}

inline Ladder bids(const bmx::FeedEngine& e, std::string_view symbol,
                   std::string_view table = "orderBookL2") {
  const auto* b = e.book(symbol, table);
  return b ? ladder(b->book, bmx::Side::kBuy) : Ladder{};
}
inline Ladder asks(const bmx::FeedEngine& e, std::string_view symbol,
                   std::string_view table = "orderBookL2") {
  const auto* b = e.book(symbol, table);
  return b ? ladder(b->book, bmx::Side::kSell) : Ladder{};
}

// One orderBookL2 frame: `rows` is the JSON text of the data array's contents.
inline std::string book_frame(std::string_view action, std::string_view rows,
                              std::string_view table = "orderBookL2") {
  std::string f =
      R"({"table":")" + std::string(table) + R"(","action":")" + std::string(action) + '"';
  f += R"(,"data":[)" + std::string(rows) + "]}";
  return f;
}

// A partial of one symbol's book.
inline std::string book_partial(std::string_view symbol, std::string_view rows,
                                std::string_view table = "orderBookL2") {
  return R"({"table":")" + std::string(table) +
         R"(","action":"partial","keys":["symbol","id","side"],"filter":{"symbol":")" +
         std::string(symbol) + R"("},"data":[)" + std::string(rows) + "]}";
}

inline std::string level_row(std::string_view symbol, uint64_t id, std::string_view side,
                             int64_t size, std::string_view price) {
  return R"({"symbol":")" + std::string(symbol) + R"(","id":)" + std::to_string(id) +
         R"(,"side":")" + std::string(side) + R"(","size":)" + std::to_string(size) +
         R"(,"price":)" + std::string(price) + "}";
}

// Events drained from the engine, by kind.
inline std::vector<bmx::Event> drain(bmx::FeedEngine& e) {
  std::vector<bmx::Event> out;
  e.drain_events([&](const bmx::Event& ev) { out.push_back(ev); });
  return out;
}

inline size_t count_events(const std::vector<bmx::Event>& events, bmx::EventKind kind) {
  size_t n = 0;
  for (const auto& ev : events)
    n += ev.kind == kind;
  return n;
}

inline uint64_t frames_of(const bmx::FeedEngine& e, bmx::FrameKind k) {
  return e.stats().frames[static_cast<int>(k)];
}

// Control frames and bad input of every kind, for the hot-path tests (no allocation, system call,
// lock or exception). warm_up_for_bad_frames() first gives them an XBTUSD book and a trade table.
// Two of them are malformed (JSON broken, a frame cut short).
inline std::vector<std::string> control_and_bad_frames() {
  return {
      R"({"info":"Welcome to the BitMEX Realtime API.","version":"2021-07-14T01:26:29.000Z"})",
      R"({"success":true,"subscribe":"orderBookL2:XBTUSD","request":{"op":"subscribe"}})",
      R"({"status":400,"error":"Unknown table","meta":{}})",
      R"({"now":"2020-10-12T18:18:38.282Z","cancelTime":"2020-10-12T18:19:38.282Z"})",
      "pong",
      "{not json",
      R"({"table":"orderBookL2","action":"update","data":[{"symbol":"XBTUSD","id":1,"side":"Buy",)",
      "[1,2]",
      R"({"table":"nosuchtable","action":"update","data":[{"symbol":"XBTUSD"}]})",
      R"({"table":"orderBookL2","action":"update","data":[{"symbol":"XBTUSD","id":9,"side":"Buy","size":1}]})",
      R"({"table":"orderBookL2","action":"update","data":[{"symbol":"XBTUSD","id":"x","side":"Buy","size":1}]})",
      R"({"table":"orderBookL2","action":"insert","data":[{"symbol":"ETHUSD","id":2,"side":"Sell","size":1,"price":2}]})",
      R"({"table":"trade","action":"insert","data":[{"symbol":"XBTUSD","price":1.5,"size":2,"side":"Sell"}]})",
      R"({"table":"trade","action":"insert","data":[{"symbol":"XBTUSD","price":"1.25","size":3,"side":"Buy"}]})",
  };
}
inline void warm_up_for_bad_frames(bmx::FeedEngine& e) {
  feed(e, book_partial("XBTUSD", level_row("XBTUSD", 1, "Buy", 1, "10")));
  feed(e,
       R"({"table":"trade","action":"partial","keys":[],"filter":{"symbol":"XBTUSD"},"data":[]})");
}

}  // namespace bmxtest
