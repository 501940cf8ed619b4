// Micro-benchmarks of the feed engine's hot path, each beside its floor, in one binary and one run.
//
// The floor is a plain simdjson On-Demand walk of the very same frames: one reused parser, frames
// parsed in place from the padded capture buffer, every field of every row read as its type (key
// unescaped, strings unescaped, numbers parsed once as int64/uint64/double, bools, nulls) and
// nothing else. Any consumer of the JSON pays that much; the engine adds classification, interning
// and the book and table updates on top, and that addition must stay small. Goals (reported, not
// asserted):
//   BM_Pipeline_Deltas  within 1.2x of BM_FloorWalk_Deltas in ns/frame
//   BM_Pipeline_Session at >= 0.8x of BM_FloorWalk_Session in bytes/s
//   BM_PipelinePublish_Deltas (the pipeline publishing into a shared-memory segment) within 1.3x
//   of BM_FloorWalk_Deltas
// BM_PipelineOverFloor_Deltas and BM_PublishOverFloor_Deltas measure the same ratios in pairs of
// passes (see pipeline_over_floor); .../both-new-ids does so on both sessions converted to the
// post-2023 id era (arbitrary ids, a price on every row), whose books keep the (side, id) index
// that 2021 books, whose ids encode their prices, do without.
//
// Why the delta benchmark replays whole sessions: a delta frame is only meaningful on the state
// its partial built, and replaying deltas twice over the same books would turn the second pass
// into unknown levels and duplicate inserts. So BM_Pipeline_Deltas feeds every frame of a session
// into one engine per session (a partial resets exactly what it covers, so each pass starts every
// book and table from the same image) but times only the runs of consecutive delta frames, with
// UseManualTime: one clock pair per run, not per frame (a session has a handful of runs, its
// partials come first). The floor walks the same runs. After every pass the engine's Stats must
// show no unknown level, no stale book, no dropped or bad row and the expected row count; if not,
// the benchmark stops with an error rather than time the wrong work.
//
// A counting global operator new gives allocs_per_frame over the timed delta runs: the engine
// promises 0 (after construction). cold_allocs_per_frame is the same count over the first pass on
// a fresh engine, which the timed passes do not include.
//
// Time columns: the delta benchmarks' Time is manual (delta runs only) for the pipeline, real for
// the floor; the pipeline's CPU column also holds the untimed partials, so read Time, ns_per_frame
// and bytes_per_second, not CPU.
#include <benchmark/benchmark.h>
#include <simdjson.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <new>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "engine/capture.hpp"
#include "engine/feed_engine.hpp"
#include "floor_walk.hpp"
#include "reference_model.hpp"
#include "shm/clock.hpp"
#include "shm/segment.hpp"
#include "shm/writer.hpp"
#include "support/counting_new.hpp"

// ---- allocation counter: tests/support/counting_new.cpp replaces operator new in this binary --

