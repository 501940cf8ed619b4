// bitmex-replay: runs recorded BitMEX sessions through exactly the engine code path that the live
// feed uses, and reports what it did.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <exception>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <fmt/core.h>
#include <CLI/CLI.hpp>

#include "engine/capture.hpp"
#include "engine/feed_engine.hpp"
#include "engine/state_dump.hpp"
#include "shm/json_out.hpp"
#include "shm/segment.hpp"
#include "shm/writer.hpp"

namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) {
  g_stop = 1;
}

using bmx::Event;
using bmx::EventKind;

struct EventLog {
  static constexpr size_t kSamplesPerKind = 5;
  std::map<EventKind, uint64_t> counts;
  std::vector<Event> samples;
  bool verbose = false;
  void operator()(const Event& e) {
    const uint64_t n = ++counts[e.kind];
    if (n <= kSamplesPerKind || verbose) samples.push_back(e);
  }
};

bool noteworthy(EventKind k) {
  switch (k) {
    case EventKind::kSubscribed:
    case EventKind::kUnsubscribed:
    case EventKind::kInfo:
    case EventKind::kAuth:
    case EventKind::kCancelAllAfter:
      return false;
    default:
      return true;
  }
}

void print_books(const bmx::FeedEngine& engine) {
  fmt::print("\n{:<24} {:>6} {:>6} {:>14} {:>16} {:>16} {:>14}  {}\n", "book", "bids", "asks",
             "bid size", "bid", "ask", "ask size", "state");
  for (const auto& t : engine.tables()) {
    if (!t.is_book) continue;
    for (uint32_t s = 0; s < t.books.size(); ++s) {
      const auto& b = t.books[s];
      if (!b || !b->has_partial) continue;
      const bmx::BookLevel* bid = b->book.best(bmx::Side::kBuy);
      const bmx::BookLevel* ask = b->book.best(bmx::Side::kSell);
      std::string name(engine.symbols().name(s));
      if (t.name != "orderBookL2") name += "@" + t.name;
      fmt::print(
          "{:<24} {:>6} {:>6} {:>14} {:>16} {:>16} {:>14}  {}\n", name,
          b->book.depth(bmx::Side::kBuy), b->book.depth(bmx::Side::kSell),
          bid ? fmt::format("{}", bid->size) : "-", bid ? fmt::format("{}", bid->price) : "-",
          ask ? fmt::format("{}", ask->price) : "-", ask ? fmt::format("{}", ask->size) : "-",
          b->stale ? "STALE" : (b->book.crossed() ? "crossed" : "ok"));
    }
  }
}

