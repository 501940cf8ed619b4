// The segment, the ring, the seqlocked state regions and the reader API, in one process: a Writer
// on a freshly created segment and Readers attached to it by name (read-only mappings of the same
// POSIX object). Expected values are written out by hand; nothing is derived from the code under
// test. Cross-process behaviour is in shm_process_test.cpp.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <map>
#include <ostream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "shm/reader.hpp"
#include "shm/writer.hpp"

namespace bmx::shm {
namespace {

std::string unique_name(const char* what) {
  static int n = 0;
  return "/bmx-test-" + std::to_string(::getpid()) + "-" + what + "-" + std::to_string(n++);
}

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

// A segment removed when the test ends.
struct Fixture {
  explicit Fixture(const char* what, SegmentConfig c = small_config())
      : name(unique_name(what)), seg(Segment::create(name, c)), w(seg) {
    w.set_symbol(0, "XBTUSD");
    w.set_symbol(1, "ETHUSD");
    w.set_table(0, "orderBookL2", TableKind::kBook);
    w.set_table(1, "instrument", TableKind::kGeneric);
    w.set_ready();
  }
  ~Fixture() { Segment::remove(name); }
  std::string name;
  Segment seg;
  Writer w;
};

std::vector<Delta> drain(Reader& r, PollResult* last = nullptr) {
  std::vector<Delta> out;
  std::vector<std::string> texts;
  PollResult p = r.poll([&](const Delta& d) {
    out.push_back(d);
    texts.emplace_back(d.text);
  });
  for (size_t i = 0; i < out.size(); ++i) {
    if (!texts[i].empty()) out[i].text = {};  // the view dies with the callback
  }
  if (last) *last = p;
  return out;
}

TEST(ShmSegment, CreatedWithMode0600AndReadersMapReadOnly) {
  Fixture f("mode");
  struct stat st {};
  ASSERT_EQ(::stat(("/dev/shm" + f.name).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  Reader r = Reader::attach(f.name);
  EXPECT_FALSE(r.segment().writable());
  EXPECT_EQ(r.symbol_name(0), "XBTUSD");
  EXPECT_EQ(r.table_name(0), "orderBookL2");
  EXPECT_EQ(r.table_kind(0), TableKind::kBook);
  EXPECT_EQ(r.symbol_id("ETHUSD"), 1u);
  EXPECT_FALSE(r.symbol_id("DOGEUSD").has_value());
  EXPECT_EQ(r.liveness(), Liveness::kLive);
}

TEST(ShmSegmentDeathTest, AReaderWritingToItsMappingFaults) {
  Fixture f("readonly");
  Reader r = Reader::attach(f.name);
  auto& h = const_cast<Header&>(r.header());  // what a buggy strategy might do
  // A plain build dies of SIGSEGV; under a sanitizer the runtime catches the fault, reports it and
  // exits non-zero. Either way the store never happens.
  const auto faulted = [](int status) {
    return (WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV) ||
           (WIFEXITED(status) && WEXITSTATUS(status) != 0);
  };
  EXPECT_EXIT(h.next_seq.store(12345), faulted, "");
  EXPECT_NE(f.seg.header().next_seq.load(), 12345u);
}

TEST(ShmSegment, GroupModeOnRequest) {
  const std::string name = unique_name("mode640");
  {
    Segment s = Segment::create(name, small_config(), 0640);
    struct stat st {};
    ASSERT_EQ(::stat(("/dev/shm" + name).c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0640u);
  }
  Segment::remove(name);
}

TEST(ShmSegment, AModeThatLetsOthersWriteIsRefused) {
  for (const unsigned mode : {0666u, 0620u, 0602u}) {
    const std::string name = unique_name("mode-writable");
    try {
      Segment s = Segment::create(name, small_config(), mode);
      ADD_FAILURE() << "created with mode " << std::oct << mode;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("would let other users write"), std::string::npos)
          << e.what();
    }
    Segment::remove(name);
  }
}

// A name already taken by another user's object (placed there to receive the feed, or to be
// written into behind the readers' backs) is refused, never published into.
TEST(ShmSegment, ASegmentOfAnotherUserIsNeverPublishedInto) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to create an object owned by another user";
  const std::string name = unique_name("foreign");
  const int fd = ::shm_open(name.c_str(), O_CREAT | O_RDWR, 0666);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::fchown(fd, 65534, 65534), 0);
  ::close(fd);
  try {
    Segment s = Segment::create(name, small_config());
    ADD_FAILURE() << "published into another user's object";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("belongs to another user"), std::string::npos) << e.what();
  }
  ::shm_unlink(name.c_str());
}

TEST(ShmSegment, MissingSegmentIsOneClearSentence) {
  try {
    (void)Reader::attach("/bmx-test-no-such-segment", std::chrono::milliseconds(20));
    FAIL() << "attached to nothing";
  } catch (const AttachError& e) {
    EXPECT_EQ(e.why(), AttachError::Why::kMissing);
    EXPECT_NE(std::string(e.what()).find("no shared-memory segment named"), std::string::npos);
  }
}

TEST(ShmSegment, OtherLayoutVersionIsRefused) {
  Fixture f("version");
  f.seg.header().layout_version = 99;  // as a producer of another version would have written
  try {
    (void)Reader::attach(f.name, std::chrono::milliseconds(20));
    FAIL() << "attached to another layout";
  } catch (const AttachError& e) {
    EXPECT_EQ(e.why(), AttachError::Why::kLayout);
    EXPECT_NE(std::string(e.what()).find("layout version 99"), std::string::npos);
  }
}

TEST(ShmSegment, InconsistentHeaderIsRefused) {
  Fixture f("corrupt");
  f.seg.header().ring_offset += 64;  // a header that lies about where the ring is
  EXPECT_THROW((void)Reader::attach(f.name, std::chrono::milliseconds(20)), AttachError);
}

TEST(ShmSegment, NotReadyTimesOut) {
  const std::string name = unique_name("notready");
  Segment s = Segment::create(name, small_config());  // no Writer: never ready
  try {
    (void)Reader::attach(name, std::chrono::milliseconds(20));
    FAIL();
  } catch (const AttachError& e) {
    EXPECT_EQ(e.why(), AttachError::Why::kNotReady);
  }
  Segment::remove(name);
}

TEST(ShmRing, RecordsArriveInOrderAndTheLastOfEachFrameIsFlagged) {
  Fixture f("order");
  Reader r = Reader::attach(f.name);
  Book* b = f.w.book(0, 0);
  ASSERT_NE(b, nullptr);
  f.w.begin_frame(1000);
  f.w.book_clear(*b);
  f.w.book_insert(*b, Side::kBuy, 100.5, 10, 7);
  f.w.book_insert(*b, Side::kSell, 101.0, 20, 8);
  f.w.end_frame();
  f.w.begin_frame(2000);
  f.w.book_update(*b, Side::kBuy, 100.5, 100.5, 15, 7);
  f.w.end_frame();

  const auto d = drain(r);
  ASSERT_EQ(d.size(), 4u);
  EXPECT_EQ(d[0].kind(), RecordKind::kBookClear);
  EXPECT_EQ(d[1].kind(), RecordKind::kBookInsert);
  EXPECT_EQ(d[1].side(), Side::kBuy);
  EXPECT_EQ(d[1].body.price, 100.5);
  EXPECT_EQ(d[1].body.size, 10);
  EXPECT_EQ(d[1].body.id, 7u);
  EXPECT_EQ(d[2].side(), Side::kSell);
  EXPECT_EQ(d[3].kind(), RecordKind::kBookUpdate);
  EXPECT_EQ(d[3].body.size, 15);
  EXPECT_EQ(d[3].body.recv_ns, 2000);
  EXPECT_FALSE(d[0].last_in_frame());
  EXPECT_FALSE(d[1].last_in_frame());
  EXPECT_TRUE(d[2].last_in_frame());
  EXPECT_TRUE(d[3].last_in_frame());
  for (size_t i = 1; i < d.size(); ++i)
    EXPECT_EQ(d[i].seq, d[i - 1].seq + 1);
  EXPECT_EQ(r.head(), d.back().seq + 1);
}

TEST(ShmRing, RowTextSpansSlotsAndWrapsAround) {
  Fixture f("text");
  Reader r = Reader::attach(f.name);
  // 1024 slots; rows of 300 bytes take 1 + 6 slots. Write ~3 rings' worth, reading as we go.
  std::string json = "{\"symbol\":\"XBTUSD\",\"note\":\"";
  json.append(300 - json.size() - 2, 'x');
  json += "\"}";
  ASSERT_EQ(json.size(), 300u);
  uint64_t rows = 0;
  for (int i = 0; i < 450; ++i) {
    json[30] = static_cast<char>('a' + i % 26);
    f.w.begin_frame(i);
    f.w.row(1, 0, Action::kUpdate, json);
    f.w.end_frame();
    r.poll([&](const Delta& d) {
      ASSERT_EQ(d.kind(), RecordKind::kRow);
      EXPECT_EQ(d.row_action(), Action::kUpdate);
      EXPECT_EQ(d.text.size(), 300u);
      EXPECT_EQ(d.text[30], static_cast<char>('a' + rows % 26));
      EXPECT_EQ(d.text.substr(0, 11), "{\"symbol\":\"");
      EXPECT_EQ(d.text.back(), '}');
      ++rows;
    });
  }
  EXPECT_EQ(rows, 450u);
  EXPECT_GT(f.w.next_seq(), 3u * 1024u);  // the ring wrapped three times
}

// Row text is stored word by word, its last partial word assembled from the text's own bytes:
// every length, across the boundaries of a word (8 bytes) and of a slot (56), arrives exactly,
// with nothing of an earlier, longer row left in it.
TEST(ShmRing, RowTextOfEveryLengthArrivesExactly) {
  Fixture f("lengths");
  Reader r = Reader::attach(f.name);
  std::string sent;
  for (size_t n = 0; n <= 130; ++n) {
    // A longer row first, into the slots the next rows reuse as the ring wraps.
    for (const size_t len : {size_t{200}, n}) {
      std::string json(len, '\0');
      for (size_t k = 0; k < len; ++k)
        json[k] = static_cast<char>(len == n ? 'A' + (k + n) % 26 : '#');
      f.w.begin_frame(static_cast<int64_t>(n));
      f.w.row(1, 0, Action::kInsert, json);
      f.w.end_frame();
      sent = json;
    }
    size_t got = 0;
    r.poll([&](const Delta& d) {
      ASSERT_EQ(d.kind(), RecordKind::kRow);
      if (d.text.size() == 200 && n != 200) return;  // the filler
      EXPECT_EQ(d.text, sent) << n;
      ++got;
    });
    EXPECT_EQ(got, 1u) << n;
  }
}

TEST(ShmRing, LappedReaderIsToldHowManyItLost) {
  Fixture f("lap");
  Reader r = Reader::attach(f.name);
  const uint64_t start = r.cursor();
  Book* b = f.w.book(0, 0);
  f.w.begin_frame(1);
  f.w.book_clear(*b);
  f.w.end_frame();
  for (int i = 0; i < 1500; ++i) {  // 1500 frames of one record each, ring of 1024
    f.w.begin_frame(i);
    f.w.book_insert(*b, Side::kBuy, 1.0 + i, 1, static_cast<uint64_t>(i + 1));
    f.w.book_delete(*b, Side::kBuy, 1.0 + i, static_cast<uint64_t>(i + 1));
    f.w.end_frame();
  }
  PollResult p;
  const auto d = drain(r, &p);
  EXPECT_TRUE(p.lapped);
  EXPECT_TRUE(d.empty());
  EXPECT_EQ(p.lost, 1 + 1500u * 2 - 0);  // everything since it attached
  EXPECT_EQ(r.cursor(), start + p.lost);
  EXPECT_EQ(r.cursor(), r.head());
  // After the lap, new records flow again.
  f.w.begin_frame(9);
  f.w.book_insert(*b, Side::kBuy, 5.0, 1, 99);
  f.w.end_frame();
  const auto after = drain(r, &p);
  EXPECT_FALSE(p.lapped);
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0].body.id, 99u);
}

