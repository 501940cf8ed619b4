// FeedEngine semantics: partials replace, deltas merge, what makes a book or table stale, generic
// tables without code per table, and the typed last trade / quote. Expected states are worked out
// by hand from the frames in each test.
#include "engine/feed_engine.hpp"

#include <cstdint>
#include <string>
#include <string_view>

#include <gtest/gtest.h>
#include <simdjson.h>

#include "engine/capture.hpp"
#include "engine/state_dump.hpp"
#include "test_support.hpp"

namespace {

using bmx::FeedEngine;
using bmx::FrameKind;
using bmxtest::asks;
using bmxtest::bids;
using bmxtest::book_frame;
using bmxtest::book_partial;
using bmxtest::feed;
using bmxtest::Ladder;
using bmxtest::level_row;

void replay_file(FeedEngine& e, const std::string& relative, size_t max_frames = SIZE_MAX) {
  const bmx::Capture c = bmx::Capture::load(bmxtest::data_path(relative));
  for (size_t i = 0; i < c.frames().size() && i < max_frames; ++i) {
    const auto& f = c.frames()[i];
    e.on_frame(f.data, f.len, c.capacity(f), f.recv_ns);
  }
}

// The raw JSON of one field of one row of a generic table, or "<none>".
std::string field(const FeedEngine& e, std::string_view table, std::string_view key,
                  std::string_view name) {
  const bmx::GenericTable* t = e.table(table);
  if (t == nullptr) return "<no table>";
  const bmx::GenericTable::Row* r = t->find(key);
  if (r == nullptr) return "<no row>";
  const uint32_t id = t->find_field(name);
  if (id == bmx::Interner::kNone) return "<no field>";
  return std::string(r->value(id));
}

std::string wrap(std::string_view table, std::string_view action, std::string_view rows,
                 std::string_view keys_json = "") {
  std::string f =
      R"({"table":")" + std::string(table) + R"(","action":")" + std::string(action) + '"';
  if (!keys_json.empty()) f += R"(,"keys":)" + std::string(keys_json) + R"(,"filter":{})";
  return f + R"(,"data":[)" + std::string(rows) + "]}";
}

std::string nautilus(std::string_view file) {
  return bmxtest::read_file(bmxtest::data_path("bitmex/nautilus-rows/" + std::string(file)));
}

// Two books: XBTUSD 100/101 and ETHUSD 10/11, each with one level a side.
class TwoBooks : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(feed(e, book_partial("XBTUSD", level_row("XBTUSD", 1, "Buy", 10, "100") + "," +
                                                 level_row("XBTUSD", 2, "Sell", 20, "101")))
                  .kind,
              FrameKind::kTable);
    ASSERT_EQ(feed(e, book_partial("ETHUSD", level_row("ETHUSD", 1, "Buy", 30, "10") + "," +
                                                 level_row("ETHUSD", 2, "Sell", 40, "11")))
                  .kind,
              FrameKind::kTable);
  }
  void expect_eth_untouched() {
    const auto* b = e.book("ETHUSD");
    ASSERT_NE(b, nullptr);
    EXPECT_FALSE(b->stale);
    EXPECT_EQ(bids(e, "ETHUSD"), (Ladder{{10, 30}}));
    EXPECT_EQ(asks(e, "ETHUSD"), (Ladder{{11, 40}}));
  }
  FeedEngine e;
};

// ---- partials ---------------------------------------------------------------------------------

TEST_F(TwoBooks, PartialReplacesTheBookAndNeverMerges) {
  feed(e, book_partial("XBTUSD", level_row("XBTUSD", 3, "Buy", 5, "99") + "," +
                                     level_row("XBTUSD", 4, "Sell", 6, "102")));
  EXPECT_EQ(bids(e, "XBTUSD"), (Ladder{{99, 5}}));
  EXPECT_EQ(asks(e, "XBTUSD"), (Ladder{{102, 6}}));
  // The old ids are gone: updating one is an unknown level.
  feed(e, book_frame("update", R"({"symbol":"XBTUSD","id":1,"side":"Buy","size":7})"));
  EXPECT_EQ(e.stats().unknown_levels, 1u);
  expect_eth_untouched();
}

TEST_F(TwoBooks, RepeatedPartialsEachReplaceThePreviousImage) {
  for (int i = 0; i < 3; ++i) {
    const std::string price = std::to_string(90 + i);
    feed(e, book_partial("XBTUSD", level_row("XBTUSD", 10 + i, "Buy", i + 1, price)));
    EXPECT_EQ(bids(e, "XBTUSD"), (Ladder{{90.0 + i, i + 1}})) << i;
    EXPECT_TRUE(asks(e, "XBTUSD").empty()) << i;
  }
  EXPECT_EQ(e.stats().duplicate_inserts, 0u);
  expect_eth_untouched();
}

TEST_F(TwoBooks, PartialOfOneSymbolSplitAcrossRowsIsOneImage) {
  // Many rows in one partial frame all land in the new image: the book is reset once per frame.
  std::string rows;
  for (int i = 0; i < 50; ++i) {
    if (i) rows += ',';
    rows += level_row("XBTUSD", 100 + i, i % 2 ? "Sell" : "Buy", i + 1,
                      std::to_string(i % 2 ? 200 + i : 100 - i));
  }
  feed(e, book_partial("XBTUSD", rows));
  EXPECT_EQ(e.book("XBTUSD")->book.size(), 50u);
  EXPECT_EQ(e.book("XBTUSD")->book.best(bmx::Side::kBuy)->price, 100.0);
  EXPECT_EQ(e.book("XBTUSD")->book.best(bmx::Side::kSell)->price, 201.0);
}

