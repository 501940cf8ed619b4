// bench_book: the order book alone, on the book operations of the recorded sessions.
//
// bench_engine times whole delta frames (JSON walk + engine); this binary isolates the part that
// OrderBook owns. Setup, untimed: each recorded session is fed to a FeedEngine up to its first book
// delta (its partials built the books), those books are copied, and every later orderBookL2 /
// orderBookL2_25 row is extracted in order as one operation (action, side, id, price if the row has
// one, size) by a simdjson DOM parse. Timed: replaying those operations on fresh copies of the
// books, with UseManualTime and one clock pair per session replay, so restoring the books between
// iterations is not timed. Report: ns_per_op (Time divided by the operations of one iteration),
// and cpu_ns_per_op, the same from this thread's CPU time around the same replays: on a shared VM
// the wall clock also counts the time the thread waited for a core, the thread's CPU time does not
// (compare like with like).
//
// After every replay the benchmark checks that no operation failed (kUnknownLevel, or a duplicate
// insert) and that every level of every book (price, size, id, in order) equals the book of the
// independent reference model (tests/reference_model: std::map books, no engine code) after the
// whole session; setup checks that FeedEngine ends with those same books. Otherwise it stops with
// an error rather than time the wrong work. (Comparing with FeedEngine alone would not do: it
// shares OrderBook, and a bug in the book would agree with itself.)
// allocs_per_op counts heap allocations inside the timed replays (a counting operator new): the
// book promises none after reserve().
//
// Two id eras:
//   BM_BookReplay/...              the sessions as recorded (2021: ids encode the price, updates
//                                  carry no price)
//   BM_BookReplay_ArbitraryIds/... the same operations with every id sent through a 64-bit
//                                  bijection and a price on every update (the level's current one),
//                                  as BitMEX has sent them since 2023: the index must not lean on
//                                  consecutive ids.
//
// Deterministic counts under valgrind (the replay is the function replay_ops):
//   valgrind --tool=callgrind --cache-sim=yes --branch-sim=yes --toggle-collect='*replay_ops*'
//       build/release/bin/bench_book --count-passes=5 [--arbitrary-ids]
//   callgrind_annotate --sort=Ir callgrind.out.<pid>
// That mode prints the number of operations replayed, to divide the totals by.
#include <benchmark/benchmark.h>
#include <simdjson.h>
#include <time.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/capture.hpp"
#include "engine/feed_engine.hpp"
#include "engine/order_book.hpp"
#include "reference_model.hpp"
#include "support/counting_new.hpp"

