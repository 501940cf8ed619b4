// The real bitmex-replay binary: exit codes, its one-line error, and --dump-state checked against
// the independent reference model. Links no engine code.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "reference_model.hpp"

namespace {

namespace fs = std::filesystem;

struct RunResult {
  int exit_code;
  std::string out, err;
};

// Runs `bitmex-replay <args>` with stdout and stderr captured in files under a temp directory.
RunResult run_replay(const std::string& args, const fs::path& dir) {
  const fs::path out = dir / "stdout.txt";
  const fs::path err = dir / "stderr.txt";
  const std::string cmd = std::string("'") + BMX_REPLAY_BIN + "' " + args + " >'" + out.string() +
                          "' 2>'" + err.string() + "'";
  const int status = std::system(cmd.c_str());
  RunResult r{};
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = bmxtest::read_file(out.string());
  r.err = bmxtest::read_file(err.string());
  return r;
}

class ReplayCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() /
          ("bmx-replay-cli-" + std::to_string(::getpid()) + "-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir);
  }
  void TearDown() override { fs::remove_all(dir); }
  fs::path dir;
};

TEST_F(ReplayCli, DumpStateOfTheJuly2021SessionMatchesTheReference) {
  const std::string capture = bmxtest::data_path("bitmex/cryptofeed-2021-07-22.txt");
  const fs::path dump = dir / "state.json";
  const RunResult r = run_replay("'" + capture + "' --dump-state '" + dump.string() + "'", dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(fs::exists(dump));
  const std::string json = bmxtest::read_file(dump.string());
  const bmxtest::ReferenceModel model = bmxtest::model_of_capture(capture);
  ASSERT_TRUE(model.problems.empty());
  ASSERT_EQ(model.books.size(), 10u);
  const auto diffs = bmxtest::compare_dump(json, model, /*with_tables=*/true);
  EXPECT_TRUE(diffs.empty()) << diffs.size() << " differences, first: " << diffs.front();
  EXPECT_TRUE(r.err.empty()) << "a clean session reports no problems: " << r.err;
  EXPECT_NE(r.out.find("XBTUSD"), std::string::npos) << "the summary lists the books";
  // A recording of an authenticated feed holds the account's private tables: the dump is the
  // user's alone, whatever the umask.
  EXPECT_EQ(fs::status(dump).permissions(), fs::perms::owner_read | fs::perms::owner_write);
}

TEST_F(ReplayCli, DumpStateToStdoutIsTheSameDocument) {
  const std::string capture = bmxtest::data_path("bitmex/cryptofeed-2021-07-22.txt");
  const RunResult r = run_replay("--quiet --dump-state - '" + capture + "'", dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto diffs = bmxtest::compare_dump(r.out, bmxtest::model_of_capture(capture), true);
  EXPECT_TRUE(diffs.empty()) << diffs.front();
}

TEST_F(ReplayCli, MissingCaptureExitsNonZeroWithOneLineError) {
  const RunResult r = run_replay("/nonexistent", dir);
  EXPECT_NE(r.exit_code, 0);
  ASSERT_FALSE(r.err.empty());
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "exactly one line: [" << r.err << "]";
  EXPECT_NE(r.err.find("/nonexistent"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
}

TEST_F(ReplayCli, NoArgumentsIsAUsageError) {
  const RunResult r = run_replay("", dir);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_FALSE(r.err.empty());
}

TEST_F(ReplayCli, UnwritableDumpPathFailsCleanly) {
  const std::string capture =
      bmxtest::data_path("bitmex/api-connectors-fixtures/symboledTradeInsert.ndjson");
  const RunResult r =
      run_replay("-q '" + capture + "' --dump-state /nonexistent/dir/state.json", dir);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("/nonexistent/dir/state.json"), std::string::npos) << r.err;
}

}  // namespace