TEST_F(TwoBooks, EmptyPartialLeavesAnEmptyFreshBook) {
  feed(e, book_partial("XBTUSD", ""));
  const auto* b = e.book("XBTUSD");
  ASSERT_NE(b, nullptr);
  EXPECT_TRUE(b->has_partial);
  EXPECT_FALSE(b->stale);
  EXPECT_EQ(b->book.size(), 0u);
  // Deltas apply to it.
  feed(e, book_frame("insert", level_row("XBTUSD", 5, "Buy", 1, "50")));
  EXPECT_EQ(bids(e, "XBTUSD"), (Ladder{{50, 1}}));
  expect_eth_untouched();
}

TEST_F(TwoBooks, PartialClearsStaleness) {
  feed(e, book_frame("delete", R"({"symbol":"XBTUSD","id":999,"side":"Buy"})"));
  ASSERT_TRUE(e.book("XBTUSD")->stale);
  feed(e, book_partial("XBTUSD", level_row("XBTUSD", 1, "Buy", 10, "100")));
  EXPECT_FALSE(e.book("XBTUSD")->stale);
  feed(e, book_frame("update", R"({"symbol":"XBTUSD","id":1,"side":"Buy","size":11})"));
  EXPECT_EQ(bids(e, "XBTUSD"), (Ladder{{100, 11}}));
}

TEST_F(TwoBooks, KeysAndFilterMayFollowTheDataOfAPartial) {
  feed(e, R"({"table":"orderBookL2","action":"partial","data":[)" +
              level_row("XBTUSD", 7, "Buy", 70, "95") +
              R"(],"keys":["symbol","id","side"],"filter":{"symbol":"XBTUSD"}})");
  EXPECT_EQ(bids(e, "XBTUSD"), (Ladder{{95, 70}}));
  EXPECT_TRUE(asks(e, "XBTUSD").empty());
  expect_eth_untouched();
}

TEST_F(TwoBooks, DataBeforeTableAndActionIsStillApplied) {
  EXPECT_EQ(feed(e, R"({"data":[{"symbol":"XBTUSD","id":1,"side":"Buy","size":12}],)"
                    R"("table":"orderBookL2","action":"update"})")
                .kind,
            FrameKind::kTable);
  EXPECT_EQ(bids(e, "XBTUSD"), (Ladder{{100, 12}}));
}

// Found by fuzz_pipeline: a partial whose frame went on with a second "action" ("insert") and a
// second "data" was never ordered (end_frame asked the frame's last action, not the book), and the
// book's best level read as missing while it held levels. A frame that repeats table, action,
// data, keys or filter is malformed (which did it mean?); the books its partial reset are ordered,
// and stale until their next partial, like any book a broken frame touched.
TEST_F(TwoBooks, FrameRepeatingItsActionOrDataIsMalformedAndItsPartialsBookStillOrdered) {
  const std::string rows =
      level_row("XBTUSD", 3, "Buy", 5, "97") + "," + level_row("XBTUSD", 4, "Buy", 6, "99") + "," +
      level_row("XBTUSD", 5, "Sell", 7, "103") + "," + level_row("XBTUSD", 6, "Buy", 8, "98") +
      "," + level_row("XBTUSD", 7, "Sell", 9, "102");
  std::string frame = book_partial("XBTUSD", rows);
  frame.pop_back();  // the closing brace: the frame goes on
  frame += R"(,"action":"insert","data":[)" + level_row("XBTUSD", 8, "Buy", 1, "100.5") + "]}";
  EXPECT_EQ(feed(e, frame).kind, FrameKind::kMalformed);
  const auto* b = e.book("XBTUSD");
  ASSERT_NE(b, nullptr);
  EXPECT_TRUE(b->stale);
  EXPECT_EQ(bids(e, "XBTUSD"), (Ladder{{99, 6}, {98, 8}, {97, 5}}));
  EXPECT_EQ(asks(e, "XBTUSD"), (Ladder{{102, 9}, {103, 7}}));
  ASSERT_NE(b->book.best(bmx::Side::kBuy), nullptr);
  EXPECT_EQ(b->book.best(bmx::Side::kBuy)->price, 99.0);
  EXPECT_EQ(b->book.best(bmx::Side::kSell)->price, 102.0);
  expect_eth_untouched();

  // The next partial repairs it; then every other repeated field is refused as well.
  feed(e, book_partial("XBTUSD", level_row("XBTUSD", 1, "Buy", 10, "100")));
  ASSERT_FALSE(e.book("XBTUSD")->stale);
  const uint64_t malformed = e.stats().frames[static_cast<int>(FrameKind::kMalformed)];
  const std::string update = R"("data":[{"symbol":"XBTUSD","id":1,"side":"Buy","size":11}])";
  EXPECT_EQ(
      feed(e, R"({"table":"orderBookL2","table":"orderBookL2","action":"update",)" + update + "}")
          .kind,
      FrameKind::kMalformed);
  EXPECT_EQ(
      feed(e, R"({"table":"orderBookL2","action":"update","action":"update",)" + update + "}").kind,
      FrameKind::kMalformed);
  EXPECT_EQ(feed(e, R"({"table":"orderBookL2","action":"partial","keys":["symbol","id","side"],)"
                    R"("keys":["symbol"],"filter":{"symbol":"XBTUSD"},"data":[]})")
                .kind,
            FrameKind::kMalformed);
  EXPECT_EQ(feed(e, R"({"table":"orderBookL2","action":"partial","keys":["symbol","id","side"],)"
                    R"("filter":{"symbol":"XBTUSD"},"filter":{"symbol":"ETHUSD"},"data":[]})")
                .kind,
            FrameKind::kMalformed);
  EXPECT_EQ(e.stats().frames[static_cast<int>(FrameKind::kMalformed)], malformed + 4);
  // Broken before any row: whichever symbols their rows were for, their table's books are stale.
  EXPECT_TRUE(e.book("ETHUSD")->stale);
  EXPECT_TRUE(e.book("XBTUSD")->stale);
}

