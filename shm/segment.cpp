#include "shm/segment.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <thread>

namespace bmx::shm {

namespace bip = boost::interprocess;

int64_t monotonic_ns() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

int64_t realtime_ns() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

namespace {

constexpr uint64_t kPage = 4096;
uint64_t page_up(uint64_t n) {
  return (n + kPage - 1) & ~(kPage - 1);
}
bool power_of_two(uint64_t n) {
  return n != 0 && (n & (n - 1)) == 0;
}

void check_config(const SegmentConfig& c) {
  auto fail = [](const std::string& what) {
    throw std::invalid_argument("segment configuration: " + what);
  };
  if (!power_of_two(c.ring_slots) || c.ring_slots < 1024)
    fail("ring slots must be a power of two >= 1024");
  if (!power_of_two(c.row_slots) || c.row_slots < 16)
    fail("row slots must be a power of two >= 16");
  if (c.max_symbols == 0 || c.max_symbols > (1u << 20)) fail("max symbols must be 1..2^20");
  if (c.max_tables == 0 || c.max_tables > 4096) fail("max tables must be 1..4096");
  if (c.max_books == 0 || c.max_books > 65536) fail("max books must be 1..65536");
  if (c.book_levels < 16 || c.book_levels > (1u << 22)) fail("book levels must be 16..2^22");
  if (c.row_bytes < 256 || c.row_bytes > (1u << 20) || c.row_bytes % 64 != 0) {
    fail("row bytes must be a multiple of 64 in 256..2^20");
  }
}

}  // namespace

Offsets layout_of(const SegmentConfig& c) noexcept {
  Offsets o{};
  o.book_bytes =
      static_cast<uint32_t>(sizeof(Book) + 2 * uint64_t{c.book_levels} * sizeof(BookSlot));
  o.book_bytes = static_cast<uint32_t>((o.book_bytes + kCacheLine - 1) & ~(kCacheLine - 1));
  o.row_slot_bytes = static_cast<uint32_t>(sizeof(RowSlot) + c.row_bytes);
  o.stats = page_up(sizeof(Header));
  o.dir = o.stats + page_up(sizeof(Stats));
  o.ring = o.dir +
           page_up(sizeof(Directory) + (uint64_t{c.max_symbols} + c.max_tables) * sizeof(DirEntry));
  o.books = o.ring + page_up(uint64_t{c.ring_slots} * sizeof(Record));
  o.trades = o.books + page_up(uint64_t{c.max_books} * o.book_bytes);
  o.rows = o.trades + page_up(uint64_t{c.max_symbols} * sizeof(TradeQuote));
  o.total = o.rows + page_up(uint64_t{c.row_slots} * o.row_slot_bytes);
  return o;
}

struct Segment::Mapping {
  bip::shared_memory_object object;
  bip::mapped_region region;
};

Segment::Segment(std::string name, std::unique_ptr<Mapping> m, bool writable)
    : name_(std::move(name)),
      mapping_(std::move(m)),
      base_(static_cast<char*>(mapping_->region.get_address())),
      writable_(writable) {}

Segment::Segment(Segment&&) noexcept = default;
Segment& Segment::operator=(Segment&&) noexcept = default;
Segment::~Segment() = default;

uint64_t Segment::size() const noexcept {
  return mapping_ ? mapping_->region.get_size() : 0;
}

bool Segment::remove(const std::string& name) noexcept {
  return bip::shared_memory_object::remove(name.c_str());
}

namespace {

// True when the header's sizes are valid and its offsets are exactly what they imply, inside a
// mapping of `size` bytes: a reader then never indexes outside its mapping.
bool consistent(const Header& h, uint64_t size) {
  if (h.header_bytes != sizeof(Header) || h.total_bytes > size) return false;
  SegmentConfig c;
  c.ring_slots = h.ring_slots;
  c.max_symbols = h.max_symbols;
  c.max_tables = h.max_tables;
  c.max_books = h.max_books;
  c.book_levels = h.book_levels;
  c.row_slots = h.row_slots;
  c.row_bytes = h.row_bytes;
  try {
    check_config(c);
  } catch (const std::invalid_argument&) {
    return false;
  }
  const Offsets o = layout_of(c);
  return o.stats == h.stats_offset && o.dir == h.dir_offset && o.ring == h.ring_offset &&
         o.books == h.books_offset && o.trades == h.trades_offset && o.rows == h.rows_offset &&
         o.total == h.total_bytes && o.book_bytes == h.book_bytes &&
         h.book_slots == 2 * h.book_levels;
}

bool pid_alive(int32_t pid) {
  return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM);
}

// Fixed header fields for `c`, everything else zero.
void initialise(char* base, const SegmentConfig& c, const Offsets& o, uint64_t epoch) {
  auto* h = reinterpret_cast<Header*>(base);
  h->ready.store(0, std::memory_order_release);
  // Readers of a previous epoch may still look: tell them first (a new epoch makes them resync),
  // then clear the regions, then describe them.
  h->epoch.store(epoch, std::memory_order_release);
  std::memset(base + o.stats, 0, o.total - o.stats);
  h->magic = kMagic;
  h->layout_version = kLayoutVersion;
  h->header_bytes = sizeof(Header);
  h->total_bytes = o.total;
  h->stats_offset = o.stats;
  h->dir_offset = o.dir;
  h->ring_offset = o.ring;
  h->books_offset = o.books;
  h->trades_offset = o.trades;
  h->rows_offset = o.rows;
  h->ring_slots = c.ring_slots;
  h->max_symbols = c.max_symbols;
  h->max_tables = c.max_tables;
  h->max_books = c.max_books;
  h->book_levels = c.book_levels;
  h->book_slots = 2 * c.book_levels;
  h->row_slots = c.row_slots;
  h->row_bytes = c.row_bytes;
  h->book_bytes = o.book_bytes;
  h->producer_pid = static_cast<int32_t>(::getpid());
  h->start_time_ns = realtime_ns();
  h->heartbeat_ns.store(monotonic_ns(), std::memory_order_relaxed);
  h->link_state.store(static_cast<uint32_t>(LinkState::kStarting), std::memory_order_relaxed);
  h->next_seq.store(1, std::memory_order_relaxed);
  // `ready` is stored by the Writer once the directory is filled.
}

}  // namespace

