// The hot path makes no system call, takes no lock and throws nothing: every delta frame of the
// recorded sessions (both id eras), applied by the engine, published into a segment and read back
// by a reader in the same process, and a round of bad input, run in a child process under a seccomp
// filter that lets no system call through but exit_group (support/hot_path_guard.hpp), with the
// lock functions and __cxa_throw interposed and counted. What a body needs is set up before the
// fork (captures loaded, partials applied, segment created and attached): after start-up is what
// the promise covers. engine_alloc_test.cpp proves the fourth promise, no allocation.
#include <sys/syscall.h>
#include <unistd.h>

#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "engine/capture.hpp"
#include "engine/feed_engine.hpp"
#include "shm/reader.hpp"
#include "shm/segment.hpp"
#include "shm/writer.hpp"
#include "support/hot_path_guard.hpp"
#include "test_support.hpp"

namespace {

using bmx::testing::GuardedReport;
using bmx::testing::GuardOutcome;
using bmx::testing::run_without_syscalls;

bool is_delta(std::string_view frame) {
  return frame.find(R"("table")") != std::string_view::npos &&
         frame.find(R"("action":"partial")") == std::string_view::npos;
}

// Where a capture's run of delta frames begins: after its last partial. Everything before it
// (welcome, acks, partials, and the few deltas between the partials) is start-up.
size_t deltas_begin(const bmx::Capture& c) {
  const auto& fr = c.frames();
  size_t begin = 0;
  for (size_t i = 0; i < fr.size(); ++i) {
    if (!is_delta({fr[i].data, fr[i].len})) begin = i + 1;
  }
  return begin;
}

// The values a guarded engine run reports back.
enum Value : size_t {
  kFrames,
  kLocks,
  kThrows,
  kBadOutcomes,  // unknown levels, bad rows, stale books: the recorded work was not all done
  kRows,
  kRecordsRead,
  kLapped,
  kTopsRead,
  kCursor,
};

struct Session {
  std::string name;
  bmx::Capture capture;
};

std::vector<Session> sessions() {
  std::vector<Session> out;
  out.push_back(
      {"2021-07-22", bmx::Capture::load(bmxtest::data_path("bitmex/cryptofeed-2021-07-22.txt"))});
  out.push_back(
      {"2021-04-05", bmx::Capture::load(bmxtest::data_path("bitmex/cryptofeed-2021-04-05.txt"))});
  // The new id era: arbitrary ids and a price on every row take other paths through the book.
  const std::string text =
      bmxtest::read_file(bmxtest::data_path("bitmex/cryptofeed-2021-07-22.txt"));
  out.push_back({"2021-07-22 (new ids)", bmx::Capture::from_text(bmxtest::convert_to_new_id_era(
                                             bmxtest::split_capture(text), 0x5ecc0b))});
  return out;
}

void apply(bmx::FeedEngine& e, const bmx::Capture& c, size_t i) {
  const auto& f = c.frames()[i];
  e.on_frame(f.data, f.len, c.capacity(f), f.recv_ns);
  e.drain_events([](const bmx::Event&) {});
}

// Runs `work` in a guarded body, recording the locks taken and the exceptions thrown meanwhile.
template <class F>
void counting_locks_and_throws(GuardedReport& r, F&& work) {
  const uint64_t locks = bmx::testing::lock_count();
  const uint64_t throws = bmx::testing::throw_count();
  work();
  r.values[kLocks] = bmx::testing::lock_count() - locks;
  r.values[kThrows] = bmx::testing::throw_count() - throws;
}

uint64_t bad_outcomes(const bmx::FeedEngine& e) {
  const auto& s = e.stats();
  return s.unknown_levels + s.bad_rows + s.books_marked_stale + s.tables_marked_stale +
         s.rows_dropped_before_partial;
}

TEST(HotPathGuard, StopsTheFirstSystemCallAndSaysWhichAndWhere) {
  if (const auto& why = bmx::testing::syscall_guard_unavailable(); !why.empty())
    GTEST_SKIP() << why;
  const GuardOutcome clean = run_without_syscalls([](GuardedReport& r) {
    r.step = 5;
    r.values[0] = 42;
  });
  EXPECT_TRUE(clean.ran_to_end) << clean.describe();
  EXPECT_EQ(clean.syscall, -1);
  EXPECT_EQ(clean.report.values[0], 42u);

  const GuardOutcome caught = run_without_syscalls([](GuardedReport& r) {
    r.step = 7;
    ::syscall(SYS_getppid);
    r.step = 8;  // never reached
  });
  EXPECT_FALSE(caught.ran_to_end);
  EXPECT_EQ(caught.syscall, SYS_getppid) << caught.describe();
  EXPECT_EQ(caught.step, 7u);
  EXPECT_EQ(caught.describe(),
            "system call getppid (number " + std::to_string(SYS_getppid) + ") at step 7");
}

TEST(HotPathGuard, CountsLocksAndThrows) {
  std::mutex m;
  const uint64_t locks = bmx::testing::lock_count();
  m.lock();
  m.unlock();
  EXPECT_EQ(bmx::testing::lock_count() - locks, 1u) << "std::mutex::lock goes through the count";

  const uint64_t throws = bmx::testing::throw_count();
  try {
    throw std::runtime_error("counted");
  } catch (const std::runtime_error&) {
  }
  EXPECT_EQ(bmx::testing::throw_count() - throws, 1u);
}

TEST(HotPath, DeltaFramesMakeNoSystemCallTakeNoLockAndThrowNothing) {
  if (const auto& why = bmx::testing::syscall_guard_unavailable(); !why.empty())
    GTEST_SKIP() << why;
  for (const Session& s : sessions()) {
    SCOPED_TRACE(s.name);
    const bmx::Capture& c = s.capture;
    bmx::FeedEngine e;
    const size_t begin = deltas_begin(c);
    for (size_t i = 0; i < begin; ++i)
      apply(e, c, i);
    const size_t deltas = c.frames().size() - begin;
    ASSERT_GT(deltas, 2000u);

    const GuardOutcome out = run_without_syscalls([&](GuardedReport& r) {
      counting_locks_and_throws(r, [&] {
        for (size_t i = begin; i < c.frames().size(); ++i) {
          r.step = i;
          apply(e, c, i);
          ++r.values[kFrames];
        }
      });
      r.values[kBadOutcomes] = bad_outcomes(e);
      r.values[kRows] = e.stats().rows;
    });
    ASSERT_TRUE(out.ran_to_end) << out.describe();
    EXPECT_EQ(out.report.values[kFrames], deltas);
    EXPECT_EQ(out.report.values[kLocks], 0u);
    EXPECT_EQ(out.report.values[kThrows], 0u);
    EXPECT_EQ(out.report.values[kBadOutcomes], 0u) << "every recorded delta applied cleanly";
    EXPECT_GT(out.report.values[kRows], e.stats().rows) << "the child applied rows";
  }
}

// The clock the writer stamps records with must not be a system call either; on a machine whose
// clock source has no vDSO support it is, and that is the machine's doing, not the code's.
bool clock_read_is_syscall_free() {
  const GuardOutcome out = run_without_syscalls([](GuardedReport& r) {
    r.values[0] = static_cast<uint64_t>(bmx::shm::realtime_ns());
    r.values[1] = static_cast<uint64_t>(bmx::shm::monotonic_ns());
  });
  return out.ran_to_end;
}

TEST(HotPath, PublishingAndReadingTheSegmentMakeNoSystemCallTakeNoLockAndThrowNothing) {
  if (const auto& why = bmx::testing::syscall_guard_unavailable(); !why.empty())
    GTEST_SKIP() << why;
  if (!clock_read_is_syscall_free()) {
    GTEST_SKIP() << "clock_gettime is a system call on this machine (its clock source has no vDSO "
                    "support: /sys/devices/system/clocksource/clocksource0/current_clocksource)";
  }
  for (const Session& s : sessions()) {
    SCOPED_TRACE(s.name);
    const bmx::Capture& c = s.capture;
    const std::string name = "/bmx-hot-" + std::to_string(::getpid());
    bmx::shm::SegmentConfig config;
    config.max_symbols = bmx::EngineConfig{}.max_symbols;
    bmx::shm::Segment seg = bmx::shm::Segment::create(name, config);
    bmx::shm::Writer writer(seg);
    bmx::FeedEngine e;
    e.publish_to(&writer);
    bmx::shm::Reader reader = bmx::shm::Reader::attach(name);
    bmx::shm::Segment::remove(name);  // both mappings stay valid
    const size_t begin = deltas_begin(c);
    for (size_t i = 0; i < begin; ++i)
      apply(e, c, i);
    while (reader.poll([](const bmx::shm::Delta&) {}).records > 0) {
    }
    const auto books = reader.books();  // allocates: start-up
    ASSERT_FALSE(books.empty());
    const uint64_t seq_before = writer.next_seq();

    const GuardOutcome out = run_without_syscalls([&](GuardedReport& r) {
      counting_locks_and_throws(r, [&] {
        for (size_t i = begin; i < c.frames().size(); ++i) {
          r.step = i;
          apply(e, c, i);
          ++r.values[kFrames];
          for (;;) {  // the reader catches up with the frame, as a strategy would
            const bmx::shm::PollResult p = reader.poll([](const bmx::shm::Delta&) {});
            r.values[kRecordsRead] += p.records;
            r.values[kLapped] += p.lapped ? 1 : 0;
            if (p.records == 0) break;
          }
          for (const auto& [table, symbol] : books) {
            bmx::shm::Top top;
            r.values[kTopsRead] += reader.top(table, symbol, top) ? 1 : 0;
          }
        }
      });
      r.values[kBadOutcomes] = bad_outcomes(e);
      r.values[kRows] = writer.next_seq();
      r.values[kCursor] = reader.cursor();
    });
    ASSERT_TRUE(out.ran_to_end) << out.describe();
    EXPECT_EQ(out.report.values[kLocks], 0u);
    EXPECT_EQ(out.report.values[kThrows], 0u);
    EXPECT_EQ(out.report.values[kBadOutcomes], 0u);
    EXPECT_EQ(out.report.values[kLapped], 0u);
    const uint64_t published = out.report.values[kRows] - seq_before;
    EXPECT_GT(published, out.report.values[kFrames]) << "the child published the frames' changes";
    EXPECT_GE(out.report.values[kRecordsRead], out.report.values[kFrames]);
    EXPECT_EQ(out.report.values[kCursor], out.report.values[kRows])
        << "the reader read up to the writer's next sequence";
    EXPECT_EQ(out.report.values[kTopsRead], out.report.values[kFrames] * books.size());
  }
}

TEST(HotPath, BadInputMakesNoSystemCallTakesNoLockAndThrowsNothing) {
  if (const auto& why = bmx::testing::syscall_guard_unavailable(); !why.empty())
    GTEST_SKIP() << why;
  bmx::FeedEngine e;
  bmxtest::warm_up_for_bad_frames(e);
  const std::vector<std::string> frames = bmxtest::control_and_bad_frames();
  std::vector<simdjson::padded_string> padded;
  for (const auto& f : frames)
    padded.emplace_back(f);
  auto round = [&] {
    for (const auto& p : padded) {
      e.on_frame(p.data(), p.size(), p.size() + simdjson::SIMDJSON_PADDING, 0);
      e.drain_events([](const bmx::Event&) {});
    }
  };
  round();  // the first round may create what later rounds reuse (a keyless row, say)
  const uint64_t malformed = bmxtest::frames_of(e, bmx::FrameKind::kMalformed);
  const GuardOutcome out = run_without_syscalls([&](GuardedReport& r) {
    counting_locks_and_throws(r, [&] {
      for (uint64_t k = 0; k < 3; ++k) {
        r.step = k;
        round();
      }
    });
    r.values[kFrames] = bmxtest::frames_of(e, bmx::FrameKind::kMalformed);
  });
  ASSERT_TRUE(out.ran_to_end) << out.describe();
  EXPECT_EQ(out.report.values[kLocks], 0u);
  EXPECT_EQ(out.report.values[kThrows], 0u);
  EXPECT_EQ(out.report.values[kFrames], malformed + 3 * 2)
      << "two malformed frames a round, counted";
}

}  // namespace