TEST(FeedEngine, WholeTableBookPartialResetsEveryBookAndCoversNewSymbols) {
  FeedEngine e;
  feed(e, book_partial("XBTUSD", level_row("XBTUSD", 1, "Buy", 10, "100")));
  // No filter: the image of the whole table.
  feed(e, R"({"table":"orderBookL2","action":"partial","keys":["symbol","id","side"],)"
          R"("filter":{},"data":[)" +
              level_row("ETHUSD", 1, "Buy", 30, "10") + "]}");
  EXPECT_TRUE(bids(e, "XBTUSD").empty()) << "XBTUSD was not in the image: it is empty now";
  EXPECT_EQ(bids(e, "ETHUSD"), (Ladder{{10, 30}}));
  // A symbol the image did not list was covered by it (empty): its deltas apply.
  feed(e, book_frame("insert", level_row("SOLUSD", 1, "Sell", 5, "30")));
  EXPECT_EQ(asks(e, "SOLUSD"), (Ladder{{30, 5}}));
  EXPECT_EQ(e.stats().rows_dropped_before_partial, 0u);
}

// ---- the api-connectors fixtures, worked out by hand --------------------------------------------

TEST(FeedEngine, OrderbookSymboledEmptyPartialFixtureEndsAsWorkedOutByHand) {
  const std::string file = "bitmex/api-connectors-fixtures/orderbookSymboledEmptyPartial.ndjson";
  FeedEngine e;
  // Frames 1-6: welcome, ack, XBTUSD partial (Sell 22105 x 375300, Buy 22077.5 x 102500), ack,
  // ETHYLDH23 partial (Buy 22077.5 x 102500), then the XBTUSD ask's size becomes 77300.
  replay_file(e, file, 6);
  EXPECT_EQ(bids(e, "XBTUSD", "orderBookL2_25"), (Ladder{{22077.5, 102500}}));
  EXPECT_EQ(asks(e, "XBTUSD", "orderBookL2_25"), (Ladder{{22105, 77300}}));
  EXPECT_EQ(bids(e, "ETHYLDH23", "orderBookL2_25"), (Ladder{{22077.5, 102500}}));

  FeedEngine full;
  replay_file(full, file);
  // Frame 7, a new XBTUSD partial, replaces the image: Sell 22077.5 x 102500, Buy 22078 x 202500.
  // That image is crossed (bid 22078 >= ask 22077.5), so the book is marked stale after the frame,
  // and frame 9's update of it is dropped, not applied.
  const auto* xbt = full.book("XBTUSD", "orderBookL2_25");
  ASSERT_NE(xbt, nullptr);
  EXPECT_EQ(bids(full, "XBTUSD", "orderBookL2_25"), (Ladder{{22078, 202500}}));
  EXPECT_EQ(asks(full, "XBTUSD", "orderBookL2_25"), (Ladder{{22077.5, 102500}}));
  EXPECT_TRUE(xbt->stale);
  EXPECT_EQ(full.stats().crossed_books, 1u);
  EXPECT_EQ(full.stats().books_marked_stale, 1u);
  EXPECT_EQ(full.stats().rows_dropped_stale, 1u);
  // Frame 8, an empty ETHYLDH23 partial: an empty, trustworthy book.
  const auto* eth = full.book("ETHYLDH23", "orderBookL2_25");
  ASSERT_NE(eth, nullptr);
  EXPECT_TRUE(eth->has_partial);
  EXPECT_FALSE(eth->stale);
  EXPECT_EQ(eth->book.size(), 0u);
  // Rows: partials 2 + 1 + 2 + 0, updates 1 + 1.
  const auto& t = full.tables()[full.find_table("orderBookL2_25")];
  EXPECT_EQ(t.rows[static_cast<int>(bmx::Action::kPartial)], 5u);
  EXPECT_EQ(t.rows[static_cast<int>(bmx::Action::kUpdate)], 2u);
  EXPECT_EQ(full.stats().unknown_levels, 0u);
  EXPECT_EQ(full.book("XBTUSD"), nullptr) << "orderBookL2 is another table";
}

TEST(FeedEngine, OrderEmptyPartialFixtureKeepsBothInsertedOrders) {
  FeedEngine e;
  replay_file(e, "bitmex/api-connectors-fixtures/orderEmptyPartial.ndjson");
  // The partial is empty with filter {"account":22}; two inserts follow, on two symbols.
  const bmx::GenericTable* t = e.table("order");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->size(), 2u);
  EXPECT_EQ(field(e, "order", "ccfb1a6b-28c5-4e50-a3ca-8667358056a2", "symbol"), R"("XBTUSD")");
  EXPECT_EQ(field(e, "order", "ccfb1a6b-28c5-4e50-a3ca-8667358056a2", "price"), "11390.5");
  EXPECT_EQ(field(e, "order", "aaf84d57-8810-486d-b0f2-c81ef4c43435", "symbol"), R"("XBTZ20")");
  EXPECT_EQ(field(e, "order", "aaf84d57-8810-486d-b0f2-c81ef4c43435", "price"), "11968.5");
  EXPECT_EQ(field(e, "order", "aaf84d57-8810-486d-b0f2-c81ef4c43435", "simpleOrderQty"), "null");
  EXPECT_EQ(field(e, "order", "aaf84d57-8810-486d-b0f2-c81ef4c43435", "workingIndicator"), "true");
  EXPECT_EQ(e.stats().rows_dropped_before_partial, 0u);
  EXPECT_EQ(e.stats().rows, 2u);
  EXPECT_FALSE(t->stale);
}

TEST(FeedEngine, OrderSymboledEmptyPartialFixtureKeepsTheOneOrder) {
  FeedEngine e;
  replay_file(e, "bitmex/api-connectors-fixtures/orderSymboledEmptyPartial.ndjson");
  const bmx::GenericTable* t = e.table("order");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->size(), 1u);
  EXPECT_EQ(field(e, "order", "ff4dde97-542f-45b2-b8f8-b150b544cd6a", "orderQty"), "1");
  EXPECT_EQ(field(e, "order", "ff4dde97-542f-45b2-b8f8-b150b544cd6a", "text"),
            R"("Submission from testnet.bitmex.com")");
  EXPECT_EQ(e.stats().rows_dropped_before_partial, 0u);
}