namespace {

using bmx::Action;
using bmx::OrderBook;
using bmx::Side;
using Clock = std::chrono::steady_clock;

// This thread's CPU time, in seconds.
double thread_seconds() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// One book operation, as FeedEngine::book_rows hands it to the book.
struct Op {
  uint64_t id;
  double price;   // insert; update when has_price
  int64_t size;   // insert, update
  uint32_t book;  // index into Workload::initial
  Action action;
  Side side;
  bool has_price;
};

// One recorded session as book operations.
struct Workload {
  std::string name;
  bool arbitrary_ids = false;
  std::vector<OrderBook> initial;  // after the partials
  // Per book and side, best first: the reference model's levels after the whole session, with
  // the recorded ids.
  std::vector<std::array<std::vector<bmx::BookLevel>, 2>> expected;
  std::vector<std::string> labels;  // "table/symbol", for error messages
  std::vector<Op> ops;
  std::array<uint64_t, bmx::kActionCount> by_action{};
};

// A bijection of 64-bit ids that scatters consecutive ones (the 2021 ids) over the whole range,
// like the arbitrary ids BitMEX has sent since 2023.
uint64_t scramble(uint64_t x) noexcept {
  x ^= x >> 31;
  x *= 0x7fb5d329728ea185ULL;
  x ^= x >> 27;
  x *= 0x81dadef4bc2dd44dULL;
  x ^= x >> 33;
  return x;
}

// The engine's book with every id scrambled, built as the engine builds one from a partial.
OrderBook rebuilt_with_scrambled_ids(const OrderBook& from) {
  OrderBook b(bmx::EngineConfig{}.book_capacity);
  for (Side side : {Side::kSell, Side::kBuy}) {
    for (uint32_t i = 0; i < from.depth(side); ++i) {
      const bmx::BookLevel& l = from.level(side, i);
      if (b.bulk_insert(side, scramble(l.id), l.price, l.size) != OrderBook::Result::kOk) {
        throw std::runtime_error("scrambled ids collide");
      }
    }
  }
  b.finish_bulk();
  b.reserve(b.size() + b.size() / 2 + 64);  // as FeedEngine::end_frame sizes a book
  return b;
}

// Empty when `books` hold exactly the expected levels (ids scrambled when `scrambled`), else the
// first difference.
std::string mismatch(const Workload& w, const std::vector<OrderBook>& books, bool scrambled) {
  for (size_t i = 0; i < books.size(); ++i) {
    for (Side side : {Side::kBuy, Side::kSell}) {
      const OrderBook& got = books[i];
      const auto& want = w.expected[i][bmx::index(side)];
      if (got.depth(side) != want.size()) {
        return w.name + " " + w.labels[i] + ": depth " + std::to_string(got.depth(side)) +
               ", expected " + std::to_string(want.size());
      }
      for (uint32_t k = 0; k < got.depth(side); ++k) {
        const bmx::BookLevel& g = got.level(side, k);
        const bmx::BookLevel& e = want[k];
        const uint64_t id = scrambled ? scramble(e.id) : e.id;
        if (g.price != e.price || g.size != e.size || g.id != id) {
          return w.name + " " + w.labels[i] + ": level " + std::to_string(k) + " differs";
        }
      }
      if (got.crossed()) return w.name + " " + w.labels[i] + ": crossed";
    }
  }
  return {};
}

bool is_book_table(std::string_view t) noexcept {
  return t == "orderBookL2" || t == "orderBookL2_25";
}

Workload load(const std::string& name, const std::string& file, bool arbitrary_ids) {
  Workload w;
  w.name = name;
  w.arbitrary_ids = arbitrary_ids;
  const bmx::Capture cap = bmx::Capture::load(std::string(BMX_BENCH_DATA) + "/" + file);
  const auto& frames = cap.frames();
  bmx::FeedEngine setup, full;
  simdjson::dom::parser parser;
  std::map<std::pair<std::string, std::string>, uint32_t> book_of;  // (table, symbol) -> index
  std::vector<std::pair<std::string, std::string>> keys;
  // Current price of every level, for the arbitrary-id variant's priced updates.
  std::unordered_map<uint64_t, double> price_of[2];
  auto level_key = [](uint32_t book, uint64_t id) { return id * 64 + book; };  // < 64 books
  bool deltas = false;
  for (const bmx::CapturedFrame& f : frames) {
    full.on_frame(f.data, f.len, cap.capacity(f), f.recv_ns);
    simdjson::dom::element doc;
    std::string_view table, action;
    const bool book_frame = !parser.parse(f.data, f.len, false).get(doc) && doc.is_object() &&
                            !doc["table"].get(table) && is_book_table(table) &&
                            !doc["action"].get(action);
    if (!book_frame || action == "partial") {
      if (book_frame && deltas) throw std::runtime_error(file + ": a book partial after deltas");
      if (!deltas) setup.on_frame(f.data, f.len, cap.capacity(f), f.recv_ns);
      continue;
    }
    deltas = true;
    Action act;
    if (action == "insert") {
      act = Action::kInsert;
    } else if (action == "update") {
      act = Action::kUpdate;
    } else if (action == "delete") {
      act = Action::kDelete;
    } else {
      throw std::runtime_error(file + ": unknown book action " + std::string(action));
    }
    simdjson::dom::array rows;
    if (doc["data"].get(rows)) throw std::runtime_error(file + ": a book delta without data");
    for (simdjson::dom::element row : rows) {
      std::string_view symbol, side;
      Op op{};
      op.action = act;
      if (row["symbol"].get(symbol) || row["side"].get(side) || row["id"].get(op.id)) {
        throw std::runtime_error(file + ": a book row without symbol, side or id");
      }
      op.side = side == "Buy" ? Side::kBuy : Side::kSell;
      if (act != Action::kDelete && row["size"].get(op.size)) {
        throw std::runtime_error(file + ": a book row without size");
      }
      simdjson::dom::element price;
      op.has_price = !row["price"].get(price) && price.is_number();
      if (op.has_price && price.get(op.price)) op.has_price = false;
      const auto key = std::make_pair(std::string(table), std::string(symbol));
      auto [it, fresh] = book_of.try_emplace(key, static_cast<uint32_t>(w.initial.size()));
      if (fresh) {
        const auto* entry = setup.book(symbol, table);
        if (entry == nullptr || !entry->has_partial || entry->stale) {
          throw std::runtime_error(file + ": a delta for a book without a partial");
        }
        w.initial.push_back(arbitrary_ids ? rebuilt_with_scrambled_ids(entry->book) : entry->book);
        w.labels.push_back(key.first + "/" + key.second);
        keys.push_back(key);
        for (int s = 0; s < 2; ++s) {
          const Side sd = static_cast<Side>(s);
          for (uint32_t i = 0; i < entry->book.depth(sd); ++i) {
            const bmx::BookLevel& l = entry->book.level(sd, i);
            price_of[s][level_key(it->second, l.id)] = l.price;
          }
        }
      }
      op.book = it->second;
      if (op.book >= 64) throw std::runtime_error(file + ": more than 64 books");
      auto& prices = price_of[bmx::index(op.side)];
      const uint64_t lk = level_key(op.book, op.id);
      if (act == Action::kDelete) {
        prices.erase(lk);
      } else if (op.has_price) {
        prices[lk] = op.price;
      } else if (arbitrary_ids) {  // since 2023 every update carries the level's price
        const auto p = prices.find(lk);
        if (p == prices.end()) throw std::runtime_error(file + ": an update of an unknown level");
        op.price = p->second;
        op.has_price = true;
      }
      if (arbitrary_ids) op.id = scramble(op.id);
      ++w.by_action[static_cast<int>(act)];
      w.ops.push_back(op);
    }
  }
  const bmx::Stats& st = full.stats();
  if (st.unknown_levels || st.books_marked_stale || st.bad_rows || st.duplicate_inserts ||
      st.crossed_books || st.rows_dropped_before_partial || st.rows_dropped_stale) {
    throw std::runtime_error(file + ": the engine's replay is not clean");
  }
  const bmxtest::ReferenceModel model =
      bmxtest::model_of_capture(std::string(BMX_BENCH_DATA) + "/" + file);
  if (!model.problems.empty()) throw std::runtime_error(file + ": " + model.problems.front());
  for (const auto& [table, symbol] : keys) {
    const auto ref = model.books.find(symbol);
    if (table != "orderBookL2" || ref == model.books.end()) {
      std::string why = file + ": no reference book for ";
      why += table;
      why += '/';
      why += symbol;
      throw std::runtime_error(why);
    }
    auto& e = w.expected.emplace_back();
    for (const auto& [key, l] : ref->second.levels)
      e[key.first].push_back(bmx::BookLevel{l.price, l.size, key.second});
    std::sort(e[0].begin(), e[0].end(), [](const auto& a, const auto& b) {
      return a.price > b.price;  // bids: highest first
    });
    std::sort(e[1].begin(), e[1].end(), [](const auto& a, const auto& b) {
      return a.price < b.price;  // asks: lowest first
    });
  }
  std::vector<OrderBook> engine_books;
  engine_books.reserve(keys.size());
  for (const auto& [table, symbol] : keys)
    engine_books.push_back(full.book(symbol, table)->book);
  if (const std::string why = mismatch(w, engine_books, false); !why.empty()) {
    throw std::runtime_error(file + ": FeedEngine disagrees with the reference model: " + why);
  }
  return w;
}

struct Workloads {
  std::vector<Workload> recorded, arbitrary;  // [0] 2021-07-22, [1] 2021-04-05
  std::string error;
};

const Workloads& workloads() {
  static const Workloads w = [] {
    Workloads r;
    try {
      for (bool arbitrary : {false, true}) {
        auto& to = arbitrary ? r.arbitrary : r.recorded;
        to.push_back(load("2021-07-22", "cryptofeed-2021-07-22.txt", arbitrary));
        to.push_back(load("2021-04-05", "cryptofeed-2021-04-05.txt", arbitrary));
      }
    } catch (const std::exception& e) {
      r.error = e.what();
    }
    return r;
  }();
  return w;
}

// The timed loop: every operation, in order, on `books`. Returns how many did not return kOk.
// noinline, so that callgrind can count exactly this (--toggle-collect='*replay_ops*').
__attribute__((noinline)) uint64_t replay_ops(std::vector<OrderBook>& books,
                                              const std::vector<Op>& ops) {
  uint64_t failed = 0;
  for (const Op& op : ops) {
    OrderBook& b = books[op.book];
    OrderBook::Result r = OrderBook::Result::kUnknownLevel;
    switch (op.action) {
      case Action::kInsert:
        r = b.insert(op.side, op.id, op.price, op.size);
        break;
      case Action::kUpdate:
        r = b.update(op.side, op.id, op.size, op.has_price, op.price);
        break;
      case Action::kDelete:
        r = b.remove(op.side, op.id);
        break;
      case Action::kPartial:
        break;
    }
    failed += r != OrderBook::Result::kOk;
  }
  return failed;
}

void BM_BookReplay(benchmark::State& state, bool arbitrary, int which) {
  const Workloads& all = workloads();
  if (!all.error.empty()) {
    state.SkipWithError(all.error.c_str());
    return;
  }
  std::vector<const Workload*> sel;
  const auto& from = arbitrary ? all.arbitrary : all.recorded;
  for (size_t i = 0; i < from.size(); ++i) {
    if (which < 0 || static_cast<size_t>(which) == i) sel.push_back(&from[i]);
  }
  std::vector<std::vector<OrderBook>> books;
  uint64_t ops = 0;
  for (const Workload* w : sel) {
    books.push_back(w->initial);
    ops += w->ops.size();
  }
  uint64_t allocs = 0;
  double cpu_seconds = 0;
  std::string error;
  for (auto _ : state) {
    double seconds = 0;
    for (size_t i = 0; i < sel.size() && error.empty(); ++i) {
      for (size_t k = 0; k < books[i].size(); ++k)
        books[i][k] = sel[i]->initial[k];  // same capacities: copies into the same memory
      const uint64_t a0 = bmx::testing::allocation_count();
      const double c0 = thread_seconds();
      const auto t0 = Clock::now();
      const uint64_t failed = replay_ops(books[i], sel[i]->ops);
      const auto t1 = Clock::now();
      cpu_seconds += thread_seconds() - c0;
      allocs += bmx::testing::allocation_count() - a0;
      seconds += std::chrono::duration<double>(t1 - t0).count();
      if (failed) {
        error = sel[i]->name + ": " + std::to_string(failed) + " operations did not return kOk";
      } else {
        error = mismatch(*sel[i], books[i], sel[i]->arbitrary_ids);
      }
    }
    if (!error.empty()) {
      state.SkipWithError(error.c_str());
      break;
    }
    state.SetIterationTime(seconds);
  }
  state.counters["ops"] = static_cast<double>(ops);
  state.counters["ns_per_op"] =
      benchmark::Counter(static_cast<double>(ops), benchmark::Counter::kIsIterationInvariantRate |
                                                       benchmark::Counter::kInvert);
  state.counters["cpu_ns_per_op"] =
      1e9 * cpu_seconds / static_cast<double>(ops * std::max<int64_t>(1, state.iterations()));
  state.counters["allocs_per_op"] =
      static_cast<double>(allocs) /
      static_cast<double>(ops * std::max<int64_t>(1, state.iterations()));
}

// --count-passes=N [--arbitrary-ids]: N replays of both sessions outside Google Benchmark, for
// valgrind. Prints the operations replayed inside replay_ops.
int count_passes(int passes, bool arbitrary) {
  const Workloads& all = workloads();
  if (!all.error.empty()) {
    std::fprintf(stderr, "bench_book: %s\n", all.error.c_str());
    return 1;
  }
  const auto& sel = arbitrary ? all.arbitrary : all.recorded;
  std::vector<std::vector<OrderBook>> books;
  books.reserve(sel.size());
  for (const Workload& w : sel)
    books.push_back(w.initial);
  uint64_t ops = 0;
  std::array<uint64_t, bmx::kActionCount> by_action{};
  for (int p = 0; p < passes; ++p) {
    for (size_t i = 0; i < sel.size(); ++i) {
      for (size_t k = 0; k < books[i].size(); ++k)
        books[i][k] = sel[i].initial[k];
      if (replay_ops(books[i], sel[i].ops) != 0) {
        std::fprintf(stderr, "bench_book: %s: some operations did not return kOk\n",
                     sel[i].name.c_str());
        return 1;
      }
      if (const std::string why = mismatch(sel[i], books[i], sel[i].arbitrary_ids); !why.empty()) {
        std::fprintf(stderr, "bench_book: %s\n", why.c_str());
        return 1;
      }
      ops += sel[i].ops.size();
      for (int a = 0; a < bmx::kActionCount; ++a)
        by_action[a] += sel[i].by_action[a];
    }
  }
  std::printf("%llu operations (insert %llu, update %llu, delete %llu) in %d passes%s\n",
              static_cast<unsigned long long>(ops),
              static_cast<unsigned long long>(by_action[static_cast<int>(Action::kInsert)]),
              static_cast<unsigned long long>(by_action[static_cast<int>(Action::kUpdate)]),
              static_cast<unsigned long long>(by_action[static_cast<int>(Action::kDelete)]), passes,
              arbitrary ? ", arbitrary ids" : "");
  return 0;
}

void register_all() {
  struct Target {
    std::string label;
    int which;
  };
  const std::vector<Target> targets = {{"both", -1}, {"2021-07-22", 0}, {"2021-04-05", 1}};
  for (const Target& t : targets) {
    benchmark::RegisterBenchmark(("BM_BookReplay/" + t.label).c_str(), BM_BookReplay, false,
                                 t.which)
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
  }
  benchmark::RegisterBenchmark("BM_BookReplay_ArbitraryIds/both", BM_BookReplay, true, -1)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
}

}  // namespace

