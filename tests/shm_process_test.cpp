// Real processes, real shared memory: bitmex-replay publishing a recorded session into a segment,
// bitmex-example-strategy processes reading it, bitmex-top looking at it. Every reader's final
// books and tables must equal the writer's own --dump-state, and both must equal the independent
// reference model of the recording (tests/reference_model.*), never the engine's own output.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "reference_model.hpp"
#include "shm/reader.hpp"
#include "support/process.hpp"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using bmxtest::Child;

// "r3" and the like. (Built step by step: GCC 12 warns falsely on "literal" + std::string.)
std::string tag(int i) {
  std::string s("r");
  s += std::to_string(i);
  return s;
}

class ShmProcess : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    dir = fs::temp_directory_path() / ("bmx-shm-proc-" + std::to_string(::getpid()) + "-" + test);
    fs::create_directories(dir);
    name = "/bmx-proc-" + std::to_string(::getpid()) + "-" + test;
    capture = bmxtest::data_path("bitmex/cryptofeed-2021-07-22.txt");
  }
  void TearDown() override {
    bmx::shm::Segment::remove(name);
    fs::remove_all(dir);
  }

  std::unique_ptr<Child> replay(std::vector<std::string> extra, const std::string& dump) {
    std::vector<std::string> argv = {BMX_REPLAY_BIN, capture, "--shm", name, "--hold", "-q"};
    if (!dump.empty()) {
      argv.push_back("--dump-state");
      argv.push_back(dump);
    }
    argv.insert(argv.end(), extra.begin(), extra.end());
    return std::make_unique<Child>(argv, (dir / "replay.err").string());
  }
  std::unique_ptr<Child> strategy(std::vector<std::string> extra, const std::string& tag) {
    std::vector<std::string> argv = {BMX_STRATEGY_BIN, "--shm", name};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return std::make_unique<Child>(argv, (dir / (tag + ".err")).string());
  }
  // Follows the segment's ring in this process until `frames` whole frames went by: the
  // replay has then published at least that much (an event, not a guess of time).
  void wait_for_frames(uint64_t frames) {
    bmx::shm::Reader r = bmx::shm::Reader::attach(name, 10s);
    r.seek(1);
    uint64_t seen = 0;
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (seen < frames && std::chrono::steady_clock::now() < deadline) {
      const auto p = r.poll([&](const bmx::shm::Delta& d) { seen += d.last_in_frame(); });
      if (p.lapped) break;  // far enough
      if (p.records == 0) std::this_thread::yield();
    }
  }
  // Waits until the replay has published everything (its link state says so).
  bool replay_finished() {
    bmx::shm::Reader r = bmx::shm::Reader::attach(name, 10s);
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (r.link_state() != bmx::shm::LinkState::kFinished &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::yield();
    }
    return r.link_state() == bmx::shm::LinkState::kFinished;
  }
  std::string read(const fs::path& p) { return bmxtest::read_file(p.string()); }

  fs::path dir;
  std::string name, capture;
};

TEST_F(ShmProcess, EightReadersSomeJoiningMidStreamEndEqualToTheWriter) {
  const fs::path writer_dump = dir / "writer.json";
  auto w = replay({"--rate", "1500"}, writer_dump.string());  // ~1.4 s for 2120 frames
  std::vector<std::unique_ptr<Child>> readers;
  for (int i = 0; i < 4; ++i) {
    readers.push_back(strategy({"--until-finished", "-q", "--check-every", "200", "--dump-state",
                                (dir / (tag(i) + ".json")).string()},
                               tag(i)));
  }
  wait_for_frames(700);  // a third of the session: the rest join mid-stream
  for (int i = 4; i < 8; ++i) {
    readers.push_back(strategy({"--until-finished", "-q", "--check-every", "200", "--dump-state",
                                (dir / (tag(i) + ".json")).string()},
                               tag(i)));
  }
  for (size_t i = 0; i < readers.size(); ++i) {
    const auto code = readers[i]->wait(60s);
    ASSERT_TRUE(code.has_value()) << "reader " << i << " did not finish";
    EXPECT_EQ(*code, 0) << "reader " << i << ": "
                        << read(dir / (tag(static_cast<int>(i)) + ".err"));
  }
  w->signal(SIGTERM);
  ASSERT_EQ(w->wait(30s), 0) << read(dir / "replay.err");
  const std::string expected = read(writer_dump);
  ASSERT_FALSE(expected.empty());
  const bmxtest::ReferenceModel model = bmxtest::model_of_capture(capture);
  const auto diffs = bmxtest::compare_dump(expected, model, /*with_tables=*/true);
  ASSERT_TRUE(diffs.empty()) << "writer vs reference: " << diffs.front();
  for (int i = 0; i < 8; ++i) {
    const std::string got = read(dir / (tag(i) + ".json"));
    EXPECT_EQ(got, expected) << "reader " << i << " ended with other books or tables";
    EXPECT_EQ(fs::status(dir / (tag(i) + ".json")).permissions(),
              fs::perms::owner_read | fs::perms::owner_write)
        << "a reader's dump of private tables is the user's alone";
    const std::string err = read(dir / (tag(i) + ".err"));
    EXPECT_NE(err.find("mismatches 0 problems 0"), std::string::npos) << err;
  }
}

