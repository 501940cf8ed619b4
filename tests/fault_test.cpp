// Fault tests: bitmex-feed against `bitmex-sim --chaos`, both the real binaries over real loopback
// TCP, with hundreds of faults of every kind the simulator has (close, reset, silence, malformed
// frame, oversized frame, unknown level, 429/503 refusal storms) at random points of a session that
// goes on across connections.
//
// What is checked, and against what:
//   - after each recovery every book equals the reference: a reader in this process follows the
//     feed's ring (LocalBooks) and captures each book at the end of each frame that held its
//     partial; the simulator printed, for every partial it wrote, the recording position whose
//     state it reflects; the reference state at those positions comes from tests/reference_model
//     (one walk of the recording), never from the engine. Captured partials must match the sent
//     ones in order (a partial lost with its link is skipped), and the last one of every book,
//     on the clean connection that ends the session, must be matched. The test stops once the
//     state equals the recording's end and every partial written on the feed's current
//     connection has been applied (a repair's answer may still be in flight when the state has
//     already converged);
//   - at the end every book and table equals bitmex-replay's dump of the recording;
//   - the stats account for every event the simulator reports: connections, reconnects, dead
//     links, oversized frames, malformed frames, unknown levels and their repairs, refusals.
//
// Knobs (environment): BMX_CHAOS_FAULTS (how many faults; 300, 150 under asan, 60 under tsan),
// BMX_CHAOS_SEED (the schedule; default 1), BMX_CHAOS_TIMEOUT_S (how long the session may take).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <simdjson.h>

#include "consumers/local_book.hpp"
#include "reference_model.hpp"
#include "shm/reader.hpp"
#include "support/process.hpp"

namespace fs = std::filesystem;
using bmxtest::Child;
using namespace std::chrono_literals;

namespace {

// Faults by default: 300 took 18-25 s in release on the 2-core VM, 150 took 27 s under asan.
#if defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
constexpr uint64_t kDefaultFaults = 60;
#elif defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
constexpr uint64_t kDefaultFaults = 150;
#else
constexpr bool kSanitized = false;
constexpr uint64_t kDefaultFaults = 300;
#endif

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

// The number just before `words` in `text` ("7 reconnects" -> 7), or -1.
long number_before(const std::string& text, const std::string& words) {
  const size_t at = text.find(words);
  if (at == std::string::npos || at == 0) return -1;
  size_t from = at;
  while (from > 0 && std::isdigit(static_cast<unsigned char>(text[from - 1])))
    --from;
  return from == at ? -1 : std::stol(text.substr(from, at - from));
}

size_t occurrences(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1))
    ++n;
  return n;
}

std::string sim_url(const std::string& out) {
  const size_t at = out.find("listening on ");
  if (at == std::string::npos) return {};
  const size_t from = at + 13, end = out.find_first_of(" \r\n", from);
  return out.substr(from, end - from);
}

// A book as (price bits, size) per level, bids best first then asks best first: equal digests
// mean equal ladders (64-bit FNV-1a; a collision would need to be engineered).
struct Digest {
  uint64_t hash = 1469598103934665603ull;
  size_t bids = 0, asks = 0;
  double best_bid = 0, best_ask = 0;
  void mix(uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      hash ^= (v >> (8 * i)) & 0xFF;
      hash *= 1099511628211ull;
    }
  }
  void level(double price, int64_t size) {
    uint64_t bits;
    std::memcpy(&bits, &price, 8);
    mix(bits);
    mix(static_cast<uint64_t>(size));
  }
  bool operator==(const Digest& o) const {
    return hash == o.hash && bids == o.bids && asks == o.asks;
  }
  [[nodiscard]] std::string str() const {
    std::ostringstream s;
    s.precision(10);
    s << bids << " bids (best " << best_bid << "), " << asks << " asks (best " << best_ask << ")";
    return s.str();
  }
};

Digest digest_of(const bmxtest::RefBook& b) {
  Digest d;
  const auto bids = b.bids(), asks = b.asks();
  for (const auto& [p, s] : bids)
    d.level(p, s);
  d.mix(~0ull);
  for (const auto& [p, s] : asks)
    d.level(p, s);
  d.bids = bids.size();
  d.asks = asks.size();
  if (!bids.empty()) d.best_bid = bids.front().first;
  if (!asks.empty()) d.best_ask = asks.front().first;
  return d;
}

