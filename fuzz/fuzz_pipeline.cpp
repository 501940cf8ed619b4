// libFuzzer target: sequences of frames, from bytes to engine state and to the shared-memory ring.
//
// The input is a capture without receive times: one frame per line. A fresh engine per input
// publishes into a real segment (one POSIX shm object per process, re-initialised per input and
// removed at exit) after the fixed partials of fuzz_support.hpp, so that inserts, updates, deletes
// and new partials of the input meet books and rows that exist. A reader attached to the segment
// follows the ring from its first record. After every frame:
//  - the engine's state invariants (check_engine: books ordered, not crossed unless stale, every
//    keyed row found by its key);
//  - the ring: sequences strictly increasing, the reader ends each frame at the head, on a record
//    flagged last-in-frame, and a lapped reader is told how much it lost;
//  - the segment's books: each engine book has one, stale whenever the engine's is, not crossed
//    unless stale, and, when neither is stale, level for level the engine's book;
//  - the segment's tables: stale exactly when the engine's are; every row the engine holds is there
//    under its key (a keyless table's: its symbol, however the row spelled it) with the engine's
//    JSON of it, and no other row of its table is (unless the segment counted rows it had no room
//    for: then a row may be absent, never different);
//  - the segment's last trade and quote of every symbol: those of the engine, or none where the
//    engine has none;
//  - allocation, exactly as far as the engine promises it (feed_engine.hpp, engine_alloc_test.cpp):
//    a frame that is not a partial, names no new table, creates no book, grows no book and is not a
//    generic table's (whose new keyed rows may allocate, generic_table.hpp) allocates nothing.
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "engine/feed_engine.hpp"
#include "fuzz/fuzz_support.hpp"
#include "shm/reader.hpp"
#include "shm/segment.hpp"
#include "shm/writer.hpp"
#include "support/counting_new.hpp"

using namespace bmx;

namespace {

// Sized like the engine (small_engine) so that every symbol and table has its place; a small ring
// so that long frames lap the reader.
shm::SegmentConfig segment_config() {
  shm::SegmentConfig c;
  c.ring_slots = 1024;
  c.max_symbols = fuzz::small_engine().max_symbols;
  c.max_tables = fuzz::small_engine().max_tables;
  c.max_books = 16;
  c.book_levels = 64;
  c.row_slots = 64;
  c.row_bytes = 1024;
  return c;
}

struct SegmentName {
  std::string name = "/bmx-fuzz-pipeline-" + std::to_string(::getpid());
  ~SegmentName() { shm::Segment::remove(name); }
};
const std::string& segment_name() {
  static SegmentName n;
  return n.name;
}

size_t book_count(const FeedEngine& e) {
  size_t n = 0;
  for (const auto& t : e.tables()) {
    for (const auto& b : t.books)
      n += b != nullptr;
  }
  return n;
}

class Pipeline {
 public:
  Pipeline()
      : seg_(shm::Segment::create(segment_name(), segment_config())),
        writer_(seg_),
        engine_(fuzz::small_engine()) {
    engine_.publish_to(&writer_);
    reader_.emplace(shm::Segment::attach(segment_name(), std::chrono::milliseconds(0)));
    reader_->seek(1);
  }

  void frame(std::string_view text) {
    const fuzz::PaddedFrame f(text);  // allocates: before the count
    const Stats before = engine_.stats();
    const size_t tables = engine_.tables().size(), books = book_count(engine_);
    const uint64_t allocs = testing::allocation_count();
    const FrameResult r = engine_.on_frame(f.data(), f.size(), f.capacity(), ++recv_ns_);
    engine_.drain_events([](const Event&) {});
    const uint64_t allocated = testing::allocation_count() - allocs;

    const bool generic = r.table < engine_.tables().size() && !engine_.tables()[r.table].is_book;
    if (r.action != Action::kPartial && !generic && engine_.tables().size() == tables &&
        book_count(engine_) == books && engine_.stats().book_growths == before.book_growths) {
      BMX_FUZZ_CHECK(allocated == 0, "%llu allocations applying a frame of kind %d: %.*s",
                     static_cast<unsigned long long>(allocated), static_cast<int>(r.kind),
                     static_cast<int>(std::min<size_t>(text.size(), 200)), text.data());
    }
    fuzz::check_engine(engine_);
    check_ring();
    check_books();
    check_rows();
    check_trades_quotes();
  }

