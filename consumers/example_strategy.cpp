// bitmex-example-strategy: what a strategy process looks like. It attaches to a feed's segment
// read-only, keeps its own books from a snapshot plus the ring's deltas, acts on whole frames,
// prints what a strategy would look at (mid, spread, top-5 imbalance), and checks itself against
// the segment's books every so often. Lapped or restarted, it says so and resyncs.
//
//   bitmex-example-strategy --shm /bitmex-testnet
//   bitmex-example-strategy --shm /replay --until-finished --dump-state out.json
#include <fmt/core.h>
#include <CLI/CLI.hpp>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <exception>
#include <fstream>
#include <thread>

#include "consumers/local_book.hpp"
#include "shm/json_out.hpp"
#include "shm/reader.hpp"

namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) {
  g_stop = 1;
}

using namespace bmx;

struct Options {
  std::string shm;
  std::string symbol;
  std::string dump;
  uint64_t check_every = 1000;  // frames
  double print_every = 1.0;     // seconds
  uint64_t slow_ns = 0;         // busy-wait per record: a deliberately slow strategy
  bool until_finished = false;
  bool quiet = false;
  int attach_ms = 5000;
};

void spin_for(uint64_t ns) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::nanoseconds(ns);
  while (std::chrono::steady_clock::now() < until) {
  }
}

struct Counters {
  uint64_t records = 0, frames = 0, laps = 0, lost = 0, checks = 0, mismatches = 0, restarts = 0;
};

// Brings the books up to the segment's copy of (table, symbol) and compares. The segment moves on
// while we look, so: copy it (stamp S), apply ring records up to S, then both describe record S.
bool check_book(shm::Reader& r, consumer::LocalBooks& books, uint16_t table, uint32_t symbol,
                Counters& n, bool quiet) {
  shm::BookCopy c;
  if (!r.copy_book(table, symbol, c)) return true;
  while (r.cursor() <= c.stamp) {
    const uint64_t want = c.stamp + 1 - r.cursor();
    const auto p = r.poll([&](const shm::Delta& d) { books.apply(d); },
                          static_cast<uint32_t>(std::min<uint64_t>(want, 1u << 20)));
    n.records += p.records;
    if (p.lapped || p.restarted) return true;  // the main loop resyncs
  }
  ++n.checks;
  const consumer::LocalBook* b = books.find(table, symbol);
  const std::string diff = books.check(r, table, symbol);
  // check() copies again: the segment may have moved on; only a difference at equal stamps counts.
  shm::BookCopy again;
  if (!diff.empty() && r.copy_book(table, symbol, again) && b && again.stamp == b->stamp) {
    ++n.mismatches;
    if (!quiet) {
      fmt::print(stderr, "CHECK FAILED {} {}: {}\n", r.symbol_name(symbol), r.table_name(table),
                 diff);
    }
    return false;
  }
  return true;
}

void print_books(const shm::Reader& r, const consumer::LocalBooks& books, const Options& o) {
  for (const auto& [key, b] : books.all()) {
    const std::string_view sym = r.symbol_name(key.second);
    if (!o.symbol.empty() && sym != o.symbol) continue;
    if (b.bids.empty() || b.asks.empty()) continue;
    const double bid = b.bids.begin()->first, ask = b.asks.begin()->first;
    int64_t bid5 = 0, ask5 = 0;
    int i = 0;
    for (auto it = b.bids.begin(); it != b.bids.end() && i < 5; ++it, ++i)
      bid5 += it->second.size;
    i = 0;
    for (auto it = b.asks.begin(); it != b.asks.end() && i < 5; ++it, ++i)
      ask5 += it->second.size;
    const double imbalance =
        bid5 + ask5 ? static_cast<double>(bid5 - ask5) / static_cast<double>(bid5 + ask5) : 0;
    fmt::print("{:<14} {:<15} mid {:<12.8g} spread {:<10.6g} imbalance(5) {:+.3f}{}\n", sym,
               r.table_name(key.first), (bid + ask) / 2, ask - bid, imbalance,
               b.stale ? "  STALE" : "");
  }
}

