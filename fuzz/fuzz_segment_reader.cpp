// libFuzzer target: the reader side (shm/reader.hpp) on a corrupt or hostile segment. A reader
// must never crash, read outside its mapping or hang, whatever the segment's bytes say.
//
// The segment is a real POSIX shared-memory object, as a reader would find it. Its bytes start as
// a copy of a segment that a real engine populated (books, rows, a trade, a quote, ring records;
// made once per process), and the input then patches it:
//   byte 0        flags: bit 0 truncates the object by bytes 1-2 (pages, little-endian), so that
//                 the header may describe more than is mapped
//   then patches  [region:1][offset:2][length:1][bytes:length]: `region` picks the header, stats,
//                 directory, ring, books, trades or rows (modulo 7), `offset` is taken modulo
//                 that region's size
// The reader then attaches (a refusal, AttachError, is a fine answer) and does everything a
// strategy or bitmex-top does: polls the ring from the start and from the head, lists symbols,
// tables and books, copies every book, reads tops, trades and quotes, lists and looks up rows,
// asks for liveness.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "engine/feed_engine.hpp"
#include "fuzz/fuzz_support.hpp"
#include "shm/reader.hpp"
#include "shm/segment.hpp"
#include "shm/writer.hpp"

using namespace bmx;

namespace {

shm::SegmentConfig segment_config() {
  shm::SegmentConfig c;
  c.ring_slots = 1024;
  c.max_symbols = 16;
  c.max_tables = 16;
  c.max_books = 4;
  c.book_levels = 16;
  c.row_slots = 16;
  c.row_bytes = 256;
  return c;
}

// A segment as a real producer leaves it: the warm-up partials and a few deltas published.
std::vector<char> make_template() {
  const std::string name = "/bmx-fuzz-template-" + std::to_string(::getpid());
  std::vector<char> bytes;
  {
    shm::Segment seg = shm::Segment::create(name, segment_config());
    shm::Writer writer(seg);
    EngineConfig ec = fuzz::small_engine();
    ec.max_symbols = segment_config().max_symbols;
    FeedEngine engine(ec);
    engine.publish_to(&writer);
    for (const std::string_view f : fuzz::kWarmUp)
      fuzz::feed(engine, f);
    fuzz::feed(
        engine,
        R"({"table":"orderBookL2","action":"update","data":[{"symbol":"XBTUSD","id":8799000150,"side":"Buy","size":350}]})");
    fuzz::feed(
        engine,
        R"({"table":"quote","action":"insert","data":[{"timestamp":"2021-07-22T22:16:07.500Z","symbol":"XBTUSD","bidSize":350,"bidPrice":9998.5,"askPrice":9999.5,"askSize":150}]})");
    fuzz::feed(
        engine,
        R"({"table":"order","action":"insert","data":[{"orderID":"b2","account":1,"symbol":"ETHUSD","side":"Sell","price":302,"orderQty":1}]})");
    writer.heartbeat(shm::monotonic_ns());
    bytes.assign(&reinterpret_cast<const char&>(seg.header()),
                 &reinterpret_cast<const char&>(seg.header()) + seg.size());
  }
  // The producer that left these bytes is gone; the template must not name this very process
  // (alive), or every input that leaves a book's seqlock odd would make each copy wait the bound
  // for a live producer kept off its core (250 ms) instead of the ~20 ms for a dead one, and
  // fuzzing would crawl. Above pid_max (at most 2^22): never a live pid. Inputs may still write
  // any pid there.
  reinterpret_cast<shm::Header*>(bytes.data())->producer_pid = INT32_MAX;
  shm::Segment::remove(name);
  return bytes;
}

// The object the reader attaches to, written through a mapping of our own.
class HostileSegment {
 public:
  HostileSegment() : name_("/bmx-fuzz-reader-" + std::to_string(::getpid())) {}
  ~HostileSegment() {
    unmap();
    ::shm_unlink(name_.c_str());
  }
  [[nodiscard]] const std::string& name() const noexcept { return name_; }