int main(int argc, char** argv) {
  int passes = 0;
  bool arbitrary = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--count-passes=", 15) == 0) passes = std::atoi(argv[i] + 15);
    if (std::strcmp(argv[i], "--arbitrary-ids") == 0) arbitrary = true;
  }
  if (passes > 0) return count_passes(passes, arbitrary);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  const Workloads& w = workloads();
  if (!w.error.empty()) {
    std::fprintf(stderr, "bench_book: %s\n", w.error.c_str());
    return 1;
  }
  for (const Workload& s : w.recorded) {
    benchmark::AddCustomContext(
        "session " + s.name,
        std::to_string(s.initial.size()) + " books; " + std::to_string(s.ops.size()) +
            " ops: insert " + std::to_string(s.by_action[static_cast<int>(Action::kInsert)]) +
            ", update " + std::to_string(s.by_action[static_cast<int>(Action::kUpdate)]) +
            ", delete " + std::to_string(s.by_action[static_cast<int>(Action::kDelete)]));
  }
  // Where inserts and deletes land (depth: how many of the side's prices are better), counted on a
  // copy of the books against a set of each side's prices, untimed.
  std::array<std::array<uint64_t, 3>, 2> depths{};  // [insert, delete][best 8, 8-63, deeper]
  size_t books_total = 0, on_grid_before = 0, on_grid_after = 0, linear_before = 0,
         linear_after = 0;
  uint64_t regrids = 0, inserts = 0, ladder_inserts = 0;
  for (const Workload& s : w.recorded) {
    std::vector<OrderBook> books = s.initial;
    std::vector<std::array<std::set<double>, 2>> prices(books.size());
    for (size_t k = 0; k < books.size(); ++k) {
      const OrderBook& b = books[k];
      on_grid_before += b.on_grid();
      linear_before += b.ids_encode_prices();
      for (const Side side : {Side::kBuy, Side::kSell}) {
        for (uint32_t i = 0; i < b.depth(side); ++i)
          prices[k][static_cast<int>(side)].insert(b.level(side, i).price);
      }
    }
    for (const Op& op : s.ops) {
      OrderBook& b = books[op.book];
      auto& set = prices[op.book][static_cast<int>(op.side)];
      const auto depth_of = [&](double price) {
        return static_cast<uint32_t>(op.side == Side::kBuy
                                         ? std::distance(set.upper_bound(price), set.end())
                                         : std::distance(set.begin(), set.lower_bound(price)));
      };
      uint32_t d = 0;
      if (op.action == Action::kInsert) {
        if (b.insert(op.side, op.id, op.price, op.size) != OrderBook::Result::kOk) continue;
        d = depth_of(op.price);
        set.insert(op.price);
      } else if (op.action == Action::kDelete) {
        const double price = b.level_price(op.side, op.id);
        if (b.remove(op.side, op.id) != OrderBook::Result::kOk) continue;
        set.erase(price);
        d = depth_of(price);
      } else {
        b.update(op.side, op.id, op.size, op.has_price, op.price);
        continue;
      }
      if (op.action == Action::kInsert) {  // the ladder holds the best levels
        ++inserts;
        ladder_inserts += d < b.ladder_levels(op.side);
      }
      ++depths[op.action == Action::kDelete][d < 8 ? 0 : d < 64 ? 1 : 2];
    }
    for (const OrderBook& b : books) {
      ++books_total;
      on_grid_after += b.on_grid();
      linear_after += b.ids_encode_prices();
      regrids += b.regrids();
    }
  }
  // Which books keep their best levels in a price ladder (prices on a grid) and which in the
  // sorted tiers: the two paths cost differently.
  benchmark::AddCustomContext(
      "books on a price grid",
      std::to_string(on_grid_before) + " of " + std::to_string(books_total) +
          " after their partials, " + std::to_string(on_grid_after) + " after the deltas (" +
          std::to_string(regrids) + " finer grids found); " +
          std::to_string(100 * ladder_inserts / std::max<uint64_t>(1, inserts)) +
          "% of inserts land in a price ladder");
  // Which books find their levels from their ids (the 2021 encoding) instead of the index.
  benchmark::AddCustomContext("books whose ids encode their prices",
                              std::to_string(linear_before) + " of " + std::to_string(books_total) +
                                  " after their partials, " + std::to_string(linear_after) +
                                  " after the deltas");
  for (int a = 0; a < 2; ++a) {
    const double n = static_cast<double>(depths[a][0] + depths[a][1] + depths[a][2]);
    char line[160];
    std::snprintf(line, sizeof line, "best 8 levels %.0f%%, depths 8-63 %.0f%%, deeper %.0f%%",
                  100.0 * static_cast<double>(depths[a][0]) / n,
                  100.0 * static_cast<double>(depths[a][1]) / n,
                  100.0 * static_cast<double>(depths[a][2]) / n);
    benchmark::AddCustomContext(a == 0 ? "inserts land at" : "deletes land at", line);
  }
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
