#include "shm/reader.hpp"

#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

namespace bmx::shm {

std::string_view to_string(Liveness l) noexcept {
  switch (l) {
    case Liveness::kLive:
      return "live";
    case Liveness::kStale:
      return "stale (no heartbeat)";
    case Liveness::kDead:
      return "dead (producer process gone)";
    case Liveness::kRestarted:
      return "restarted (new epoch)";
    case Liveness::kStopped:
      return "stopped";
  }
  return "?";
}

namespace {

// How long a copy keeps retrying state the producer is changing. A row, trade or quote seqlock is
// held for one short copy: a bounded spin. A book's is held for a whole frame (milliseconds for the
// largest partial): spin, then yield, as long as the producer makes progress (the sequence moves),
// up to kMaxTries moves. A sequence that does not move for kBookStuckNs was left odd by a producer
// that died mid-frame, or by a hostile segment, or the producer is alive but off its core (a loaded
// machine can keep it there for tens of milliseconds in the middle of a large partial). The copy
// then reports failure unless the producer's process still exists, which gets the copy more time,
// up to kBookAliveNs without progress in all (a bound for a hostile segment naming a live pid);
// never kMaxTries yields (minutes on a busy machine, where each yield may give the core away).
constexpr int kMaxTries = 100000;
constexpr int kSpinTries = 64;
constexpr int64_t kBookStuckNs = 20'000'000;
constexpr int64_t kBookAliveNs = 250'000'000;

// The process `pid` exists (signal 0 checks without sending; EPERM: it exists, owned by another
// user). A system call: only after kBookStuckNs without progress.
bool process_exists(int32_t pid) noexcept {
  return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM);
}

// Paces the retries of a book copy: true while another try is allowed. The clock (vDSO, no system
// call) is read only once the spin is over.
class BookRetry {
 public:
  explicit BookRetry(int32_t producer_pid) noexcept : pid_(producer_pid) {}

  bool again(const std::atomic<uint64_t>& seq) noexcept {
    if (++tries_ <= kSpinTries) return true;
    const int64_t now = monotonic_ns();
    const uint64_t s = seq.load(std::memory_order_relaxed);
    if (deadline_ == 0 || s != seen_) {
      if (++moves_ > kMaxTries) return false;  // it keeps changing: the caller retries later
      seen_ = s;
      since_ = now;
      deadline_ = now + kBookStuckNs;
    } else if (now > deadline_) {
      if (now - since_ >= kBookAliveNs || !process_exists(pid_)) return false;
      deadline_ = now + kBookStuckNs;  // alive: preempted mid-frame, most likely
    }
    std::this_thread::yield();  // the producer is busy with this very book
    return true;
  }

 private:
  int32_t pid_;
  int tries_ = 0;
  int moves_ = 0;  // times the sequence was seen to change
  uint64_t seen_ = 0;
  int64_t since_ = 0;     // when the sequence was last seen to change
  int64_t deadline_ = 0;  // when to look again whether the producer is alive
};

}  // namespace

Reader Reader::attach(const std::string& name, std::chrono::milliseconds timeout) {
  return Reader(Segment::attach(name, timeout));
}

Reader::Reader(Segment segment)
    : seg_(std::move(segment)),
      epoch_(seg_.header().epoch.load(std::memory_order_acquire)),
      ring_mask_(seg_.header().ring_slots - 1) {
  // The largest row the producer publishes is a quarter of the ring.
  text_.resize(static_cast<size_t>(seg_.header().ring_slots / 4) * kTextSlotBytes);
  cursor_ = head();
}

PollResult Reader::lapped(PollResult r) noexcept {
  const uint64_t h = head();
  r.lapped = true;
  r.lost = h > cursor_ ? h - cursor_ : 0;
  cursor_ = h;
  return r;
}

// ---- directory
// ------------------------------------------------------------------------------------

std::string_view Reader::dir_name(const DirEntry& e) const noexcept {
  if (!e.used.load(std::memory_order_acquire)) return {};
  return std::string_view(e.name, strnlen(e.name, kNameBytes));
}

uint32_t Reader::symbol_count() const noexcept {
  return std::min(seg_.directory().symbols.load(std::memory_order_acquire),
                  seg_.header().max_symbols);
}

uint32_t Reader::table_count() const noexcept {
  return std::min(seg_.directory().tables.load(std::memory_order_acquire),
                  seg_.header().max_tables);
}

std::optional<uint32_t> Reader::symbol_id(std::string_view name) const noexcept {
  for (uint32_t i = 0, n = symbol_count(); i < n; ++i) {
    if (dir_name(seg_.symbol_entry(i)) == name) return i;
  }
  return std::nullopt;
}

std::string_view Reader::symbol_name(uint32_t id) const noexcept {
  return id < seg_.header().max_symbols ? dir_name(seg_.symbol_entry(id)) : std::string_view{};
}