TEST(ShmRing, HalfWrittenRecordIsNotDelivered) {
  Fixture f("half");
  Reader r = Reader::attach(f.name);
  const uint64_t s = r.cursor();
  // A producer stopped between marking the slot busy and storing its sequence.
  f.seg.slot(s).seq.store(kBusy);
  PollResult p;
  EXPECT_TRUE(drain(r, &p).empty());
  EXPECT_FALSE(p.lapped);
  EXPECT_EQ(r.cursor(), s);
  // A slot that holds a newer sequence than expected: the reader was overrun.
  f.seg.slot(s).seq.store(s + 1024);
  f.seg.header().next_seq.store(s + 1025);
  drain(r, &p);
  EXPECT_TRUE(p.lapped);
  EXPECT_EQ(p.lost, 1025u);
}

TEST(ShmBook, SegmentBookFollowsEveryOperationBestFirst) {
  Fixture f("book");
  Reader r = Reader::attach(f.name);
  Book* b = f.w.book(0, 0);
  f.w.begin_frame(1);
  f.w.book_clear(*b);
  // A partial in BitMEX order: price descending (asks worst first, then bids best first).
  f.w.book_insert(*b, Side::kSell, 103.0, 30, 3);
  f.w.book_insert(*b, Side::kSell, 102.0, 20, 2);
  f.w.book_insert(*b, Side::kSell, 101.5, 10, 1);
  f.w.book_insert(*b, Side::kBuy, 101.0, 11, 11);
  f.w.book_insert(*b, Side::kBuy, 100.0, 12, 12);
  f.w.end_frame();
  BookCopy c;
  ASSERT_TRUE(r.copy_book(0, 0, c));
  ASSERT_EQ(c.asks.size(), 3u);
  ASSERT_EQ(c.bids.size(), 2u);
  EXPECT_EQ(c.asks[0].price, 101.5);
  EXPECT_EQ(c.asks[2].price, 103.0);
  EXPECT_EQ(c.bids[0].price, 101.0);
  EXPECT_EQ(c.bids[1].price, 100.0);
  EXPECT_FALSE(c.stale);

  f.w.begin_frame(2);
  f.w.book_insert(*b, Side::kBuy, 100.5, 5, 13);           // middle
  f.w.book_update(*b, Side::kSell, 102.0, 102.0, 25, 2);   // size only
  f.w.book_update(*b, Side::kSell, 103.0, 101.25, 33, 3);  // moves to the top
  f.w.book_delete(*b, Side::kBuy, 101.0, 11);              // the best bid
  f.w.end_frame();
  ASSERT_TRUE(r.copy_book(0, 0, c));
  ASSERT_EQ(c.bids.size(), 2u);
  EXPECT_EQ(c.bids[0].price, 100.5);
  EXPECT_EQ(c.bids[0].size, 5);
  EXPECT_EQ(c.bids[1].price, 100.0);
  ASSERT_EQ(c.asks.size(), 3u);
  EXPECT_EQ(c.asks[0].price, 101.25);
  EXPECT_EQ(c.asks[0].id, 3u);
  EXPECT_EQ(c.asks[1].price, 101.5);
  EXPECT_EQ(c.asks[2].price, 102.0);
  EXPECT_EQ(c.asks[2].size, 25);
  EXPECT_EQ(c.stamp, r.head() - 1);  // the last record of the frame

  Top t;
  ASSERT_TRUE(r.top(0, 0, t));
  EXPECT_TRUE(t.has_bid && t.has_ask);
  EXPECT_EQ(t.bid.price, 100.5);
  EXPECT_EQ(t.ask.price, 101.25);
  EXPECT_FALSE(r.top(0, 1, t));  // no book for ETHUSD
}

