// Bad input in the middle of a real session (cryptofeed 2021-07-22, 10 books): every kind of broken
// frame or row has a counted outcome, the engine goes on, and the books the bad input could not
// have concerned are untouched and keep following the session to the same end as the reference
// model.
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <utility>

#include <gtest/gtest.h>

#include "engine/capture.hpp"
#include "engine/feed_engine.hpp"
#include "test_support.hpp"

namespace {

using bmx::FeedEngine;
using bmx::FrameKind;
using bmxtest::Ladder;

struct BookState {
  Ladder bids, asks;
  bool stale;
  bool operator==(const BookState&) const = default;
};
using Snapshot = std::map<std::string, BookState>;

class BadInput : public ::testing::Test {
 protected:
  static constexpr const char* kCapture = "bitmex/cryptofeed-2021-07-22.txt";

  static void SetUpTestSuite() {
    capture_ = std::make_unique<bmx::Capture>(bmx::Capture::load(bmxtest::data_path(kCapture)));
    reference_ = std::make_unique<bmxtest::ReferenceModel>(
        bmxtest::model_of_capture(bmxtest::data_path(kCapture)));
    ASSERT_TRUE(reference_->problems.empty());
    // The first update frame of four XBTUSD rows, after every partial: the place where the bad
    // input goes in, and the real frame that the truncation tests cut.
    const auto& frames = capture_->frames();
    for (size_t i = 0; i < frames.size(); ++i) {
      const std::string_view f(frames[i].data, frames[i].len);
      if (f.starts_with(R"({"table":"orderBookL2","action":"update","data":[{"symbol":"XBTUSD")") &&
          count(f, R"("symbol":"XBTUSD")") == 4 && count(f, R"("symbol")") == 4) {
        at_ = i;
        break;
      }
    }
    ASSERT_GT(at_, 0u);
  }
  static void TearDownTestSuite() {
    capture_.reset();
    reference_.reset();
  }
  static size_t count(std::string_view s, std::string_view what) {
    size_t n = 0;
    for (size_t p = s.find(what); p != std::string_view::npos; p = s.find(what, p + 1))
      ++n;
    return n;
  }

  void SetUp() override {
    bmx::EngineConfig config;
    config.max_frame_bytes = 1u << 20;  // the 0.7 MB XBTUSD partial fits; the oversized test won't
    e = std::make_unique<FeedEngine>(config);
    replay(0, at_);
    before = snapshot();
    ASSERT_EQ(before.size(), 10u);
    for (const auto& [sym, b] : before)
      ASSERT_FALSE(b.stale) << sym;
    stats_before = e->stats();
  }

  void replay(size_t from, size_t to) {
    const auto& frames = capture_->frames();
    for (size_t i = from; i < to && i < frames.size(); ++i)
      e->on_frame(frames[i].data, frames[i].len, capture_->capacity(frames[i]), frames[i].recv_ns);
  }
  std::string_view real_frame() const {
    const auto& f = capture_->frames()[at_];
    return {f.data, f.len};
  }

  Snapshot snapshot() const {
    Snapshot s;
    for (const auto& [sym, book] : reference_->books) {
      const auto* b = e->book(sym);
      if (b == nullptr) continue;
      s[sym] = BookState{bmxtest::ladder(b->book, bmx::Side::kBuy),
                         bmxtest::ladder(b->book, bmx::Side::kSell), b->stale};
    }
    return s;
  }

