// Nothing on the delta path allocates: after the partials (which size the books), every other frame
// of both recorded sessions, replayed into one engine, must perform zero heap allocations.
//
// This binary replaces the global operator new/delete with counting versions, so it stays apart
// from unit_tests. A frame that allocates is reported by its index and first bytes.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>
#include <unistd.h>

#include "engine/capture.hpp"
#include "engine/feed_engine.hpp"
#include "shm/segment.hpp"
#include "shm/writer.hpp"
#include "support/counting_new.hpp"
#include "test_support.hpp"

namespace {

uint64_t allocations() {
  return bmx::testing::allocation_count();
}

// The first frame that allocates, if any, and how many frames did.
struct AllocReport {
  size_t frames_checked = 0;
  size_t frames_allocating = 0;
  uint64_t allocations = 0;
  std::string first;  // "session frame N (k allocations): <excerpt>"
};

bool is_partial(std::string_view frame) {
  return frame.find(R"("action":"partial")") != std::string_view::npos;
}

// Replays `c` into `e`. Partials may allocate (they size the books); every other frame is checked.
void replay_checking(bmx::FeedEngine& e, const bmx::Capture& c, const char* name,
                     AllocReport& report) {
  size_t index = 0;
  for (const auto& f : c.frames()) {
    const std::string_view text(f.data, f.len);
    const bool check = !is_partial(text);
    const uint64_t before = allocations();
    e.on_frame(f.data, f.len, c.capacity(f), f.recv_ns);
    e.drain_events([](const bmx::Event&) {});
    const uint64_t n = allocations() - before;
    if (check) {
      ++report.frames_checked;
      if (n != 0) {
        ++report.frames_allocating;
        report.allocations += n;
        if (report.first.empty()) {
          report.first = std::string(name) + " frame " + std::to_string(index) + " (" +
                         std::to_string(n) + " allocations): " + std::string(text.substr(0, 120));
        }
      }
    }
    ++index;
  }
}

TEST(Allocation, CountingOperatorNewSeesAllocations) {
  // Through a volatile pointer: the compiler may otherwise elide a new/delete pair it can see.
  static std::vector<int>* volatile escape = nullptr;
  const uint64_t before = allocations();
  escape = new std::vector<int>(100);
  delete escape;
  EXPECT_EQ(allocations() - before, 2u) << "the vector object and its buffer";
}

TEST(Allocation, DeltaFramesOfBothSessionsAllocateNothing) {
  const bmx::Capture jul =
      bmx::Capture::load(bmxtest::data_path("bitmex/cryptofeed-2021-07-22.txt"));
  const bmx::Capture apr =
      bmx::Capture::load(bmxtest::data_path("bitmex/cryptofeed-2021-04-05.txt"));
  bmx::FeedEngine e;
  AllocReport report;
  replay_checking(e, jul, "2021-07-22", report);
  replay_checking(e, apr, "2021-04-05", report);
  // Both sessions have ~9000 frames, of which 60 are partials.
  EXPECT_GT(report.frames_checked, 9000u);
  EXPECT_EQ(report.frames_allocating, 0u)
      << report.allocations << " allocations in " << report.frames_allocating
      << " frames; first: " << report.first;
  EXPECT_EQ(e.stats().book_growths, 0u);
  EXPECT_EQ(e.stats().unknown_levels + e.stats().bad_rows, 0u);
}

TEST(Allocation, PublishingIntoASegmentAllocatesNothingEither) {
  const bmx::Capture jul =
      bmx::Capture::load(bmxtest::data_path("bitmex/cryptofeed-2021-07-22.txt"));
  const bmx::Capture apr =
      bmx::Capture::load(bmxtest::data_path("bitmex/cryptofeed-2021-04-05.txt"));
  const std::string name = "/bmx-alloc-" + std::to_string(::getpid());
  bmx::shm::SegmentConfig config;
  config.max_symbols = bmx::EngineConfig{}.max_symbols;
  bmx::shm::Segment seg = bmx::shm::Segment::create(name, config);
  bmx::shm::Writer writer(seg);
  bmx::FeedEngine e;
  e.publish_to(&writer);
  AllocReport report;
  replay_checking(e, jul, "2021-07-22", report);
  replay_checking(e, apr, "2021-04-05", report);
  bmx::shm::Segment::remove(name);
  EXPECT_GT(report.frames_checked, 9000u);
  EXPECT_EQ(report.frames_allocating, 0u)
      << report.allocations << " allocations in " << report.frames_allocating
      << " frames; first: " << report.first;
  EXPECT_GT(writer.next_seq(), 20000u) << "the records were published";
}

TEST(Allocation, NewIdEraDeltaFramesAllocateNothing) {
  // The conversion and the capture allocate; only the engine's on_frame is measured.
  const std::string text =
      bmxtest::read_file(bmxtest::data_path("bitmex/cryptofeed-2021-07-22.txt"));
  const std::string converted =
      bmxtest::convert_to_new_id_era(bmxtest::split_capture(text), 0xa110c);
  const bmx::Capture c = bmx::Capture::from_text(converted);
  bmx::FeedEngine e;
  AllocReport report;
  replay_checking(e, c, "2021-07-22 (new ids)", report);
  EXPECT_GT(report.frames_checked, 2000u);
  EXPECT_EQ(report.frames_allocating, 0u)
      << report.allocations << " allocations in " << report.frames_allocating
      << " frames; first: " << report.first;
}

TEST(Allocation, ControlFramesAndBadInputAllocateNothing) {
  bmx::FeedEngine e;
  bmxtest::warm_up_for_bad_frames(e);  // the tables and one book exist
  const std::vector<std::string> frames = bmxtest::control_and_bad_frames();
  // Padded copies made before measuring.
  std::vector<simdjson::padded_string> padded;
  for (const auto& f : frames)
    padded.emplace_back(f);
  // The first keyless insert of a symbol creates its row; measure from the second round on.
  for (int round = 0; round < 2; ++round) {
    for (size_t i = 0; i < padded.size(); ++i) {
      const uint64_t before = allocations();
      e.on_frame(padded[i].data(), padded[i].size(), padded[i].size() + simdjson::SIMDJSON_PADDING,
                 0);
      e.drain_events([](const bmx::Event&) {});
      if (round == 1) {
        EXPECT_EQ(allocations() - before, 0u) << frames[i];
      }
    }
  }
}

}  // namespace