namespace {

namespace od = simdjson::ondemand;
using Clock = std::chrono::steady_clock;

// ---- recorded sessions --------------------------------------------------------------------------

// A stretch of consecutive frames of one session: all deltas (timed) or all other frames.
struct Run {
  uint32_t begin;
  uint32_t end;
  bool deltas;
};

struct Session {
  std::string name;
  bmx::Capture capture;
  std::vector<Run> runs;  // the whole session, in order
  uint64_t frames = 0, bytes = 0;
  uint64_t delta_frames = 0, delta_bytes = 0;
  uint64_t rows_per_pass = 0;  // table rows one replay applies
};

// Cumulative Stats that a clean replay of the recorded sessions leaves at zero.
const char* unclean(const bmx::Stats& st) noexcept {
  if (st.unknown_levels) return "unknown levels";
  if (st.books_marked_stale) return "books marked stale";
  if (st.tables_marked_stale) return "tables marked stale";
  if (st.rows_dropped_before_partial) return "rows dropped before their partial";
  if (st.rows_dropped_stale) return "rows dropped on stale books";
  if (st.bad_rows) return "bad rows";
  if (st.unknown_rows) return "unknown rows";
  if (st.duplicate_inserts) return "duplicate inserts";
  if (st.crossed_books) return "crossed books";
  if (st.book_growths) return "book growths";
  if (st.capacity_exceeded) return "capacity exceeded";
  if (st.events_lost) return "events lost";
  if (st.frames[static_cast<int>(bmx::FrameKind::kMalformed)]) return "malformed frames";
  if (st.frames[static_cast<int>(bmx::FrameKind::kOversized)]) return "oversized frames";
  return nullptr;
}

// `capture` is the session's frames; `file` names it in errors.
Session load_session(const std::string& name, const std::string& file, bmx::Capture capture) {
  Session s{name, std::move(capture), {}};
  // One classifying pass: a delta is a table frame whose action is not partial.
  bmx::FeedEngine e;
  const auto& frames = s.capture.frames();
  for (uint32_t i = 0; i < frames.size(); ++i) {
    const auto& f = frames[i];
    const bmx::FrameResult r = e.on_frame(f.data, f.len, s.capture.capacity(f), f.recv_ns);
    const bool delta = r.kind == bmx::FrameKind::kTable && r.action != bmx::Action::kPartial;
    if (s.runs.empty() || s.runs.back().deltas != delta) s.runs.push_back(Run{i, i, delta});
    s.runs.back().end = i + 1;
    ++s.frames;
    s.bytes += f.len;
    s.delta_frames += delta;
    s.delta_bytes += delta ? f.len : 0;
  }
  e.drain_events([](const bmx::Event&) {});
  if (const char* why = unclean(e.stats())) {
    throw std::runtime_error(file + ": a first replay is not clean: " + why);
  }
  s.rows_per_pass = e.stats().rows;
  return s;
}

struct Sessions {
  std::vector<Session> all;
  // The same sessions in the post-2023 id era (arbitrary ids, a price on every row), as
  // tests/golden_replay_test.cpp converts them: books that keep the (side, id) index.
  std::vector<Session> new_ids;
  std::string error;
};

const Sessions& sessions() {
  static const Sessions s = [] {
    Sessions r;
    try {
      for (const auto& [name, file] : {std::pair{"2021-07-22", "cryptofeed-2021-07-22.txt"},
                                       std::pair{"2021-04-05", "cryptofeed-2021-04-05.txt"}}) {
        const std::string path = std::string(BMX_BENCH_DATA) + "/" + file;
        r.all.push_back(load_session(name, file, bmx::Capture::load(path)));
        std::ifstream in(path, std::ios::binary);
        std::stringstream text;
        text << in.rdbuf();
        const std::string converted =
            bmxtest::convert_to_new_id_era(bmxtest::split_capture(text.str()), 0x5eed);
        r.new_ids.push_back(
            load_session(std::string(name) + "-new-ids", file, bmx::Capture::from_text(converted)));
      }
    } catch (const std::exception& e) {
      r.error = e.what();
    }
    return r;
  }();
  return s;
}

// Which recorded sessions a benchmark covers: both (-1), one by index, or both in the post-2023
// id era (kNewIds).
constexpr int kNewIds = -2;
using Selection = std::vector<const Session*>;
Selection select(int which) {
  Selection out;
  const auto& all = which == kNewIds ? sessions().new_ids : sessions().all;
  for (size_t i = 0; i < all.size(); ++i) {
    if (which < 0 || static_cast<size_t>(which) == i) out.push_back(&all[i]);
  }
  return out;
}

bool usable(benchmark::State& state, const Selection& sel) {
  if (!sessions().error.empty()) {
    state.SkipWithError(sessions().error.c_str());
    return false;
  }
  if (sel.empty()) {
    state.SkipWithError("no such session");
    return false;
  }
  return true;
}

// ns_per_frame: kInvert turns frames per second into seconds per frame, which the console prints
// with its SI prefix ("484.6ns"; JSON output holds seconds).
void report(benchmark::State& state, uint64_t frames, uint64_t bytes) {
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
  state.counters["frames"] = static_cast<double>(frames);
  state.counters["ns_per_frame"] = benchmark::Counter(
      static_cast<double>(frames),
      benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

// ---- the floor: a plain On-Demand walk ----------------------------------------------------------

// Sink, walk() and walk_frame() live in floor_walk.hpp, shared with delta_counts.

// One pass of the floor walk over the sessions; returns the seconds spent in delta runs (when
// `deltas_only`). Deltas are timed exactly as BM_Pipeline_Deltas times them: the whole session is
// walked, and a clock pair surrounds each run of delta frames, so both see the same cache state
// after the (untimed) partials.
//
// One copy, at the start of a page: the floor's code must not move when code elsewhere in the
// binary changes. Inlined into each benchmark (as it was), it landed wherever the code before it
// ended, and one build's floor ran ~5% slower than the next one's in every round (same source,
// other engine code), which read as a 0.05x better ratio for the engine.
[[gnu::noinline, gnu::aligned(4096)]] double floor_pass(od::parser& parser, const Selection& sel,
                                                        Sink& sink, uint64_t& failures,
                                                        bool deltas_only) {
  double seconds = 0;
  for (const Session* s : sel) {
    const auto& fr = s->capture.frames();
    for (const Run& r : s->runs) {
      const bool timed = deltas_only && r.deltas;
      const auto t0 = Clock::now();
      for (uint32_t i = r.begin; i < r.end; ++i)
        failures += !walk_frame(parser, s->capture, fr[i], sink);
      if (timed) seconds += std::chrono::duration<double>(Clock::now() - t0).count();
    }
  }
  return seconds;
}

void floor_walk(benchmark::State& state, int which, bool deltas_only) {
  const Selection sel = select(which);
  if (!usable(state, sel)) return;
  od::parser parser;
  if (parser.allocate(bmx::EngineConfig{}.max_frame_bytes)) {  // as the engine sizes its parser
    state.SkipWithError("parser allocation failed");
    return;
  }
  uint64_t frames = 0, bytes = 0, failures = 0;
  for (const Session* s : sel) {
    frames += deltas_only ? s->delta_frames : s->frames;
    bytes += deltas_only ? s->delta_bytes : s->bytes;
  }
  Sink sink;
  for (auto _ : state) {
    const double seconds = floor_pass(parser, sel, sink, failures, deltas_only);
    if (deltas_only) state.SetIterationTime(seconds);
  }
  benchmark::DoNotOptimize(sink);
  if (failures) {
    state.SkipWithError("the floor walk failed on some frames");
    return;
  }
  report(state, frames, bytes);
}

void BM_FloorWalk_Deltas(benchmark::State& state, int which) {
  floor_walk(state, which, true);
}
void BM_FloorWalk_Session(benchmark::State& state, int which) {
  floor_walk(state, which, false);
}

// ---- the pipeline: FeedEngine::on_frame ---------------------------------------------------------

// A segment the engine publishes into (BM_PipelinePublish_*): what the live feed does.
struct Published {
  explicit Published(const std::string& n)
      : name(n), seg(bmx::shm::Segment::create(n, config())), writer(seg) {}
  ~Published() { bmx::shm::Segment::remove(name); }
  static bmx::shm::SegmentConfig config() {
    bmx::shm::SegmentConfig c;
    c.max_symbols = bmx::EngineConfig{}.max_symbols;
    return c;
  }
  std::string name;
  bmx::shm::Segment seg;
  bmx::shm::Writer writer;
};

// One engine per session, reused across passes; a pass replays the whole session.
struct Replayer {
  const Session* session;
  std::unique_ptr<bmx::FeedEngine> engine;
  std::unique_ptr<Published> out;  // when publishing
  uint64_t rows_before = 0;

  struct Pass {
    double delta_seconds = 0;  // the delta runs only
    uint64_t delta_allocs = 0;
    uint64_t allocs = 0;  // every frame
  };

  void apply(const Run& r) {
    const auto& fr = session->capture.frames();
    for (uint32_t i = r.begin; i < r.end; ++i) {
      const bmx::CapturedFrame& f = fr[i];
      engine->on_frame(f.data, f.len, session->capture.capacity(f), f.recv_ns);
    }
  }

  // Replays the session; `time_deltas` puts a clock pair around each delta run.
  Pass replay(bool time_deltas) {
    Pass p;
    const uint64_t a_begin = bmx::testing::allocation_count();
    for (const Run& r : session->runs) {
      if (!time_deltas || !r.deltas) {
        apply(r);
        continue;
      }
      const uint64_t a0 = bmx::testing::allocation_count();
      const auto t0 = Clock::now();
      apply(r);
      const auto t1 = Clock::now();
      p.delta_allocs += bmx::testing::allocation_count() - a0;
      p.delta_seconds += std::chrono::duration<double>(t1 - t0).count();
    }
    p.allocs = bmx::testing::allocation_count() - a_begin;
    engine->drain_events([](const bmx::Event&) {});
    return p;
  }

  // Null when the last pass did exactly the recorded work, else why not.
  const char* check() {
    const bmx::Stats& st = engine->stats();
    if (const char* why = unclean(st)) return why;
    const uint64_t rows = st.rows - rows_before;
    rows_before = st.rows;
    return rows == session->rows_per_pass ? nullptr : "a pass applied an unexpected row count";
  }
};

// One pass of every replayer, what they report summed into `sum`. False, with the benchmark
// skipped and the reason given, when a pass did not do exactly the recorded work.
bool replay_all(benchmark::State& state, std::vector<Replayer>& replayers, bool time_deltas,
                Replayer::Pass& sum) {
  for (Replayer& r : replayers) {
    const Replayer::Pass p = r.replay(time_deltas);
    sum.delta_seconds += p.delta_seconds;
    sum.delta_allocs += p.delta_allocs;
    sum.allocs += p.allocs;
    if (const char* why = r.check()) {
      state.SkipWithError(why);
      return false;
    }
  }
  return true;
}

std::vector<Replayer> make_replayers(const Selection& sel, bool publish = false) {
  std::vector<Replayer> out;
  for (const Session* s : sel) {
    out.push_back(Replayer{s, std::make_unique<bmx::FeedEngine>(), nullptr});
    if (publish) {
      out.back().out = std::make_unique<Published>("/bmx-bench-" + std::to_string(::getpid()) +
                                                   "-" + std::to_string(out.size()));
      out.back().engine->publish_to(&out.back().out->writer);
    }
  }
  return out;
}

void pipeline_deltas(benchmark::State& state, int which, bool publish) {
  const Selection sel = select(which);
  if (!usable(state, sel)) return;
  std::vector<Replayer> replayers = make_replayers(sel, publish);
  uint64_t frames = 0, bytes = 0;
  for (const Replayer& r : replayers) {
    frames += r.session->delta_frames;
    bytes += r.session->delta_bytes;
  }
  Replayer::Pass cold;  // the first pass on a fresh engine: untimed
  if (!replay_all(state, replayers, true, cold)) return;
  const uint64_t cold_allocs = cold.delta_allocs;
  uint64_t allocs = 0;
  for (auto _ : state) {
    Replayer::Pass p;
    if (!replay_all(state, replayers, true, p)) break;
    allocs += p.delta_allocs;
    state.SetIterationTime(p.delta_seconds);
  }
  report(state, frames, bytes);
  state.counters["allocs_per_frame"] =
      static_cast<double>(allocs) / static_cast<double>(frames * state.iterations());
  state.counters["cold_allocs_per_frame"] =
      static_cast<double>(cold_allocs) / static_cast<double>(frames);
}

void BM_Pipeline_Deltas(benchmark::State& state, int which) {
  pipeline_deltas(state, which, false);
}
// The same with every change published into a shared-memory segment (no reader attached).
void BM_PipelinePublish_Deltas(benchmark::State& state, int which) {
  pipeline_deltas(state, which, true);
}

// The goal's ratio measured in pairs: every iteration walks the delta frames once with the floor
// and once with the pipeline, back to back, and the ratio is taken of the two sums. On a machine
// whose speed drifts (a shared VM: other tenants, frequency), separate benchmarks measure the two
// at different moments, seconds apart; here both see the same moments, so the drift cancels.
// Manual time: the pipeline's. Counters: both per frame, and the ratio.
void pipeline_over_floor(benchmark::State& state, int which, bool publish) {
  const Selection sel = select(which);
  if (!usable(state, sel)) return;
  od::parser parser;
  if (parser.allocate(bmx::EngineConfig{}.max_frame_bytes)) {
    state.SkipWithError("parser allocation failed");
    return;
  }
  std::vector<Replayer> replayers = make_replayers(sel, publish);
  uint64_t frames = 0, bytes = 0, failures = 0;
  for (const Replayer& r : replayers) {
    frames += r.session->delta_frames;
    bytes += r.session->delta_bytes;
  }
  Replayer::Pass cold;  // the first pass on a fresh engine: untimed
  if (!replay_all(state, replayers, true, cold)) return;
  Sink sink;
  double floor_seconds = 0, pipeline_seconds = 0;
  for (auto _ : state) {
    floor_seconds += floor_pass(parser, sel, sink, failures, true);
    Replayer::Pass p;
    if (!replay_all(state, replayers, true, p)) break;
    pipeline_seconds += p.delta_seconds;
    state.SetIterationTime(p.delta_seconds);
  }
  benchmark::DoNotOptimize(sink);
  if (failures) {
    state.SkipWithError("the floor walk failed on some frames");
    return;
  }
  report(state, frames, bytes);
  const double n = static_cast<double>(frames) * static_cast<double>(state.iterations());
  state.counters["floor_ns"] = floor_seconds * 1e9 / n;
  state.counters["pipeline_ns"] = pipeline_seconds * 1e9 / n;
  state.counters["ratio"] = pipeline_seconds / floor_seconds;
}

void BM_PipelineOverFloor_Deltas(benchmark::State& state, int which) {
  pipeline_over_floor(state, which, false);
}
void BM_PublishOverFloor_Deltas(benchmark::State& state, int which) {
  pipeline_over_floor(state, which, true);
}

void BM_Pipeline_Session(benchmark::State& state, int which) {
  const Selection sel = select(which);
  if (!usable(state, sel)) return;
  std::vector<Replayer> replayers = make_replayers(sel);
  uint64_t frames = 0, bytes = 0;
  for (const Replayer& r : replayers) {
    frames += r.session->frames;
    bytes += r.session->bytes;
  }
  Replayer::Pass warm;  // warm-up pass: a fresh engine sizes its books and tables
  if (!replay_all(state, replayers, false, warm)) return;
  uint64_t allocs = 0;
  for (auto _ : state) {
    Replayer::Pass p;
    if (!replay_all(state, replayers, false, p)) break;
    allocs += p.allocs;
  }
  report(state, frames, bytes);
  state.counters["allocs_per_frame"] =
      static_cast<double>(allocs) / static_cast<double>(frames * state.iterations());
}

// What one stamp of a frame's publish time costs: clock_gettime(CLOCK_REALTIME) (vDSO), and the
// writer's RealtimeClock (the TSC between anchors). Not a goal: the reason for the second.
void BM_Clock_Realtime(benchmark::State& state) {
  for (auto _ : state)
    benchmark::DoNotOptimize(bmx::shm::realtime_ns());
}

void BM_Clock_Tsc(benchmark::State& state) {
  bmx::shm::RealtimeClock clock;
  for (auto _ : state)
    benchmark::DoNotOptimize(clock.now());
  state.counters["calibrated"] = clock.calibrated();
}

void register_all() {
  struct Target {
    std::string label;
    int which;
  };
  const std::vector<Target> targets = {{"both", -1}, {"2021-07-22", 0}, {"2021-04-05", 1}};
  for (const Target& t : targets) {
    benchmark::RegisterBenchmark(("BM_FloorWalk_Deltas/" + t.label).c_str(), BM_FloorWalk_Deltas,
                                 t.which)
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(("BM_Pipeline_Deltas/" + t.label).c_str(), BM_Pipeline_Deltas,
                                 t.which)
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
  }
  benchmark::RegisterBenchmark("BM_PipelinePublish_Deltas/both", BM_PipelinePublish_Deltas, -1)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("BM_PipelineOverFloor_Deltas/both", BM_PipelineOverFloor_Deltas, -1)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("BM_PublishOverFloor_Deltas/both", BM_PublishOverFloor_Deltas, -1)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("BM_PipelineOverFloor_Deltas/both-new-ids",
                               BM_PipelineOverFloor_Deltas, kNewIds)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("BM_FloorWalk_Session/both", BM_FloorWalk_Session, -1)
      ->UseRealTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("BM_Pipeline_Session/both", BM_Pipeline_Session, -1)
      ->UseRealTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("BM_Clock_Realtime", BM_Clock_Realtime);
  benchmark::RegisterBenchmark("BM_Clock_Tsc", BM_Clock_Tsc)->MinWarmUpTime(0.05);
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  const Sessions& s = sessions();
  if (!s.error.empty()) {
    std::fprintf(stderr, "bench_engine: %s\n", s.error.c_str());
    return 1;
  }
  for (const Session& session : s.all) {
    benchmark::AddCustomContext("session " + session.name,
                                std::to_string(session.frames) + " frames, " +
                                    std::to_string(session.bytes) +
                                    " bytes; deltas: " + std::to_string(session.delta_frames) +
                                    " frames, " + std::to_string(session.delta_bytes) +
                                    " bytes, in " + std::to_string(session.runs.size()) + " runs");
  }
  benchmark::AddCustomContext("simdjson kernel",
                              SIMDJSON_STRINGIFY(SIMDJSON_BUILTIN_IMPLEMENTATION));
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