int run(const Options& o) {
  shm::Reader r = shm::Reader::attach(o.shm, std::chrono::milliseconds(o.attach_ms));
  consumer::LocalBooks books;
  Counters n;
  books.resync(r);
  auto last_print = std::chrono::steady_clock::now();
  uint64_t frames_since_check = 0;
  bool reported_liveness = false;
  while (!g_stop) {
    const auto p = r.poll([&](const shm::Delta& d) {
      books.apply(d);
      n.frames += d.last_in_frame();
      frames_since_check += d.last_in_frame();
      if (o.slow_ns) spin_for(o.slow_ns);
    });
    n.records += p.records;
    if (p.records == 0) shm::idle_pause();
    if (p.restarted) {
      ++n.restarts;
      if (!o.quiet) fmt::print("feed restarted (new epoch): re-attaching and resyncing\n");
      r = shm::Reader::attach(o.shm, std::chrono::milliseconds(o.attach_ms));
      books.resync(r);
      continue;
    }
    if (p.lapped) {
      ++n.laps;
      n.lost += p.lost;
      if (!o.quiet) fmt::print("lapped: lost {} records; resyncing from the segment\n", p.lost);
      books.resync(r);
      continue;
    }
    if (frames_since_check >= o.check_every) {
      frames_since_check = 0;
      for (const auto& [table, symbol] : r.books())
        check_book(r, books, table, symbol, n, o.quiet);
    }
    const auto now = std::chrono::steady_clock::now();
    if (!o.quiet && now - last_print >= std::chrono::duration<double>(o.print_every)) {
      last_print = now;
      print_books(r, books, o);
    }
    if (p.records == 0) {
      const shm::Liveness l = r.liveness();
      const shm::LinkState link = r.link_state();
      if (o.until_finished && r.cursor() == r.head() &&
          (link == shm::LinkState::kFinished || link == shm::LinkState::kStopped ||
           l == shm::Liveness::kStopped)) {
        break;
      }
      if (l == shm::Liveness::kDead || l == shm::Liveness::kStale) {
        if (!reported_liveness) fmt::print("feed {}\n", shm::to_string(l));
        reported_liveness = true;
      } else {
        reported_liveness = false;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(50));  // idle: nothing to read
    }
  }
  // A final self-check of every book, then the dump.
  for (const auto& [table, symbol] : r.books())
    check_book(r, books, table, symbol, n, o.quiet);
  if (!o.dump.empty()) {
    const std::string s = consumer::dump_state(r, books);
    if (o.dump == "-") {
      std::fwrite(s.data(), 1, s.size(), stdout);
    } else {
      json_out::create_private_file(o.dump);
      std::ofstream f(o.dump, std::ios::binary);
      f << s;
      if (!f) {
        fmt::print(stderr, "cannot write {}\n", o.dump);
        return 1;
      }
    }
  }
  fmt::print(stderr,
             "records {} frames {} lapped {} lost {} restarts {} resyncs {} checks {} "
             "mismatches {} problems {}\n",
             n.records, n.frames, n.laps, n.lost, n.restarts, books.resyncs(), n.checks,
             n.mismatches, books.problems());
  return n.mismatches || books.problems() ? 1 : 0;
}

int run(int argc, char** argv) {
  CLI::App app{
      "Example strategy: attaches read-only to a bitmex-shm segment, keeps its own books from a "
      "snapshot plus the ring's deltas, prints mid/spread/imbalance, and checks itself against "
      "the segment."};
  Options o;
  app.add_option("--shm", o.shm, "Segment name, as given to the feed's --shm")->required();
  app.add_option("--symbol", o.symbol, "Print only this symbol");
  app.add_option("--check-every", o.check_every, "Compare with the segment every N frames")
      ->capture_default_str();
  app.add_option("--print-every", o.print_every, "Seconds between printouts")
      ->capture_default_str();
  app.add_option("--dump-state", o.dump,
                 "At exit, write the reconstructed books and tables as JSON (- for stdout), in the "
                 "schema of bitmex-replay --dump-state");
  app.add_flag(
      "--until-finished", o.until_finished,
      "Exit once the producer has finished (replay done) or stopped and everything is read");
  app.add_option("--slow-ns", o.slow_ns,
                 "Busy-wait this long per record (to see what happens to a slow strategy)");
  app.add_option("--attach-timeout-ms", o.attach_ms, "How long to wait for the segment")
      ->capture_default_str();
  app.add_flag("-q,--quiet", o.quiet, "Print only the final summary");
  CLI11_PARSE(app, argc, argv);
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // a line as soon as it is said, also into a pipe
  try {
    return run(o);
  } catch (const std::exception& e) {
    fmt::print(stderr, "bitmex-example-strategy: {}\n", e.what());
    return 2;
  }
}

}  // namespace

// Nothing escapes main: an error that even the handlers inside run() could not report is one line.
int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bitmex-example-strategy: %s\n", e.what());
  } catch (...) {
    std::fputs("bitmex-example-strategy: unknown error\n", stderr);
  }
  return 2;
}