TEST(FeedEngine, SymboledTradeFixtureGivesTheTypedLastTrade) {
  FeedEngine e;
  replay_file(e, "bitmex/api-connectors-fixtures/symboledTradeInsert.ndjson");
  const bmx::LastTrade* lt = e.last_trade("XBTUSD");
  ASSERT_NE(lt, nullptr);
  EXPECT_EQ(lt->price, 11584.0);
  EXPECT_EQ(lt->size, 8);
  EXPECT_EQ(lt->side, bmx::Side::kSell);
  // 2020-10-12T17:24:24.848Z: 18547 days * 86400 + 62664 s, + 848 ms.
  EXPECT_EQ(lt->timestamp_ns, 1602523464848000000);
  EXPECT_EQ(e.table("trade")->size(), 1u);
}

TEST(FeedEngine, WholeTableTradeFixtureKeepsOneRowPerSymbol) {
  // A partial with an empty filter and 129 rows, one per instrument (index symbols included).
  FeedEngine e;
  replay_file(e, "bitmex/api-connectors-fixtures/basicTradeInsert.ndjson");
  EXPECT_EQ(e.table("trade")->size(), 129u);
  ASSERT_NE(e.last_trade(".BADAT"), nullptr);
  EXPECT_EQ(e.last_trade(".BADAT")->price, 0.109587);
  EXPECT_EQ(field(e, "trade", ".BADAT", "price"), "0.109587");
  EXPECT_EQ(e.stats().rows, 129u);
  EXPECT_EQ(e.stats().bad_rows, 0u);
}

// ---- deltas before partials ---------------------------------------------------------------------

TEST(FeedEngine, BookDeltasBeforeTheirPartialAreDroppedAndCounted) {
  FeedEngine e;
  feed(e, book_frame("insert", level_row("XBTUSD", 1, "Buy", 10, "100") + "," +
                                   level_row("XBTUSD", 2, "Sell", 10, "101")));
  feed(e, book_frame("update", R"({"symbol":"XBTUSD","id":1,"side":"Buy","size":5})"));
  feed(e, book_frame("delete", R"({"symbol":"XBTUSD","id":1,"side":"Buy"})"));
  EXPECT_EQ(e.stats().rows_dropped_before_partial, 4u);
  EXPECT_EQ(e.book("XBTUSD"), nullptr);
  EXPECT_EQ(e.stats().unknown_levels, 0u) << "dropped, not applied";
  EXPECT_EQ(e.stats().books_marked_stale, 0u);
  EXPECT_EQ(bmxtest::count_events(bmxtest::drain(e), bmx::EventKind::kDroppedBeforePartial), 3u);

  // After the partial, deltas apply.
  feed(e, book_partial("XBTUSD", level_row("XBTUSD", 1, "Buy", 10, "100")));
  feed(e, book_frame("update", R"({"symbol":"XBTUSD","id":1,"side":"Buy","size":5})"));
  EXPECT_EQ(bids(e, "XBTUSD"), (Ladder{{100, 5}}));
  EXPECT_EQ(e.stats().rows_dropped_before_partial, 4u);
}

TEST_F(TwoBooks, DeltasForASymbolWithoutItsOwnPartialAreDropped) {
  feed(e, book_frame("insert", level_row("SOLUSD", 1, "Buy", 1, "30") + "," +
                                   level_row("XBTUSD", 3, "Buy", 1, "99")));
  EXPECT_EQ(e.stats().rows_dropped_before_partial, 1u);
  EXPECT_EQ(e.book("SOLUSD"), nullptr);
  EXPECT_EQ(bids(e, "XBTUSD"), (Ladder{{100, 10}, {99, 1}}))
      << "the other row of the frame applies";
}

TEST(FeedEngine, GenericDeltasBeforeTheirPartialAreDroppedAndCounted) {
  FeedEngine e;
  feed(e, wrap("order", "insert", R"({"orderID":"a","symbol":"XBTUSD","price":1})"));
  feed(e, wrap("trade", "insert", R"({"symbol":"XBTUSD","price":1,"size":1,"side":"Buy"})"));
  EXPECT_EQ(e.stats().rows_dropped_before_partial, 2u);
  EXPECT_EQ(e.last_trade("XBTUSD"), nullptr);
  ASSERT_NE(e.table("order"), nullptr);
  EXPECT_EQ(e.table("order")->size(), 0u);

  // A trade partial for XBTUSD covers XBTUSD only.
  feed(e,
       R"({"table":"trade","action":"partial","keys":[],"filter":{"symbol":"XBTUSD"},"data":[]})");
  feed(e, wrap("trade", "insert",
               R"({"symbol":"ETHUSD","price":2,"size":2,"side":"Buy"},)"
               R"({"symbol":"XBTUSD","price":3,"size":3,"side":"Sell"})"));
  EXPECT_EQ(e.stats().rows_dropped_before_partial, 3u);
  EXPECT_EQ(e.last_trade("ETHUSD"), nullptr);
  ASSERT_NE(e.last_trade("XBTUSD"), nullptr);
  EXPECT_EQ(e.last_trade("XBTUSD")->price, 3.0);
}

// ---- unknown levels, crossed books -------------------------------------------------------------