TEST(ShmBook, ManyLevelsAtBothEndsStaySorted) {
  Fixture f("deep");
  Reader r = Reader::attach(f.name);
  Book* b = f.w.book(0, 0);
  f.w.begin_frame(1);
  f.w.book_clear(*b);
  // 128 levels fit (book_levels = 64: room for twice that, both sides together), inserted
  // worst-first, best-first and interleaved, with as many on one side as the other has room for.
  for (int i = 0; i < 32; ++i)
    f.w.book_insert(*b, Side::kBuy, 1000.0 - i, 1, static_cast<uint64_t>(100 + i));
  for (int i = 0; i < 32; ++i)
    f.w.book_insert(*b, Side::kBuy, 900.0 + i + 0.5, 1, static_cast<uint64_t>(200 + i));
  for (int i = 0; i < 64; ++i)
    f.w.book_insert(*b, Side::kSell, 1001.0 + i, 1, static_cast<uint64_t>(300 + i));
  f.w.end_frame();
  BookCopy c;
  ASSERT_TRUE(r.copy_book(0, 0, c));
  ASSERT_EQ(c.bids.size(), 64u);
  for (size_t i = 1; i < c.bids.size(); ++i)
    EXPECT_GT(c.bids[i - 1].price, c.bids[i].price);
  EXPECT_EQ(c.bids.front().price, 1000.0);
  EXPECT_EQ(c.bids.back().price, 900.5);
  ASSERT_EQ(c.asks.size(), 64u);
  // The 129th level does not fit: the segment's book goes stale (counted), the feed goes on.
  f.w.begin_frame(2);
  EXPECT_FALSE(f.w.book_insert(*b, Side::kBuy, 1.0, 1, 999));
  f.w.end_frame();
  ASSERT_TRUE(r.copy_book(0, 0, c));
  EXPECT_TRUE(c.stale);
  EXPECT_EQ(r.stats().segment_full.load(), 1u);
  EXPECT_EQ(r.stats().stale_books.load(), 1u);
}