Segment Segment::create(const std::string& name, const SegmentConfig& config, unsigned mode) {
  check_config(config);
  // Readers map the segment read-only: nobody but the producer ever needs to write it, and a
  // segment others can write is a segment others can forge books in.
  if (mode > 0777 || (mode & 0022) != 0) {
    char octal[8];
    std::snprintf(octal, sizeof octal, "%04o", mode);
    throw std::runtime_error(std::string("segment mode ") + octal +
                             " would let other users write the segment; readers need read access "
                             "only (e.g. 0640 for the group)");
  }
  const Offsets o = layout_of(config);
  uint64_t epoch = static_cast<uint64_t>(realtime_ns());
  // An existing segment of the same size is re-initialised in place, so that readers attached to
  // it see the new epoch; one still served by a live producer is refused.
  try {
    auto m = std::make_unique<Mapping>();
    m->object = bip::shared_memory_object(bip::open_only, name.c_str(), bip::read_write);
    // One left there by another user (who could still write it, or map it, whatever its mode
    // says now) is never published into: it cannot be removed either, so that is an error.
    struct stat st {};
    if (::fstat(m->object.get_mapping_handle().handle, &st) == 0 && st.st_uid != ::geteuid()) {
      throw std::runtime_error("segment '" + name + "' exists and belongs to another user (uid " +
                               std::to_string(st.st_uid) + "): choose another --shm name");
    }
    bip::offset_t existing = 0;
    m->object.get_size(existing);
    if (static_cast<uint64_t>(existing) >= sizeof(Header)) {
      m->region = bip::mapped_region(m->object, bip::read_write);
      auto* h = static_cast<Header*>(m->region.get_address());
      const bool ours = h->magic == kMagic;
      if (ours && h->ready.load(std::memory_order_acquire) &&
          h->link_state.load(std::memory_order_relaxed) !=
              static_cast<uint32_t>(LinkState::kStopped) &&
          h->producer_pid != ::getpid() && pid_alive(h->producer_pid) &&
          monotonic_ns() - h->heartbeat_ns.load(std::memory_order_relaxed) < 2'000'000'000) {
        throw std::runtime_error("segment '" + name + "' is in use by a running producer (pid " +
                                 std::to_string(h->producer_pid) + ")");
      }
      if (ours && h->epoch.load() >= epoch) epoch = h->epoch.load() + 1;
      if (ours && h->layout_version == kLayoutVersion &&
          static_cast<uint64_t>(existing) == o.total) {
        ::fchmod(m->object.get_mapping_handle().handle, static_cast<mode_t>(mode));
        initialise(static_cast<char*>(m->region.get_address()), config, o, epoch);
        return Segment(name, std::move(m), true);
      }
    }
    bip::shared_memory_object::remove(name.c_str());
  } catch (const bip::interprocess_exception&) {
    // None there: create it below.
  }
  auto m = std::make_unique<Mapping>();
  try {
    m->object = bip::shared_memory_object(bip::create_only, name.c_str(), bip::read_write,
                                          bip::permissions(mode));
    // shm_open applies the umask; the mode asked for is the mode wanted.
    ::fchmod(m->object.get_mapping_handle().handle, static_cast<mode_t>(mode));
    m->object.truncate(static_cast<bip::offset_t>(o.total));
    m->region = bip::mapped_region(m->object, bip::read_write);
  } catch (const bip::interprocess_exception& e) {
    throw std::runtime_error("cannot create shared-memory segment '" + name +
                             "': " + std::string(e.what()));
  }
  initialise(static_cast<char*>(m->region.get_address()), config, o, epoch);
  return Segment(name, std::move(m), true);
}