TEST_F(TwoBooks, UpdateOfUnknownLevelMarksBookStaleAndCountsIt) {
  feed(e, book_frame("update", R"({"symbol":"XBTUSD","id":999,"side":"Buy","size":5})"));
  const auto* b = e.book("XBTUSD");
  EXPECT_TRUE(b->stale);
  EXPECT_EQ(e.stats().unknown_levels, 1u);
  EXPECT_EQ(e.stats().books_marked_stale, 1u);
  EXPECT_EQ(bids(e, "XBTUSD"), (Ladder{{100, 10}}));
  const auto events = bmxtest::drain(e);
  ASSERT_EQ(bmxtest::count_events(events, bmx::EventKind::kUnknownLevel), 1u);
  expect_eth_untouched();

  // Until the next partial its deltas are dropped and counted, while other books go on.
  feed(e, book_frame("update", R"({"symbol":"XBTUSD","id":1,"side":"Buy","size":6},)"
                               R"({"symbol":"ETHUSD","id":1,"side":"Buy","size":31})"));
  EXPECT_EQ(e.stats().rows_dropped_stale, 1u);
  EXPECT_EQ(bids(e, "XBTUSD"), (Ladder{{100, 10}}));
  EXPECT_EQ(bids(e, "ETHUSD"), (Ladder{{10, 31}}));
  EXPECT_EQ(e.stats().books_marked_stale, 1u) << "a stale book is counted once";
}

TEST_F(TwoBooks, DeleteOfUnknownLevelMarksBookStale) {
  feed(e, book_frame("delete", R"({"symbol":"XBTUSD","id":2,"side":"Buy"})"));  // id 2 is a Sell
  EXPECT_TRUE(e.book("XBTUSD")->stale);
  EXPECT_EQ(e.stats().unknown_levels, 1u);
  EXPECT_EQ(asks(e, "XBTUSD"), (Ladder{{101, 20}}));
  expect_eth_untouched();
}

TEST_F(TwoBooks, CrossedBookAfterAFrameIsMarkedStale) {
  feed(e, book_frame("insert", level_row("XBTUSD", 3, "Buy", 1, "101.5")));
  EXPECT_TRUE(e.book("XBTUSD")->stale);
  EXPECT_EQ(e.stats().crossed_books, 1u);
  EXPECT_EQ(e.stats().books_marked_stale, 1u);
  EXPECT_EQ(bmxtest::count_events(bmxtest::drain(e), bmx::EventKind::kCrossedBook), 1u);
  expect_eth_untouched();
}

TEST_F(TwoBooks, LockedBookIsCrossed) {
  feed(e, book_frame("update", R"({"symbol":"XBTUSD","id":1,"side":"Buy","size":1,"price":101})"));
  EXPECT_TRUE(e.book("XBTUSD")->stale);
  EXPECT_EQ(e.stats().crossed_books, 1u);
}

TEST_F(TwoBooks, CrossingResolvedWithinTheFrameIsNotStale) {
  // Only the state at the end of a frame counts. Row 1 moves the bid to 101.5, above the ask at 101
  // (crossed for a moment); row 2 moves the ask to 102 (fine again).
  feed(e, R"({"table":"orderBookL2","action":"update","data":[)"
          R"({"symbol":"XBTUSD","id":1,"side":"Buy","size":10,"price":101.5},)"
          R"({"symbol":"XBTUSD","id":2,"side":"Sell","size":20,"price":102}]})");
  EXPECT_FALSE(e.book("XBTUSD")->stale);
  EXPECT_EQ(e.stats().crossed_books, 0u);
  EXPECT_EQ(bids(e, "XBTUSD"), (Ladder{{101.5, 10}}));
  EXPECT_EQ(asks(e, "XBTUSD"), (Ladder{{102, 20}}));
}

TEST_F(TwoBooks, CrossingResolvedOnlyByTheNextFrameIsStale) {
  feed(e,
       book_frame("update", R"({"symbol":"XBTUSD","id":1,"side":"Buy","size":10,"price":101.5})"));
  feed(e,
       book_frame("update", R"({"symbol":"XBTUSD","id":2,"side":"Sell","size":20,"price":102})"));
  EXPECT_TRUE(e.book("XBTUSD")->stale);
  EXPECT_EQ(e.stats().crossed_books, 1u);
  EXPECT_EQ(e.stats().rows_dropped_stale, 1u);
  EXPECT_EQ(asks(e, "XBTUSD"), (Ladder{{101, 20}})) << "the stale book takes no more deltas";
  expect_eth_untouched();
}

TEST_F(TwoBooks, DuplicateInsertIsCountedAndReplacesTheLevel) {
  feed(e, book_frame("insert", level_row("XBTUSD", 1, "Buy", 11, "99.5")));
  EXPECT_EQ(e.stats().duplicate_inserts, 1u);
  EXPECT_EQ(bids(e, "XBTUSD"), (Ladder{{99.5, 11}}));
  EXPECT_FALSE(e.book("XBTUSD")->stale);
}

// ---- both id eras -------------------------------------------------------------------------------

TEST_F(TwoBooks, UpdateWithoutPriceKeepsTheLevelPrice) {
  feed(e, book_frame("update", R"({"symbol":"XBTUSD","id":2,"side":"Sell","size":21})"));
  EXPECT_EQ(asks(e, "XBTUSD"), (Ladder{{101, 21}}));
}

TEST_F(TwoBooks, UpdateWithNullPriceKeepsTheLevelPrice) {
  feed(e,
       book_frame("update", R"({"symbol":"XBTUSD","id":2,"side":"Sell","size":22,"price":null})"));
  EXPECT_EQ(asks(e, "XBTUSD"), (Ladder{{101, 22}}));
  EXPECT_EQ(e.stats().bad_rows, 0u);
}

TEST_F(TwoBooks, UpdateWithNewPriceMovesTheLevel) {
  feed(e, book_frame("insert", level_row("XBTUSD", 3, "Sell", 30, "103")));
  feed(e,
       book_frame("update", R"({"symbol":"XBTUSD","id":2,"side":"Sell","size":23,"price":104})"));
  EXPECT_EQ(asks(e, "XBTUSD"), (Ladder{{103, 30}, {104, 23}}));
  EXPECT_FALSE(e.book("XBTUSD")->stale);
}

