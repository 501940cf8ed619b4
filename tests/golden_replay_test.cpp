// Golden replay: both recorded mainnet sessions, run through the engine exactly as bitmex-replay
// runs them, must end in the books and rows that the independent reference model
// (reference_model.cpp: simdjson DOM + std::map) computes from the same capture, level for level.
// A few anchors (depths and best levels of two books per session, rows per action) were computed
// once with Python's json module, a third implementation.
#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "engine/capture.hpp"
#include "engine/feed_engine.hpp"
#include "engine/state_dump.hpp"
#include "test_support.hpp"

namespace {

using bmx::FeedEngine;
using bmx::FrameKind;
using bmx::Side;

struct Anchor {
  const char* symbol;
  uint32_t bids, asks;
  double best_bid;
  int64_t best_bid_size;
  double best_ask;
  int64_t best_ask_size;
};

struct Session {
  const char* name;
  const char* file;
  std::array<Anchor, 2> anchors;
  std::array<uint64_t, 4> book_rows;               // partial, insert, update, delete
  std::array<uint64_t, 2> quote_rows, trade_rows;  // partial, insert
};

// gtest prints parameters in test names and failures: the session's name, not its bytes.
void PrintTo(const Session& s, std::ostream* os) {
  *os << s.name;
}

const Session kSessions[] = {
    {"Jul22",
     "bitmex/cryptofeed-2021-07-22.txt",
     {Anchor{"XBTUSD", 5557, 3795, 32186.5, 1407700, 32187, 36000},
      Anchor{"TRXU21", 94, 49, 1.6425e-06, 14700, 1.6477e-06, 700}},
     {11746, 554, 1490, 543},
     {10, 426},
     {10, 17}},
    {"Apr05",
     "bitmex/cryptofeed-2021-04-05.txt",
     {Anchor{"XBTM21", 973, 650, 63690.5, 26920, 63703.5, 9951},
      Anchor{"TRXM21", 146, 74, 2.14e-06, 289580, 2.15e-06, 155786}},
     {5323, 3733, 2503, 3702},
     {10, 1826},
     {10, 112}},
};

// One session replayed through the engine and through the reference model, once per process.
struct Replayed {
  std::unique_ptr<FeedEngine> engine;
  bmxtest::ReferenceModel model;
  std::string dump;
  std::map<bmx::EventKind, uint64_t> events;
};

void run_engine(FeedEngine& e, const bmx::Capture& c, std::map<bmx::EventKind, uint64_t>& events) {
  for (const auto& f : c.frames()) {
    e.on_frame(f.data, f.len, c.capacity(f), f.recv_ns);
    e.drain_events([&](const bmx::Event& ev) { ++events[ev.kind]; });
  }
}

const Replayed& replayed(const std::string& file) {
  static std::map<std::string, std::unique_ptr<Replayed>> cache;
  auto& slot = cache[file];
  if (!slot) {
    slot = std::make_unique<Replayed>();
    const bmx::Capture c = bmx::Capture::load(bmxtest::data_path(file));
    slot->engine = std::make_unique<FeedEngine>();
    run_engine(*slot->engine, c, slot->events);
    slot->model = bmxtest::model_of_capture(bmxtest::data_path(file));
    slot->dump = bmx::dump_state(*slot->engine);
  }
  return *slot;
}

void expect_books_match(const FeedEngine& e, const bmxtest::ReferenceModel& model) {
  for (const auto& [sym, ref] : model.books) {
    const auto* b = e.book(sym);
    ASSERT_NE(b, nullptr) << sym;
    const bmxtest::Ladder bids = bmxtest::ladder(b->book, Side::kBuy);
    const bmxtest::Ladder asks = bmxtest::ladder(b->book, Side::kSell);
    EXPECT_EQ(bids, ref.bids()) << sym;
    EXPECT_EQ(asks, ref.asks()) << sym;
  }
}

void expect_clean_stats(const bmx::Stats& st) {
  EXPECT_EQ(st.rows_dropped_before_partial, 0u);
  EXPECT_EQ(st.rows_dropped_stale, 0u);
  EXPECT_EQ(st.bad_rows, 0u);
  EXPECT_EQ(st.unknown_levels, 0u);
  EXPECT_EQ(st.unknown_rows, 0u);
  EXPECT_EQ(st.duplicate_inserts, 0u);
  EXPECT_EQ(st.crossed_books, 0u);
  EXPECT_EQ(st.books_marked_stale, 0u);
  EXPECT_EQ(st.tables_marked_stale, 0u);
  EXPECT_EQ(st.book_growths, 0u);
  EXPECT_EQ(st.capacity_exceeded, 0u);
  EXPECT_EQ(st.events_lost, 0u);
  for (FrameKind k :
       {FrameKind::kMalformed, FrameKind::kOversized, FrameKind::kUnknown, FrameKind::kError})
    EXPECT_EQ(st.frames[static_cast<int>(k)], 0u) << bmx::to_string(k);
}

class GoldenReplay : public ::testing::TestWithParam<Session> {
 protected:
  const Replayed& r() const { return replayed(GetParam().file); }
};

TEST_P(GoldenReplay, ReferenceModelFindsTheSessionClean) {
  const auto& m = r().model;
  EXPECT_TRUE(m.problems.empty()) << m.problems.front();
  EXPECT_EQ(m.books.size(), 10u);
  EXPECT_EQ(m.partial_frames, 30u);  // a book, a quote and a trade partial per symbol
  EXPECT_EQ(m.control_frames, 31u);  // the welcome message and 30 subscribe acks
}

TEST_P(GoldenReplay, EngineSeesTheSameFramesAsTheReference) {
  const FeedEngine& e = *r().engine;
  const auto& m = r().model;
  EXPECT_EQ(e.frame_count(), m.frames);
  EXPECT_EQ(bmxtest::frames_of(e, FrameKind::kTable), m.table_frames);
  EXPECT_EQ(bmxtest::frames_of(e, FrameKind::kInfo), 1u);
  EXPECT_EQ(bmxtest::frames_of(e, FrameKind::kSubscribe), 30u);
}

TEST_P(GoldenReplay, EveryLevelOfEveryBookMatchesTheReference) {
  expect_books_match(*r().engine, r().model);
}

TEST_P(GoldenReplay, StateDumpMatchesTheReferenceBooksAndTables) {
  const auto diffs = bmxtest::compare_dump(r().dump, r().model, /*with_tables=*/true);
  EXPECT_TRUE(diffs.empty()) << diffs.size() << " differences, first: " << diffs.front();
}

TEST_P(GoldenReplay, EveryBookEndsUncrossedAndFresh) {
  const FeedEngine& e = *r().engine;
  for (const auto& [sym, ref] : r().model.books) {
    const auto* b = e.book(sym);
    ASSERT_NE(b, nullptr) << sym;
    EXPECT_TRUE(b->has_partial) << sym;
    EXPECT_FALSE(b->stale) << sym;
    EXPECT_FALSE(b->book.crossed()) << sym;
    EXPECT_FALSE(ref.crossed()) << sym;
    ASSERT_NE(b->book.best(Side::kBuy), nullptr) << sym;
    ASSERT_NE(b->book.best(Side::kSell), nullptr) << sym;
    EXPECT_LT(b->book.best(Side::kBuy)->price, b->book.best(Side::kSell)->price) << sym;
  }
}

TEST_P(GoldenReplay, StatsShowNoDropsNoStaleNoUnknownLevels) {
  expect_clean_stats(r().engine->stats());
  for (const auto& [kind, n] : r().events) {
    EXPECT_TRUE(kind == bmx::EventKind::kInfo || kind == bmx::EventKind::kSubscribed)
        << n << " x " << bmx::to_string(kind);
  }
}

TEST_P(GoldenReplay, RowCountsPerActionMatchTheCapture) {
  const FeedEngine& e = *r().engine;
  const auto& m = r().model;
  const char* kActions[] = {"partial", "insert", "update", "delete"};
  uint64_t total = 0;
  for (const char* table : {"orderBookL2", "quote", "trade"}) {
    const uint16_t id = e.find_table(table);
    ASSERT_NE(id, bmx::Event::kNoTable) << table;
    const auto& counts = m.rows.at(table);
    for (int a = 0; a < bmx::kActionCount; ++a) {
      const auto it = counts.find(kActions[a]);
      const uint64_t want = it == counts.end() ? 0 : it->second;
      EXPECT_EQ(e.tables()[id].rows[a], want) << table << " " << kActions[a];
      total += want;
    }
  }
  EXPECT_EQ(e.stats().rows, total);
  // The same counts, from Python.
  const Session& s = GetParam();
  const auto& book = e.tables()[e.find_table("orderBookL2")].rows;
  for (int a = 0; a < 4; ++a)
    EXPECT_EQ(book[a], s.book_rows[a]) << kActions[a];
  EXPECT_EQ(e.tables()[e.find_table("quote")].rows[0], s.quote_rows[0]);
  EXPECT_EQ(e.tables()[e.find_table("quote")].rows[1], s.quote_rows[1]);
  EXPECT_EQ(e.tables()[e.find_table("trade")].rows[0], s.trade_rows[0]);
  EXPECT_EQ(e.tables()[e.find_table("trade")].rows[1], s.trade_rows[1]);
}

TEST_P(GoldenReplay, HandCheckedBooksEndAsComputedWithPython) {
  const FeedEngine& e = *r().engine;
  for (const Anchor& a : GetParam().anchors) {
    const auto* b = e.book(a.symbol);
    ASSERT_NE(b, nullptr) << a.symbol;
    EXPECT_EQ(b->book.depth(Side::kBuy), a.bids) << a.symbol;
    EXPECT_EQ(b->book.depth(Side::kSell), a.asks) << a.symbol;
    EXPECT_EQ(b->book.best(Side::kBuy)->price, a.best_bid) << a.symbol;
    EXPECT_EQ(b->book.best(Side::kBuy)->size, a.best_bid_size) << a.symbol;
    EXPECT_EQ(b->book.best(Side::kSell)->price, a.best_ask) << a.symbol;
    EXPECT_EQ(b->book.best(Side::kSell)->size, a.best_ask_size) << a.symbol;
  }
}

double number(const std::string& canonical) {
  return std::stod(canonical.substr(2));  // "d:1.5" or "i:100"
}

TEST_P(GoldenReplay, LastTradeAndQuoteHoldTheReferenceLastRowPerSymbol) {
  const FeedEngine& e = *r().engine;
  const auto& trades = r().model.last_rows.at("trade");
  const auto& quotes = r().model.last_rows.at("quote");
  EXPECT_EQ(trades.size(), 10u);
  EXPECT_EQ(quotes.size(), 10u);
  for (const auto& [sym, row] : trades) {
    const bmx::LastTrade* t = e.last_trade(sym);
    ASSERT_NE(t, nullptr) << sym;
    EXPECT_EQ(t->price, number(row.at("price"))) << sym;
    EXPECT_EQ(t->size, static_cast<int64_t>(number(row.at("size")))) << sym;
    EXPECT_EQ(t->side, row.at("side") == "s:Sell" ? Side::kSell : Side::kBuy) << sym;
    EXPECT_GT(t->timestamp_ns, 1'600'000'000'000'000'000) << sym;
  }
  for (const auto& [sym, row] : quotes) {
    const bmx::LastQuote* q = e.last_quote(sym);
    ASSERT_NE(q, nullptr) << sym;
    ASSERT_TRUE(q->has_bid && q->has_ask) << sym;
    EXPECT_EQ(q->bid_price, number(row.at("bidPrice"))) << sym;
    EXPECT_EQ(q->ask_price, number(row.at("askPrice"))) << sym;
    EXPECT_EQ(q->bid_size, static_cast<int64_t>(number(row.at("bidSize")))) << sym;
    EXPECT_EQ(q->ask_size, static_cast<int64_t>(number(row.at("askSize")))) << sym;
  }
}

// The same session in the post-2023 id era: arbitrary ids, a price on every row.
TEST_P(GoldenReplay, NewIdEraConversionEndsInTheSameBooks) {
  const std::string text = bmxtest::read_file(bmxtest::data_path(GetParam().file));
  const auto frames = bmxtest::split_capture(text);
  const std::string converted = bmxtest::convert_to_new_id_era(frames, 0x5eed);

  // The conversion itself: the reference model ends in the same books from it...
  bmxtest::ReferenceModel converted_model;
  for (std::string_view f : bmxtest::split_capture(converted))
    converted_model.apply(f);
  ASSERT_TRUE(converted_model.problems.empty()) << converted_model.problems.front();
  ASSERT_EQ(converted_model.books.size(), r().model.books.size());
  for (const auto& [sym, ref] : r().model.books) {
    ASSERT_EQ(converted_model.books.at(sym).bids(), ref.bids()) << sym;
    ASSERT_EQ(converted_model.books.at(sym).asks(), ref.asks()) << sym;
  }
  // ...and every update and delete row now carries a price.
  size_t rows_without_price = 0;
  for (std::string_view f : bmxtest::split_capture(converted)) {
    if (!f.starts_with(R"({"table":"orderBookL2")")) continue;
    f = f.substr(f.find(R"("data":[)"));  // past a partial's filter, which names a symbol too
    for (size_t p = f.find("{\"symbol\""); p != std::string_view::npos;
         p = f.find("{\"symbol\"", p + 1)) {
      const std::string_view row = f.substr(p, f.find('}', p) - p);
      rows_without_price += row.find("\"price\":") == std::string_view::npos;
    }
  }
  ASSERT_EQ(rows_without_price, 0u);

  // The engine on the converted session.
  const bmx::Capture c = bmx::Capture::from_text(converted);
  FeedEngine e;
  std::map<bmx::EventKind, uint64_t> events;
  run_engine(e, c, events);
  expect_books_match(e, r().model);
  expect_clean_stats(e.stats());
  const auto diffs = bmxtest::compare_dump(bmx::dump_state(e), r().model, true);
  EXPECT_TRUE(diffs.empty()) << diffs.front();
  // The ids really are new.
  const auto* old_book = r().engine->book(GetParam().anchors[0].symbol);
  const auto* new_book = e.book(GetParam().anchors[0].symbol);
  ASSERT_NE(new_book, nullptr);
  EXPECT_NE(old_book->book.best(Side::kBuy)->id, new_book->book.best(Side::kBuy)->id);
  EXPECT_NE(old_book->book.best(Side::kSell)->id, new_book->book.best(Side::kSell)->id);
}

INSTANTIATE_TEST_SUITE_P(BothSessions, GoldenReplay, ::testing::ValuesIn(kSessions),
                         [](const ::testing::TestParamInfo<Session>& p) {
                           return std::string(p.param.name);
                         });

TEST(GoldenReplayCombined, BothSessionsInOneEngineEndAsTheReferenceDoes) {
  // As `bitmex-replay a b` does: one engine, one session after the other. EOSUSDT is in both: the
  // second session's partial replaces the first one's book.
  bmxtest::ReferenceModel model;
  FeedEngine e;
  std::map<bmx::EventKind, uint64_t> events;
  std::vector<std::string> texts;
  for (const Session& s : kSessions) {
    texts.push_back(bmxtest::read_file(bmxtest::data_path(s.file)));
    for (std::string_view f : bmxtest::split_capture(texts.back()))
      model.apply(f);
    run_engine(e, bmx::Capture::load(bmxtest::data_path(s.file)), events);
  }
  ASSERT_TRUE(model.problems.empty()) << model.problems.front();
  EXPECT_EQ(model.books.size(), 19u);
  expect_books_match(e, model);
  expect_clean_stats(e.stats());
  const auto diffs = bmxtest::compare_dump(bmx::dump_state(e), model, true);
  EXPECT_TRUE(diffs.empty()) << diffs.front();
  // EOSUSDT ends as in the second session alone.
  EXPECT_EQ(bmxtest::bids(e, "EOSUSDT"),
            replayed(kSessions[1].file).model.books.at("EOSUSDT").bids());
}

}  // namespace