  // Every book's levels are as before the bad input, except those in `may_change`.
  void expect_levels_unchanged(const std::set<std::string>& may_change = {}) const {
    const Snapshot now = snapshot();
    ASSERT_EQ(now.size(), before.size());
    for (const auto& [sym, b] : before) {
      if (may_change.count(sym)) continue;
      EXPECT_EQ(now.at(sym).bids, b.bids) << sym;
      EXPECT_EQ(now.at(sym).asks, b.asks) << sym;
    }
  }
  // Exactly these books are stale.
  void expect_stale(const std::set<std::string>& stale) const {
    for (const auto& [sym, b] : snapshot())
      EXPECT_EQ(b.stale, stale.count(sym) != 0) << sym;
  }
  static std::set<std::string> all_books() {
    std::set<std::string> s;
    for (const auto& [sym, b] : reference_->books)
      s.insert(sym);
    return s;
  }
  // Replays the rest of the session (the real frame included): every book still fresh ends as the
  // reference model's, and so does the last trade and quote of every symbol.
  void finish_session_and_expect_fresh_books_match_reference(size_t expected_fresh) {
    replay(at_, capture_->frames().size());
    size_t fresh = 0;
    for (const auto& [sym, ref] : reference_->books) {
      const auto* b = e->book(sym);
      ASSERT_NE(b, nullptr) << sym;
      if (b->stale) continue;
      ++fresh;
      EXPECT_EQ(bmxtest::ladder(b->book, bmx::Side::kBuy), ref.bids()) << sym;
      EXPECT_EQ(bmxtest::ladder(b->book, bmx::Side::kSell), ref.asks()) << sym;
    }
    EXPECT_EQ(fresh, expected_fresh);
    for (const auto& [sym, row] : reference_->last_rows.at("trade")) {
      const bmx::LastTrade* t = e->last_trade(sym);
      ASSERT_NE(t, nullptr) << sym;
      EXPECT_EQ(t->price, std::stod(row.at("price").substr(2))) << sym;
    }
  }

  uint64_t malformed() const { return bmxtest::frames_of(*e, FrameKind::kMalformed); }
  uint64_t unknown() const { return bmxtest::frames_of(*e, FrameKind::kUnknown); }
  bmx::FrameResult feed(std::string_view text) { return bmxtest::feed(*e, text); }

  static inline std::unique_ptr<bmx::Capture> capture_;
  static inline std::unique_ptr<bmxtest::ReferenceModel> reference_;
  static inline size_t at_ = 0;
  std::unique_ptr<FeedEngine> e;
  Snapshot before;
  bmx::Stats stats_before;
};

const std::set<std::string> kXbt = {"XBTUSD"};

// ---- not JSON, broken JSON ----------------------------------------------------------------------

TEST_F(BadInput, TextThatIsNotJsonIsCountedAndTouchesNoBook) {
  EXPECT_EQ(feed("{not json at all").kind, FrameKind::kMalformed);
  EXPECT_EQ(feed("HTTP/1.1 502 Bad Gateway").kind, FrameKind::kMalformed);
  EXPECT_EQ(malformed(), 2u);
  expect_levels_unchanged();
  expect_stale({});
  finish_session_and_expect_fresh_books_match_reference(10);
}

TEST_F(BadInput, BrokenJsonInsideTableDataMarksEveryBookOfTheTableStale) {
  // The rows after the break are lost and nobody can say for which symbols.
  EXPECT_EQ(
      feed(R"({"table":"orderBookL2","action":"update","data":[{"symbol":"XBTUSD",,"id":1}]})")
          .kind,
      FrameKind::kMalformed);
  EXPECT_EQ(malformed(), 1u);
  expect_levels_unchanged();
  expect_stale(all_books());
  finish_session_and_expect_fresh_books_match_reference(0);
}

TEST_F(BadInput, InvalidUtf8IsMalformed) {
  EXPECT_EQ(feed("{\"info\":\"\xff\xfe\"}").kind, FrameKind::kMalformed);
  EXPECT_EQ(malformed(), 1u);
  expect_levels_unchanged();
  expect_stale({});
}

TEST_F(BadInput, RealFrameCutInsideAStringMarksTheTableStale) {
  const std::string_view f = real_frame();
  // Cut inside the third row's "side" value.
  const size_t third = f.find(R"("symbol")", f.find(R"("symbol")", f.find(R"("symbol")") + 1) + 1);
  const size_t cut = f.find(R"("side":")", third) + 9;
  ASSERT_LT(cut, f.size());
  EXPECT_EQ(feed(f.substr(0, cut)).kind, FrameKind::kMalformed);
  EXPECT_EQ(malformed(), 1u);
  expect_levels_unchanged(kXbt);  // rows applied before the break may stay applied
  expect_stale(all_books());
  finish_session_and_expect_fresh_books_match_reference(0);
}

TEST_F(BadInput, RealFrameCutInHalfMarksTheTableStale) {
  const std::string_view f = real_frame();
  EXPECT_EQ(feed(f.substr(0, f.size() / 2)).kind, FrameKind::kMalformed);
  EXPECT_EQ(malformed(), 1u);
  expect_levels_unchanged(kXbt);
  expect_stale(all_books());
}

TEST_F(BadInput, RealFrameCutBetweenRowsMarksTheTableStale) {
  const std::string_view f = real_frame();
  const size_t cut = f.find("},{") + 2;  // after the first row and its comma
  EXPECT_EQ(feed(f.substr(0, cut)).kind, FrameKind::kMalformed);
  EXPECT_EQ(malformed(), 1u);
  expect_levels_unchanged(kXbt);
  expect_stale(all_books());
}

TEST_F(BadInput, FrameLongerThanTheLimitIsOversizedAndMarksItsTableStale) {
  std::string big = R"({"table":"orderBookL2","action":"update","data":[)";
  while (big.size() < (1u << 20) + 100)
    big += R"({"symbol":"XBTUSD","id":8796766500,"side":"Sell","size":100},)";
  big += R"({"symbol":"XBTUSD","id":8796766500,"side":"Sell","size":100}]})";
  EXPECT_EQ(feed(big).kind, FrameKind::kOversized);
  EXPECT_EQ(bmxtest::frames_of(*e, FrameKind::kOversized), 1u);
  EXPECT_EQ(e->stats().rows, stats_before.rows) << "nothing of it was parsed";
  expect_levels_unchanged();
  expect_stale(all_books());
  finish_session_and_expect_fresh_books_match_reference(0);
}

TEST_F(BadInput, OversizedControlFrameMarksNothingStale) {
  const std::string big = R"({"info":")" + std::string((1u << 20) + 10, 'x') + "\"}";
  EXPECT_EQ(feed(big).kind, FrameKind::kOversized);
  expect_levels_unchanged();
  expect_stale({});
  finish_session_and_expect_fresh_books_match_reference(10);
}