// BitMEX sends symbol, id, side, size, price in that order; rows in another order, or naming a
// symbol twice (the last one counts, as for every field), must still reach the right book.
TEST_F(TwoBooks, BookRowFieldsInAnyOrderReachTheirSymbolsBook) {
  feed(e, book_frame("update", R"({"size":24,"side":"Sell","id":2,"symbol":"XBTUSD"})"));
  feed(e, book_frame("update", R"({"id":1,"symbol":"XBTUSD","size":11,"side":"Buy"})"));
  EXPECT_EQ(bids(e, "XBTUSD"), (Ladder{{100, 11}}));
  EXPECT_EQ(asks(e, "XBTUSD"), (Ladder{{101, 24}}));
  feed(e, book_frame("update", R"({"symbol":"XBTUSD","id":1,"side":"Buy","size":31,)"
                               R"("symbol":"ETHUSD"})"));
  EXPECT_EQ(bids(e, "ETHUSD"), (Ladder{{10, 31}}));
  EXPECT_EQ(bids(e, "XBTUSD"), (Ladder{{100, 11}}));
  feed(e, book_frame("delete", R"({"symbol":"ETHUSD","id":2,"symbol":"XBTUSD","side":"Sell"})"));
  EXPECT_EQ(asks(e, "XBTUSD"), (Ladder{}));
  EXPECT_EQ(asks(e, "ETHUSD"), (Ladder{{11, 40}}));
  EXPECT_EQ(e.stats().bad_rows, 0u);
  EXPECT_EQ(e.stats().unknown_levels, 0u);
  EXPECT_FALSE(e.book("XBTUSD")->stale);
  EXPECT_FALSE(e.book("ETHUSD")->stale);
}

TEST(FeedEngine, NewEraRowWithArbitraryIdAndPriceIsApplied) {
  // nautilus-rows/ws_orderbook_l2.json: id 62400580205 no longer encodes 98459.9.
  FeedEngine e;
  const std::string row = nautilus("ws_orderbook_l2.json");
  feed(e, book_partial("XBTUSD", row));
  EXPECT_EQ(asks(e, "XBTUSD"), (Ladder{{98459.9, 33000}}));
  EXPECT_EQ(e.book("XBTUSD")->book.best(bmx::Side::kSell)->id, 62400580205u);
  feed(e, book_frame("update", R"({"symbol":"XBTUSD","id":62400580205,"side":"Sell","size":1000,)"
                               R"("price":98460.1,"timestamp":"2024-11-24T08:26:22.400Z"})"));
  EXPECT_EQ(asks(e, "XBTUSD"), (Ladder{{98460.1, 1000}}));
  feed(e, book_frame("delete", R"({"symbol":"XBTUSD","id":62400580205,"side":"Sell",)"
                               R"("price":98460.1})"));
  EXPECT_TRUE(asks(e, "XBTUSD").empty());
  EXPECT_EQ(e.stats().bad_rows + e.stats().unknown_levels, 0u);
}

TEST(FeedEngine, OrderBookL2AndL2_25AreSeparateBooks) {
  FeedEngine e;
  feed(e, book_partial("XBTUSD", level_row("XBTUSD", 1, "Buy", 10, "100")));
  feed(e, book_partial("XBTUSD", level_row("XBTUSD", 1, "Buy", 99, "90"), "orderBookL2_25"));
  feed(e, book_frame("update", R"({"symbol":"XBTUSD","id":1,"side":"Buy","size":11})"));
  EXPECT_EQ(bids(e, "XBTUSD"), (Ladder{{100, 11}}));
  EXPECT_EQ(bids(e, "XBTUSD", "orderBookL2_25"), (Ladder{{90, 99}}));
  // The dump names the second one SYMBOL@orderBookL2_25.
  const std::string dump = bmx::dump_state(e);
  EXPECT_NE(dump.find(R"("XBTUSD":{"bids":[[100,11]],"asks":[]})"), std::string::npos) << dump;
  EXPECT_NE(dump.find(R"("XBTUSD@orderBookL2_25":{"bids":[[90,99]],"asks":[]})"), std::string::npos)
      << dump;
}

// ---- generic tables -----------------------------------------------------------------------------

TEST(FeedEngine, GenericUpdateOfUnknownRowMarksTableStaleAndCountsIt) {
  FeedEngine e;
  feed(e, wrap("order", "partial", R"({"orderID":"a","symbol":"XBTUSD","price":1})",
               R"(["orderID"])"));
  feed(e, wrap("order", "update", R"({"orderID":"zz","price":2},{"orderID":"a","price":3})"));
  EXPECT_TRUE(e.table("order")->stale);
  EXPECT_EQ(e.stats().unknown_rows, 1u);
  EXPECT_EQ(e.stats().tables_marked_stale, 1u);
  EXPECT_EQ(field(e, "order", "a", "price"), "3") << "the table's other rows keep applying";
  feed(e, wrap("order", "delete", R"({"orderID":"zz"})"));
  EXPECT_EQ(e.stats().unknown_rows, 2u);
  EXPECT_EQ(e.stats().tables_marked_stale, 1u) << "counted once until the next partial";
  feed(e, wrap("order", "partial", "", R"(["orderID"])"));
  EXPECT_FALSE(e.table("order")->stale);
}

TEST(FeedEngine, GenericNullFieldsAreKeptAsNull) {
  FeedEngine e;
  feed(e, wrap("order", "partial", R"({"orderID":"a","price":11390.5,"stopPx":null})",
               R"(["orderID"])"));
  EXPECT_EQ(field(e, "order", "a", "stopPx"), "null");
  feed(e, wrap("order", "update", R"({"orderID":"a","price":null,"stopPx":11000})"));
  EXPECT_EQ(field(e, "order", "a", "price"), "null");
  EXPECT_EQ(field(e, "order", "a", "stopPx"), "11000");
}

TEST(FeedEngine, EscapedStringsInKeysNameTheSameRow) {
  FeedEngine e;
  feed(e, wrap("order", "partial", R"({"orderID":"\u0041bc","text":"caf\u00e9 \"quoted\""})",
               R"(["orderID"])"));
  feed(e, wrap("order", "update", R"({"orderID":"Abc","leavesQty":5})"));
  EXPECT_EQ(e.table("order")->size(), 1u);
  EXPECT_EQ(field(e, "order", "Abc", "leavesQty"), "5");
  EXPECT_EQ(field(e, "order", "Abc", "text"), R"("caf\u00e9 \"quoted\"")")
      << "values keep the exchange's spelling";
  EXPECT_EQ(e.stats().unknown_rows, 0u);
}

