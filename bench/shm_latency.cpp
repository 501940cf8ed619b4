// bench_shm_latency: how long a record takes from the producer's publish to a reader in another
// process seeing it, in percentiles, beside the floor of the machine it runs on, in the same run.
//
//   floor      one cache line shared by two processes: the writer stores (stamp, seq), the reader
//              spins on seq and subtracts the stamp from its own clock. The same clocks, the same
//              cores, nothing else: what any shared-memory transport pays one way.
//   ping-pong  the same two processes bouncing a counter: half the round trip, no clock involved.
//   ring       the segment's real path: Writer::begin_frame/book_update/end_frame in the producer,
//              Reader::poll in N reader processes (attached by name, read-only), latency =
//              reader's CLOCK_REALTIME at visibility - the record's publish_ns.
//   throughput the producer publishing as fast as it can with 0 readers, then with N spinning
//              readers: readers must not slow it down. Readers spin as reader.hpp recommends
//              (shm::idle_pause() when a poll finds nothing); the same runs without the pause are
//              printed too, to show what the hint buys. Measured in --rounds rounds, each running
//              the three back to back (in a rotating order), so that the ratios compare runs a
//              fraction of a second apart; medians over the rounds.
//
// Processes are pinned: the producer to the first --cpus entry, readers to the next ones (wrapping
// when there are fewer cores than processes, which the report then says).
#include <fmt/core.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include "shm/reader.hpp"
#include "shm/writer.hpp"

namespace {

using namespace bmx;

void pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  sched_setaffinity(0, sizeof set, &set);
}

void spin_ns(int64_t ns) {
  if (ns <= 0) return;
  const int64_t until = shm::monotonic_ns() + ns;
  while (shm::monotonic_ns() < until) {
  }
}