// ---- wrong types --------------------------------------------------------------------------------

TEST_F(BadInput, SizeAsStringIsABadRowAndMarksOnlyItsBookStale) {
  // 8796766500 Sell is a level of the XBTUSD book at this point of the session.
  feed(R"({"table":"orderBookL2","action":"update","data":[)"
       R"({"symbol":"XBTUSD","id":8796766500,"side":"Sell","size":"100"}]})");
  EXPECT_EQ(e->stats().bad_rows, 1u);
  EXPECT_EQ(e->stats().unknown_levels, 0u);
  expect_levels_unchanged();
  expect_stale(kXbt);
  finish_session_and_expect_fresh_books_match_reference(9);
}

TEST_F(BadInput, IdAsStringIsABadRow) {
  feed(R"({"table":"orderBookL2","action":"update","data":[)"
       R"({"symbol":"XBTUSD","id":"8796766500","side":"Sell","size":100}]})");
  EXPECT_EQ(e->stats().bad_rows, 1u);
  expect_levels_unchanged();
  expect_stale(kXbt);
  finish_session_and_expect_fresh_books_match_reference(9);
}

TEST_F(BadInput, UnknownSideIsABadRow) {
  feed(R"({"table":"orderBookL2","action":"update","data":[)"
       R"({"symbol":"XBTUSD","id":8796766500,"side":"Foo","size":100}]})");
  EXPECT_EQ(e->stats().bad_rows, 1u);
  expect_levels_unchanged();
  expect_stale(kXbt);
}

TEST_F(BadInput, FractionalOrHugeNumbersAreBadRows) {
  feed(R"({"table":"orderBookL2","action":"update","data":[)"
       R"({"symbol":"XBTUSD","id":8796766500,"side":"Sell","size":100.5}]})");
  feed(R"({"table":"orderBookL2","action":"update","data":[)"
       R"({"symbol":"BCHUSD","id":18446744073709551616,"side":"Sell","size":1}]})");
  EXPECT_EQ(e->stats().bad_rows, 2u);
  expect_levels_unchanged();
  expect_stale({"XBTUSD", "BCHUSD"});
  finish_session_and_expect_fresh_books_match_reference(8);
}

TEST_F(BadInput, NonPositivePriceIsABadRow) {
  feed(R"({"table":"orderBookL2","action":"insert","data":[)"
       R"({"symbol":"XBTUSD","id":1,"side":"Buy","size":1,"price":0},)"
       R"({"symbol":"BCHUSD","id":2,"side":"Buy","size":1,"price":-5}]})");
  EXPECT_EQ(e->stats().bad_rows, 2u);
  expect_levels_unchanged();
  expect_stale({"XBTUSD", "BCHUSD"});
}