TEST(FeedEngine, GenericTablesNeedNoCodePerTable) {
  FeedEngine e;
  // instrument, keyed by symbol: the nautilus XBTUSD row, then its index and mark updates.
  feed(e, wrap("instrument", "partial", nautilus("ws_instrument.json"), R"(["symbol"])"));
  feed(e, wrap("instrument", "update", nautilus("ws_instrument_index_update.json")));
  feed(e, wrap("instrument", "insert", R"({"symbol":"DOTUSDT","markPrice":1.25,"fairPrice":1.2})"));
  feed(e, wrap("instrument", "update", nautilus("ws_instrument_mark_update.json")));
  EXPECT_EQ(field(e, "instrument", "XBTUSD", "indicativeSettlePrice"), "75847.62");
  EXPECT_EQ(field(e, "instrument", "XBTUSD", "lastPrice"), "95123.5");
  EXPECT_EQ(field(e, "instrument", "XBTUSD", "timestamp"), R"("2026-05-27T11:00:00.500Z")");
  EXPECT_EQ(field(e, "instrument", "DOTUSDT", "markPrice"), "1.2669");
  EXPECT_EQ(field(e, "instrument", "DOTUSDT", "fairPrice"), "1.2669");
  EXPECT_EQ(field(e, "instrument", "DOTUSDT", "openValue"), "538432500000");

  // funding, keyed by (timestamp, symbol).
  feed(e,
       wrap("funding", "partial", nautilus("ws_funding_rate.json"), R"(["timestamp","symbol"])"));
  EXPECT_EQ(field(e, "funding", "2024-11-25T04:00:00.000Z|XBTUSD", "fundingRate"), "0.0001");

  // liquidation, keyed by orderID: insert, update, delete.
  feed(e, wrap("liquidation", "partial", "", R"(["orderID"])"));
  feed(e, wrap("liquidation", "insert", nautilus("ws_liquidation.json")));
  const std::string liq = "550e8400-e29b-41d4-a716-446655440099";
  EXPECT_EQ(field(e, "liquidation", liq, "leavesQty"), "1000");
  feed(e, wrap("liquidation", "update", R"({"orderID":")" + liq + R"(","leavesQty":400})"));
  EXPECT_EQ(field(e, "liquidation", liq, "leavesQty"), "400");
  EXPECT_EQ(field(e, "liquidation", liq, "price"), "95000.0");
  feed(e, wrap("liquidation", "delete", R"({"orderID":")" + liq + R"("})"));
  EXPECT_EQ(e.table("liquidation")->size(), 0u);

  // tradeBin1m, keyless: the latest bin per symbol.
  feed(e, wrap("tradeBin1m", "partial", nautilus("ws_trade_bin_1m.json"), "[]"));
  feed(e, wrap("tradeBin1m", "insert",
               R"({"timestamp":"2024-11-23T20:08:00.000Z","symbol":"XBTUSD","close":97580.5})"));
  EXPECT_EQ(e.table("tradeBin1m")->size(), 1u);
  EXPECT_EQ(field(e, "tradeBin1m", "XBTUSD", "close"), "97580.5");

  // orderBook10, keyed by symbol, whose values are arrays: kept as their raw JSON.
  feed(e, wrap("orderBook10", "partial", nautilus("ws_orderbook_10.json"), R"(["symbol"])"));
  const std::string raw_bids = field(e, "orderBook10", "XBTUSD", "bids");
  simdjson::dom::parser p;
  simdjson::dom::array levels;
  ASSERT_FALSE(p.parse(raw_bids).get_array().get(levels)) << raw_bids;
  EXPECT_EQ(levels.size(), 10u);
  EXPECT_EQ(double(levels.at(0).at(0)), 98490.3);
  EXPECT_EQ(int64_t(levels.at(9).at(1)), 2000);

  // position, keyed by (account, symbol, currency).
  feed(e, wrap("position", "partial",
               R"({"account":2,"symbol":"XBTUSD","currency":"XBt","currentQty":100,)"
               R"("avgEntryPrice":32186.5,"liquidationPrice":1.5})",
               R"(["account","symbol","currency"])"));
  feed(e, wrap("position", "update",
               R"({"account":2,"symbol":"XBTUSD","currency":"XBt","currentQty":0,)"
               R"("avgEntryPrice":null,"liquidationPrice":null})"));
  EXPECT_EQ(field(e, "position", "2|XBTUSD|XBt", "currentQty"), "0");
  EXPECT_EQ(field(e, "position", "2|XBTUSD|XBt", "avgEntryPrice"), "null");

  const bmx::Stats& st = e.stats();
  EXPECT_EQ(st.bad_rows + st.unknown_rows + st.rows_dropped_before_partial, 0u);
  EXPECT_EQ(st.frames[static_cast<int>(FrameKind::kTable)], e.frame_count());
}

TEST(FeedEngine, DumpStateShowsGenericRowsAfterEveryMerge) {
  FeedEngine e;
  feed(e, wrap("instrument", "partial", nautilus("ws_instrument.json"), R"(["symbol"])"));
  feed(e, wrap("instrument", "update", nautilus("ws_instrument_index_update.json")));
  const std::string dump = bmx::dump_state(e);
  simdjson::dom::parser p;
  simdjson::dom::object row;
  ASSERT_FALSE(p.parse(dump)["tables"]["instrument"]["XBTUSD"].get_object().get(row)) << dump;
  EXPECT_EQ(double(row["indicativeSettlePrice"]), 75847.62);
  EXPECT_EQ(double(row["markPrice"]), 95125.7);
  EXPECT_EQ(int64_t(row["openInterest"]), 123456789);
  EXPECT_EQ(std::string_view(row["timestamp"]), "2026-05-27T11:00:00.500Z");
  EXPECT_EQ(row.size(), 14u) << "the partial's 14 fields; the update adds none";
}