// A side as the reader copies it (best first), reduced to (price, size, id) triples.
struct L {
  double price;
  int64_t size;
  uint64_t id;
  bool operator==(const L&) const = default;
  friend std::ostream& operator<<(std::ostream& os, const L& l) {
    return os << '{' << l.price << ", " << l.size << ", " << l.id << '}';
  }
};
std::vector<L> side_of(const BookCopy& c, Side side) {
  std::vector<L> out;
  for (const Level& l : side == Side::kBuy ? c.bids : c.asks)
    out.push_back(L{l.price, l.size, l.id});
  return out;
}

// Full sides (book_levels = 64) of distinct prices: bids 1000, 999, ...; asks 1001, 1002, ...
void fill_both_sides(Writer& w, Book& b) {
  w.begin_frame(1);
  w.book_clear(b);
  for (int i = 0; i < 64; ++i) {
    w.book_insert(b, Side::kBuy, 1000.0 - i, 1, static_cast<uint64_t>(i));
    w.book_insert(b, Side::kSell, 1001.0 + i, 1, static_cast<uint64_t>(100 + i));
  }
  w.end_frame();
}

TEST(ShmBook, LevelAtEveryDepthIsFoundUpdatedDeletedAndPutBack) {
  // The producer searches a side from its best end (1, 2, 4... levels back, then bisects): every
  // depth from the best (0) to the deepest (63) of a full side, on both sides, exercises each
  // edge of that search.
  Fixture f("depths");
  Reader r = Reader::attach(f.name);
  Book* b = f.w.book(0, 0);
  fill_both_sides(f.w, *b);
  BookCopy c;
  ASSERT_TRUE(r.copy_book(0, 0, c));
  const std::vector<L> bids = side_of(c, Side::kBuy), asks = side_of(c, Side::kSell);
  ASSERT_EQ(bids.size(), 64u);
  ASSERT_EQ(asks.size(), 64u);
  for (const Side side : {Side::kBuy, Side::kSell}) {
    const std::vector<L>& full = side == Side::kBuy ? bids : asks;
    for (size_t d = 0; d < 64; ++d) {
      const L l = full[d];
      f.w.begin_frame(2);
      ASSERT_TRUE(f.w.book_update(*b, side, l.price, l.price, 7, l.id));
      f.w.end_frame();
      ASSERT_TRUE(r.copy_book(0, 0, c));
      std::vector<L> want = full;
      want[d].size = 7;
      ASSERT_EQ(side_of(c, side), want) << "depth " << d;

      f.w.begin_frame(3);
      ASSERT_TRUE(f.w.book_delete(*b, side, l.price, l.id));
      f.w.end_frame();
      ASSERT_TRUE(r.copy_book(0, 0, c));
      want.erase(want.begin() + static_cast<ptrdiff_t>(d));
      ASSERT_EQ(side_of(c, side), want) << "depth " << d;

      f.w.begin_frame(4);
      ASSERT_TRUE(f.w.book_insert(*b, side, l.price, l.size, l.id));
      f.w.end_frame();
      ASSERT_TRUE(r.copy_book(0, 0, c));
      ASSERT_EQ(side_of(c, side), full) << "depth " << d;
    }
  }
  EXPECT_FALSE(c.stale);
}

TEST(ShmBook, EqualPricesAreToldApartById) {
  // Never in a sane book, but kept: a new level goes after those of an equal price (nearer the
  // best), and update and delete find theirs by id, whichever of the equal ones it is.
  Fixture f("equal");
  Reader r = Reader::attach(f.name);
  Book* b = f.w.book(0, 0);
  f.w.begin_frame(1);
  f.w.book_clear(*b);
  f.w.book_insert(*b, Side::kBuy, 99.0, 1, 1);
  for (uint64_t id = 10; id < 14; ++id)
    f.w.book_insert(*b, Side::kBuy, 100.0, static_cast<int64_t>(id), id);
  f.w.book_insert(*b, Side::kBuy, 101.0, 2, 2);
  f.w.book_insert(*b, Side::kSell, 102.0, 3, 3);
  f.w.book_insert(*b, Side::kSell, 102.0, 4, 4);
  f.w.end_frame();
  BookCopy c;
  ASSERT_TRUE(r.copy_book(0, 0, c));
  EXPECT_EQ(side_of(c, Side::kBuy), (std::vector<L>{{101.0, 2, 2},
                                                    {100.0, 13, 13},
                                                    {100.0, 12, 12},
                                                    {100.0, 11, 11},
                                                    {100.0, 10, 10},
                                                    {99.0, 1, 1}}));
  EXPECT_EQ(side_of(c, Side::kSell), (std::vector<L>{{102.0, 4, 4}, {102.0, 3, 3}}));

  f.w.begin_frame(2);
  EXPECT_TRUE(f.w.book_update(*b, Side::kBuy, 100.0, 100.0, 50, 11));  // the third of four
  EXPECT_TRUE(f.w.book_delete(*b, Side::kBuy, 100.0, 13));             // the first
  EXPECT_TRUE(f.w.book_update(*b, Side::kBuy, 100.0, 99.0, 60, 10));   // the last, moved down
  EXPECT_TRUE(f.w.book_delete(*b, Side::kSell, 102.0, 3));             // the deeper ask
  f.w.end_frame();
  ASSERT_TRUE(r.copy_book(0, 0, c));
  EXPECT_EQ(side_of(c, Side::kBuy),
            (std::vector<L>{
                {101.0, 2, 2}, {100.0, 12, 12}, {100.0, 50, 11}, {99.0, 60, 10}, {99.0, 1, 1}}));
  EXPECT_EQ(side_of(c, Side::kSell), (std::vector<L>{{102.0, 4, 4}}));

  // An id that is not at that price is not found: the book goes stale.
  f.w.begin_frame(3);
  EXPECT_FALSE(f.w.book_delete(*b, Side::kBuy, 100.0, 2));
  f.w.end_frame();
  ASSERT_TRUE(r.copy_book(0, 0, c));
  EXPECT_TRUE(c.stale);
}

