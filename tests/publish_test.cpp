// FeedEngine publishing into a segment: after replaying the recorded sessions, the segment's
// books, rows, trades and quotes must equal the independent reference model of the recordings,
// and a reader that followed the ring from the start must have rebuilt the same books from the
// records alone. In one process: the cross-process version is shm_process_test.cpp.
#include <gtest/gtest.h>
#include <unistd.h>

#include <map>
#include <string>
#include <vector>

#include "consumers/local_book.hpp"
#include "engine/capture.hpp"
#include "engine/feed_engine.hpp"
#include "engine/state_dump.hpp"
#include "reference_model.hpp"
#include "shm/reader.hpp"
#include "shm/writer.hpp"
#include "test_support.hpp"

namespace {

using namespace bmx;

struct Published {
  explicit Published(const std::string& capture_file)
      : Published(Capture::load(bmxtest::data_path(capture_file))) {}
  explicit Published(Capture c)
      : name("/bmx-publish-" + std::to_string(::getpid()) + "-" + std::to_string(counter++)),
        seg(shm::Segment::create(name, config())),
        writer(seg),
        capture(std::move(c)) {
    engine.publish_to(&writer);
  }
  ~Published() { shm::Segment::remove(name); }
  static shm::SegmentConfig config() {
    shm::SegmentConfig c;
    c.max_symbols = EngineConfig{}.max_symbols;
    return c;
  }
  // Replays the capture; `each` runs after every frame.
  template <class F>
  void replay(F&& each) {
    for (const auto& f : capture.frames()) {
      engine.on_frame(f.data, f.len, capture.capacity(f), 1);
      engine.drain_events([](const Event&) {});
      each();
    }
  }
  static inline int counter = 0;
  std::string name;
  shm::Segment seg;
  shm::Writer writer;
  Capture capture;
  FeedEngine engine;
};

// A publishing engine with nothing fed yet, for frames written into the test.
struct Blank {
  explicit Blank(const std::string& what)
      : name("/bmx-publish-" + what + "-" + std::to_string(::getpid())),
        seg(shm::Segment::create(name, Published::config())),
        writer(seg) {
    engine.publish_to(&writer);
  }
  ~Blank() { shm::Segment::remove(name); }
  std::string name;
  shm::Segment seg;
  shm::Writer writer;
  FeedEngine engine;
};

// A canonical reference value ("i:42", "d:63768.5", "u:...") as a number.
double number(const std::string& canonical) {
  return std::stod(canonical.substr(2));
}

bmxtest::Ladder ladder_of(const std::vector<shm::Level>& side) {
  bmxtest::Ladder out;
  for (const auto& l : side)
    out.emplace_back(l.price, l.size);
  return out;
}

class PublishSession : public ::testing::TestWithParam<const char*> {};

TEST_P(PublishSession, SegmentAndRingEndEqualToTheReference) {
  const std::string file = std::string("bitmex/") + GetParam();
  Published p(file);
  shm::Reader r = shm::Reader::attach(p.name);
  r.seek(1);
  consumer::LocalBooks mine;
  uint64_t frames_seen = 0;
  std::map<std::string, uint64_t> row_records;  // table -> kRow records
  std::string bad_text;
  // A reader that keeps up frame by frame and acts only on whole frames.
  p.replay([&] {
    const auto res = r.poll([&](const shm::Delta& d) {
      mine.apply(d);
      frames_seen += d.last_in_frame();
      if (d.kind() == shm::RecordKind::kRow) {
        ++row_records[std::string(r.table_name(d.body.table))];
        // The row exactly as the exchange sent it: one JSON object naming its symbol.
        simdjson::dom::parser parser;
        simdjson::dom::object o;
        const std::string text(d.text);
        if (parser.parse(text).get(o) ||
            o["symbol"].get_string().value_unsafe() != r.symbol_name(d.body.symbol)) {
          if (bad_text.empty()) bad_text = text;
        }
      }
    });
    ASSERT_FALSE(res.lapped);
  });
  EXPECT_GT(frames_seen, 0u);
  EXPECT_TRUE(bad_text.empty()) << "a row record's text: " << bad_text;

  const bmxtest::ReferenceModel model = bmxtest::model_of_capture(bmxtest::data_path(file));
  ASSERT_TRUE(model.problems.empty());
  // One ring record per row received, every action (the recording's own counts).
  for (const auto& [table, actions] : model.rows) {
    if (table == "orderBookL2") continue;
    uint64_t received = 0;
    for (const auto& [action, n] : actions)
      received += n;
    EXPECT_EQ(row_records[table], received) << table;
  }
  const auto l2 = r.table_id("orderBookL2");
  ASSERT_TRUE(l2.has_value());
  for (const auto& [symbol, book] : model.books) {
    const auto sym = r.symbol_id(symbol);
    ASSERT_TRUE(sym.has_value()) << symbol;
    shm::BookCopy c;
    ASSERT_TRUE(r.copy_book(*l2, *sym, c)) << symbol;
    EXPECT_FALSE(c.stale) << symbol;
    EXPECT_EQ(ladder_of(c.bids), book.bids()) << symbol << " bids in the segment";
    EXPECT_EQ(ladder_of(c.asks), book.asks()) << symbol << " asks in the segment";
    EXPECT_EQ(mine.check(r, *l2, *sym), "") << symbol << " rebuilt from the ring";
  }
  // Trades and quotes: the latest per symbol, as the recording's last rows say.
  for (const auto& [table, by_symbol] : model.last_rows) {
    if (table != "quote" && table != "trade") continue;
    for (const auto& [symbol, row] : by_symbol) {
      shm::TradeQuoteBody tq;
      ASSERT_TRUE(r.trade_quote(*r.symbol_id(symbol), tq)) << symbol;
      if (table == "quote") {
        EXPECT_EQ(number(row.at("bidPrice")), tq.bid_price) << symbol;
        EXPECT_EQ(number(row.at("askSize")), static_cast<double>(tq.ask_size)) << symbol;
      } else {
        EXPECT_EQ(number(row.at("price")), tq.trade_price) << symbol;
        EXPECT_EQ(number(row.at("size")), static_cast<double>(tq.trade_size)) << symbol;
      }
    }
  }
  // The whole state, as a reader dumps it, equals the engine's own dump and the reference.
  const std::string dumped = consumer::dump_state(r, mine);
  EXPECT_EQ(dumped, dump_state(p.engine));
  const auto diffs = bmxtest::compare_dump(dumped, model, /*with_tables=*/true);
  EXPECT_TRUE(diffs.empty()) << diffs.size() << " differences, first: " << diffs.front();
}

// The segment keeps each level in the slot the engine's book keeps it in and learns each side's
// best level from the engine. After every frame of the session, in both id eras (2021 ids that
// encode prices, and the same session converted to arbitrary ids with a price on every row), each
// book's top in the segment is the engine's best bid and ask, and every 50th frame and after the
// last every level of every book is the engine's, in the engine's order. (The engine's books are
// held to the independent reference model by the golden replay tests; the test above holds the
// segment's final books to it directly.)
TEST_P(PublishSession, SegmentBooksFollowTheEngineAfterEveryFrame) {
  const std::string text =
      bmxtest::read_file(bmxtest::data_path(std::string("bitmex/") + GetParam()));
  for (const bool new_ids : {false, true}) {
    Published p(Capture::from_text(
        new_ids ? bmxtest::convert_to_new_id_era(bmxtest::split_capture(text), 0x51075) : text));
    shm::Reader r = shm::Reader::attach(p.name);
    uint64_t frame = 0, tops = 0, whole = 0;
    shm::BookCopy c;
    const auto same_level = [](const BookLevel* e, bool has, const shm::Level& l) {
      return e == nullptr ? !has : has && e->price == l.price && e->size == l.size && e->id == l.id;
    };
    const auto check = [&](bool all_levels) {
      for (const auto& [table, sym] : r.books()) {
        ASSERT_EQ(r.table_name(table), "orderBookL2");
        const auto* e = p.engine.book(r.symbol_name(sym), "orderBookL2");
        ASSERT_NE(e, nullptr);
        if (!e->has_partial) continue;
        shm::Top t;
        ASSERT_TRUE(r.top(table, sym, t));
        ASSERT_TRUE(same_level(e->book.best(Side::kBuy), t.has_bid, t.bid))
            << r.symbol_name(sym) << " best bid, frame " << frame << (new_ids ? " (new ids)" : "");
        ASSERT_TRUE(same_level(e->book.best(Side::kSell), t.has_ask, t.ask))
            << r.symbol_name(sym) << " best ask, frame " << frame << (new_ids ? " (new ids)" : "");
        ++tops;
        if (!all_levels) continue;
        ASSERT_TRUE(r.copy_book(table, sym, c));
        ASSERT_EQ(c.stale, e->stale);
        for (const Side side : {Side::kBuy, Side::kSell}) {
          const auto& v = side == Side::kBuy ? c.bids : c.asks;
          ASSERT_EQ(v.size(), e->book.depth(side)) << r.symbol_name(sym) << " frame " << frame;
          for (uint32_t i = 0; i < v.size(); ++i) {
            ASSERT_TRUE(same_level(&e->book.level(side, i), true, v[i]))
                << r.symbol_name(sym) << " depth " << i << " frame " << frame;
          }
        }
        ++whole;
      }
    };
    p.replay([&] {
      ++frame;
      check(frame % 50 == 0);
    });
    ASSERT_NO_FATAL_FAILURE(check(true));
    EXPECT_GT(tops, 1000u);
    EXPECT_GE(whole, 10u);
  }
}

INSTANTIATE_TEST_SUITE_P(Recorded, PublishSession,
                         ::testing::Values("cryptofeed-2021-07-22.txt",
                                           "cryptofeed-2021-04-05.txt"));

TEST(Publish, LateReaderResyncsFromTheStateWithNoGapAndNoDuplicate) {
  Published p("bitmex/cryptofeed-2021-04-05.txt");
  std::unique_ptr<shm::Reader> r;
  consumer::LocalBooks mine;
  size_t n = 0;
  const size_t join_at = p.capture.frames().size() / 2;
  p.replay([&] {
    if (++n == join_at) {  // attach mid-stream: snapshot first, then the ring
      r = std::make_unique<shm::Reader>(shm::Reader::attach(p.name));
      ASSERT_TRUE(mine.resync(*r));
    } else if (r) {
      r->poll([&](const shm::Delta& d) { mine.apply(d); });
    }
  });
  ASSERT_TRUE(r);
  EXPECT_EQ(mine.problems(), 0u);
  for (const auto& [table, symbol] : r->books())
    EXPECT_EQ(mine.check(*r, table, symbol), "") << r->symbol_name(symbol);
  EXPECT_EQ(consumer::dump_state(*r, mine), dump_state(p.engine));
}

TEST(Publish, StaleBookIsMarkedInTheSegment) {
  Published p("bitmex/cryptofeed-2021-07-22.txt");
  p.replay([] {});
  shm::Reader r = shm::Reader::attach(p.name);
  bmxtest::feed(
      p.engine,
      R"({"table":"orderBookL2","action":"update","data":[{"symbol":"XBTUSD","id":1,"side":"Buy","size":5}]})");
  shm::BookCopy c;
  ASSERT_TRUE(r.copy_book(*r.table_id("orderBookL2"), *r.symbol_id("XBTUSD"), c));
  EXPECT_TRUE(c.stale);
  EXPECT_EQ(r.stats().stale_books.load(), 1u);
  // Other books are untouched.
  ASSERT_TRUE(r.copy_book(*r.table_id("orderBookL2"), *r.symbol_id("BCHUSD"), c));
  EXPECT_FALSE(c.stale);
}

// Found by fuzz_pipeline (regression generic-frame-broken-inside-data-threw): a generic table's
// frame that broke inside "data" made the publishing engine take the broken row's text through
// simdjson's throwing conversion, so on_frame threw out of the hot path.
TEST(Publish, GenericFrameBrokenInsideItsDataIsMalformedNotAnException) {
  Blank p("broken");
  FeedEngine& engine = p.engine;
  FrameResult r;
  EXPECT_NO_THROW(r = bmxtest::feed(engine, R"({"table":"q","action":"insert","data":[{})"));
  EXPECT_EQ(r.kind, FrameKind::kMalformed);
  EXPECT_NO_THROW(r = bmxtest::feed(engine,
                                    R"({"table":"instrument","action":"partial","keys":["symbol"],)"
                                    R"("filter":{},"data":[{"symbol":"XBTUSD","state":"Open"},)"));
  EXPECT_EQ(r.kind, FrameKind::kMalformed);
  EXPECT_EQ(engine.stats().frames[static_cast<int>(FrameKind::kMalformed)], 2u);
}

// A row's current state in the segment is its JSON without spacing, however it arrived: a compact
// row as received (field order, repeated fields and nested values kept), a spaced one rewritten,
// a merged update as the merged row.
TEST(Publish, SegmentRowIsTheRowsJsonWithoutSpacingHoweverItArrived) {
  Blank p("rows");
  FeedEngine& engine = p.engine;
  shm::Reader r = shm::Reader::attach(p.name);
  std::string json;

  bmxtest::feed(engine, R"({"table":"quote","action":"partial","keys":[],)"
                        R"("filter":{"symbol":"XBTUSD"},"data":[{"timestamp":)"
                        R"("2021-04-05T00:00:01.000Z","symbol":"XBTUSD","bidSize":1,)"
                        R"("bidPrice":57000.5,"askPrice":57001,"askSize":2}]})");
  const uint16_t quote = *r.table_id("quote");
  ASSERT_TRUE(r.find_row(quote, "XBTUSD", json));
  EXPECT_EQ(json, R"({"timestamp":"2021-04-05T00:00:01.000Z","symbol":"XBTUSD","bidSize":1,)"
                  R"("bidPrice":57000.5,"askPrice":57001,"askSize":2})");

  // Spaced (and a field repeated): stored without the spaces, both occurrences kept.
  bmxtest::feed(engine,
                "{\"table\":\"quote\",\"action\":\"insert\",\"data\":[ { \"timestamp\" :"
                " \"2021-04-05T00:00:02.000Z\",\n\t\"symbol\":\"XBTUSD\", \"bidSize\": 3 ,"
                "\"bidPrice\":57000,\"askPrice\":57001,\"askSize\":4,\"askSize\":5 } ]}");
  ASSERT_TRUE(r.find_row(quote, "XBTUSD", json));
  EXPECT_EQ(json, R"({"timestamp":"2021-04-05T00:00:02.000Z","symbol":"XBTUSD","bidSize":3,)"
                  R"("bidPrice":57000,"askPrice":57001,"askSize":4,"askSize":5})");

  // Compact, with a nested value whose own spacing is part of the value.
  bmxtest::feed(engine, R"({"table":"quote","action":"insert","data":[{"timestamp":)"
                        R"("2021-04-05T00:00:03.000Z","symbol":"XBTUSD","bidSize":6,)"
                        R"("extra":{"a": [1, 2]},"askSize":7}]})");
  ASSERT_TRUE(r.find_row(quote, "XBTUSD", json));
  EXPECT_EQ(json, R"({"timestamp":"2021-04-05T00:00:03.000Z","symbol":"XBTUSD","bidSize":6,)"
                  R"("extra":{"a": [1, 2]},"askSize":7})");

  // A keyed table: the partial's row, then an update merged into it.
  bmxtest::feed(engine,
                R"({"table":"instrument","action":"partial","keys":["symbol"],)"
                R"("filter":{},"data":[{"symbol":"XBTUSD","state":"Open","lastPrice":1}]})");
  const uint16_t instrument = *r.table_id("instrument");
  ASSERT_TRUE(r.find_row(instrument, "XBTUSD", json));
  EXPECT_EQ(json, R"({"symbol":"XBTUSD","state":"Open","lastPrice":1})");
  bmxtest::feed(engine, R"({"table":"instrument","action":"update","data":[)"
                        R"({"symbol":"XBTUSD","lastPrice":2,"fairPrice":3}]})");
  ASSERT_TRUE(r.find_row(instrument, "XBTUSD", json));
  EXPECT_EQ(json, R"({"symbol":"XBTUSD","state":"Open","lastPrice":2,"fairPrice":3})");
}

// BitMEX answers a subscription to "order:XBTUSD" with a partial filtered by account *and* symbol
// (tests/data/bitmex/api-connectors-fixtures/orderSymboledEmptyPartial.ndjson). A second such
// partial, for ETHUSD, replaces only ETHUSD's orders: the XBTUSD order must stay in the segment as
// it stays in the engine, for keyed and for keyless tables.
TEST(Publish, PartialFilteredByAccountAndSymbolKeepsOtherSymbolsRowsInTheSegment) {
  Blank p("filter");
  FeedEngine& engine = p.engine;
  shm::Reader r = shm::Reader::attach(p.name);
  auto partial = [&](std::string_view table, std::string_view keys, std::string_view symbol,
                     std::string_view row) {
    bmxtest::feed(engine, std::string(R"({"table":")") + std::string(table) +
                              R"(","action":"partial","keys":)" + std::string(keys) +
                              R"(,"filter":{"account":22,"symbol":")" + std::string(symbol) +
                              R"("},"data":[)" + std::string(row) + "]}");
  };
  partial("order", R"(["orderID"])", "XBTUSD",
          R"({"orderID":"a1","account":22,"symbol":"XBTUSD","price":95000})");
  partial("order", R"(["orderID"])", "ETHUSD",
          R"({"orderID":"b2","account":22,"symbol":"ETHUSD","price":3000})");
  partial("execution", "[]", "XBTUSD", R"({"execID":"e1","account":22,"symbol":"XBTUSD"})");
  partial("execution", "[]", "ETHUSD", R"({"execID":"e2","account":22,"symbol":"ETHUSD"})");

  std::string json;
  const uint16_t order = *r.table_id("order");
  ASSERT_TRUE(r.find_row(order, "a1", json));
  EXPECT_EQ(json, R"({"orderID":"a1","account":22,"symbol":"XBTUSD","price":95000})");
  ASSERT_TRUE(r.find_row(order, "b2", json));
  const uint16_t execution = *r.table_id("execution");
  ASSERT_TRUE(r.find_row(execution, "XBTUSD", json));
  EXPECT_EQ(json, R"({"execID":"e1","account":22,"symbol":"XBTUSD"})");
  ASSERT_TRUE(r.find_row(execution, "ETHUSD", json));
  // The same partial again replaces its own rows only.
  partial("order", R"(["orderID"])", "XBTUSD",
          R"({"orderID":"a3","account":22,"symbol":"XBTUSD","price":96000})");
  EXPECT_FALSE(r.find_row(order, "a1", json));
  EXPECT_TRUE(r.find_row(order, "a3", json));
  EXPECT_TRUE(r.find_row(order, "b2", json));
  consumer::LocalBooks none;
  EXPECT_EQ(consumer::dump_state(r, none), dump_state(engine));
}

