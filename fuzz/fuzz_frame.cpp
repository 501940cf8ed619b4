// libFuzzer target: one frame through the classifier and parser (FeedEngine::on_frame), on a fresh
// engine that already holds a partial of every kind of table, so that the frame's deltas, controls
// and breakages meet real state. Checks that the frame is counted under exactly the kind returned,
// and the engine's state invariants (fuzz_support.hpp: check_engine).
#include <cstddef>
#include <cstdint>
#include <numeric>

#include "fuzz/fuzz_support.hpp"

using namespace bmx;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FeedEngine e(fuzz::small_engine());
  for (const std::string_view f : fuzz::kWarmUp)
    fuzz::feed(e, f);
  BMX_FUZZ_CHECK(e.stats().books_marked_stale == 0 && e.stats().bad_rows == 0,
                 "the warm-up partials are clean");
  const Stats before = e.stats();
  const FrameResult r = fuzz::feed(e, std::string_view(reinterpret_cast<const char*>(data), size));
  e.drain_events([](const Event&) {});

  const int kind = static_cast<int>(r.kind);
  BMX_FUZZ_CHECK(kind >= 0 && kind < kFrameKindCount, "kind %d", kind);
  for (int k = 0; k < kFrameKindCount; ++k) {
    BMX_FUZZ_CHECK(e.stats().frames[k] == before.frames[k] + (k == kind ? 1 : 0),
                   "frame counted under kind %d, returned kind %d", k, kind);
  }
  const auto& frames = e.stats().frames;
  BMX_FUZZ_CHECK(std::accumulate(frames.begin(), frames.end(), uint64_t{0}) == e.frame_count(),
                 "every frame counted once");
  if (r.kind == FrameKind::kTable) {
    BMX_FUZZ_CHECK(r.table < e.tables().size(), "a table frame names a known table (%u)", r.table);
  }
  fuzz::check_engine(e);
  return 0;
}