int run(int argc, char** argv) {
  CLI::App app{
      "bitmex-replay: run recorded BitMEX websocket sessions through the feed engine.\n\n"
      "Each CAPTURE is read whole and replayed frame by frame, through the same classify, parse\n"
      "and apply path that the live feed uses. Line formats, detected per line: a bare JSON "
      "frame;\n"
      "cryptofeed's '<unix seconds>: <frame>' (its sent-frame, connect and configuration lines "
      "are\n"
      "skipped); and bitmex-feed's '<receive ns>\\t<frame>'. Several captures are replayed in "
      "order\n"
      "into one engine state.\n\n"
      "Prints frames by kind, rows by table and action, dropped and stale counts, problems found,\n"
      "elapsed time, ns per frame and MB/s, then a summary line per book."};
  std::vector<std::string> captures;
  std::string dump_path;
  bool quiet = false;
  bool verbose = false;
  bmx::EngineConfig config;
  app.add_option("CAPTURE", captures, "Recorded session(s) to replay")->required();
  app.add_option("--dump-state", dump_path,
                 "Write the final books and tables as JSON to FILE ('-' for stdout):\n"
                 "{\"books\":{SYMBOL:{\"bids\":[[price,size],...],\"asks\":[...]}},\n"
                 " \"tables\":{TABLE:{KEY:ROW}}}");
  app.add_option("--max-frame", config.max_frame_bytes,
                 "Largest frame accepted, in bytes; larger ones are counted as oversized")
      ->capture_default_str();
  app.add_option("--max-symbols", config.max_symbols, "Capacity of the symbol directory")
      ->capture_default_str();
  std::string shm_name, shm_mode = "0600";
  bmx::shm::SegmentConfig seg_config;
  double rate = 0;
  bool hold = false;
  app.add_option("--shm", shm_name,
                 "Publish into the shared-memory segment NAME (e.g. /bitmex-replay) as the live "
                 "feed does: books, tables, trades, quotes and the delta ring");
  app.add_option("--shm-mode", shm_mode, "Permissions of the segment (octal)")
      ->capture_default_str();
  app.add_option("--ring-slots", seg_config.ring_slots,
                 "Delta ring size in 64-byte records (power of two)")
      ->capture_default_str();
  app.add_option("--book-levels", seg_config.book_levels,
                 "Levels per side each segment book is sized for (room for twice as many, both "
                 "sides together)")
      ->capture_default_str();
  app.add_option("--max-books", seg_config.max_books, "Books the segment holds")
      ->capture_default_str();
  app.add_option("--row-slots", seg_config.row_slots,
                 "Rows of keyed tables the segment holds (power of two)")
      ->capture_default_str();
  app.add_option("--row-bytes", seg_config.row_bytes, "Largest row's JSON text, in bytes")
      ->capture_default_str();
  app.add_option("--rate", rate, "Frames per second (0: as fast as possible)")
      ->capture_default_str();
  app.add_flag("--hold", hold,
               "With --shm: after the last frame keep the segment (and its heartbeat) alive until "
               "SIGINT/SIGTERM, so that readers can finish; without it the segment is removed at "
               "exit");
  app.add_flag("-q,--quiet", quiet, "Print only problems and the dump");
  app.add_flag("-v,--verbose", verbose,
               "Print every problem found, not the first few of each kind");
  CLI11_PARSE(app, argc, argv);

  try {
    std::vector<bmx::Capture> loaded;
    loaded.reserve(captures.size());
    for (const auto& path : captures)
      loaded.push_back(bmx::Capture::load(path));

    bmx::FeedEngine engine(config);
    std::optional<bmx::shm::Segment> segment;
    std::optional<bmx::shm::Writer> writer;
    if (!shm_name.empty()) {
      seg_config.max_symbols = std::max(seg_config.max_symbols, config.max_symbols);
      seg_config.max_tables = std::max(seg_config.max_tables, config.max_tables);
      segment.emplace(bmx::shm::Segment::create(
          shm_name, seg_config, static_cast<unsigned>(std::stoul(shm_mode, nullptr, 8))));
      writer.emplace(*segment);
      engine.publish_to(&*writer);  // names the directory, then sets the segment ready
      writer->set_link(bmx::shm::LinkState::kReplaying);
    } else if (hold) {
      fmt::print(stderr, "bitmex-replay: --hold needs --shm\n");
      return 2;
    }
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    EventLog log;
    log.verbose = verbose;
    log.samples.reserve(1024);
    uint64_t frames = 0;
    uint64_t bytes = 0;
    const auto t0 = std::chrono::steady_clock::now();
    const auto period =
        rate > 0 ? std::chrono::duration<double>(1.0 / rate) : std::chrono::duration<double>(0);
    uint64_t sent = 0;
    for (const auto& cap : loaded) {
      for (const auto& f : cap.frames()) {
        if (g_stop) break;
        if (rate > 0) {
          std::this_thread::sleep_until(
              t0 + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                       period * static_cast<double>(sent)));
        }
        // Replayed frames are stamped with the time they are published (the recorded receive
        // time is history), so latencies measured downstream mean something.
        engine.on_frame(f.data, f.len, cap.capacity(f),
                        writer ? bmx::shm::realtime_ns() : f.recv_ns);
        engine.drain_events(log);
        if ((++sent & 255) == 0 && writer) writer->heartbeat(bmx::shm::monotonic_ns());
      }
      frames += cap.frames().size();
      bytes += cap.bytes();
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const bmx::Stats& st = engine.stats();

    for (size_t i = 0; i < loaded.size(); ++i) {
      if (loaded[i].unrecognized_lines()) {
        fmt::print(stderr, "{}: {} unrecognised line(s) skipped, e.g.:\n", captures[i],
                   loaded[i].unrecognized_lines());
        for (const auto& [line, text] : loaded[i].unrecognized_samples()) {
          fmt::print(stderr, "  line {}: {}\n", line, text);
        }
      }
    }
    for (const Event& e : log.samples) {
      if (!noteworthy(e.kind)) continue;
      const std::string table = e.table == Event::kNoTable ? "" : engine.tables()[e.table].name;
      const std::string symbol =
          e.symbol == bmx::kNoSymbol ? "" : std::string(engine.symbols().name(e.symbol));
      fmt::print(stderr, "frame {}: {}{}{}{}{}{}\n", e.frame, bmx::to_string(e.kind),
                 table.empty() ? "" : " table=" + table, symbol.empty() ? "" : " symbol=" + symbol,
                 e.value ? fmt::format(" value={}", e.value) : "", e.text_len ? " : " : "",
                 e.excerpt());
    }
    for (const auto& [kind, n] : log.counts) {
      if (noteworthy(kind) && n > EventLog::kSamplesPerKind && !verbose) {
        fmt::print(stderr, "({} more '{}' not shown; -v shows all)\n",
                   n - EventLog::kSamplesPerKind, bmx::to_string(kind));
      }
    }

    if (!quiet) {
      fmt::print("replayed {} capture(s): {} frames, {:.1f} MB", loaded.size(), frames,
                 static_cast<double>(bytes) / 1e6);
      uint64_t skipped = 0;
      for (const auto& c : loaded)
        skipped += c.skipped_lines();
      fmt::print(" ({} non-frame lines skipped)\n", skipped);
      fmt::print("frames:");
      for (int k = 0; k < bmx::kFrameKindCount; ++k) {
        if (st.frames[k]) {
          fmt::print(" {}={}", bmx::to_string(static_cast<bmx::FrameKind>(k)), st.frames[k]);
        }
      }
      fmt::print("\nrows:\n");
      for (const auto& t : engine.tables()) {
        fmt::print("  {:<16}", t.name);
        for (int a = 0; a < bmx::kActionCount; ++a) {
          fmt::print(" {}={}", bmx::to_string(static_cast<bmx::Action>(a)), t.rows[a]);
        }
        fmt::print("\n");
      }
      fmt::print(
          "dropped before partial={} dropped while stale={} bad rows={} unknown levels={} "
          "unknown rows={}\n"
          "duplicate inserts={} crossed books={} books marked stale={} tables marked stale={} "
          "book growths={} capacity exceeded={}\n",
          st.rows_dropped_before_partial, st.rows_dropped_stale, st.bad_rows, st.unknown_levels,
          st.unknown_rows, st.duplicate_inserts, st.crossed_books, st.books_marked_stale,
          st.tables_marked_stale, st.book_growths, st.capacity_exceeded);
      fmt::print(
          "elapsed {:.3f} ms, {:.0f} ns/frame, {:.0f} MB/s (single pass, includes event "
          "handling; bench/ has the careful numbers)\n",
          secs * 1e3, frames ? secs * 1e9 / static_cast<double>(frames) : 0.0,
          static_cast<double>(bytes) / 1e6 / secs);
      print_books(engine);
    }

    if (writer) {
      writer->set_link(bmx::shm::LinkState::kFinished);
      while (hold && !g_stop) {  // readers finish at their own pace; the heartbeat says we live
        writer->heartbeat(bmx::shm::monotonic_ns());
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
    if (!dump_path.empty()) {
      const std::string json = bmx::dump_state(engine);
      if (dump_path == "-") {
        std::fwrite(json.data(), 1, json.size(), stdout);
      } else {
        bmx::json_out::create_private_file(dump_path);
        std::ofstream out(dump_path, std::ios::binary);
        if (!out || !out.write(json.data(), static_cast<std::streamsize>(json.size()))) {
          fmt::print(stderr, "bitmex-replay: cannot write {}\n", dump_path);
          return 1;
        }
      }
    }
    if (writer) {
      writer->set_link(bmx::shm::LinkState::kStopped);
      bmx::shm::Segment::remove(shm_name);
    }
    return 0;
  } catch (const std::exception& e) {
    fmt::print(stderr, "bitmex-replay: {}\n", e.what());
    return 1;
  }
}

}  // namespace

// Nothing escapes main: an error that even the handlers inside run() could not report is one line.
int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bitmex-replay: %s\n", e.what());
  } catch (...) {
    std::fputs("bitmex-replay: unknown error\n", stderr);
  }
  return 1;
}
