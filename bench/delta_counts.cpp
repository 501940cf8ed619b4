// delta_counts: replays a capture's delta frames through the engine or the floor walk, in a
// function of its own, so that valgrind can count exactly that work:
//
//   scripts/count-instructions.sh        (runs both modes under callgrind and prints the totals)
//
// Usage: delta_counts engine|publish|floor CAPTURE [PASSES]
// `publish` is `engine` publishing into a shared-memory segment (created and removed here).
// The frames before the first delta (welcome, acks, partials) are applied untimed by
// setup_engine(); the rest must all be deltas. Each pass uses a fresh engine set up the same way,
// so every pass applies exactly the recorded work. Counts, unlike wall time on a shared VM, are the
// same on every run.
#include <unistd.h>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "engine/capture.hpp"
#include "engine/feed_engine.hpp"
#include "floor_walk.hpp"
#include "shm/segment.hpp"
#include "shm/writer.hpp"

namespace {

__attribute__((noinline)) void setup_engine(bmx::FeedEngine& e, const bmx::Capture& c,
                                            uint32_t end) {
  const auto& fr = c.frames();
  for (uint32_t i = 0; i < end; ++i)
    e.on_frame(fr[i].data, fr[i].len, c.capacity(fr[i]), 0);
}

__attribute__((noinline)) void run_engine_deltas(bmx::FeedEngine& e, const bmx::Capture& c,
                                                 uint32_t begin) {
  const auto& fr = c.frames();
  for (uint32_t i = begin; i < fr.size(); ++i) {
    e.on_frame(fr[i].data, fr[i].len, c.capacity(fr[i]), fr[i].recv_ns);
  }
}

__attribute__((noinline)) uint64_t run_floor_deltas(floor_od::parser& p, const bmx::Capture& c,
                                                    uint32_t begin, Sink& sink) {
  const auto& fr = c.frames();
  uint64_t failures = 0;
  for (uint32_t i = begin; i < fr.size(); ++i)
    failures += !walk_frame(p, c, fr[i], sink);
  return failures;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (argc < 3 || (mode != "engine" && mode != "floor" && mode != "publish")) {
    std::fprintf(stderr, "usage: delta_counts engine|publish|floor CAPTURE [PASSES]\n");
    return 2;
  }
  const bool floor = mode == "floor";
  const bool publish = mode == "publish";
  const int passes = argc > 3 ? std::atoi(argv[3]) : 3;
  try {
    const bmx::Capture cap = bmx::Capture::load(argv[2]);
    const auto& fr = cap.frames();
    // Find the first delta, and check that no partial follows it.
    uint32_t first_delta = static_cast<uint32_t>(fr.size());
    {
      bmx::FeedEngine probe;
      for (uint32_t i = 0; i < fr.size(); ++i) {
        const auto r = probe.on_frame(fr[i].data, fr[i].len, cap.capacity(fr[i]), 0);
        const bool table = r.kind == bmx::FrameKind::kTable;
        if (table && r.action != bmx::Action::kPartial && first_delta == fr.size()) first_delta = i;
        if (table && r.action == bmx::Action::kPartial && first_delta != fr.size()) {
          std::fprintf(stderr, "delta_counts: %s has a partial after its first delta\n", argv[2]);
          return 1;
        }
      }
    }
    if (floor) {
      floor_od::parser parser;
      if (parser.allocate(bmx::EngineConfig{}.max_frame_bytes)) return 1;
      Sink sink;
      for (int k = 0; k < passes; ++k) {
        if (run_floor_deltas(parser, cap, first_delta, sink)) return 1;
      }
    } else {
      for (int k = 0; k < passes; ++k) {
        auto e = std::make_unique<bmx::FeedEngine>();
        std::unique_ptr<bmx::shm::Segment> seg;
        std::unique_ptr<bmx::shm::Writer> writer;
        const std::string name = "/bmx-delta-counts-" + std::to_string(::getpid());
        if (publish) {
          bmx::shm::SegmentConfig sc;
          sc.max_symbols = bmx::EngineConfig{}.max_symbols;
          seg = std::make_unique<bmx::shm::Segment>(bmx::shm::Segment::create(name, sc));
          writer = std::make_unique<bmx::shm::Writer>(*seg);
          e->publish_to(writer.get());
        }
        setup_engine(*e, cap, first_delta);
        run_engine_deltas(*e, cap, first_delta);
        const bmx::Stats& st = e->stats();
        if (publish) bmx::shm::Segment::remove(name);
        if (st.unknown_levels || st.books_marked_stale || st.rows_dropped_before_partial) return 1;
      }
    }
    std::printf("%s: %d passes over %zu delta frames\n", argv[1], passes, fr.size() - first_delta);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "delta_counts: %s\n", e.what());
    return 1;
  }
}