TEST_F(BadInput, PriceThatIsNeitherANumberNorNullIsABadRowNotAnException) {
  // Tokens that start like null but are not: once thrown out of on_frame by a bool conversion.
  feed(R"({"table":"orderBookL2","action":"update","data":[)"
       R"({"symbol":"XBTUSD","id":8796766500,"side":"Sell","size":100,"price":nan}]})");
  feed(R"({"table":"orderBookL2","action":"update","data":[)"
       R"({"symbol":"BCHUSD","id":1,"side":"Sell","size":1,"price":nul},)"
       R"({"symbol":"SOLUSDT","id":1,"side":"Sell","size":1,"price":"1"}]})");
  EXPECT_EQ(e->stats().bad_rows, 3u);
  expect_levels_unchanged();
  expect_stale({"XBTUSD", "BCHUSD", "SOLUSDT"});
  finish_session_and_expect_fresh_books_match_reference(7);
}

TEST_F(BadInput, RowsAfterABadRowOfTheSameBookAreDroppedAsStale) {
  feed(R"({"table":"orderBookL2","action":"insert","data":[)"
       R"({"symbol":"XBTUSD","id":1,"side":"Buy","size":1,"price":0},)"
       R"({"symbol":"XBTUSD","id":2,"side":"Buy","size":1,"price":1}]})");
  EXPECT_EQ(e->stats().bad_rows, 1u);
  EXPECT_EQ(e->stats().rows_dropped_stale, stats_before.rows_dropped_stale + 1);
  expect_levels_unchanged();
  expect_stale(kXbt);
}

TEST_F(BadInput, SymbolThatIsNotAStringIsABadRowOfNoBook) {
  feed(R"({"table":"orderBookL2","action":"update","data":[)"
       R"({"symbol":42,"id":8796766500,"side":"Sell","size":100},)"
       R"({"symbol":null,"id":8796766500,"side":"Sell","size":100}]})");
  EXPECT_EQ(e->stats().bad_rows, 2u);
  expect_levels_unchanged();
  expect_stale({});  // no symbol, no book to blame
  finish_session_and_expect_fresh_books_match_reference(10);
}

// JSON spells a string with or without escapes: "XBT\u0055SD" is XBTUSD. BitMEX never escapes a
// symbol, but a row that does belongs to that symbol's book, and takes no new directory slot.
TEST_F(BadInput, SymbolSpelledWithAnEscapeIsThatSymbol) {
  const uint32_t symbols_before = e->symbols().size();
  const bmxtest::Ladder bids_before = bmxtest::bids(*e, "XBTUSD");
  ASSERT_FALSE(bids_before.empty());
  ASSERT_GT(bids_before.back().first, 0.25);
  feed(R"({"table":"orderBookL2","action":"insert","data":[)"
       R"({"symbol":"XBT\u0055SD","id":123,"side":"Buy","size":7,"price":0.25}]})");
  EXPECT_EQ(e->stats().bad_rows, stats_before.bad_rows);
  EXPECT_EQ(e->symbols().size(), symbols_before);
  const bmxtest::Ladder bids = bmxtest::bids(*e, "XBTUSD");
  ASSERT_EQ(bids.size(), bids_before.size() + 1);
  EXPECT_EQ(bids.back(), (std::pair<double, int64_t>{0.25, 7})) << "the lowest bid now";
  EXPECT_FALSE(e->book("XBTUSD", "orderBookL2")->stale);
}

// An escape that spells a character a symbol cannot hold (a quote, a control character) is no
// symbol: the row is bad, and takes no slot of the symbol directory.
TEST_F(BadInput, SymbolWhoseEscapeSpellsAQuoteOrControlCharacterIsABadRow) {
  const uint32_t symbols_before = e->symbols().size();
  feed(R"({"table":"orderBookL2","action":"update","data":[)"
       R"({"symbol":"XBT\"USD","id":8796766500,"side":"Sell","size":100}]})");
  feed(R"({"table":"orderBookL2","action":"update","data":[)"
       R"({"symbol":"XBTUSD\n","id":8796766500,"side":"Sell","size":100}]})");
  EXPECT_EQ(e->stats().bad_rows, stats_before.bad_rows + 2);
  EXPECT_EQ(e->stats().rows_dropped_before_partial, stats_before.rows_dropped_before_partial);
  EXPECT_EQ(e->symbols().size(), symbols_before);
  expect_levels_unchanged();
}