TEST(ShmBook, SideThatDriftsToAnEndOfItsBufferIsRecentred) {
  // A side of 10 levels whose prices walk one way, one level in and one out per frame: its run
  // slides along the buffer (130 slots for book_levels = 64) and must be moved back to the middle
  // when it reaches an end, in both directions and on both sides.
  Fixture f("drift");
  Reader r = Reader::attach(f.name);
  Book* b = f.w.book(0, 0);
  for (const Side side : {Side::kBuy, Side::kSell}) {
    for (const int dir : {-1, 1}) {  // -1: new worst levels in, best out; 1: new best in, worst out
      const double sg = side == Side::kBuy ? 1.0 : -1.0;
      const auto price = [&](int k) { return 5000.0 + sg * k; };  // k larger: better
      f.w.begin_frame(1);
      f.w.book_clear(*b);
      for (int k = 0; k < 10; ++k)
        f.w.book_insert(*b, side, price(k), k, static_cast<uint64_t>(1000 + k));
      f.w.end_frame();
      int lo = 0;  // the side holds k in [lo, lo + 10)
      for (int step = 0; step < 300; ++step) {
        f.w.begin_frame(2);
        if (dir < 0) {
          ASSERT_TRUE(f.w.book_insert(*b, side, price(lo - 1), lo - 1,
                                      static_cast<uint64_t>(1000 + lo - 1)));
          ASSERT_TRUE(
              f.w.book_delete(*b, side, price(lo + 9), static_cast<uint64_t>(1000 + lo + 9)));
          --lo;
        } else {
          ASSERT_TRUE(f.w.book_insert(*b, side, price(lo + 10), lo + 10,
                                      static_cast<uint64_t>(1000 + lo + 10)));
          ASSERT_TRUE(f.w.book_delete(*b, side, price(lo), static_cast<uint64_t>(1000 + lo)));
          ++lo;
        }
        f.w.end_frame();
        BookCopy c;
        ASSERT_TRUE(r.copy_book(0, 0, c));
        std::vector<L> want;
        for (int k = lo + 9; k >= lo; --k)
          want.push_back(L{price(k), k, static_cast<uint64_t>(1000 + k)});
        ASSERT_EQ(side_of(c, side), want) << "step " << step << " dir " << dir;
        ASSERT_FALSE(c.stale);
      }
    }
  }
}