TEST_F(ShmProcess, SlowReaderIsLappedReportsTheLossAndResyncsToTheRightBook) {
  const fs::path writer_dump = dir / "writer.json";
  // A ring of 1024 records and a reader that spends 100 us per record: it falls behind by
  // thousands of records within the session.
  auto w = replay({"--ring-slots", "1024", "--rate", "4000"}, writer_dump.string());
  auto slow = strategy({"--until-finished", "--slow-ns", "100000", "--check-every", "50",
                        "--print-every", "1000", "--dump-state", (dir / "slow.json").string()},
                       "slow");
  const auto code = slow->wait(120s);
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0) << read(dir / "slow.err");
  EXPECT_NE(slow->output().find("lapped: lost "), std::string::npos) << slow->output();
  w->signal(SIGTERM);
  ASSERT_EQ(w->wait(30s), 0);
  EXPECT_EQ(read(dir / "slow.json"), read(writer_dump));
  const std::string err = read(dir / "slow.err");
  EXPECT_EQ(err.find("lapped 0 "), std::string::npos) << err;
}

TEST_F(ShmProcess, KilledWriterReadsAsDeadAndARestartIsSeenAsANewEpoch) {
  auto w = replay({"--rate", "2000"}, "");
  wait_for_frames(100);
  auto reader = strategy({"--print-every", "0.1"}, "reader");
  // Killed once the reader is attached and reading (its first report), however slowly the
  // reader starts (sanitizers, a loaded machine).
  ASSERT_TRUE(reader->wait_for_output(" mid ", 60s)) << read(dir / "reader.err");
  w->signal(SIGKILL);
  ASSERT_EQ(w->wait(5s), 128 + SIGKILL);
  // The vanished pid reads as dead at the next poll (how fast is for the benchmarks to say).
  EXPECT_TRUE(reader->wait_for_output("feed dead", 30s)) << reader->output();
  // A new producer on the same name: the reader notices the new epoch and resyncs.
  auto again = replay({"--rate", "0"}, (dir / "again.json").string());
  EXPECT_TRUE(reader->wait_for_output("feed restarted (new epoch)", 10s)) << reader->output();
  reader->signal(SIGTERM);
  EXPECT_EQ(reader->wait(10s), 0) << read(dir / "reader.err");
  again->signal(SIGTERM);
  EXPECT_EQ(again->wait(10s), 0);
}

TEST_F(ShmProcess, AKilledReaderGoesUnnoticedByTheWriter) {
  const fs::path writer_dump = dir / "writer.json";
  auto w = replay({"--rate", "3000"}, writer_dump.string());
  auto reader = strategy({"-q"}, "reader");
  wait_for_frames(200);
  reader->signal(SIGKILL);
  EXPECT_EQ(reader->wait(5s), 128 + SIGKILL);
  // The writer finishes the session on its own, then holds: a late reader sees it all.
  auto late =
      strategy({"--until-finished", "-q", "--dump-state", (dir / "late.json").string()}, "late");
  ASSERT_EQ(late->wait(60s), 0) << read(dir / "late.err");
  w->signal(SIGTERM);
  ASSERT_EQ(w->wait(30s), 0) << read(dir / "replay.err");
  EXPECT_EQ(read(dir / "late.json"), read(writer_dump));
}