// ---- typed last trade and quote -----------------------------------------------------------------

TEST(FeedEngine, LastTradeHoldsTypedValuesOfTheLatestRow) {
  FeedEngine e;
  feed(e, R"({"table":"trade","action":"partial","keys":[],"filter":{"symbol":"XBTUSD"},"data":[)" +
              nautilus("ws_trade.json") + "]}");
  const bmx::LastTrade* t = e.last_trade("XBTUSD");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->price, 98570.9);
  EXPECT_EQ(t->size, 100);
  EXPECT_EQ(t->side, bmx::Side::kSell);
  // 2024-11-24T08:15:38.704Z: 20051 days * 86400 + 29738 s, + 704 ms.
  EXPECT_EQ(t->timestamp_ns, 1732436138704000000);

  feed(e, wrap("trade", "insert",
               R"({"timestamp":"2024-11-24T08:15:39.000Z","symbol":"XBTUSD","side":"Buy",)"
               R"("size":5,"price":98571},)"
               R"({"timestamp":"2024-11-24T08:15:39.001Z","symbol":"XBTUSD","side":"Buy",)"
               R"("size":7,"price":98571.5})"));
  EXPECT_EQ(t->price, 98571.5);
  EXPECT_EQ(t->size, 7);
  EXPECT_EQ(t->side, bmx::Side::kBuy);
  EXPECT_EQ(t->timestamp_ns, 1732436139001000000);
  EXPECT_EQ(e.last_trade("ETHUSD"), nullptr);
}

TEST(FeedEngine, LastQuoteHoldsTypedValuesAndMissingSides) {
  FeedEngine e;
  feed(e,
       R"({"table":"quote","action":"partial","keys":[],"filter":{"symbol":"BCHUSDT"},"data":[)" +
           nautilus("ws_quote.json") + "]}");
  const bmx::LastQuote* q = e.last_quote("BCHUSDT");
  ASSERT_NE(q, nullptr);
  EXPECT_TRUE(q->has_bid);
  EXPECT_TRUE(q->has_ask);
  EXPECT_EQ(q->bid_price, 487.55);
  EXPECT_EQ(q->bid_size, 103000);
  EXPECT_EQ(q->ask_price, 488.25);
  EXPECT_EQ(q->ask_size, 50000);
  // 2024-11-22T22:44:25.085Z: 20049 days * 86400 + 81865 s, + 85 ms.
  EXPECT_EQ(q->timestamp_ns, 1732315465085000000);

  // An empty bid side comes as nulls.
  feed(e, wrap("quote", "insert",
               R"({"timestamp":"2024-11-22T22:44:26.000Z","symbol":"BCHUSDT","bidSize":null,)"
               R"("bidPrice":null,"askPrice":488.3,"askSize":1})"));
  EXPECT_FALSE(q->has_bid);
  EXPECT_TRUE(q->has_ask);
  EXPECT_EQ(q->ask_price, 488.3);
  EXPECT_EQ(q->ask_size, 1);
}

}  // namespace

namespace {

std::string quote_frame(std::string_view action, std::string_view symbol, int bid) {
  return std::string(R"({"table":"quote","action":")") + std::string(action) + R"(",)" +
         (action == "partial"
              ? std::string(R"("keys":[],"filter":{"symbol":")") + std::string(symbol) + R"("},)"
              : std::string()) +
         R"("data":[{"timestamp":"2021-07-22T22:36:10.014Z","symbol":")" + std::string(symbol) +
         R"(","bidSize":1,"bidPrice":)" + std::to_string(bid) +
         R"(,"askPrice":99999,"askSize":2}]})";
}

std::string_view bid_of(const bmx::FeedEngine& e, std::string_view symbol) {
  const bmx::GenericTable* t = e.table("quote");
  if (t == nullptr) return {};
  const bmx::GenericTable::Row* row = t->find(symbol);
  return row ? row->value(t->find_field("bidPrice")) : std::string_view{};
}

}  // namespace

// Keyless rows are found by symbol id without their key: a repeated partial, a delete and rows of
// other symbols must never leave that shortcut pointing at another symbol's row.
TEST(FeedEngine, KeylessRowsStayWithTheirSymbolAcrossPartialsAndDeletes) {
  bmx::FeedEngine e;
  feed(e, quote_frame("partial", "AAA", 10));
  feed(e, quote_frame("partial", "BBB", 20));
  feed(e, quote_frame("insert", "AAA", 11));
  feed(e, quote_frame("insert", "BBB", 21));
  EXPECT_EQ(bid_of(e, "AAA"), "11");
  EXPECT_EQ(bid_of(e, "BBB"), "21");

  feed(e, quote_frame("partial", "AAA", 30));  // AAA's row is dropped and written anew
  feed(e, quote_frame("insert", "BBB", 22));
  feed(e, quote_frame("insert", "AAA", 31));
  EXPECT_EQ(bid_of(e, "AAA"), "31");
  EXPECT_EQ(bid_of(e, "BBB"), "22");

  feed(e, quote_frame("delete", "AAA", 0));  // the slot AAA held is free for reuse
  EXPECT_EQ(bid_of(e, "AAA"), "");
  feed(e, quote_frame("insert", "BBB", 23));
  feed(e, quote_frame("insert", "AAA", 32));  // a new row, maybe in a recycled slot
  feed(e, quote_frame("insert", "BBB", 24));
  EXPECT_EQ(bid_of(e, "AAA"), "32");
  EXPECT_EQ(bid_of(e, "BBB"), "24");
  EXPECT_EQ(e.table("quote")->size(), 2u);
  EXPECT_EQ(e.stats().unknown_rows, 0u);
  EXPECT_EQ(e.stats().bad_rows, 0u);
}