TEST(ShmBook, RandomOperationsMatchASortedListModel) {
  // Inserts, size updates, price moves and deletes at random depths on a coarse price grid (so
  // equal prices occur), each frame checked against a plain list per side, sorted best first
  // (equal prices: the higher slot first, as copy_book documents). Two ways of naming slots:
  // the writer's own (kAnySlot: lowest free slot, scans), and the caller's, as the feed names
  // them (its book's pool slots: here a stack of free slots, given back ones first), with the
  // best levels told by book_top() in most frames and left for end_frame() to find in the rest.
  for (const bool own_slots : {false, true}) {
    Fixture f(own_slots ? "random-own" : "random-any");
    Reader r = Reader::attach(f.name);
    Book* b = f.w.book(0, 0);
    f.w.begin_frame(1);
    f.w.book_clear(*b);
    f.w.end_frame();
    struct M {
      L l;
      uint32_t slot;
    };
    std::vector<M> model[2];
    std::vector<uint32_t> free_slots;  // own_slots: a stack, slot 0 on top
    for (uint32_t k = 128; k-- > 0;)
      free_slots.push_back(k);
    const auto sorted = [&](Side side) {
      std::vector<M> v = model[index(side)];
      std::sort(v.begin(), v.end(), [&](const M& x, const M& y) {
        if (x.l.price != y.l.price)
          return side == Side::kBuy ? x.l.price > y.l.price : x.l.price < y.l.price;
        return x.slot > y.slot;
      });
      return v;
    };
    const auto levels = [](const std::vector<M>& v) {
      std::vector<L> out;
      for (const M& m : v)
        out.push_back(m.l);
      return out;
    };
    uint64_t rng = 12345, next_id = 1, told = 0, found = 0;
    const auto rand = [&](uint64_t n) {
      rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
      return (rng >> 33) % n;
    };
    for (int frame = 0; frame < 3000; ++frame) {
      f.w.begin_frame(frame + 2);
      for (uint64_t k = 0, ops = 1 + rand(4); k < ops; ++k) {
        const Side side = rand(2) ? Side::kBuy : Side::kSell;
        auto& v = model[index(side)];
        const double base = side == Side::kBuy ? 100.0 : 200.0;
        const double p = base + static_cast<double>(rand(40)) * 0.5;
        const uint64_t op = v.empty() ? 0 : rand(v.size() >= 64 ? 3 : 4) + (v.size() >= 64);
        if (op == 0) {
          const L l{p, static_cast<int64_t>(rand(1000)), next_id++};
          uint32_t slot = Writer::kAnySlot;
          if (own_slots) {
            slot = free_slots.back();
            free_slots.pop_back();
          }
          ASSERT_TRUE(f.w.book_insert(*b, side, l.price, l.size, l.id, 0, slot));
          if (!own_slots) {  // the lowest slot no level holds
            slot = 0;
            while (std::any_of(model[0].begin(), model[0].end(),
                               [&](const M& m) { return m.slot == slot; }) ||
                   std::any_of(model[1].begin(), model[1].end(),
                               [&](const M& m) { return m.slot == slot; }))
              ++slot;
          }
          v.push_back(M{l, slot});
          continue;
        }
        const size_t d = rand(v.size());
        M& m = v[d];
        const uint32_t slot = own_slots ? m.slot : Writer::kAnySlot;
        if (op == 1) {  // size
          m.l.size = static_cast<int64_t>(rand(1000));
          ASSERT_TRUE(f.w.book_update(*b, side, m.l.price, m.l.price, m.l.size, m.l.id, 0, slot));
        } else if (op == 2) {  // price move
          const double old = m.l.price;
          m.l.price = p;
          m.l.size = static_cast<int64_t>(rand(1000));
          ASSERT_TRUE(f.w.book_update(*b, side, old, m.l.price, m.l.size, m.l.id, 0, slot));
        } else {
          ASSERT_TRUE(f.w.book_delete(*b, side, m.l.price, m.l.id, 0, slot));
          if (own_slots) free_slots.push_back(m.slot);
          v.erase(v.begin() + static_cast<ptrdiff_t>(d));
        }
      }
      const std::vector<M> bids = sorted(Side::kBuy), asks = sorted(Side::kSell);
      if (own_slots && rand(4) != 0) {
        f.w.book_top(*b, bids.empty() ? kNoLevel : bids[0].slot,
                     asks.empty() ? kNoLevel : asks[0].slot);
        ++told;
      } else {
        ++found;
      }
      f.w.end_frame();
      BookCopy c;
      ASSERT_TRUE(r.copy_book(0, 0, c));
      ASSERT_EQ(side_of(c, Side::kBuy), levels(bids)) << "frame " << frame;
      ASSERT_EQ(side_of(c, Side::kSell), levels(asks)) << "frame " << frame;
      Top t;
      ASSERT_TRUE(r.top(0, 0, t));
      ASSERT_EQ(t.has_bid, !bids.empty());
      ASSERT_EQ(t.has_ask, !asks.empty());
      if (t.has_bid) {
        ASSERT_EQ((L{t.bid.price, t.bid.size, t.bid.id}), bids[0].l);
      }
      if (t.has_ask) {
        ASSERT_EQ((L{t.ask.price, t.ask.size, t.ask.id}), asks[0].l);
      }
      ASSERT_FALSE(t.stale);
    }
    if (own_slots) {
      EXPECT_GT(told, 1000u);
    }
    EXPECT_GT(found, 500u);
  }
}

// A producer kept off its core in the middle of a frame (a loaded machine can do that for tens
// of milliseconds, during a large partial) holds the book's seqlock odd with no progress. Its
// process exists, so the copy waits for the frame to end instead of failing after the ~20 ms that
// mean "died mid-frame", and returns the state the frame left. The stall is 40 ms: twice what
// the old rule allowed, and far inside the 250 ms a live producer gets, so that a loaded machine
// waking the producer late does not fail the test.
TEST(ShmBook, ACopyWaitsOutAProducerThatStallsMidFrame) {
  Fixture f("stall");
  Reader r = Reader::attach(f.name);
  Book* b = f.w.book(0, 0);
  f.w.begin_frame(1);
  f.w.book_clear(*b);
  f.w.book_insert(*b, Side::kBuy, 100.0, 10, 1);
  f.w.end_frame();
  std::thread producer([&] {
    f.w.begin_frame(2);
    f.w.book_insert(*b, Side::kBuy, 100.5, 7, 2);                // opens the seqlock
    std::this_thread::sleep_for(std::chrono::milliseconds(40));  // the stall under test
    f.w.end_frame();
  });
  while ((b->seq.load() & 1) == 0)  // the frame has begun
    std::this_thread::yield();
  BookCopy c;
  const bool copied = r.copy_book(0, 0, c);
  producer.join();
  ASSERT_TRUE(copied);
  ASSERT_EQ(c.bids.size(), 2u);
  EXPECT_EQ(c.bids[0].price, 100.5);
  EXPECT_EQ(c.bids[0].size, 7);
}