std::optional<uint16_t> Reader::table_id(std::string_view name) const noexcept {
  for (uint32_t i = 0, n = table_count(); i < n; ++i) {
    if (dir_name(seg_.table_entry(i)) == name) return static_cast<uint16_t>(i);
  }
  return std::nullopt;
}

std::string_view Reader::table_name(uint16_t id) const noexcept {
  return id < seg_.header().max_tables ? dir_name(seg_.table_entry(id)) : std::string_view{};
}

bool Reader::table_has_partial(uint16_t id) const noexcept {
  return id < seg_.header().max_tables &&
         (seg_.table_entry(id).used.load(std::memory_order_acquire) & kDirPartial);
}

bool Reader::table_stale(uint16_t id) const noexcept {
  return id < seg_.header().max_tables &&
         (seg_.table_entry(id).used.load(std::memory_order_acquire) & kDirStale);
}

TableKind Reader::table_kind(uint16_t id) const noexcept {
  if (id >= seg_.header().max_tables || table_name(id).empty()) return TableKind::kGeneric;
  return static_cast<TableKind>(seg_.table_entry(id).kind);
}

// ---- books
// ----------------------------------------------------------------------------------------

std::vector<std::pair<uint16_t, uint32_t>> Reader::books() const {
  std::vector<std::pair<uint16_t, uint32_t>> out;
  for (uint32_t i = 0; i < seg_.header().max_books; ++i) {
    const Book& b = seg_.book(i);
    if (!b.used.load(std::memory_order_acquire)) break;  // slots are handed out in order
    out.emplace_back(b.table, b.symbol);
  }
  return out;
}

const Book* Reader::find_book(uint16_t table, uint32_t symbol) const noexcept {
  for (uint32_t i = 0; i < seg_.header().max_books; ++i) {
    const Book& b = seg_.book(i);
    if (!b.used.load(std::memory_order_acquire)) return nullptr;
    if (b.table == table && b.symbol == symbol) return &b;
  }
  return nullptr;
}

// The slots below the book's `high` are copied under the seqlock (one pass over memory, nothing
// else), then split by side and sorted outside it.
bool Reader::copy_book(uint16_t table, uint32_t symbol, BookCopy& out) const {
  const Book* b = find_book(table, symbol);
  if (!b) return false;
  const uint32_t cap = seg_.header().book_slots;
  out.table = table;
  out.symbol = symbol;
  out.raw.reserve(cap);  // once: later copies do not allocate
  const BookSlot* slots = seg_.book_slots(*b);
  bool copied = false, sane = false;
  for (BookRetry retry(seg_.header().producer_pid); retry.again(b->seq);) {
    const uint64_t s = read_begin(b->seq);
    if (s & 1) continue;
    const uint32_t high = b->high.load(std::memory_order_acquire);
    sane = high <= cap;  // torn (or hostile): the seqlock check decides
    out.raw.resize(sane ? high : 0);
    load_words(out.raw.data(), slots, out.raw.size() * (sizeof(BookSlot) / 8));
    out.stamp = b->stamp.load(std::memory_order_acquire);
    out.stale = b->stale.load(std::memory_order_acquire) != 0;
    if (read_valid(b->seq, s)) {
      copied = true;
      break;
    }
  }
  if (!copied || !sane) return false;  // a consistent but impossible book: not ours to trust
  out.bids.clear();
  out.asks.clear();
  std::vector<uint32_t>& order = out.order;  // slot numbers, sorted best first
  order.reserve(cap);
  for (int side = 0; side < 2; ++side) {
    const uint32_t want = side == 0 ? kSlotBid : kSlotAsk;
    order.clear();
    for (uint32_t k = 0; k < out.raw.size(); ++k) {
      if (out.raw[k].side == want) order.push_back(k);
    }
    const auto better = [&](uint32_t x, uint32_t y) {
      const double px = out.raw[x].price, py = out.raw[y].price;
      if (px != py) return side == 0 ? px > py : px < py;
      return x > y;
    };
    std::sort(order.begin(), order.end(), better);
    auto& v = side == 0 ? out.bids : out.asks;
    v.reserve(cap);
    for (const uint32_t k : order)
      v.push_back(Level{out.raw[k].price, out.raw[k].size, out.raw[k].id});
  }
  return true;
}

bool Reader::top(uint16_t table, uint32_t symbol, Top& out) const noexcept {
  const Book* b = find_book(table, symbol);
  if (!b) return false;
  const uint32_t cap = seg_.header().book_slots;
  const BookSlot* slots = seg_.book_slots(*b);
  for (BookRetry retry(seg_.header().producer_pid); retry.again(b->seq);) {
    const uint64_t s = read_begin(b->seq);
    if (s & 1) continue;
    Top t;
    bool sane = true;
    for (int side = 0; side < 2; ++side) {
      const uint32_t k = b->best[side].load(std::memory_order_acquire);
      if (k == kNoLevel) continue;
      if (k >= cap) {
        sane = false;
        continue;
      }
      BookSlot l{};
      load_words(&l, &slots[k], sizeof(BookSlot) / 8);
      sane = sane && l.side == (side == 0 ? kSlotBid : kSlotAsk);
      (side == 0 ? t.bid : t.ask) = Level{l.price, l.size, l.id};
      (side == 0 ? t.has_bid : t.has_ask) = true;
    }
    t.stamp = b->stamp.load(std::memory_order_acquire);
    t.updates = b->updates.load(std::memory_order_acquire);
    t.last_recv_ns = b->last_recv_ns.load(std::memory_order_acquire);
    t.stale = b->stale.load(std::memory_order_acquire) != 0;
    if (read_valid(b->seq, s)) {
      if (!sane) return false;
      out = t;
      return true;
    }
  }
  return false;
}