// ---- missing fields -----------------------------------------------------------------------------

TEST_F(BadInput, BookRowsMissingRequiredFieldsAreBadRows) {
  feed(R"({"table":"orderBookL2","action":"update","data":[)"
       R"({"symbol":"XBTUSD","id":8796766500,"side":"Sell"}]})");  // no size
  feed(R"({"table":"orderBookL2","action":"insert","data":[)"
       R"({"symbol":"BCHUSD","id":1,"side":"Buy","size":1}]})");  // no price
  feed(R"({"table":"orderBookL2","action":"delete","data":[)"
       R"({"symbol":"SOLUSDT","side":"Buy"}]})");  // no id
  feed(R"({"table":"orderBookL2","action":"delete","data":[)"
       R"({"symbol":"EOSUSDT","id":1}]})");  // no side
  EXPECT_EQ(e->stats().bad_rows, 4u);
  expect_levels_unchanged();
  expect_stale({"XBTUSD", "BCHUSD", "SOLUSDT", "EOSUSDT"});
  finish_session_and_expect_fresh_books_match_reference(6);
}

TEST_F(BadInput, BookRowWithoutSymbolIsABadRowOfNoBook) {
  feed(R"({"table":"orderBookL2","action":"update","data":[)"
       R"({"id":8796766500,"side":"Sell","size":100}]})");
  EXPECT_EQ(e->stats().bad_rows, 1u);
  expect_levels_unchanged();
}

TEST_F(BadInput, TableFramesMissingActionOrDataAreUnknown) {
  EXPECT_EQ(feed(R"({"table":"orderBookL2","data":[]})").kind, FrameKind::kUnknown);
  EXPECT_EQ(feed(R"({"table":"orderBookL2","action":"update"})").kind, FrameKind::kUnknown);
  EXPECT_EQ(feed(R"({"action":"update","data":[]})").kind, FrameKind::kUnknown);
  EXPECT_EQ(unknown(), 3u);
  expect_levels_unchanged();
  expect_stale({});
  finish_session_and_expect_fresh_books_match_reference(10);
}

TEST_F(BadInput, MistypedFrameFieldsAreCounted) {
  EXPECT_EQ(feed(R"({"table":7,"action":"update","data":[]})").kind, FrameKind::kMalformed);
  EXPECT_EQ(feed(R"({"table":"orderBookL2","action":7,"data":[]})").kind, FrameKind::kUnknown);
  EXPECT_EQ(malformed(), 1u);
  EXPECT_EQ(unknown(), 1u);
  expect_levels_unchanged();
  expect_stale({});
}

TEST_F(BadInput, DataThatIsNotAnArrayMarksTheTableStale) {
  EXPECT_EQ(feed(R"({"table":"orderBookL2","action":"update","data":{"symbol":"XBTUSD"}})").kind,
            FrameKind::kMalformed);
  expect_levels_unchanged();
  expect_stale(all_books());
}

TEST_F(BadInput, RowThatIsNotAnObjectMarksTheTableStale) {
  EXPECT_EQ(feed(R"({"table":"orderBookL2","action":"update","data":[1,2]})").kind,
            FrameKind::kMalformed);
  expect_levels_unchanged();
  expect_stale(all_books());
}

// ---- unknown tables and levels ------------------------------------------------------------------

TEST_F(BadInput, UnknownTableRowsAreDroppedBeforeTheirPartial) {
  EXPECT_EQ(feed(R"({"table":"orderBookL3","action":"insert","data":[)"
                 R"({"symbol":"XBTUSD","id":1,"side":"Buy","size":1,"price":1}]})")
                .kind,
            FrameKind::kTable);
  EXPECT_EQ(e->stats().rows_dropped_before_partial, stats_before.rows_dropped_before_partial + 1);
  expect_levels_unchanged();
  expect_stale({});
  finish_session_and_expect_fresh_books_match_reference(10);
}

