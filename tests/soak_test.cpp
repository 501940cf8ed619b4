// Soak test: bitmex-feed at full replay speed (`bitmex-sim --loop`, the recording again and again
// on one connection) for a bounded time, with reader processes attaching, lagging (lapped, then
// resyncing), being killed with SIGKILL and coming back. Checked:
//   - no reader ever sees a torn record: every record a reader is handed passes an invariant
//     check (contiguous sequence numbers, a known kind, table and symbol ids the directory names,
//     sides and actions in range, finite positive prices and non-negative sizes on book records,
//     a row's text the size it says and JSON-shaped);
//   - the feed's memory is flat: VmRSS after warm-up (the ring written over at least twice) and at
//     the end differ by less than a small slack;
//   - no book is left stale at the end, and the feed exits cleanly.
//
// BMX_SOAK_SECONDS sets the duration (default 30; e.g. BMX_SOAK_SECONDS=600 for ten minutes).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "consumers/local_book.hpp"
#include "reference_model.hpp"
#include "shm/reader.hpp"
#include "support/process.hpp"

namespace fs = std::filesystem;
using bmxtest::Child;
using namespace std::chrono_literals;

namespace {

const std::string kCapture = bmxtest::data_path("bitmex/cryptofeed-2021-07-22.txt");
const std::string kTopics =
    "orderBookL2:XRPU21,orderBookL2:UNIUSDT,orderBookL2:XBTUSD,orderBookL2:ADAUSDT,"
    "orderBookL2:SOLUSDT,orderBookL2:TRXU21,orderBookL2:EOSUSDT,orderBookL2:TRXUSDT,"
    "orderBookL2:BCHUSD,orderBookL2:MATICUSDT,quote:XRPU21,quote:UNIUSDT,quote:XBTUSD,"
    "quote:ADAUSDT,quote:SOLUSDT,quote:TRXU21,quote:EOSUSDT,quote:TRXUSDT,quote:BCHUSD,"
    "quote:MATICUSDT,trade:XRPU21,trade:UNIUSDT,trade:XBTUSD,trade:ADAUSDT,trade:SOLUSDT,"
    "trade:TRXU21,trade:EOSUSDT,trade:TRXUSDT,trade:BCHUSD,trade:MATICUSDT";

uint64_t env_or(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 10) : fallback;
}

std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// VmRSS of `pid` in KiB, or -1.
long rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  while (in >> key) {
    if (key == "VmRSS:") {
      long kib = -1;
      in >> kib;
      return kib;
    }
    in.ignore(1 << 12, '\n');
  }
  return -1;
}

// What is wrong with record `d` (empty: nothing). `expected`: the sequence it must carry.
std::string torn(const bmx::shm::Reader& r, const bmx::shm::Delta& d, uint64_t expected) {
  using bmx::shm::RecordKind;
  if (d.seq != expected)
    return "sequence " + std::to_string(d.seq) + " where " + std::to_string(expected) + " was next";
  const auto kind = d.kind();
  if (d.body.kind > static_cast<uint8_t>(RecordKind::kLink)) return "unknown kind";
  if (kind == RecordKind::kLink) {
    return d.body.size >= 0 && d.body.size <= 6 ? "" : "link state out of range";
  }
  if (d.body.table >= r.table_count()) return "table id beyond the directory";
  if (d.body.symbol != bmx::kNoSymbol && d.body.symbol >= r.symbol_count())
    return "symbol id beyond the directory";
  const bool book = kind == RecordKind::kBookClear || kind == RecordKind::kBookInsert ||
                    kind == RecordKind::kBookUpdate || kind == RecordKind::kBookDelete;
  if (book && kind != RecordKind::kBookClear) {
    if (d.body.symbol == bmx::kNoSymbol) return "a level without a symbol";
    if (!std::isfinite(d.body.price) || d.body.price <= 0) return "price not finite and positive";
    if (d.body.size < 0) return "negative size";
    if (d.body.flags &
        ~(bmx::shm::kFlagLastInFrame | bmx::shm::kFlagSell | bmx::shm::kFlagHasPrice))
      return "unknown flags on a level";
  }
  if (kind == RecordKind::kRow) {
    if (d.text.size() != static_cast<size_t>(d.body.size)) return "row text of the wrong size";
    if (d.text.empty() || d.text.front() != '{' || d.text.back() != '}')
      return "row text is not a JSON object";
  }
  return {};
}

