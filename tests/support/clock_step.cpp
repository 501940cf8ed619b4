// An LD_PRELOAD library for tests: a wall clock that keeps being stepped.
//
// BMX_CLOCK_STEP="STEP_NS/EVERY_NS" makes CLOCK_REALTIME (clock_gettime, gettimeofday, time) jump
// by STEP_NS nanoseconds (negative: backwards) at the process's first clock reading and again every
// EVERY_NS nanoseconds of CLOCK_MONOTONIC after it, as an NTP step or an operator's `date -s`
// would, over and over. CLOCK_MONOTONIC is left alone. A process whose timeouts are measured on the
// monotonic clock behaves as if nothing happened; one that measures them on the wall clock sees
// silences of minus an hour or plus an hour. Built without sanitizers: it only forwards to libc.
#include <dlfcn.h>
#include <sys/time.h>
#include <time.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace {

using ClockGettime = int (*)(clockid_t, struct timespec*);

struct Step {
  ClockGettime real = nullptr;
  int64_t step_ns = 0, every_ns = 0, origin_ns = 0;
};

int64_t to_ns(const struct timespec& t) {
  return int64_t{t.tv_sec} * 1'000'000'000 + t.tv_nsec;
}

const Step& step() {
  static const Step s = [] {
    Step r;
    r.real = reinterpret_cast<ClockGettime>(::dlsym(RTLD_NEXT, "clock_gettime"));
    long long step_ns = 0, every_ns = 0;
    if (const char* spec = std::getenv("BMX_CLOCK_STEP");
        spec && std::sscanf(spec, "%lld/%lld", &step_ns, &every_ns) == 2 && every_ns > 0) {
      r.step_ns = step_ns;
      r.every_ns = every_ns;
    }
    struct timespec now {};
    if (r.real) r.real(CLOCK_MONOTONIC, &now);
    r.origin_ns = to_ns(now);
    return r;
  }();
  return s;
}

// The offset of the stepped wall clock now.
int64_t offset_ns(const Step& s) {
  if (s.every_ns == 0) return 0;
  struct timespec now {};
  s.real(CLOCK_MONOTONIC, &now);
  return ((to_ns(now) - s.origin_ns) / s.every_ns + 1) * s.step_ns;
}

bool is_wall(clockid_t id) {
  return id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE || id == CLOCK_TAI;
}

}  // namespace

extern "C" {

int clock_gettime(clockid_t id, struct timespec* ts) noexcept {
  const Step& s = step();
  if (!s.real) return -1;
  const int rc = s.real(id, ts);
  if (rc != 0 || !is_wall(id)) return rc;
  const int64_t ns = to_ns(*ts) + offset_ns(s);
  ts->tv_sec = ns / 1'000'000'000;
  ts->tv_nsec = ns % 1'000'000'000;
  return 0;
}

int gettimeofday(struct timeval* tv, void* /*tz*/) noexcept {
  struct timespec ts {};
  const int rc = clock_gettime(CLOCK_REALTIME, &ts);
  if (rc == 0) {  // glibc declares tv non-null
    tv->tv_sec = ts.tv_sec;
    tv->tv_usec = ts.tv_nsec / 1000;
  }
  return rc;
}

time_t time(time_t* out) noexcept {
  struct timespec ts {};
  clock_gettime(CLOCK_REALTIME, &ts);
  if (out) *out = ts.tv_sec;
  return ts.tv_sec;
}

}  // extern "C"
