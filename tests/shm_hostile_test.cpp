// A reader facing a segment it cannot trust: a producer that died in the middle of a frame, or
// bytes that no producer wrote. The reader must answer (false, or a refusal at attach) in bounded
// time and never crash. fuzz/fuzz_segment_reader.cpp explores this with arbitrary bytes; these are
// the cases it found, made into tests.
#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>

#include "shm/reader.hpp"
#include "shm/writer.hpp"

namespace bmx::shm {
namespace {

SegmentConfig small_config() {
  SegmentConfig c;
  c.ring_slots = 1024;
  c.max_symbols = 16;
  c.max_tables = 8;
  c.max_books = 4;
  c.book_levels = 64;
  c.row_slots = 64;
  c.row_bytes = 256;
  return c;
}

// Runs the calling thread and a busy thread on one CPU, so that every yield of the caller hands
// the core over for a whole time slice (as on a loaded machine). Best effort: without affinity the
// test still bounds the time.
class BusyNeighbour {
 public:
  BusyNeighbour() {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu() < 0 ? 0 : sched_getcpu(), &one);
    pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
    busy_ = std::thread([this, one] {
      pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
      while (!stop_.load(std::memory_order_relaxed)) {
      }
    });
  }
  ~BusyNeighbour() {
    stop_ = true;
    busy_.join();
    cpu_set_t all;
    CPU_ZERO(&all);
    for (int i = 0; i < CPU_SETSIZE; ++i)
      CPU_SET(i, &all);
    pthread_setaffinity_np(pthread_self(), sizeof(all), &all);
  }

 private:
  std::atomic<bool> stop_{false};
  std::thread busy_;
};

// Found by fuzz_segment_reader (regression book-seqlock-left-odd-yields-for-minutes): a book whose
// seqlock stays odd made copy_book and top retry 100000 times with a yield each, minutes on a
// busy machine. Now they give up after a bounded wait (tens of milliseconds).
TEST(ShmHostile, BookSeqlockLeftOddFailsTheCopyInBoundedTime) {
  const std::string name = "/bmx-test-hostile-" + std::to_string(::getpid());
  Segment seg = Segment::create(name, small_config());
  Writer w(seg);
  w.set_symbol(0, "XBTUSD");
  w.set_table(0, "orderBookL2", TableKind::kBook);
  w.set_ready();
  Book* b = w.book(0, 0);
  w.begin_frame(1);
  w.book_clear(*b);
  w.book_insert(*b, Side::kSell, 101.0, 10, 1);
  w.book_insert(*b, Side::kBuy, 100.0, 20, 2);
  w.end_frame();
  Reader r = Reader::attach(name);
  BookCopy c;
  Top t;
  ASSERT_TRUE(r.copy_book(0, 0, c));
  ASSERT_TRUE(r.top(0, 0, t));

  // The producer dies inside its next frame: the book's seqlock stays odd. (Its process lives on
  // here, so each copy waits the longer bound, 250 ms, for a producer kept off its core.)
  b->seq.store(b->seq.load() + 1);
  BusyNeighbour busy;
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(r.copy_book(0, 0, c));
  EXPECT_FALSE(r.top(0, 0, t));
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_LT(took, std::chrono::seconds(2));
  Segment::remove(name);
}

// Found by fuzz_segment_reader (regression hostile-heartbeat-overflows-liveness, from a seed
// aimed at the heartbeat word): liveness() subtracted the segment's heartbeat from the clock, a
// signed overflow for a heartbeat near INT64_MIN, which then read as live.
TEST(ShmHostile, HeartbeatFarInThePastIsStaleNotAnOverflow) {
  const std::string name = "/bmx-test-hostile-hb-" + std::to_string(::getpid());
  Segment seg = Segment::create(name, small_config());
  Writer w(seg);
  w.set_ready();
  Reader r = Reader::attach(name);
  w.heartbeat(INT64_MIN);
  EXPECT_EQ(r.liveness(), Liveness::kStale);
  w.heartbeat(monotonic_ns());
  EXPECT_EQ(r.liveness(), Liveness::kLive);
  Segment::remove(name);
}

}  // namespace
}  // namespace bmx::shm