 private:
  void check_ring() {
    shm::Reader& rd = *reader_;
    bool flagged_last = true;
    for (;;) {
      const shm::PollResult p = rd.poll(
          [&](const shm::Delta& d) {
            BMX_FUZZ_CHECK(d.seq > last_seq_, "ring sequence %llu after %llu",
                           static_cast<unsigned long long>(d.seq),
                           static_cast<unsigned long long>(last_seq_));
            last_seq_ = d.seq;
            flagged_last = d.last_in_frame();
          },
          UINT32_MAX);
      BMX_FUZZ_CHECK(!p.restarted, "the segment's epoch changed under the reader");
      if (p.lapped) {
        BMX_FUZZ_CHECK(p.lost > 0 && rd.cursor() == rd.head(), "a lapped reader is told and moved");
        flagged_last = true;  // the head is a frame boundary
        continue;
      }
      if (p.records == 0) break;
    }
    BMX_FUZZ_CHECK(rd.cursor() == rd.head() && rd.head() == writer_.next_seq(),
                   "after the frame the reader is at the head");
    BMX_FUZZ_CHECK(flagged_last, "the frame's last record is flagged last-in-frame");
  }

  void check_books() {
    for (const FeedEngine::TableEntry& t : engine_.tables()) {
      for (uint32_t s = 0; s < t.books.size(); ++s) {
        const FeedEngine::BookEntry* b = t.books[s].get();
        if (!b || !b->shm) continue;  // no book slot left in the segment (counted)
        shm::Top top;
        BMX_FUZZ_CHECK(reader_->top(t.id, s, top), "%s symbol %u has a readable segment book",
                       t.name.c_str(), s);
        BMX_FUZZ_CHECK(top.stale || !b->stale, "%s symbol %u stale in the engine, not the segment",
                       t.name.c_str(), s);
        BMX_FUZZ_CHECK(top.stale || !top.has_bid || !top.has_ask || top.bid.price < top.ask.price,
                       "%s symbol %u: segment book crossed and not stale (%g / %g)", t.name.c_str(),
                       s, top.bid.price, top.ask.price);
        if (!top.stale && !b->stale) check_ladders(t, s, b->book);
      }
    }
  }

  // A book that neither side calls stale is the same book: the same prices in the same order, and
  // the same (price, id, size) levels (levels at one price, which no sane book has, in any order).
  void check_ladders(const FeedEngine::TableEntry& t, uint32_t s, const OrderBook& book) {
    BMX_FUZZ_CHECK(reader_->copy_book(t.id, s, copy_), "%s symbol %u: book copied", t.name.c_str(),
                   s);
    for (const Side side : {Side::kBuy, Side::kSell}) {
      const std::vector<shm::Level>& seg = side == Side::kBuy ? copy_.bids : copy_.asks;
      const uint32_t n = book.depth(side);
      BMX_FUZZ_CHECK(seg.size() == n,
                     "%s symbol %u side %d: %zu levels in the segment, %u in the engine",
                     t.name.c_str(), s, static_cast<int>(side), seg.size(), n);
      mine_.clear();
      theirs_.clear();
      for (uint32_t i = 0; i < n; ++i) {
        const BookLevel& l = book.level(side, i);
        BMX_FUZZ_CHECK(seg[i].price == l.price,
                       "%s symbol %u side %d level %u: segment %g, engine %g", t.name.c_str(), s,
                       static_cast<int>(side), i, seg[i].price, l.price);
        mine_.emplace_back(l.price, l.id, l.size);
        theirs_.emplace_back(seg[i].price, seg[i].id, seg[i].size);
      }
      std::sort(mine_.begin(), mine_.end());
      std::sort(theirs_.begin(), theirs_.end());
      BMX_FUZZ_CHECK(mine_ == theirs_, "%s symbol %u side %d: the segment's levels differ",
                     t.name.c_str(), s, static_cast<int>(side));
    }
  }