TEST_F(BadInput, MoreTableNamesThanConfiguredAreCountedNotFatal) {
  for (int i = 0; i < 100; ++i) {
    feed(R"({"table":"junk)" + std::to_string(i) + R"(","action":"insert","data":[{"x":1}]})");
  }
  EXPECT_GT(e->stats().capacity_exceeded, 0u);
  EXPECT_GT(unknown(), 0u);
  expect_levels_unchanged();
  expect_stale({});
  finish_session_and_expect_fresh_books_match_reference(10);
}

TEST_F(BadInput, RowsForUnknownLevelsMarkOnlyTheirBookStale) {
  feed(R"({"table":"orderBookL2","action":"update","data":[)"
       R"({"symbol":"XBTUSD","id":1,"side":"Sell","size":100}]})");
  feed(R"({"table":"orderBookL2","action":"delete","data":[)"
       R"({"symbol":"BCHUSD","id":1,"side":"Buy"}]})");
  EXPECT_EQ(e->stats().unknown_levels, 2u);
  expect_levels_unchanged();
  expect_stale({"XBTUSD", "BCHUSD"});
  finish_session_and_expect_fresh_books_match_reference(8);
}

TEST_F(BadInput, RowsForSymbolsWithoutABookAreDropped) {
  feed(R"({"table":"orderBookL2","action":"insert","data":[)"
       R"({"symbol":"NOSUCH","id":1,"side":"Buy","size":1,"price":1}]})");
  EXPECT_EQ(e->stats().rows_dropped_before_partial, stats_before.rows_dropped_before_partial + 1);
  EXPECT_EQ(e->book("NOSUCH"), nullptr);
  expect_levels_unchanged();
  expect_stale({});
}

// ---- not objects, deep nesting ------------------------------------------------------------------

TEST_F(BadInput, ArraysAreValidJsonOfNoUseAndCountedUnknown) {
  EXPECT_EQ(feed("[1,2,3]").kind, FrameKind::kUnknown);
  EXPECT_EQ(feed(R"([{"table":"orderBookL2","action":"delete","data":[]}])").kind,
            FrameKind::kUnknown);
  EXPECT_EQ(feed("[]").kind, FrameKind::kUnknown);
  EXPECT_EQ(unknown(), 3u);
  expect_levels_unchanged();
  expect_stale({});
  finish_session_and_expect_fresh_books_match_reference(10);
}

TEST_F(BadInput, ScalarsAreCountedAndTouchNoBook) {
  for (std::string_view s : {"42", "true", "null", R"("orderBookL2")", "-1.5e3"}) {
    const FrameKind k = feed(s).kind;
    EXPECT_TRUE(k == FrameKind::kUnknown || k == FrameKind::kMalformed) << s;
  }
  EXPECT_EQ(unknown() + malformed(), 5u);
  expect_levels_unchanged();
  expect_stale({});
  finish_session_and_expect_fresh_books_match_reference(10);
}

// A JSON scalar frame is valid JSON that no BitMEX message uses: unknown, not malformed.
TEST_F(BadInput, ScalarsAreValidJsonOfNoUseAndCountedUnknown) {
  for (std::string_view s : {"42", "true", "null", R"("orderBookL2")"})
    EXPECT_EQ(feed(s).kind, FrameKind::kUnknown) << s;
}

std::string nested(size_t depth) {
  return std::string(depth, '[') + std::string(depth, ']');
}

TEST_F(BadInput, ModeratelyNestedJunkInARowIsIgnored) {
  feed(R"({"table":"orderBookL2","action":"update","data":[)"
       R"({"symbol":"XBTUSD","id":8796766500,"side":"Sell","size":12345,"junk":)" +
       nested(200) + R"(,"more":{"a":{"b":{"c":[1,{"d":null}]}}}}]})");
  EXPECT_EQ(e->stats().bad_rows, 0u);
  expect_levels_unchanged(kXbt);
  expect_stale({});
  bool found = false;
  const Snapshot now = snapshot();
  for (const auto& [p, s] : now.at("XBTUSD").asks)
    found = found || s == 12345;
  EXPECT_TRUE(found) << "the row's book fields were applied";
}

