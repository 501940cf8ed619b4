// CLOCK_REALTIME for the producer's per-frame stamp (RecordBody::publish_ns), read from the CPU's
// time-stamp counter: one RDTSC, a compare and a multiplication instead of a vDSO clock_gettime.
// `bench_engine --benchmark_filter=Clock` measures both (BM_Clock_Realtime, BM_Clock_Tsc); a
// delta frame's parsing work is some 170 ns on the development VM.
//
// Calibrated against clock_gettime itself, so that a reader comparing a stamp with its own
// CLOCK_REALTIME (publish-to-visible latency) compares like with like:
//  - until 10 ms have passed since the first call, every call reads clock_gettime;
//  - then the rate (ns per tick) is taken over everything since a base reading (10-20 s old once
//    the producer has run that long, so that the rate follows NTP's corrections while its
//    reading error, some 50 ns, stays far below a part per million), and the offset is
//    re-anchored to a fresh
//    clock_gettime whenever 10 ms of ticks have passed since the last anchor (checked on every
//    call). A stamp strays from CLOCK_REALTIME by the rate's error over at most 10 ms: tens of
//    nanoseconds, more only while NTP slews the clock hard;
//  - a rate that moves by more than 0.1% between anchors means the clock was stepped
//    (settimeofday, a VM restored): calibration starts again.
// A CPU without an invariant TSC (CPUID 80000007H, EDX bit 8), or not x86, always reads
// clock_gettime. One thread only (the producer's). No system call, lock or allocation.
#pragma once

#include <cstdint>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <x86intrin.h>
#endif

#include "shm/segment.hpp"

namespace bmx::shm {

class RealtimeClock {
  __extension__ typedef unsigned __int128 Wide;  // products of 64-bit tick counts and rates

 public:
  static constexpr int64_t kAnchorNs = 10'000'000;        // re-anchor after this much time
  static constexpr int64_t kRebaseNs = 10'000'000'000;    // move the rate's base after this much
  static constexpr uint64_t kStepPartsPerMillion = 1000;  // a rate change this large: a step

  // `use_tsc` false: every call reads clock_gettime (tests compare the two).
  explicit RealtimeClock(bool use_tsc = invariant_tsc()) noexcept : tsc_(use_tsc) {}

  // Nanoseconds since the epoch, as CLOCK_REALTIME would say within the error above.
  int64_t now() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    if (tsc_) [[likely]] {
      const uint64_t d = __rdtsc() - anchor_tsc_;
      if (d < window_ticks_) [[likely]] {
        return anchor_ns_ + static_cast<int64_t>((static_cast<Wide>(d) * mult_) >> 32);
      }
      return reanchor();
    }
#endif
    return realtime_ns();
  }

  // True once now() reads the TSC between anchors (calibrated); for tests.
  [[nodiscard]] bool calibrated() const noexcept {
    return window_ticks_ != 0;
  }

  static bool invariant_tsc() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(0x80000000u, &a, &b, &c, &d) || a < 0x80000007u) return false;
    __get_cpuid(0x80000007u, &a, &b, &c, &d);
    return (d >> 8) & 1u;
#else
    return false;
#endif
  }

 private:
  static constexpr int kTries = 4;
  // Cold: a clock_gettime between two TSC reads, taken as simultaneous with their midpoint.
  [[gnu::noinline]] int64_t reanchor() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    // The tightest of a few brackets: a reading interrupted between its TSC reads (preempted, a
    // VM's stolen time) would put the anchor off by half the interruption.
    uint64_t t = 0, narrowest = UINT64_MAX;
    int64_t ns = 0;
    for (int k = 0; k < kTries; ++k) {
      const uint64_t t0 = __rdtsc();
      const int64_t n = realtime_ns();
      const uint64_t width = __rdtsc() - t0;
      if (width < narrowest) {
        narrowest = width;
        t = t0 + width / 2;
        ns = n;
      }
    }
    if (!have_base_ || ns <= base_ns_ || t <= base_tsc_) {
      restart(t, ns);
      return ns;
    }
    const auto elapsed_ns = static_cast<uint64_t>(ns - base_ns_);
    const uint64_t elapsed_ticks = t - base_tsc_;
    if (elapsed_ns < static_cast<uint64_t>(kAnchorNs)) return ns;  // still calibrating
    const auto mult = static_cast<uint64_t>((static_cast<Wide>(elapsed_ns) << 32) / elapsed_ticks);
    const uint64_t diff = mult > mult_ ? mult - mult_ : mult_ - mult;
    if (mult_ != 0 && diff > mult_ / 1'000'000 * kStepPartsPerMillion) {
      restart(t, ns);  // the clock was stepped: the old base means nothing
      return ns;
    }
    mult_ = mult;
    anchor_tsc_ = t;
    anchor_ns_ = ns;
    window_ticks_ =
        static_cast<uint64_t>((static_cast<Wide>(kAnchorNs) * elapsed_ticks) / elapsed_ns);
    if (window_ticks_ == 0) window_ticks_ = 1;
    // The base moves on every kRebaseNs or so, to a reading at least kRebaseNs old, so that
    // the rate follows the clock's recent speed but is always taken over a long span.
    if (!have_next_ && elapsed_ns > static_cast<uint64_t>(kRebaseNs)) {
      next_tsc_ = t;
      next_ns_ = ns;
      have_next_ = true;
    } else if (have_next_ && ns - next_ns_ > kRebaseNs) {
      base_tsc_ = next_tsc_;
      base_ns_ = next_ns_;
      next_tsc_ = t;
      next_ns_ = ns;
    }
    return ns;
#else
    return realtime_ns();
#endif
  }

  void restart(uint64_t t, int64_t ns) noexcept {
    have_base_ = true;
    have_next_ = false;
    base_tsc_ = anchor_tsc_ = t;
    base_ns_ = anchor_ns_ = ns;
    mult_ = 0;
    window_ticks_ = 0;  // every call re-anchors (reads clock_gettime) until calibrated
  }

  bool tsc_;
  bool have_base_ = false;
  uint64_t anchor_tsc_ = 0;
  int64_t anchor_ns_ = 0;
  uint64_t window_ticks_ = 0;  // re-anchor once this many ticks passed since the anchor
  uint64_t mult_ = 0;          // ns per tick, times 2^32
  uint64_t base_tsc_ = 0;      // the rate is taken since this reading
  int64_t base_ns_ = 0;
  bool have_next_ = false;  // the next base, once one is taken
  uint64_t next_tsc_ = 0;
  int64_t next_ns_ = 0;
};

}  // namespace bmx::shm