// A reader process: follows the ring from the head, checks every record, keeps LocalBooks, and
// resyncs when lapped. `lag_every` > 0: sleeps 20 ms after that many records (so it gets lapped).
// Writes "records N lapped L" to `report` on SIGTERM; exits 1 with the torn record on stderr.
volatile sig_atomic_t g_stop = 0;
[[noreturn]] void reader_main(const std::string& shm, uint64_t lag_every, const fs::path& report) {
  ::signal(SIGTERM, [](int) { g_stop = 1; });
  try {
    bmx::shm::Reader r = bmx::shm::Reader::attach(shm, 5000ms);
    bmx::consumer::LocalBooks books;
    books.resync(r);
    uint64_t expected = r.cursor(), records = 0, lapped = 0, since_lag = 0;
    while (!g_stop) {
      std::string bad;
      const auto p = r.poll(
          [&](const bmx::shm::Delta& d) {
            if (bad.empty()) bad = torn(r, d, expected);
            expected =
                d.seq + 1 +
                (d.kind() == bmx::shm::RecordKind::kRow
                     ? (d.text.size() + bmx::shm::kTextSlotBytes - 1) / bmx::shm::kTextSlotBytes
                     : 0);
            books.apply(d);
            ++records;
          },
          lag_every > 0 ? static_cast<uint32_t>(lag_every) : 4096);
      if (!bad.empty()) {
        std::fprintf(stderr, "torn record: %s\n", bad.c_str());
        _exit(1);
      }
      if (p.lapped || p.restarted) {
        ++lapped;
        if (p.restarted) r = bmx::shm::Reader::attach(shm, 5000ms);
        books.resync(r);
        expected = r.cursor();
        continue;
      }
      since_lag += p.records;
      if (lag_every > 0 && since_lag >= lag_every) {
        since_lag = 0;
        std::this_thread::sleep_for(20ms);  // a deliberately slow consumer
      }
      if (p.records == 0) bmx::shm::idle_pause();
    }
    std::ofstream(report) << "records " << records << " lapped " << lapped << "\n";
    _exit(0);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "reader: %s\n", e.what());
    _exit(2);
  }
}

struct ReaderProc {
  pid_t pid = -1;
  fs::path report;
};