// JSON spells a symbol with or without escapes ("XBT\u0055SD" is XBTUSD). A keyless table's row
// sent either way is that symbol's one row, in the segment as in the engine (under the symbol's
// name), and a partial for the symbol replaces it in both, whichever way each of them spelled it.
TEST(Publish, SymbolSpelledWithAnEscapeIsThatSymbolsRowInTheSegmentToo) {
  Blank p("escaped-symbol");
  FeedEngine& engine = p.engine;
  shm::Reader r = shm::Reader::attach(p.name);
  consumer::LocalBooks none;
  bmxtest::feed(
      engine, R"({"table":"liquidation","action":"partial","keys":[],)"
              R"("filter":{"symbol":"XBTUSD"},"data":[{"orderID":"o1","symbol":"XBT\u0055SD"}]})");
  bmxtest::feed(engine,
                R"({"table":"liquidation","action":"partial","keys":[],)"
                R"("filter":{"symbol":"ETHUSD"},"data":[{"orderID":"o2","symbol":"ETHUSD"}]})");
  bmxtest::feed(engine, R"({"table":"liquidation","action":"insert",)"
                        R"("data":[{"orderID":"o3","symbol":"XBT\u0055SD"}]})");
  const uint16_t liquidation = *r.table_id("liquidation");
  std::string json;
  ASSERT_TRUE(r.find_row(liquidation, "XBTUSD", json));
  EXPECT_EQ(json, R"({"orderID":"o3","symbol":"XBT\u0055SD"})");
  EXPECT_FALSE(r.find_row(liquidation, "", json)) << "no row under an empty key";
  EXPECT_EQ(r.rows(liquidation).size(), 2u);
  EXPECT_EQ(engine.symbols().size(), 2u) << "no third symbol for the escaped spelling";
  EXPECT_EQ(consumer::dump_state(r, none), dump_state(engine));

  // XBTUSD's partial, spelled plainly, replaces the row that was spelled with an escape.
  bmxtest::feed(engine, R"({"table":"liquidation","action":"partial","keys":[],)"
                        R"("filter":{"symbol":"XBTUSD"},"data":[]})");
  EXPECT_FALSE(r.find_row(liquidation, "XBTUSD", json));
  EXPECT_TRUE(r.find_row(liquidation, "ETHUSD", json));
  EXPECT_EQ(consumer::dump_state(r, none), dump_state(engine));
  // And a partial filtered by account and symbol drops it row by row, found under the same key.
  bmxtest::feed(engine, R"({"table":"liquidation","action":"insert",)"
                        R"("data":[{"orderID":"o4","symbol":"XBT\u0055SD","account":22}]})");
  ASSERT_TRUE(r.find_row(liquidation, "XBTUSD", json));
  bmxtest::feed(engine, R"({"table":"liquidation","action":"partial","keys":[],)"
                        R"("filter":{"account":22,"symbol":"XBTUSD"},"data":[]})");
  EXPECT_FALSE(r.find_row(liquidation, "XBTUSD", json));
  EXPECT_TRUE(r.find_row(liquidation, "ETHUSD", json));
  EXPECT_EQ(consumer::dump_state(r, none), dump_state(engine));
}