TEST(ShmBook, ReaderNeverSeesAHalfAppliedFrame) {
  // A writer thread keeps both sides of one book at a constant total size and depth, changing
  // it only inside frames; a reader thread copies it as fast as it can. Every copy must show the
  // invariant (under TSan too: every shared access is atomic).
  Fixture f("torn");
  Reader r = Reader::attach(f.name);
  Book* b = f.w.book(0, 0);
  f.w.begin_frame(1);
  f.w.book_clear(*b);
  for (int i = 0; i < 10; ++i) {
    f.w.book_insert(*b, Side::kBuy, 100.0 - i, 10, static_cast<uint64_t>(i));
    f.w.book_insert(*b, Side::kSell, 101.0 + i, 10, static_cast<uint64_t>(100 + i));
  }
  f.w.end_frame();
  std::atomic<bool> done{false};
  std::atomic<uint64_t> copies{0};
  std::atomic<bool> torn{false};
  // At least 20000 frames, and on until the reader has checked 100 copies, however the threads
  // are scheduled on a loaded machine (the cap only ends a reader that never gets one).
  std::thread writer([&] {
    for (int n = 0; !torn.load() && (n < 20000 || (copies.load() < 100 && n < 50'000'000)); ++n) {
      f.w.begin_frame(n);
      // Move 5 from the best bid to a new level and back: total bid size stays 100.
      f.w.book_update(*b, Side::kBuy, 100.0, 100.0, 5, 0);
      f.w.book_insert(*b, Side::kBuy, 99.5, 5, 50);
      f.w.book_delete(*b, Side::kBuy, 99.5, 50);
      f.w.book_update(*b, Side::kBuy, 100.0, 100.0, 10, 0);
      f.w.end_frame();
      f.w.heartbeat(monotonic_ns());
    }
    done = true;
  });
  BookCopy c;
  while (!done.load()) {
    if (!r.copy_book(0, 0, c)) continue;
    copies.fetch_add(1);
    int64_t total = 0;
    for (const Level& l : c.bids)
      total += l.size;
    if (c.bids.size() != 10u || total != 100 || c.bids[0].price != 100.0) {
      torn = true;  // the writer stops; one failure is enough
      ADD_FAILURE() << "torn copy: " << c.bids.size() << " bid levels, total size " << total
                    << ", best " << (c.bids.empty() ? 0.0 : c.bids[0].price);
      break;
    }
  }
  writer.join();
  EXPECT_GE(copies.load(), 100u);
}

// Keys and texts are stored word by word, their last partial words assembled from their own
// bytes, and a row that keeps its slot keeps its key words: every key length up to 60 and every
// text length up to row_bytes reads back exactly, also where a shorter key or text took the place
// of a longer one.
TEST(ShmRows, EveryKeyAndTextLengthReadsBackExactly) {
  Fixture f("row-lengths");
  Reader r = Reader::attach(f.name);
  auto text = [](size_t n, char c) {
    std::string t(n, c);
    for (size_t k = 0; k < n; k += 7)
      t[k] = static_cast<char>('0' + n % 10);
    return t;
  };
  for (const char c : {'a', 'b'}) {  // 'b': the same keys' slots again, after every row's erase
    std::map<std::string, std::string> want;
    for (size_t len = 60; len >= 1; --len) {  // longest first
      const std::string key = text(len, c == 'a' ? 'K' : 'k');
      want[key] = text(len * 4, c);
      ASSERT_TRUE(f.w.row_put(2, key, 0, want[key])) << len;
    }
    std::string json;
    for (const auto& [key, t] : want) {
      ASSERT_TRUE(r.find_row(2, key, json)) << key.size();
      EXPECT_EQ(json, t) << key.size();
    }
    const auto rows = r.rows(2);
    const std::map<std::string, std::string> got(rows.begin(), rows.end());
    EXPECT_EQ(got, want);
    for (const auto& [key, t] : want)
      f.w.row_erase(2, key);
    EXPECT_TRUE(r.rows(2).empty());
  }
  std::string json;
  for (size_t n = 256;; n = n > 100 ? n - 13 : n - 1) {  // one row, its text ever shorter
    ASSERT_TRUE(f.w.row_put(3, "XBTUSD", 0, text(n, 'x'))) << n;
    ASSERT_TRUE(r.find_row(3, "XBTUSD", json));
    EXPECT_EQ(json, text(n, 'x')) << n;
    if (n == 0) break;
  }
}

TEST(ShmRows, PutFindEraseAndClear) {
  Fixture f("rows");
  Reader r = Reader::attach(f.name);
  f.w.row_put(1, "XBTUSD", 0, R"({"symbol":"XBTUSD","lastPrice":95123.5})");
  f.w.row_put(1, "ETHUSD", 1, R"({"symbol":"ETHUSD","lastPrice":3000})");
  std::string json;
  ASSERT_TRUE(r.find_row(1, "XBTUSD", json));
  EXPECT_EQ(json, R"({"symbol":"XBTUSD","lastPrice":95123.5})");
  f.w.row_put(1, "XBTUSD", 0, R"({"symbol":"XBTUSD","lastPrice":95124})");
  ASSERT_TRUE(r.find_row(1, "XBTUSD", json));
  EXPECT_EQ(json, R"({"symbol":"XBTUSD","lastPrice":95124})");
  EXPECT_FALSE(r.find_row(0, "XBTUSD", json));  // another table
  f.w.row_erase(1, "XBTUSD");
  EXPECT_FALSE(r.find_row(1, "XBTUSD", json));
  ASSERT_TRUE(r.find_row(1, "ETHUSD", json));  // its probe chain survives the tombstone
  f.w.row_put(1, "XBTUSD", 0, R"({"symbol":"XBTUSD"})");
  EXPECT_EQ(r.rows(1).size(), 2u);
  f.w.begin_frame(1);
  f.w.table_clear(1, 1);  // a partial for ETHUSD
  f.w.end_frame();
  EXPECT_FALSE(r.find_row(1, "ETHUSD", json));
  EXPECT_TRUE(r.find_row(1, "XBTUSD", json));
  // A row larger than row_bytes (256) is refused and counted, not truncated.
  EXPECT_FALSE(f.w.row_put(1, "BIG", 2, std::string(300, ' ')));
  EXPECT_EQ(r.stats().segment_full.load(), 1u);
  // A row that outgrows row_bytes is gone from the segment, not left readable as it was before.
  EXPECT_FALSE(f.w.row_put(1, "XBTUSD", 0,
                           R"({"symbol":"XBTUSD","text":")" + std::string(250, 'x') + R"("})"));
  EXPECT_EQ(r.stats().segment_full.load(), 2u);
  EXPECT_FALSE(r.find_row(1, "XBTUSD", json));
  EXPECT_EQ(r.rows(1).size(), 0u);
  ASSERT_TRUE(f.w.row_put(1, "XBTUSD", 0, R"({"symbol":"XBTUSD"})"));  // back once it fits
  ASSERT_TRUE(r.find_row(1, "XBTUSD", json));
  EXPECT_EQ(json, R"({"symbol":"XBTUSD"})");
}