TEST_F(BadInput, DeeplyNestedJunkInAControlFrameIsCountedAndNotFatal) {
  // Far beyond simdjson's default depth limit of 1024.
  const FrameKind k = feed(R"({"junk":)" + nested(100000) + "}").kind;
  EXPECT_TRUE(k == FrameKind::kMalformed || k == FrameKind::kUnknown);
  EXPECT_EQ(malformed() + unknown(), 1u);
  expect_levels_unchanged();
  expect_stale({});
  finish_session_and_expect_fresh_books_match_reference(10);
}

TEST_F(BadInput, DeeplyNestedJunkInARowIsSkippedAndTheRowApplies) {
  // Valid JSON, only deep: the unknown field is skipped without recursion, the book fields apply.
  EXPECT_EQ(feed(R"({"table":"orderBookL2","action":"update","data":[)"
                 R"({"symbol":"XBTUSD","id":8796766500,"side":"Sell","junk":)" +
                 nested(100000) + R"(,"size":4321}]})")
                .kind,
            FrameKind::kTable);
  EXPECT_EQ(e->stats().bad_rows, 0u);
  expect_levels_unchanged(kXbt);
  expect_stale({});
  bool found = false;
  const Snapshot now = snapshot();
  for (const auto& [p, s] : now.at("XBTUSD").asks)
    found = found || s == 4321;
  EXPECT_TRUE(found);
  // The real frame next sets that level again: the session ends as the reference's.
  finish_session_and_expect_fresh_books_match_reference(10);
}

TEST_F(BadInput, DeeplyNestedUnclosedJunkInATableFrameMarksTheTableStale) {
  EXPECT_EQ(feed(R"({"table":"orderBookL2","action":"update","data":[)"
                 R"({"symbol":"XBTUSD","id":8796766500,"side":"Sell","junk":)" +
                 std::string(100000, '[') + "]}")
                .kind,
            FrameKind::kMalformed);
  EXPECT_EQ(malformed(), 1u);
  expect_levels_unchanged();
  expect_stale(all_books());
}

// ---- limits -------------------------------------------------------------------------------------

TEST(BadInputLimits, MoreSymbolsThanConfiguredAreCounted) {
  bmx::EngineConfig config;
  config.max_symbols = 2;
  FeedEngine e(config);
  for (std::string_view sym : {"AAA", "BBB", "CCC"}) {
    bmxtest::feed(e, bmxtest::book_partial(sym, bmxtest::level_row(sym, 1, "Buy", 1, "10")));
  }
  EXPECT_GT(e.stats().capacity_exceeded, 0u);
  EXPECT_EQ(bmxtest::bids(e, "AAA"), (Ladder{{10, 1}}));
  EXPECT_EQ(bmxtest::bids(e, "BBB"), (Ladder{{10, 1}}));
  EXPECT_EQ(e.book("CCC"), nullptr);
  EXPECT_EQ(e.symbols().size(), 2u);
}

// One subscription too many (max_symbols reached) must cost only that symbol: its partial's rows
// are dropped and counted, and the books already held stay fresh and keep applying deltas.
TEST(BadInputLimits, PartialBeyondMaxSymbolsLeavesOtherBooksFresh) {
  bmx::EngineConfig config;
  config.max_symbols = 2;
  FeedEngine e(config);
  for (std::string_view sym : {"AAA", "BBB", "CCC"}) {
    bmxtest::feed(e, bmxtest::book_partial(sym, bmxtest::level_row(sym, 1, "Buy", 1, "10")));
  }
  EXPECT_EQ(bmxtest::frames_of(e, FrameKind::kMalformed), 0u);
  EXPECT_FALSE(e.book("AAA")->stale);
  EXPECT_FALSE(e.book("BBB")->stale);
  bmxtest::feed(e,
                bmxtest::book_frame("update", R"({"symbol":"AAA","id":1,"side":"Buy","size":2})"));
  EXPECT_EQ(bmxtest::bids(e, "AAA"), (Ladder{{10, 2}}));
}

TEST(BadInputLimits, EventsNotDrainedInTimeAreCountedAsLost) {
  FeedEngine e;
  for (int i = 0; i < 1100; ++i)
    bmxtest::feed(e, "garbage");
  EXPECT_EQ(e.stats().events_lost, 1100u - 1024u);
  EXPECT_EQ(bmxtest::drain(e).size(), 1024u);
  bmxtest::feed(e, "garbage");
  EXPECT_EQ(bmxtest::drain(e).size(), 1u) << "draining makes room again";
}

}  // namespace