  void check_rows() {
    const bool refused = reader_->stats().segment_full.load() > 0;
    for (const FeedEngine::TableEntry& t : engine_.tables()) {
      if (!t.generic) continue;
      BMX_FUZZ_CHECK(reader_->table_stale(t.id) == t.generic->stale,
                     "%s: stale %d in the engine, %d in the segment", t.name.c_str(),
                     t.generic->stale, reader_->table_stale(t.id));
      const GenericTable& g = *t.generic;
      size_t rows = 0;
      g.for_each([&](std::string_view key, const GenericTable::Row& row) {
        ++rows;
        json_.clear();
        g.append_json(row, json_);
        if (!reader_->find_row(t.id, key, text_)) {
          BMX_FUZZ_CHECK(refused, "%s row '%.*s' is missing from the segment", t.name.c_str(),
                         static_cast<int>(key.size()), key.data());
          return;
        }
        BMX_FUZZ_CHECK(text_ == json_, "%s row '%.*s': segment %s, engine %s", t.name.c_str(),
                       static_cast<int>(key.size()), key.data(), text_.c_str(), json_.c_str());
      });
      const size_t in_segment = reader_->rows(t.id).size();
      BMX_FUZZ_CHECK(in_segment == rows || (refused && in_segment < rows),
                     "%s: %zu rows in the segment, %zu in the engine", t.name.c_str(), in_segment,
                     rows);
    }
  }

  static bool same(double a, double b) noexcept {  // NaN-safe: the writer stores what it was given
    return std::bit_cast<uint64_t>(a) == std::bit_cast<uint64_t>(b);
  }

  void check_trades_quotes() {
    for (uint32_t s = 0; s < engine_.symbols().size(); ++s) {
      const std::string_view name = engine_.symbols().name(s);
      const LastTrade* lt = engine_.last_trade(name);
      const LastQuote* lq = engine_.last_quote(name);
      shm::TradeQuoteBody tq{};
      const bool any = reader_->trade_quote(s, tq);
      BMX_FUZZ_CHECK(
          any == (lt != nullptr || lq != nullptr) && (lt != nullptr) == (tq.has_trade != 0) &&
              (lq != nullptr) == (tq.has_quote != 0),
          "%.*s: trade %d/%u quote %d/%u (engine/segment)", static_cast<int>(name.size()),
          name.data(), lt != nullptr, tq.has_trade, lq != nullptr, tq.has_quote);
      if (lt) {
        BMX_FUZZ_CHECK(
            same(tq.trade_price, lt->price) && tq.trade_size == lt->size &&
                tq.trade_side == static_cast<uint32_t>(lt->side) && tq.trade_ns == lt->timestamp_ns,
            "%.*s: the segment's last trade differs", static_cast<int>(name.size()), name.data());
      }
      if (lq) {
        BMX_FUZZ_CHECK(tq.has_bid == lq->has_bid && tq.has_ask == lq->has_ask &&
                           same(tq.bid_price, lq->bid_price) && tq.bid_size == lq->bid_size &&
                           same(tq.ask_price, lq->ask_price) && tq.ask_size == lq->ask_size &&
                           tq.quote_ns == lq->timestamp_ns,
                       "%.*s: the segment's last quote differs", static_cast<int>(name.size()),
                       name.data());
      }
    }
  }

  shm::Segment seg_;
  shm::Writer writer_;
  FeedEngine engine_;
  std::optional<shm::Reader> reader_;
  uint64_t last_seq_ = 0;
  int64_t recv_ns_ = 0;
  std::string json_, text_;
  shm::BookCopy copy_;
  std::vector<std::tuple<double, uint64_t, int64_t>> mine_, theirs_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Pipeline p;
  for (const std::string_view f : fuzz::kWarmUp)
    p.frame(f);
  for (const std::string_view f : fuzz::split_lines(data, size))
    p.frame(f);
  return 0;
}