// A table whose rows the engine can no longer trust is marked so in the segment, with a record on
// the ring, until its next partial; a reader following books only is not misled by that record.
TEST(Publish, TableTheEngineCannotTrustIsStaleInTheSegmentUntilItsNextPartial) {
  Blank p("stale-table");
  shm::Reader r = shm::Reader::attach(p.name);
  consumer::LocalBooks mine;
  std::vector<shm::RecordBody> stale_records;
  auto follow = [&] {
    r.poll([&](const shm::Delta& d) {
      mine.apply(d);
      if (d.kind() == shm::RecordKind::kStale) stale_records.push_back(d.body);
    });
  };
  const std::string partial =
      R"({"table":"instrument","action":"partial","keys":["symbol"],"filter":{},)"
      R"("data":[{"symbol":"XBTUSD","state":"Open"}]})";
  bmxtest::feed(p.engine, partial);
  follow();
  const uint16_t instrument = *r.table_id("instrument");
  EXPECT_FALSE(r.table_stale(instrument));

  // An update for a row the table does not hold: something was missed.
  bmxtest::feed(p.engine, R"({"table":"instrument","action":"update","data":[)"
                          R"({"symbol":"ETHUSD","lastPrice":1}]})");
  follow();
  EXPECT_TRUE(r.table_stale(instrument));
  ASSERT_EQ(stale_records.size(), 1u);
  EXPECT_EQ(stale_records[0].table, instrument);
  EXPECT_EQ(stale_records[0].symbol, kNoSymbol);
  std::string json;
  EXPECT_TRUE(r.find_row(instrument, "XBTUSD", json));  // still there: the reader decides
  EXPECT_EQ(mine.problems(), 0u);
  EXPECT_EQ(mine.find(instrument, kNoSymbol), nullptr);  // no book made up from the record

  bmxtest::feed(p.engine, partial);  // repaired
  EXPECT_FALSE(r.table_stale(instrument));
  p.engine.link_lost();  // nothing is current any more
  follow();
  EXPECT_TRUE(r.table_stale(instrument));
  EXPECT_EQ(stale_records.size(), 2u);
  EXPECT_EQ(consumer::dump_state(r, mine), dump_state(p.engine));
}

}  // namespace