Digest digest_of(const bmx::consumer::LocalBook& b) {
  Digest d;
  for (const auto& [p, l] : b.bids)
    d.level(l.price, l.size);
  d.mix(~0ull);
  for (const auto& [p, l] : b.asks)
    d.level(l.price, l.size);
  d.bids = b.bids.size();
  d.asks = b.asks.size();
  if (!b.bids.empty()) d.best_bid = b.bids.begin()->second.price;
  if (!b.asks.empty()) d.best_ask = b.asks.begin()->second.price;
  return d;
}

// What the simulator printed.
struct SimReport {
  struct Partial {
    uint64_t position = 0, connection = 0;
  };
  std::map<std::string, std::vector<Partial>> partials;  // "orderBookL2:XBTUSD" -> in send order
  std::map<std::string, uint64_t> faults;                // kind -> count, from the fault lines
  std::map<std::string, uint64_t> summary;               // the summary's key/value pairs
  size_t fault_lines = 0;
};

SimReport parse_sim(const std::string& out) {
  SimReport r;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string first;
    words >> first;
    if (first == "partial") {
      std::string topic, w1, w2;
      SimReport::Partial p;
      words >> topic >> w1 >> p.position >> w2 >> p.connection;
      r.partials[topic].push_back(p);
    } else if (first == "fault") {
      uint64_t n = 0;
      std::string kind;
      words >> n >> kind;
      ++r.faults[kind];
      ++r.fault_lines;
    } else if (first == "chaos") {
      std::string summary, key;
      words >> summary;
      uint64_t value = 0;
      while (words >> key >> value)
        r.summary[key] = value;
    }
  }
  return r;
}

// The reference books at every (symbol, position) the simulator named, from one walk of the
// recording served `copies` times in a row. Position P: the state after the first P table frames.
std::map<std::pair<std::string, uint64_t>, Digest> reference_books(
    const SimReport& sim, size_t copies, std::vector<std::string>& problems) {
  std::map<uint64_t, std::set<std::string>> wanted;  // position -> symbols
  for (const auto& [topic, list] : sim.partials) {
    if (topic.rfind("orderBookL2:", 0) != 0) continue;
    for (const auto& p : list)
      wanted[p.position].insert(topic.substr(12));
  }
  std::map<std::pair<std::string, uint64_t>, Digest> out;
  const std::string text = bmxtest::read_file(kCapture);
  const std::vector<std::string_view> frames = bmxtest::split_capture(text);
  bmxtest::ReferenceModel model;
  simdjson::dom::parser parser;
  uint64_t position = 0;
  auto it = wanted.begin();
  const auto take = [&] {
    for (; it != wanted.end() && it->first == position; ++it)
      for (const std::string& symbol : it->second)
        out[{symbol, position}] = digest_of(model.books[symbol]);
  };
  for (size_t c = 0; c < copies; ++c) {
    for (const std::string_view f : frames) {
      // A table frame, as the simulator counts them: a JSON object with "table" and "action".
      simdjson::dom::element doc;
      simdjson::dom::object obj;
      std::string_view s;
      const bool table = !parser.parse(f.data(), f.size()).get(doc) && !doc.get_object().get(obj) &&
                         !obj["table"].get_string().get(s) && !obj["action"].get_string().get(s);
      if (table) take();
      model.apply(f);
      if (table) ++position;
    }
  }
  take();
  if (it != wanted.end()) problems.push_back("a partial names a position past the recording");
  problems.insert(problems.end(), model.problems.begin(), model.problems.end());
  return out;
}

class Faults : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() / ("bmx-fault-test-" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  void TearDown() override {
    if (!HasFailure()) fs::remove_all(dir);
  }
  std::string shm_name = "/bmx-fault-test-" + std::to_string(::getpid());
  fs::path dir;
};

