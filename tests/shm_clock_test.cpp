// shm::RealtimeClock, the producer's stamp for publish_ns: whatever it reads (the TSC between
// anchors, or clock_gettime), each value must lie between a CLOCK_REALTIME read just before and
// one just after it, within the error its comment allows. Readers compare these stamps with their
// own CLOCK_REALTIME to measure publish-to-visible latency.
#include <gtest/gtest.h>

#include <cstdint>

#include "shm/clock.hpp"
#include "shm/segment.hpp"

namespace bmx::shm {
namespace {

// Calls now() bracketed by two clock_gettime reads for `span_ns` of wall time; returns how many
// calls were made after the clock had calibrated itself.
uint64_t bracket(RealtimeClock& c, int64_t span_ns, int64_t tolerance_ns) {
  uint64_t calibrated = 0;
  const int64_t end = realtime_ns() + span_ns;
  for (int64_t before = realtime_ns(); before < end; before = realtime_ns()) {
    const int64_t v = c.now();
    const int64_t after = realtime_ns();
    EXPECT_GE(v, before - tolerance_ns) << "the stamp ran behind CLOCK_REALTIME";
    EXPECT_LE(v, after + tolerance_ns) << "the stamp ran ahead of CLOCK_REALTIME";
    if (::testing::Test::HasFailure()) return calibrated;
    calibrated += c.calibrated();
  }
  return calibrated;
}

TEST(ShmClock, TscStampsStayWithCLOCK_REALTIME) {
  if (!RealtimeClock::invariant_tsc()) GTEST_SKIP() << "no invariant TSC: clock_gettime is used";
  RealtimeClock c;
  // 60 ms: calibration (10 ms), then several anchors. 2 us: the rate's error over one 10 ms
  // window is tens of ns; the rest is room for NTP slewing during the test.
  const uint64_t calibrated = bracket(c, 60'000'000, 2'000);
  EXPECT_TRUE(c.calibrated());
  EXPECT_GT(calibrated, 1000u) << "the TSC path was hardly taken";
}

TEST(ShmClock, WithoutTheTscEveryStampIsCLOCK_REALTIME) {
  RealtimeClock c(false);
  EXPECT_EQ(bracket(c, 5'000'000, 0), 0u);
  EXPECT_FALSE(c.calibrated());
}

}  // namespace
}  // namespace bmx::shm