TEST(Soak, FullSpeedWithReadersComingAndGoingMemoryFlatNothingTorn) {
  const uint64_t seconds = env_or("BMX_SOAK_SECONDS", 30);
  const fs::path dir = fs::temp_directory_path() / ("bmx-soak-test-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string shm = "/bmx-soak-test-" + std::to_string(::getpid());
  const uint32_t ring_slots = 1u << 18;

  Child sim({BMX_SIM_BIN, kCapture, "--loop"}, (dir / "sim.err").string());
  ASSERT_TRUE(sim.wait_for_output("/realtime\n", 30s)) << read(dir / "sim.err");
  const std::string out = sim.output();
  const size_t at = out.find("ws://");
  const std::string url = out.substr(at, out.find('\n', at) - at);
  Child feed({BMX_FEED_BIN, "--url", url, "--subscribe", kTopics, "--shm", shm, "--ring-slots",
              std::to_string(ring_slots), "--ping-after-ms", "2000"},
             (dir / "feed.err").string());

  std::optional<bmx::shm::Reader> attached;
  for (const auto deadline = std::chrono::steady_clock::now() + 30s; !attached;) {
    try {
      attached.emplace(bmx::shm::Reader::attach(shm, 100ms));
    } catch (const std::exception& e) {
      ASSERT_TRUE(!feed.wait(0ms) && std::chrono::steady_clock::now() < deadline) << e.what();
    }
  }
  bmx::shm::Reader& r = *attached;

  // Warm-up: the ring written over twice and the recording served whole twice.
  const auto warm_deadline = std::chrono::steady_clock::now() + 120s;
  while (r.head() < 2ull * ring_slots || sim.output().find("lap 2 ") == std::string::npos) {
    ASSERT_LT(std::chrono::steady_clock::now(), warm_deadline) << read(dir / "feed.err");
    ASSERT_FALSE(feed.wait(0ms)) << read(dir / "feed.err");
    const uint64_t head = r.head();
    while (r.head() == head && std::chrono::steady_clock::now() < warm_deadline)
      std::this_thread::yield();  // waiting for the feed to publish more
  }
  const long rss_warm = rss_kib(feed.pid());
  long rss_peak = rss_warm;
  const uint64_t head_warm = r.head();

  // Readers: two fast ones, one of them killed and replaced every second, and a lagging one.
  std::vector<ReaderProc> readers;
  uint64_t started = 0, killed = 0;
  const auto spawn = [&](uint64_t lag_every) {
    ReaderProc p;
    p.report = dir / ("reader-" + std::to_string(started++) + ".txt");
    p.pid = ::fork();
    if (p.pid == 0) reader_main(shm, lag_every, p.report);
    return p;
  };
  const auto lag_of = [](size_t i) -> uint64_t { return i == 2 ? 100 : 0; };  // #2 lags
  for (size_t i = 0; i < 3; ++i)
    readers.push_back(spawn(lag_of(i)));
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  auto next_kill = std::chrono::steady_clock::now() + 1s;
  size_t victim = 0;
  int failed_readers = 0;
  while (std::chrono::steady_clock::now() < end) {
    ASSERT_FALSE(feed.wait(0ms)) << read(dir / "feed.err");
    // A reader that exited on its own found a torn record (or could not attach).
    for (auto& p : readers) {
      int status = 0;
      if (::waitpid(p.pid, &status, WNOHANG) == p.pid) {
        ADD_FAILURE() << "reader " << p.report << " exited with " << WEXITSTATUS(status);
        ++failed_readers;
      }
    }
    ASSERT_EQ(failed_readers, 0);
    if (std::chrono::steady_clock::now() >= next_kill) {
      next_kill += 1s;
      const size_t i = victim++ % 2;  // the fast ones; the lagging one lives to be lapped
      ::kill(readers[i].pid, SIGKILL);
      ::waitpid(readers[i].pid, nullptr, 0);
      ++killed;
      readers[i] = spawn(lag_of(i));
    }
    rss_peak = std::max(rss_peak, rss_kib(feed.pid()));
    // Drain the simulator's stdout (a line per lap): a full pipe would block its only thread.
    sim.output();
    std::this_thread::sleep_for(50ms);  // a sampling period, not a synchronisation
  }
  const long rss_end = rss_kib(feed.pid());
  const uint64_t records = r.head() - head_warm;

  // Every reader still running stops cleanly and reports what it checked.
  uint64_t checked = 0, lapped = 0;
  for (auto& p : readers) {
    ::kill(p.pid, SIGTERM);
    int status = 0;
    ::waitpid(p.pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << p.report;
    std::istringstream rep(read(p.report));
    std::string w1, w2;
    uint64_t n = 0, l = 0;
    rep >> w1 >> n >> w2 >> l;
    checked += n;
    lapped += l;
  }

  // No book left stale: every book of the segment is whole at the end.
  for (const auto& [table, symbol] : r.books()) {
    bmx::shm::Top t;
    ASSERT_TRUE(r.top(table, symbol, t));
    EXPECT_FALSE(t.stale) << r.symbol_name(symbol);
  }
  EXPECT_EQ(r.link_state(), bmx::shm::LinkState::kLive);
  feed.signal(SIGTERM);
  EXPECT_EQ(feed.wait(30s), 0) << read(dir / "feed.err");
  sim.signal(SIGTERM);
  sim.wait(10s);

  // Memory flat after warm-up: at most 2 MiB or 2 % more.
  EXPECT_LE(rss_end, rss_warm + std::max(2048L, rss_warm / 50))
      << "VmRSS grew from " << rss_warm << " KiB after warm-up to " << rss_end << " KiB";
  EXPECT_GT(lapped, 0u) << "the lagging reader was never lapped: the test did not test resync";
  std::printf(
      "soak %lus: %lu records published after warm-up, %lu readers started, %lu killed with "
      "SIGKILL, %lu records checked by the survivors, %lu laps/resyncs; feed VmRSS %ld KiB after "
      "warm-up, %ld KiB at the end, %ld KiB peak\n",
      static_cast<unsigned long>(seconds), static_cast<unsigned long>(records),
      static_cast<unsigned long>(started), static_cast<unsigned long>(killed),
      static_cast<unsigned long>(checked), static_cast<unsigned long>(lapped), rss_warm, rss_end,
      rss_peak);
  if (!HasFailure()) fs::remove_all(dir);
}

}  // namespace