TEST_F(ShmProcess, TopPrintsTheBestLevelsAsJson) {
  auto w = replay({"--rate", "0"}, "");
  ASSERT_TRUE(replay_finished());
  Child top({BMX_TOP_BIN, "--shm", name, "--once", "--json"});
  ASSERT_EQ(top.wait(10s), 0);
  const std::string& json = top.output();
  // Best levels from the independent reference model of the same recording.
  const bmxtest::ReferenceModel model = bmxtest::model_of_capture(capture);
  const bmxtest::Ladder bids = model.books.at("XBTUSD").bids();
  const bmxtest::Ladder asks = model.books.at("XBTUSD").asks();
  ASSERT_GE(bids.size(), 3u);
  ASSERT_FALSE(asks.empty());
  // The 2021-07-22 XBTUSD top, as the recording leaves it: 32186.5 bid, 32187 ask.
  EXPECT_EQ(bids.front().first, 32186.5);
  EXPECT_EQ(asks.front().first, 32187.0);
  char bid[64], ask[64];
  std::snprintf(bid, sizeof bid, "\"bid\":[32186.5,%lld]",
                static_cast<long long>(bids.front().second));
  std::snprintf(ask, sizeof ask, "\"ask\":[32187,%lld]",
                static_cast<long long>(asks.front().second));
  const size_t at = json.find("\"XBTUSD\":{");
  ASSERT_NE(at, std::string::npos) << json;
  const std::string xbt_json = json.substr(at, json.find('}', at) - at);
  EXPECT_NE(xbt_json.find(bid), std::string::npos) << xbt_json << " expected " << bid;
  EXPECT_NE(xbt_json.find(ask), std::string::npos) << xbt_json << " expected " << ask;
  EXPECT_NE(json.find("\"liveness\":\"live\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"stale_tables\":[]"), std::string::npos) << json;  // a clean recording
  // A ladder.
  Child ladder({BMX_TOP_BIN, "--shm", name, "--once", "--symbol", "XBTUSD", "--depth", "3"});
  ASSERT_EQ(ladder.wait(10s), 0);
  char third[32];
  std::snprintf(third, sizeof third, "%.10g", bids[2].first);
  EXPECT_NE(ladder.output().find(third), std::string::npos) << ladder.output();
  // The table: XBTUSD's row shows the same top; one screen has no earlier one to take an update
  // rate from, so its upd/s column says "-" (the third column from the end: upd/s, age, state).
  Child table({BMX_TOP_BIN, "--shm", name, "--once"});
  ASSERT_EQ(table.wait(10s), 0);
  std::istringstream lines(table.output());
  std::vector<std::string> xbt;
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    std::vector<std::string> cols;
    for (std::string word; words >> word;)
      cols.push_back(word);
    if (!cols.empty() && cols[0] == "XBTUSD") xbt = cols;
  }
  ASSERT_GE(xbt.size(), 9u) << table.output();
  EXPECT_EQ(xbt[2], "32186.5") << table.output();
  EXPECT_EQ(xbt[3], "32187") << table.output();
  EXPECT_EQ(xbt[xbt.size() - 3], "-") << table.output();
  EXPECT_EQ(xbt.back(), "ok") << table.output();
  w->signal(SIGTERM);
  EXPECT_EQ(w->wait(10s), 0);
}

TEST_F(ShmProcess, TopSaysInOneLineWhenThereIsNoSegment) {
  Child top({BMX_TOP_BIN, "--shm", "/bmx-no-such-segment", "--once"}, (dir / "top.err").string());
  EXPECT_EQ(top.wait(10s), 2);
  const std::string err = read(dir / "top.err");
  EXPECT_NE(err.find("no shared-memory segment named '/bmx-no-such-segment'"), std::string::npos)
      << err;
  EXPECT_EQ(err.find('\n'), err.size() - 1) << "one line: " << err;
}

// A table the feed cannot trust any more is named in bitmex-top's footer and JSON.
TEST_F(ShmProcess, TopNamesAStaleTable) {
  capture = (dir / "stale.ndjson").string();
  {
    std::ofstream out(capture);
    out << R"({"table":"instrument","action":"partial","keys":["symbol"],"filter":{},)"
        << R"("data":[{"symbol":"XBTUSD","state":"Open"}]})" << '\n'
        << R"({"table":"instrument","action":"update","data":[{"symbol":"ETHUSD","lastPrice":1}]})"
        << '\n';
  }
  auto w = replay({"--rate", "0"}, "");
  ASSERT_TRUE(replay_finished());
  Child json({BMX_TOP_BIN, "--shm", name, "--once", "--json"});
  ASSERT_EQ(json.wait(10s), 0);
  EXPECT_NE(json.output().find("\"stale_tables\":[\"instrument\"]"), std::string::npos)
      << json.output();
  Child screen({BMX_TOP_BIN, "--shm", name, "--once"});
  ASSERT_EQ(screen.wait(10s), 0);
  EXPECT_NE(screen.output().find("STALE tables: instrument"), std::string::npos) << screen.output();
  w->signal(SIGTERM);
  EXPECT_EQ(w->wait(10s), 0) << read(dir / "replay.err");
}

}  // namespace