// An anonymous shared mapping, inherited across fork: the harness's own bookkeeping.
template <class T>
T* shared_array(size_t n) {
  void* p = mmap(nullptr, sizeof(T) * n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::runtime_error("mmap failed");
  return static_cast<T*>(p);
}

struct Percentiles {
  int64_t p50 = 0, p99 = 0, p999 = 0, max = 0;
  size_t n = 0;
};

Percentiles percentiles(std::vector<int64_t>& v) {
  Percentiles p;
  if (v.empty()) return p;
  std::sort(v.begin(), v.end());
  auto at = [&](double q) {
    return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
  };
  p.p50 = at(0.50);
  p.p99 = at(0.99);
  p.p999 = at(0.999);
  p.max = v.back();
  p.n = v.size();
  return p;
}

void print_row(const char* what, const Percentiles& p) {
  fmt::print("{:<34} {:>9} {:>9} {:>9} {:>10} {:>10}\n", what, p.p50, p.p99, p.p999, p.max, p.n);
}

struct alignas(64) Line {
  std::atomic<uint64_t> seq;
  std::atomic<int64_t> stamp;
};

struct Options {
  int readers = 2;
  uint64_t records = 200000;
  int64_t gap_ns = 2000;
  std::vector<int> cpus;
  uint64_t throughput_records = 2000000;
  int rounds = 5;
};

int cpu_of(const Options& o, size_t i) {
  return o.cpus[i % o.cpus.size()];
}

// ---- floor: one shared line, one way, same clocks
// ------------------------------------------------

Percentiles one_way_floor(const Options& o) {
  Line* line = shared_array<Line>(1);
  auto* lat = shared_array<int64_t>(o.records);
  auto* ready = shared_array<std::atomic<int>>(1);
  const pid_t child = fork();
  if (child == 0) {
    pin(cpu_of(o, 1));
    ready->store(1);
    for (uint64_t i = 1; i <= o.records; ++i) {
      while (line->seq.load(std::memory_order_acquire) < i) {
      }
      lat[i - 1] = shm::realtime_ns() - line->stamp.load(std::memory_order_relaxed);
    }
    _exit(0);
  }
  pin(cpu_of(o, 0));
  while (!ready->load()) {
  }
  for (uint64_t i = 1; i <= o.records; ++i) {
    line->stamp.store(shm::realtime_ns(), std::memory_order_relaxed);
    line->seq.store(i, std::memory_order_release);
    spin_ns(o.gap_ns);
  }
  waitpid(child, nullptr, 0);
  std::vector<int64_t> v(lat, lat + o.records);
  munmap(line, sizeof(Line));
  munmap(lat, sizeof(int64_t) * o.records);
  return percentiles(v);
}

Percentiles ping_pong(const Options& o) {
  Line* lines = shared_array<Line>(2);
  const uint64_t rounds = o.records;
  const pid_t child = fork();
  if (child == 0) {
    pin(cpu_of(o, 1));
    for (uint64_t i = 1; i <= rounds; ++i) {
      while (lines[0].seq.load(std::memory_order_acquire) < i) {
      }
      lines[1].seq.store(i, std::memory_order_release);
    }
    _exit(0);
  }
  pin(cpu_of(o, 0));
  std::vector<int64_t> v;
  v.reserve(rounds);
  for (uint64_t i = 1; i <= rounds; ++i) {
    const int64_t t0 = shm::monotonic_ns();
    lines[0].seq.store(i, std::memory_order_release);
    while (lines[1].seq.load(std::memory_order_acquire) < i) {
    }
    v.push_back((shm::monotonic_ns() - t0) / 2);
  }
  waitpid(child, nullptr, 0);
  munmap(lines, 2 * sizeof(Line));
  return percentiles(v);
}

// ---- the ring
// ------------------------------------------------------------------------------------

struct RingRun {
  Percentiles latency;
  double seconds = 0;
  uint64_t lost = 0;
};

// Publishes `records` one-record frames (a book update) with `gap_ns` between them; `readers`
// processes follow the ring and record publish-to-visible latencies when `measure`.
// `pause`: readers call shm::idle_pause() when a poll finds nothing (the loop reader.hpp
// recommends); without it they re-read the producer's next slot back to back.
RingRun ring(const Options& o, int readers, uint64_t records, int64_t gap_ns, bool measure,
             bool pause = true) {
  const std::string name = "/bmx-latency-" + std::to_string(getpid());
  shm::SegmentConfig c;
  c.ring_slots = 1u << 20;
  c.max_books = 1;
  c.book_levels = 64;
  shm::Segment seg = shm::Segment::create(name, c);
  shm::Writer w(seg);
  w.set_symbol(0, "XBTUSD");
  w.set_table(0, "orderBookL2", shm::TableKind::kBook);
  shm::Book* b = w.book(0, 0);
  w.begin_frame(shm::realtime_ns());
  w.book_clear(*b);
  w.book_insert(*b, Side::kBuy, 100.0, 1, 1);
  w.end_frame();
  w.set_ready();

  auto* lat = measure ? shared_array<int64_t>(records * static_cast<size_t>(readers)) : nullptr;
  auto* lost = shared_array<std::atomic<uint64_t>>(1);
  auto* ready = shared_array<std::atomic<int>>(1);
  std::vector<pid_t> kids;
  for (int r = 0; r < readers; ++r) {
    const pid_t pid = fork();
    if (pid == 0) {
      pin(cpu_of(o, 1 + static_cast<size_t>(r)));
      shm::Reader rd = shm::Reader::attach(name);
      rd.seek_to_head();
      ready->fetch_add(1);
      uint64_t got = 0;
      int64_t* mine = measure ? lat + static_cast<size_t>(r) * records : nullptr;
      while (got < records) {
        const auto p = rd.poll([&](const shm::Delta& d) {
          if (d.kind() != shm::RecordKind::kBookUpdate) return;
          if (mine) mine[got] = shm::realtime_ns() - d.body.publish_ns;
          ++got;
        });
        if (p.records == 0 && pause) shm::idle_pause();
        if (p.lapped) {
          lost->fetch_add(p.lost);
          got += p.lost;
        }
      }
      _exit(0);
    }
    kids.push_back(pid);
  }
  pin(cpu_of(o, 0));
  while (ready->load() < readers) {
  }
  const int64_t t0 = shm::monotonic_ns();
  for (uint64_t i = 0; i < records; ++i) {
    w.begin_frame(shm::realtime_ns());
    w.book_update(*b, Side::kBuy, 100.0, 100.0, static_cast<int64_t>(i + 2), 1);
    w.end_frame();
    spin_ns(gap_ns);
  }
  RingRun out;
  out.seconds = static_cast<double>(shm::monotonic_ns() - t0) / 1e9;
  for (const pid_t k : kids)
    waitpid(k, nullptr, 0);
  out.lost = lost->load();
  if (measure) {
    std::vector<int64_t> v(lat, lat + records * static_cast<size_t>(readers));
    v.erase(std::remove(v.begin(), v.end(), 0), v.end());  // lapped slots never measured
    out.latency = percentiles(v);
    munmap(lat, sizeof(int64_t) * records * static_cast<size_t>(readers));
  }
  shm::Segment::remove(name);
  return out;
}

int run(int argc, char** argv) {
  CLI::App app{
      "bench_shm_latency: publish-to-visible latency of the shared-memory ring across processes, "
      "in percentiles, beside the one-way floor and a core-to-core ping-pong measured in the same "
      "run; and producer throughput with and without readers."};
  Options o;
  std::string cpus;
  app.add_option("--readers", o.readers, "Reader processes")->capture_default_str();
  app.add_option("--records", o.records, "Records per latency measurement")->capture_default_str();
  app.add_option("--gap-ns", o.gap_ns, "Pause between records while measuring latency")
      ->capture_default_str();
  app.add_option("--throughput-records", o.throughput_records, "Records per throughput measurement")
      ->capture_default_str();
  app.add_option("--rounds", o.rounds, "Rounds of the throughput measurement (medians reported)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  app.add_option("--cpus", cpus,
                 "Comma-separated cores: producer first, then readers "
                 "(default: every core this process may use)");
  CLI11_PARSE(app, argc, argv);
  if (!cpus.empty()) {
    size_t at = 0;
    while (at < cpus.size()) {
      const size_t comma = cpus.find(',', at);
      o.cpus.push_back(std::stoi(cpus.substr(at, comma - at)));
      at = comma == std::string::npos ? cpus.size() : comma + 1;
    }
  } else {
    cpu_set_t set;
    sched_getaffinity(0, sizeof set, &set);
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &set)) o.cpus.push_back(c);
  }
  const int processes = 1 + o.readers;
  fmt::print("cores {} for {} processes{}\n", o.cpus.size(), processes,
             static_cast<int>(o.cpus.size()) < processes
                 ? " (fewer cores than processes: readers share cores, figures are pessimistic)"
                 : "");
  fmt::print("{:<34} {:>9} {:>9} {:>9} {:>10} {:>10}\n", "ns", "p50", "p99", "p99.9", "max",
             "samples");
  const Percentiles floor = one_way_floor(o);
  print_row("floor: one line, one way", floor);
  print_row("floor: ping-pong / 2", ping_pong(o));
  Options one = o;
  const RingRun r1 = ring(one, 1, o.records, o.gap_ns, true);
  print_row("ring: publish -> visible, 1 reader", r1.latency);
  const RingRun rn = ring(o, o.readers, o.records, o.gap_ns, true);
  print_row(fmt::format("ring: publish -> visible, {} readers", o.readers).c_str(), rn.latency);
  fmt::print("ratio p50 ring(1 reader) / floor: {:.2f}x (goal <= 1.5x)\n",
             floor.p50 ? static_cast<double>(r1.latency.p50) / static_cast<double>(floor.p50) : 0);
  const RingRun rb = ring(one, 1, o.records, o.gap_ns, true, false);
  print_row("ring: 1 reader, no idle_pause", rb.latency);
  // Throughput in rounds: 0 readers, N readers, N readers without the pause, in an order that
  // rotates, so that each round's ratios compare runs moments apart.
  std::vector<double> r0, rn_, rb_, ratio_n, ratio_b;
  uint64_t lost_n = 0, lost_b = 0;
  const auto rate = [&](const RingRun& run) {
    return static_cast<double>(o.throughput_records) / run.seconds;
  };
  for (int round = 0; round < o.rounds; ++round) {
    double got[3] = {0, 0, 0};
    for (int k = 0; k < 3; ++k) {
      const int which = (k + round) % 3;
      const RingRun run =
          ring(o, which == 0 ? 0 : o.readers, o.throughput_records, 0, false, which != 2);
      got[which] = rate(run);
      if (which == 1) lost_n += run.lost;
      if (which == 2) lost_b += run.lost;
    }
    r0.push_back(got[0]);
    rn_.push_back(got[1]);
    rb_.push_back(got[2]);
    ratio_n.push_back(got[1] / got[0]);
    ratio_b.push_back(got[2] / got[0]);
  }
  const auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  };
  const auto [lo, hi] = std::minmax_element(ratio_n.begin(), ratio_n.end());
  fmt::print(
      "producer throughput (medians of {} rounds): {:.1f} M records/s with 0 readers, {:.1f} M/s "
      "with {} readers ({:.2f}x, rounds {:.2f}x-{:.2f}x, goal >= 0.95x); readers lapped for {} "
      "records\n",
      o.rounds, median(r0) / 1e6, median(rn_) / 1e6, o.readers, median(ratio_n), *lo, *hi, lost_n);
  fmt::print(
      "  the same {} readers without idle_pause: {:.1f} M/s ({:.2f}x); lapped for {} records\n",
      o.readers, median(rb_) / 1e6, median(ratio_b), lost_b);
  return 0;
}

}  // namespace

// Nothing escapes main: an error that even the handlers inside run() could not report is one line.
int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_shm_latency: %s\n", e.what());
  } catch (...) {
    std::fputs("bench_shm_latency: unknown error\n", stderr);
  }
  return 1;
}