// Found by fuzz_pipeline (regression keyless-row-without-symbol-null-key): a keyless table's row
// with no symbol is stored under the empty key, which the engine passes as a default (null) view;
// memcpy/memcmp of its zero bytes from a null pointer is undefined (UBSan, asan preset).
TEST(ShmRows, EmptyKeyFromANullViewIsStoredFoundAndErased) {
  Fixture f("rows-empty-key");
  Reader r = Reader::attach(f.name);
  ASSERT_TRUE(f.w.row_put(1, std::string_view{}, kNoSymbol, "{}"));
  std::string json;
  ASSERT_TRUE(r.find_row(1, std::string_view{}, json));
  EXPECT_EQ(json, "{}");
  ASSERT_TRUE(r.find_row(1, "", json));
  f.w.row_erase(1, std::string_view{});
  EXPECT_FALSE(r.find_row(1, std::string_view{}, json));
}

TEST(ShmTradeQuote, LatestOfEach) {
  Fixture f("tq");
  Reader r = Reader::attach(f.name);
  TradeQuoteBody tq;
  EXPECT_FALSE(r.trade_quote(0, tq));
  f.w.trade(0, 111, 95000.5, 300, Side::kSell);
  f.w.quote(0, 222, true, 95000.0, 10, true, 95000.5, 20);
  ASSERT_TRUE(r.trade_quote(0, tq));
  EXPECT_EQ(tq.trade_price, 95000.5);
  EXPECT_EQ(tq.trade_size, 300);
  EXPECT_EQ(tq.trade_side, 1u);
  EXPECT_EQ(tq.bid_price, 95000.0);
  EXPECT_EQ(tq.ask_size, 20);
  EXPECT_EQ(tq.quote_ns, 222);
}

// A trade changes only the trade's fields and a quote only the quote's, though some share a word
// (trade_side with has_bid): each keeps what the other wrote. A one-sided quote reads 0 on the
// missing side.
TEST(ShmTradeQuote, ATradeAndAQuoteKeepEachOthersFields) {
  Fixture f("tq-fields");
  Reader r = Reader::attach(f.name);
  TradeQuoteBody tq;
  f.w.quote(1, 10, true, 3000.25, 7, false, 0, 0);
  ASSERT_TRUE(r.trade_quote(1, tq));
  EXPECT_EQ(tq.has_trade, 0u);
  EXPECT_EQ(tq.has_quote, 1u);
  EXPECT_EQ(tq.has_bid, 1u);
  EXPECT_EQ(tq.has_ask, 0u);
  EXPECT_EQ(tq.bid_price, 3000.25);
  EXPECT_EQ(tq.bid_size, 7);
  EXPECT_EQ(tq.ask_price, 0.0);
  EXPECT_EQ(tq.ask_size, 0);
  f.w.trade(1, 20, 3000.5, 4, Side::kBuy);
  f.w.trade(1, 30, 3001.0, 5, Side::kSell);
  ASSERT_TRUE(r.trade_quote(1, tq));
  EXPECT_EQ(tq.has_trade, 1u);
  EXPECT_EQ(tq.trade_ns, 30);
  EXPECT_EQ(tq.trade_price, 3001.0);
  EXPECT_EQ(tq.trade_size, 5);
  EXPECT_EQ(tq.trade_side, 1u);  // Side::kSell
  EXPECT_EQ(tq.has_quote, 1u);
  EXPECT_EQ(tq.has_bid, 1u);
  EXPECT_EQ(tq.quote_ns, 10);
  EXPECT_EQ(tq.bid_price, 3000.25);
  f.w.quote(1, 40, false, 0, 0, true, 3001.5, 9);
  ASSERT_TRUE(r.trade_quote(1, tq));
  EXPECT_EQ(tq.has_bid, 0u);
  EXPECT_EQ(tq.bid_price, 0.0);
  EXPECT_EQ(tq.bid_size, 0);
  EXPECT_EQ(tq.has_ask, 1u);
  EXPECT_EQ(tq.ask_price, 3001.5);
  EXPECT_EQ(tq.ask_size, 9);
  EXPECT_EQ(tq.quote_ns, 40);
  EXPECT_EQ(tq.trade_side, 1u);
  EXPECT_EQ(tq.trade_price, 3001.0);
  EXPECT_FALSE(r.trade_quote(0, tq));  // another symbol: untouched
}

TEST(ShmLiveness, RestartInPlaceIsANewEpoch) {
  Fixture f("epoch");
  Reader r = Reader::attach(f.name);
  EXPECT_EQ(r.liveness(), Liveness::kLive);
  f.w.set_link(LinkState::kStopped);
  EXPECT_EQ(r.liveness(), Liveness::kStopped);
  // The same producer re-creates the segment (as a restarted feed would): same size, new epoch.
  Segment again = Segment::create(f.name, small_config());
  EXPECT_EQ(r.liveness(), Liveness::kRestarted);
  PollResult p = r.poll([](const Delta&) {});
  EXPECT_TRUE(p.restarted);
}

TEST(ShmLiveness, StoppedHeartbeatReadsAsStale) {
  Fixture f("heartbeat");
  Reader r = Reader::attach(f.name);
  f.w.heartbeat(monotonic_ns() - 5'000'000'000);
  EXPECT_EQ(r.liveness(), Liveness::kStale);
  f.w.heartbeat(monotonic_ns());
  EXPECT_EQ(r.liveness(), Liveness::kLive);
}

}  // namespace
}  // namespace bmx::shm