Segment Segment::attach(const std::string& name, std::chrono::milliseconds timeout) {
  using Why = AttachError::Why;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto m = std::make_unique<Mapping>();
    try {
      m->object = bip::shared_memory_object(bip::open_only, name.c_str(), bip::read_only);
    } catch (const bip::interprocess_exception& e) {
      if (e.get_error_code() == bip::security_error) {
        throw AttachError(Why::kPermission, "no permission to read shared-memory segment '" + name +
                                                "' (its mode excludes this user)");
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        throw AttachError(Why::kMissing, "no shared-memory segment named '" + name +
                                             "' (is the feed running with --shm " + name + "?)");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));  // waiting for another process
      continue;
    }
    bip::offset_t size = 0;
    m->object.get_size(size);
    if (static_cast<uint64_t>(size) >= sizeof(Header)) {
      m->region = bip::mapped_region(m->object, bip::read_only);
      const auto* h = static_cast<const Header*>(m->region.get_address());
      if (h->ready.load(std::memory_order_acquire)) {
        if (h->magic != kMagic) {
          throw AttachError(Why::kLayout, "'" + name + "' is not a bitmex-shm segment");
        }
        if (h->layout_version != kLayoutVersion) {
          throw AttachError(
              Why::kLayout,
              "segment '" + name + "' has layout version " + std::to_string(h->layout_version) +
                  " but this reader understands " + std::to_string(kLayoutVersion) +
                  "; run a reader built from the same bitmex-shm version as the feed");
        }
        if (!consistent(*h, static_cast<uint64_t>(size))) {
          throw AttachError(Why::kCorrupt, "segment '" + name +
                                               "' has a header that does not describe its size "
                                               "(corrupt, or not written by bitmex-shm)");
        }
        return Segment(name, std::move(m), false);
      }
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      throw AttachError(Why::kNotReady, "segment '" + name +
                                            "' exists but its producer has not "
                                            "made it ready (starting, or dead)");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // waiting for another process
  }
}

}  // namespace bmx::shm