bool Reader::trade_quote(uint32_t symbol, TradeQuoteBody& out) const noexcept {
  if (symbol >= seg_.header().max_symbols) return false;
  const TradeQuote& tq = seg_.trade_quote(symbol);
  for (int tries = 0; tries < kMaxTries; ++tries) {
    const uint64_t s = read_begin(tq.seq);
    if (s & 1) continue;
    TradeQuoteBody body{};
    load_words(&body, &tq.body, sizeof(TradeQuoteBody) / 8);
    if (read_valid(tq.seq, s)) {
      out = body;
      return body.has_trade || body.has_quote;
    }
  }
  return false;
}

// ---- rows
// -----------------------------------------------------------------------------------------

namespace {

// Copies one row slot consistently. 0: empty slot, 1: live (header and text filled), 2: tombstone.
int copy_row(const Segment& seg, const RowSlot& rs, RowHeader& h, std::string* text) {
  const uint32_t cap = seg.header().row_bytes;
  for (int tries = 0; tries < kMaxTries; ++tries) {
    const uint64_t s = read_begin(rs.seq);
    if (s & 1) continue;
    load_words(&h, &rs.h, sizeof(RowHeader) / 8);
    if (text && h.state == 1 && h.text_bytes <= cap) {
      text->resize((size_t{h.text_bytes} + 7) / 8 * 8);
      load_words(text->data(), seg.row_text(const_cast<RowSlot&>(rs)), text->size() / 8);
      text->resize(h.text_bytes);
    }
    if (read_valid(rs.seq, s)) {
      if (h.state == 1 && (h.text_bytes > cap || h.key_bytes > kMaxKeyBytes)) return 2;  // corrupt
      return static_cast<int>(std::min<uint32_t>(h.state, 2));
    }
  }
  return 2;
}

}  // namespace

bool Reader::find_row(uint16_t table, std::string_view key, std::string& json) const {
  if (key.empty()) key = kEmptyKey;  // an empty view may be null: memcmp must not see it
  if (key.size() > kMaxKeyBytes) return false;
  const uint64_t hash = row_hash(table, key.data(), key.size());
  const uint32_t mask = seg_.header().row_slots - 1;
  for (uint32_t n = 0, i = static_cast<uint32_t>(hash) & mask; n <= mask; ++n, i = (i + 1) & mask) {
    RowHeader h{};
    const int state = copy_row(seg_, seg_.row_slot(i), h, nullptr);
    if (state == 0) return false;
    if (state == 1 && h.hash == hash && h.table == table && h.key_bytes == key.size() &&
        std::memcmp(h.key, key.data(), key.size()) == 0) {
      // Copy again with the text; the row may have changed in between, so check the key again.
      if (copy_row(seg_, seg_.row_slot(i), h, &json) == 1 && h.table == table &&
          h.key_bytes == key.size() && std::memcmp(h.key, key.data(), key.size()) == 0) {
        return true;
      }
      return false;
    }
  }
  return false;
}

std::vector<std::pair<std::string, std::string>> Reader::rows(uint16_t table) const {
  std::vector<std::pair<std::string, std::string>> out;
  std::string text;
  for (uint32_t i = 0; i < seg_.header().row_slots; ++i) {
    RowHeader h{};
    if (copy_row(seg_, seg_.row_slot(i), h, &text) == 1 && h.table == table) {
      out.emplace_back(std::string(h.key, h.key_bytes), text);
    }
  }
  return out;
}

// ---- producer
// -------------------------------------------------------------------------------------

Liveness Reader::liveness(std::chrono::nanoseconds stale_after) const noexcept {
  const Header& h = seg_.header();
  if (h.epoch.load(std::memory_order_acquire) != epoch_) return Liveness::kRestarted;
  if (static_cast<LinkState>(h.link_state.load(std::memory_order_acquire)) == LinkState::kStopped) {
    return Liveness::kStopped;
  }
  if (h.producer_pid > 0 && ::kill(h.producer_pid, 0) != 0 && errno == ESRCH) {
    return Liveness::kDead;
  }
  // Compared without subtracting the segment's value: a hostile heartbeat must not overflow.
  if (h.heartbeat_ns.load(std::memory_order_relaxed) < monotonic_ns() - stale_after.count()) {
    return Liveness::kStale;
  }
  return Liveness::kLive;
}

}  // namespace bmx::shm