TEST_F(Faults, HundredsOfFaultsEveryRecoveryVerifiedAndEveryEventCounted) {
  const auto started = std::chrono::steady_clock::now();
  const uint64_t faults = env_or("BMX_CHAOS_FAULTS", kDefaultFaults);
  const uint64_t seed = env_or("BMX_CHAOS_SEED", 1);
  const uint64_t slow = kSanitized ? 3 : 1;  // timeouts under sanitizers
  // Enough recording for the faults: a fault comes after 1..100 table frames, and a reconnection
  // spends 30 of them on partials; one copy has about 1,400 table frames.
  const size_t copies = std::max<size_t>(2, static_cast<size_t>(faults / 40 + 1));

  // bitmex-replay's state after the whole session (the copies in a row): the expected end state.
  std::vector<std::string> replay{BMX_REPLAY_BIN, "-q", "--dump-state",
                                  (dir / "reference.json").string()};
  std::vector<std::string> sim_argv{
      BMX_SIM_BIN,       "--chaos", std::to_string(seed), "--chaos-faults", std::to_string(faults),
      "--chaos-max-gap", "100",     "--oversized-bytes",  "2200000"};
  for (size_t c = 0; c < copies; ++c) {
    replay.push_back(kCapture);
    sim_argv.push_back(kCapture);
  }
  {
    Child r(replay);
    ASSERT_EQ(r.wait(120s), 0);
  }
  const std::string expected = read(dir / "reference.json");

  Child sim(sim_argv, (dir / "sim.err").string());
  // What the simulator printed and what the reader saw last, kept with the logs when a check fails.
  std::string seen_state;
  struct Keep {
    Child& sim;
    fs::path dir;
    std::string& seen;
    ~Keep() {
      std::ofstream(dir / "sim.out") << sim.output();
      std::ofstream(dir / "seen.json") << seen;
    }
  } keep{sim, dir, seen_state};
  ASSERT_TRUE(sim.wait_for_output("listening on ", 30s)) << read(dir / "sim.err");
  const std::string url = sim_url(sim.output());
  Child feed({BMX_FEED_BIN,
              "--url",
              url,
              "--subscribe",
              kTopics,
              "--shm",
              shm_name,
              "--ring-slots",
              std::to_string(1u << 21),
              "--backoff-min-ms",
              "1",
              "--backoff-max-ms",
              "5",
              "--ping-after-ms",
              std::to_string(100 * slow),
              "--dead-after-ms",
              std::to_string(200 * slow),
              "--repair-every-ms",
              "0",
              "--max-frame",
              "2000000",
              "--dump-state",
              (dir / "feed.json").string()},
             (dir / "feed.err").string());

  // The feed's segment, once it exists.
  std::optional<bmx::shm::Reader> attached;
  for (const auto deadline = std::chrono::steady_clock::now() + 30s; !attached;) {
    try {
      attached.emplace(bmx::shm::Reader::attach(shm_name, 100ms));
    } catch (const std::exception& e) {
      ASSERT_TRUE(!feed.wait(0ms) && std::chrono::steady_clock::now() < deadline)
          << e.what() << "\n"
          << read(dir / "feed.err");
    }
  }
  bmx::shm::Reader& r = *attached;
  bmx::consumer::LocalBooks books;
  ASSERT_TRUE(books.resync(r));

  // Follow the ring; at the end of a frame, capture every book that frame cleared (a partial).
  std::map<std::string, std::vector<Digest>> captured;  // topic -> in apply order
  std::map<std::string, size_t> captured_this_session;  // topic -> since the feed's last kLive
  std::set<std::pair<uint16_t, uint32_t>> cleared;
  const auto topic_of = [&](uint16_t table, uint32_t symbol) {
    return std::string(r.table_name(table)) + ":" + std::string(r.symbol_name(symbol));
  };
  bool served = false;
  std::string sim_out;       // the simulator's report when the state converged: what is checked
  uint64_t compared_at = 0;  // the cursor at the last comparison with the expected end state
  auto last_drain = std::chrono::steady_clock::now();
  const auto deadline = started + std::chrono::seconds(env_or("BMX_CHAOS_TIMEOUT_S", 240 * slow));
  for (;;) {
    const bmx::shm::PollResult p = r.poll([&](const bmx::shm::Delta& d) {
      // A record the reader's snapshot already holds (at or below its book's stamp) is skipped
      // by LocalBooks: a partial among those is no partial this reader applied, and capturing
      // it would capture the snapshot's later state instead.
      const bmx::consumer::LocalBook* before = books.find(d.body.table, d.body.symbol);
      const bool fresh = before == nullptr || d.seq > before->stamp;
      books.apply(d);
      if (d.kind() == bmx::shm::RecordKind::kBookClear && fresh)
        cleared.insert({d.body.table, d.body.symbol});
      if (d.kind() == bmx::shm::RecordKind::kLink &&
          d.body.size == static_cast<int64_t>(bmx::shm::LinkState::kLive))
        captured_this_session.clear();
      if (d.last_in_frame()) {
        for (const auto& [table, symbol] : cleared) {
          const std::string topic = topic_of(table, symbol);
          captured[topic].push_back(digest_of(*books.find(table, symbol)));
          ++captured_this_session[topic];
        }
        cleared.clear();
      }
    });
    ASSERT_FALSE(p.lapped) << "the test's reader was lapped (" << p.lost
                           << " records lost): give the feed a larger --ring-slots";
    ASSERT_FALSE(p.restarted) << "the feed re-initialised its segment";
    if (p.records > 0) continue;
    // Caught up with the ring. Once the simulator has served the whole session, the state must
    // converge to the recording's final state: compared each time new records were applied (the
    // cursor, not the published head, says so: a poll may stop inside a frame).
    const auto now = std::chrono::steady_clock::now();
    if (now - last_drain > 10ms) {
      last_drain = now;
      served = served || sim.output().find("served ") != std::string::npos;
      ASSERT_FALSE(feed.wait(0ms)) << "the feed exited\n" << read(dir / "feed.err");
      if (now > deadline) {
        if (served) {
          bmx::shm::Reader fresh_reader = bmx::shm::Reader::attach(shm_name);
          bmx::consumer::LocalBooks fresh;  // the segment's own books, for the failure's story
          fresh.resync(fresh_reader);
          std::ofstream(dir / "segment.json") << bmx::consumer::dump_state(fresh_reader, fresh);
        }
        FAIL() << (served ? "the reader's state never reached the recording's final state"
                          : "the session did not end in time")
               << " (" << dir << ": seen.json, segment.json, reference.json, sim.out, feed.err)";
      }
    }
    if (served && cleared.empty() && r.cursor() != compared_at) {
      compared_at = r.cursor();
      seen_state = bmx::consumer::dump_state(r, books);
      // Equal levels are not enough: a book marked stale keeps them until its repair's partial,
      // which must be seen (and matched) too.
      const bool whole = std::none_of(books.all().begin(), books.all().end(),
                                      [](const auto& b) { return b.second.stale; });
      // Every book partial the simulator has written on its latest connection (the feed's
      // current session: an older one would have left the books stale) has been applied. A
      // repair may be in flight although the state already converged: a partial recorded in the
      // session can repair a stale book before the answer to its resubscription arrives.
      const auto settled = [&] {
        sim_out = sim.output();
        const SimReport now_sent = parse_sim(sim_out);
        uint64_t last = 0;
        for (const auto& [topic, sent] : now_sent.partials)
          for (const auto& one : sent)
            last = std::max(last, one.connection);
        for (const auto& [topic, sent] : now_sent.partials) {
          if (topic.rfind("orderBookL2:", 0) != 0) continue;
          const auto on_last = static_cast<size_t>(std::count_if(
              sent.begin(), sent.end(), [&](const auto& one) { return one.connection == last; }));
          if (captured_this_session[topic] < on_last) return false;
        }
        return true;
      };
      if (whole && seen_state == expected && settled()) break;
    }
    std::this_thread::yield();
  }
  feed.signal(SIGTERM);
  ASSERT_EQ(feed.wait(60s), 0) << read(dir / "feed.err");
  sim.signal(SIGTERM);
  sim.wait(10s);
  EXPECT_EQ(read(dir / "feed.json"), expected)
      << "the feed's own dump differs from bitmex-replay's";
  EXPECT_EQ(books.problems(), 0u) << "ring records for levels the reader's copy did not hold";

  // ---- every recovery: captured partials against the reference at the positions sent ----------
  const SimReport rep = parse_sim(sim_out);
  std::vector<std::string> problems;
  const auto reference = reference_books(rep, copies, problems);
  EXPECT_TRUE(problems.empty()) << problems.front();
  size_t verified = 0, sent_books = 0;
  for (const auto& [topic, sent] : rep.partials) {
    if (topic.rfind("orderBookL2:", 0) != 0) continue;
    sent_books += sent.size();
    const std::string symbol = topic.substr(12);
    const std::vector<Digest>& got = captured[topic];
    size_t j = 0;  // the next sent partial a captured one may match
    size_t last_matched = SIZE_MAX;
    for (size_t k = 0; k < got.size(); ++k) {
      const size_t from = j;
      while (j < sent.size() && !(reference.at({symbol, sent[j].position}) == got[k]))
        ++j;
      if (j == sent.size()) {
        const auto& want = reference.at({symbol, sent[std::min(from, sent.size() - 1)].position});
        ADD_FAILURE() << topic << ": applied partial #" << k << " (" << got[k].str()
                      << ") equals no partial the simulator sent after its #" << from
                      << "; that one, at position "
                      << sent[std::min(from, sent.size() - 1)].position << " on connection "
                      << sent[std::min(from, sent.size() - 1)].connection << ", is " << want.str();
        break;
      }
      last_matched = j++;
      ++verified;
    }
    EXPECT_EQ(last_matched, sent.size() - 1)
        << topic << ": the last partial sent (on the clean connection) was not applied as sent";
  }

  // ---- every event accounted for -------------------------------------------------------------
  const std::string err = read(dir / "feed.err");
  const auto count = [&](const char* key) {
    const auto it = rep.summary.find(key);
    return it == rep.summary.end() ? -1L : static_cast<long>(it->second);
  };
  ASSERT_FALSE(rep.summary.empty()) << "no chaos summary from the simulator";
  EXPECT_EQ(count("faults"), static_cast<long>(faults))
      << "the recording ran out before every fault was injected";
  EXPECT_EQ(rep.fault_lines, static_cast<size_t>(count("faults")));
  for (const auto& [kind, n] : rep.faults)
    EXPECT_EQ(count(kind.c_str()), static_cast<long>(n)) << kind;
  const long links_ended = count("close") + count("reset") + count("silent") + count("oversized");
  EXPECT_EQ(number_before(err, " sessions"), count("connections"))
      << err.substr(err.rfind('\n', err.size() - 2));
  EXPECT_EQ(number_before(err, " reconnects"), links_ended);
  EXPECT_EQ(static_cast<long>(r.stats().reconnects.load()), links_ended);
  EXPECT_EQ(number_before(err, " dead links"), count("silent"));
  EXPECT_EQ(number_before(err, " oversized frames"), count("oversized"));
  EXPECT_EQ(number_before(err, " refused handshakes"), count("refused-handshakes"));
  EXPECT_EQ(number_before(err, " malformed frames"), count("malformed"));
  EXPECT_EQ(number_before(err, " unknown levels"), count("unknown-level"));
  // Each unknown level repaired by resubscribing its book (--repair-every-ms 0: every time).
  EXPECT_EQ(static_cast<long>(occurrences(err, "stale (update/delete of unknown level")),
            count("unknown-level"));
  EXPECT_GE(number_before(err, " repairs"), count("unknown-level"));

  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::ostringstream figures;
  figures << "chaos seed " << seed << ": " << count("faults") << " faults (";
  for (const auto& [kind, n] : rep.faults)
    figures << kind << " " << n << ", ";
  figures << count("refused-handshakes") << " refused handshakes) over " << count("connections")
          << " connections and " << copies << " copies of the recording; " << verified << " of "
          << sent_books << " book partials sent verified against the reference; " << secs << " s";
  std::printf("%s\n", figures.str().c_str());
  RecordProperty("figures", figures.str());
}

}  // namespace