  // Replaces the object's contents with `bytes`.
  void write(const std::vector<char>& bytes) {
    if (bytes.size() != size_) {
      unmap();
      const int fd = ::shm_open(name_.c_str(), O_RDWR | O_CREAT, 0600);
      BMX_FUZZ_CHECK(fd >= 0, "shm_open");
      BMX_FUZZ_CHECK(::ftruncate(fd, static_cast<off_t>(bytes.size())) == 0, "ftruncate");
      void* p = ::mmap(nullptr, bytes.size(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      ::close(fd);
      BMX_FUZZ_CHECK(p != MAP_FAILED, "mmap");
      base_ = static_cast<char*>(p);
      size_ = bytes.size();
    }
    std::memcpy(base_, bytes.data(), size_);
  }

 private:
  void unmap() {
    if (base_) ::munmap(base_, size_);
    base_ = nullptr;
    size_ = 0;
  }
  std::string name_;
  char* base_ = nullptr;
  size_t size_ = 0;
};

// Everything a consumer may ask of a segment. Its answers are not checked (they come from hostile
// bytes): only that asking is safe and ends.
void read_everything(shm::Reader& r) {
  uint64_t sum = 0;  // keeps the reads observable
  auto drain = [&] {
    for (int i = 0; i < 8; ++i) {
      const shm::PollResult p = r.poll([&](const shm::Delta& d) { sum += d.seq + d.text.size(); });
      if (p.records == 0 && !p.lapped) break;
    }
  };
  r.seek(1);
  drain();
  r.seek_to_head();
  drain();
  r.seek(r.head() > 100 ? r.head() - 100 : 0);
  drain();

  const uint32_t symbols = std::min<uint32_t>(r.symbol_count(), 64);
  for (uint32_t i = 0; i < symbols; ++i) {
    const std::string_view name = r.symbol_name(i);
    sum += r.symbol_id(name).value_or(0);
    shm::TradeQuoteBody tq;
    sum += r.trade_quote(i, tq);
  }
  const uint32_t tables = std::min<uint32_t>(r.table_count(), 64);
  std::string json;
  for (uint32_t i = 0; i < tables; ++i) {
    const auto id = static_cast<uint16_t>(i);
    sum += r.table_id(r.table_name(id)).value_or(0);
    sum += static_cast<uint32_t>(r.table_kind(id)) + r.table_has_partial(id);
    for (const auto& [key, text] : r.rows(id))
      sum += r.find_row(id, key, json) + text.size();
    sum += r.find_row(id, "XBTUSD", json);
  }
  shm::BookCopy copy;
  for (const auto& [table, symbol] : r.books()) {
    sum += r.copy_book(table, symbol, copy) + copy.bids.size() + copy.asks.size();
    shm::Top top;
    sum += r.top(table, symbol, top);
  }
  sum += static_cast<uint64_t>(r.liveness()) + static_cast<uint64_t>(r.link_state());
  sum += r.stats().frames.load(std::memory_order_relaxed);
  BMX_FUZZ_CHECK(sum != 0x5eed, "unreachable: keeps the reads");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<char> kTemplate = make_template();
  static HostileSegment target;
  if (size == 0) return 0;

  std::vector<char> bytes = kTemplate;
  const auto& h = *reinterpret_cast<const shm::Header*>(kTemplate.data());
  const uint64_t starts[8] = {0,
                              h.stats_offset,
                              h.dir_offset,
                              h.ring_offset,
                              h.books_offset,
                              h.trades_offset,
                              h.rows_offset,
                              h.total_bytes};
  size_t at = 1;
  if ((data[0] & 1) && size >= 3) {
    const size_t pages = size_t{data[1]} | size_t{data[2]} << 8;
    bytes.resize(std::max<size_t>(bytes.size() - std::min(bytes.size(), pages * 4096), 4096));
    at = 3;
  }
  while (at + 4 <= size) {
    const unsigned region = data[at] % 7;
    const uint64_t region_size = starts[region + 1] - starts[region];
    const uint64_t offset =
        starts[region] + ((size_t{data[at + 1]} | size_t{data[at + 2]} << 8) % region_size);
    const size_t len = std::min<size_t>(data[at + 3], size - at - 4);
    at += 4;
    for (size_t i = 0; i < len && offset + i < bytes.size(); ++i)
      bytes[offset + i] = static_cast<char>(data[at + i]);
    at += len;
  }
  target.write(bytes);

  try {
    shm::Reader r(shm::Segment::attach(target.name(), std::chrono::milliseconds(0)));
    read_everything(r);
  } catch (const shm::AttachError&) {
    // Refused at attach: the header does not describe a segment this reader can trust.
  }
  return 0;
}
