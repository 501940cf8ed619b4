#include "shm/writer.hpp"

#include <algorithm>
#include <bit>
#include <cassert>
#include <cstring>

#include "shm/words.hpp"

namespace bmx::shm {

namespace {

constexpr size_t kRecordWords = sizeof(RecordBody) / 8;
constexpr size_t kTextBytes = kTextSlotBytes;
constexpr uint64_t kPrefetchAhead = 8;  // ring slots

uint8_t side_flag(Side side) noexcept {
  return side == Side::kSell ? kFlagSell : 0;
}

uint32_t side_word(Side side) noexcept {
  return side == Side::kSell ? kSlotAsk : kSlotBid;
}

uint64_t row_hash(uint16_t table, std::string_view key) noexcept {
  return shm::row_hash(table, key.data(), key.size());
}

// A record body's first word (kind, flags, table, symbol), built in a register.
static_assert(std::endian::native == std::endian::little);
static_assert(offsetof(RecordBody, kind) == 0 && offsetof(RecordBody, flags) == 1 &&
              offsetof(RecordBody, table) == 2 && offsetof(RecordBody, symbol) == 4);
constexpr uint64_t record_head(RecordKind kind, uint8_t flags, uint16_t table,
                               uint32_t symbol) noexcept {
  return uint64_t{static_cast<uint8_t>(kind)} | uint64_t{flags} << 8 | uint64_t{table} << 16 |
         uint64_t{symbol} << 32;
}

// A book slot's last word: side, then the reserved 0.
static_assert(offsetof(BookSlot, side) == 24 && offsetof(BookSlot, reserved) == 28);

// Two 4-byte fields that share a word, `lo` at the lower address.
constexpr uint64_t two(uint32_t lo, uint32_t hi) noexcept {
  return uint64_t{lo} | uint64_t{hi} << 32;
}
static_assert(offsetof(RowHeader, table) == 4 && offsetof(RowHeader, key_bytes) == 6 &&
              offsetof(RowHeader, text_bytes) == offsetof(RowHeader, symbol) + 4);

// `text` into `dst` (8-aligned, under a seqlock): its whole words copied, its last partial word
// assembled from its own bytes (tail_word); nothing past it is written.
void store_text(void* dst, std::string_view text) noexcept {
  auto* d = static_cast<char*>(dst);
  const size_t whole = text.size() / 8;
  if (whole) copy_words(d, text.data(), whole);  // an empty view's data() may be null
  if (text.size() % 8) {
    store_word(d + 8 * whole, tail_word(text.data() + text.size(), text.size() % 8, text.size()));
  }
}

}  // namespace

Writer::Writer(Segment& segment)
    : seg_(segment),
      h_(segment.header()),
      stats_(segment.stats()),
      next_seq_(h_.next_seq.load(std::memory_order_relaxed)),
      ring_mask_(h_.ring_slots - 1),
      book_slots_(h_.book_slots) {
  if (!segment.writable()) throw std::invalid_argument("shm::Writer needs a writable segment");
  books_ = reinterpret_cast<const char*>(&seg_.book(0));
  book_shift_ = static_cast<uint32_t>(std::countr_zero(h_.book_bytes));
  const uint64_t odd = h_.book_bytes >> book_shift_;
  book_inverse_ = odd;  // right to 3 bits (odd * odd = 1 mod 8); each step doubles that
  for (int i = 0; i < 5; ++i)
    book_inverse_ *= 2 - odd * book_inverse_;
  ring_ = &seg_.slot(0);
  book_state_.resize(h_.max_books);
  touched_.reserve(h_.max_books);
  by_table_.resize(h_.max_tables);
  tq_.resize(h_.max_symbols);
  frames_ = stats_.frames.load(std::memory_order_relaxed);
  records_ = stats_.records.load(std::memory_order_relaxed);
}

// ---- directory and lifecycle
// ----------------------------------------------------------------------

namespace {

bool name_entry(DirEntry& e, std::string_view name, uint32_t kind) noexcept {
  if (name.size() >= kNameBytes) return false;
  if (e.used.load(std::memory_order_relaxed)) return true;  // named once per epoch
  std::memcpy(e.name, name.data(), name.size());
  e.name[name.size()] = '\0';
  e.kind = kind;
  e.used.store(kDirNamed, std::memory_order_release);
  return true;
}

void raise_count(std::atomic<uint32_t>& count, uint32_t at_least) noexcept {
  if (count.load(std::memory_order_relaxed) < at_least) {
    count.store(at_least, std::memory_order_release);
  }
}

}  // namespace

bool Writer::set_symbol(uint32_t id, std::string_view name) noexcept {
  if (id >= h_.max_symbols || !name_entry(seg_.symbol_entry(id), name, 0)) {
    stats_.segment_full.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  raise_count(seg_.directory().symbols, id + 1);
  return true;
}

bool Writer::set_table(uint32_t id, std::string_view name, TableKind kind) noexcept {
  if (id >= h_.max_tables || !name_entry(seg_.table_entry(id), name, static_cast<uint32_t>(kind))) {
    stats_.segment_full.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  if (kind == TableKind::kBook && by_table_[id].empty()) {
    try {
      by_table_[id].assign(h_.max_symbols, 0);  // cold: a book table seen for the first time
    } catch (...) {
      return false;
    }
  }
  raise_count(seg_.directory().tables, id + 1);
  return true;
}

void Writer::set_ready() noexcept {
  h_.ready.store(1, std::memory_order_release);
}

void Writer::set_link(LinkState s) noexcept {
  h_.link_state.store(static_cast<uint32_t>(s), std::memory_order_release);
  const bool own_frame = !in_frame_;
  if (own_frame) begin_frame(realtime_ns());
  emit(record_head(RecordKind::kLink, 0, 0, kNoSymbol), 0, static_cast<int64_t>(s));
  if (own_frame) end_frame();
}

void Writer::heartbeat(int64_t now_monotonic_ns) noexcept {
  h_.heartbeat_ns.store(now_monotonic_ns, std::memory_order_relaxed);
}

// ---- ring
// -----------------------------------------------------------------------------------------

void Writer::begin_frame(int64_t recv_ns) noexcept {
  ++frame_no_;
  in_frame_ = true;
  recv_ns_ = recv_ns;
  publish_ns_ = clock_.now();
}

// Writes the record straight into its slot (kBusy while written, then the body, word by word
// from registers: see store_word); only its sequence is held back (publish_pending) until the
// next record or the end of the frame shows whether it is the frame's last. A reader sees the slot
// as not yet written until then, exactly as while the body was being stored. The previous record
// is published first.
inline void Writer::put_record(uint64_t head, int64_t exchange_ns, double price, int64_t size,
                               uint64_t id, uint32_t book) noexcept {
  publish_pending(false);
  const uint64_t seq = next_seq_;
  Record& dst = ring_[seq & ring_mask_];
  // The ring is far larger than the caches: each record's slot would otherwise be a store miss
  // that the frame's later stores queue behind. Owned in time, a few records ahead.
  __builtin_prefetch(&ring_[(seq + kPrefetchAhead) & ring_mask_], 1, 3);
  dst.seq.store(kBusy, std::memory_order_relaxed);
  open_write();
  auto* w = reinterpret_cast<unsigned char*>(&dst.body);
  store_word(w + offsetof(RecordBody, kind), head);
  store_word(w + offsetof(RecordBody, recv_ns), static_cast<uint64_t>(recv_ns_));
  store_word(w + offsetof(RecordBody, exchange_ns), static_cast<uint64_t>(exchange_ns));
  store_word(w + offsetof(RecordBody, publish_ns), static_cast<uint64_t>(publish_ns_));
  store_word(w + offsetof(RecordBody, price), std::bit_cast<uint64_t>(price));
  store_word(w + offsetof(RecordBody, size), static_cast<uint64_t>(size));
  store_word(w + offsetof(RecordBody, id), id);
  pending_head_ = head;
  pending_ = &dst;
  pending_seq_ = seq;
  next_seq_ = seq + 1;
  ++frame_records_;
  if (book != kNoBook) book_state_[book].last_seq = seq;
}

// A book record.
inline void Writer::emit_level(const Book& b, RecordKind kind, uint8_t flags, double price,
                               int64_t size, uint64_t id, int64_t exchange_ns,
                               uint32_t book) noexcept {
  put_record(record_head(kind, flags, b.table, b.symbol), exchange_ns, price, size, id, book);
}

// A record that is not a book's, with `text` after it in continuation slots (kRow: `size` is its
// length).
void Writer::emit(uint64_t head, int64_t exchange_ns, int64_t size,
                  std::string_view text) noexcept {
  put_record(head, exchange_ns, 0, size, 0, kNoBook);
  // Text after the record's body but before its sequence: a reader that sees the record's
  // sequence sees its text.
  const uint64_t seq = next_seq_;
  const size_t whole = text.size() / kTextBytes;
  for (size_t i = 0; i < whole; ++i)
    write_slot(seq + i, text, i * kTextBytes, kTextBytes);
  const size_t rest = text.size() % kTextBytes;
  if (rest) write_slot(seq + whole, text, whole * kTextBytes, rest);
  next_seq_ = seq + whole + (rest != 0);
}

// Writes one text slot: mark it busy, write the `n` (<= kTextBytes) bytes of `text` from `at`
// (zero-padded), then store its sequence (release).
void Writer::write_slot(uint64_t seq, std::string_view text, size_t at, size_t n) noexcept {
  Record& dst = ring_[seq & ring_mask_];
  dst.seq.store(kBusy, std::memory_order_relaxed);
  open_write();
  auto* body = reinterpret_cast<char*>(&dst.body);
  size_t k = n / 8;
  copy_words(body, text.data() + at, k);
  if (n % 8) store_word(body + 8 * k++, tail_word(text.data() + at + n, n % 8, at + n));
  for (; k < kRecordWords; ++k)
    store_word(body + 8 * k, 0);
  dst.seq.store(seq, std::memory_order_release);
}

// Lets readers see the record put_record() wrote last; `last` flags it as the frame's last first.
void Writer::publish_pending(bool last) noexcept {
  if (!pending_) return;
  if (last) {  // kind, flags, table, symbol: the body's first word (record_head)
    store_word(&pending_->body, pending_head_ | uint64_t{kFlagLastInFrame} << 8);
  }
  pending_->seq.store(pending_seq_, std::memory_order_release);
  pending_ = nullptr;
}

void Writer::end_frame() noexcept {
  publish_pending(true);
  for (const uint32_t i : touched_) {
    BookState& st = book_state_[i];
    Book& b = *st.book;
    if (st.top_dirty) [[unlikely]] {
      find_top(b);  // changed through kAnySlot calls, or its caller did not say
    }
    b.stamp.store(st.last_seq, std::memory_order_release);
    b.last_recv_ns.store(recv_ns_, std::memory_order_release);
    write_end(b.seq);
  }
  touched_.clear();
  stats_.frames.store(++frames_, std::memory_order_relaxed);
  stats_.records.store(records_ += frame_records_, std::memory_order_relaxed);
  frame_records_ = 0;
  h_.next_seq.store(next_seq_, std::memory_order_release);
  // A gauge for tools, sampled one frame in 64: a store into the line tools read.
  if (recv_ns_ > 0 && (frame_no_ & (kLatencySampleEvery - 1)) == 1) {
    stats_.last_recv_to_publish_ns.store(clock_.now() - recv_ns_, std::memory_order_relaxed);
  }
  in_frame_ = false;
}

// ---- books
// ----------------------------------------------------------------------------------------

Book* Writer::book(uint16_t table, uint32_t symbol) noexcept {
  if (table >= by_table_.size() || by_table_[table].empty() || symbol >= h_.max_symbols) {
    return nullptr;
  }
  uint32_t& idx = by_table_[table][symbol];
  if (idx) return book_state_[idx - 1].book;
  if (books_used_ == h_.max_books) {
    stats_.segment_full.fetch_add(1, std::memory_order_relaxed);
    return nullptr;
  }
  Book& b = seg_.book(books_used_);
  b.table = table;
  b.symbol = symbol;
  for (int s = 0; s < 2; ++s)
    b.best[s].store(kNoLevel, std::memory_order_release);
  b.stale.store(1, std::memory_order_release);  // nothing to trust before its partial
  b.used.store(1, std::memory_order_release);
  book_state_[books_used_].book = &b;
  idx = ++books_used_;
  return &b;
}

// A book's index: its offset in the books region over book_bytes. The offset is an exact
// multiple, so the division is a shift and a multiplication by the inverse of book_bytes' odd
// part modulo 2^64 (a 64-bit divide costs tens of cycles, and every level change needs it).
inline uint32_t Writer::index_of(const Book& b) const noexcept {
  const auto off = static_cast<uint64_t>(reinterpret_cast<const char*>(&b) - books_);
  return static_cast<uint32_t>((off >> book_shift_) * book_inverse_);
}

// Opens the book's seqlock once per frame. Returns its index. Inline: every level change calls
// it.
inline uint32_t Writer::touch(Book& b) noexcept {
  const uint32_t i = index_of(b);
  BookState& st = book_state_[i];
  if (st.frame == frame_no_) return i;
  st.frame = frame_no_;
  write_begin(b.seq);
  touched_.push_back(i);  // reserved: no allocation
  return i;
}

// Cold (partials): O(slots in use).
void Writer::book_clear(Book& b) noexcept {
  const uint32_t i = touch(b);
  BookSlot* sl = seg_.book_slots(b);
  const uint32_t high = b.high.load(std::memory_order_relaxed);
  for (uint32_t k = 0; k < high; ++k) {
    std::atomic_ref<uint32_t>(sl[k].side).store(kSlotFree, std::memory_order_release);
  }
  b.high.store(0, std::memory_order_release);
  for (int s = 0; s < 2; ++s) {
    b.count[s].store(0, std::memory_order_release);
    b.best[s].store(kNoLevel, std::memory_order_release);
  }
  book_state_[i].top_dirty = false;
  if (b.stale.load(std::memory_order_relaxed)) {
    b.stale.store(0, std::memory_order_release);
    auto& g = stats_.stale_books;
    const uint64_t n = g.load(std::memory_order_relaxed);
    if (n) g.store(n - 1, std::memory_order_relaxed);
  }
  b.updates.store(b.updates.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  emit_level(b, RecordKind::kBookClear, 0, 0, 0, 0, 0, i);
}

// kAnySlot callers: the slot holding (side, price, id), or kAnySlot. O(slots in use).
uint32_t Writer::find_slot(const Book& b, Side side, double price, uint64_t id) const noexcept {
  const BookSlot* sl = seg_.book_slots(b);
  const uint32_t high = b.high.load(std::memory_order_relaxed);
  for (uint32_t k = 0; k < high; ++k) {
    if (sl[k].side == side_word(side) && sl[k].id == id && sl[k].price == price) return k;
  }
  return kAnySlot;
}

// The slot an update or delete names, or for a kAnySlot caller the one that holds (side, price,
// id) (kAnySlot when none does).
inline uint32_t Writer::held_slot(const Book& b, Side side, double price, uint64_t id,
                                  uint32_t slot) const noexcept {
  if (slot == kAnySlot) [[unlikely]] {
    return find_slot(b, side, price, id);
  }
  [[maybe_unused]] const BookSlot* sl = seg_.book_slots(b);
  assert(slot >= book_slots_ || (sl[slot].side == side_word(side) && sl[slot].id == id));
  return slot;
}

// kAnySlot callers: the lowest free slot (book_slots_ when there is none). O(slots in use).
uint32_t Writer::free_slot(const Book& b) const noexcept {
  const BookSlot* sl = seg_.book_slots(b);
  const uint32_t high = b.high.load(std::memory_order_relaxed);
  for (uint32_t k = 0; k < high; ++k) {
    if (sl[k].side == kSlotFree) return k;
  }
  return high;
}

// A change the segment's book cannot take: the slot is past the book's room (deeper than
// --book-levels), or a kAnySlot caller's level is not there (kAnySlot). The book is stale until its
// next partial; a reader is never shown a book the producer could not keep.
bool Writer::refuse(Book& b, uint32_t slot) noexcept {
  if (slot != kAnySlot) stats_.segment_full.fetch_add(1, std::memory_order_relaxed);
  book_stale(b);
  return false;
}

// Hot path: the level goes into its slot, one 32-byte store. No allocation, lock or system call.
bool Writer::book_insert(Book& b, Side side, double price, int64_t size, uint64_t id,
                         int64_t exchange_ns, uint32_t slot) noexcept {
  const uint32_t i = touch(b);
  BookSlot* sl = seg_.book_slots(b);
  if (slot == kAnySlot) [[unlikely]] {
    slot = free_slot(b);
  } else {
    assert(slot >= book_slots_ || sl[slot].side == kSlotFree);  // the caller's promise
  }
  if (slot >= book_slots_) [[unlikely]] {
    return refuse(b, slot);
  }
  auto* w = reinterpret_cast<unsigned char*>(&sl[slot]);  // word by word: see store_word
  store_word(w + offsetof(BookSlot, price), std::bit_cast<uint64_t>(price));
  store_word(w + offsetof(BookSlot, size), static_cast<uint64_t>(size));
  store_word(w + offsetof(BookSlot, id), id);
  store_word(w + offsetof(BookSlot, side), side_word(side));  // reserved: 0
  const int s = index(side);
  b.count[s].store(b.count[s].load(std::memory_order_relaxed) + 1, std::memory_order_release);
  if (slot >= b.high.load(std::memory_order_relaxed)) {
    b.high.store(slot + 1, std::memory_order_release);
  }
  book_state_[i].top_dirty = true;
  b.updates.store(b.updates.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  emit_level(b, RecordKind::kBookInsert, side_flag(side), price, size, id, exchange_ns, i);
  return true;
}

// Hot path: the level's size (and price, when it moved) stored into its slot.
bool Writer::book_update(Book& b, Side side, double old_price, double price, int64_t size,
                         uint64_t id, int64_t exchange_ns, uint32_t slot) noexcept {
  const uint32_t i = touch(b);
  BookSlot* sl = seg_.book_slots(b);
  slot = held_slot(b, side, old_price, id, slot);
  if (slot >= book_slots_) [[unlikely]] {
    return refuse(b, slot);
  }
  std::atomic_ref<int64_t>(sl[slot].size).store(size, std::memory_order_release);
  uint8_t flags = side_flag(side);
  if (price != old_price) {  // the level moved: one record says both, kFlagHasPrice set
    std::atomic_ref<double>(sl[slot].price).store(price, std::memory_order_release);
    flags |= kFlagHasPrice;
  }
  book_state_[i].top_dirty = true;
  b.updates.store(b.updates.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  emit_level(b, RecordKind::kBookUpdate, flags, price, size, id, exchange_ns, i);
  return true;
}

// Hot path: the slot marked free.
bool Writer::book_delete(Book& b, Side side, double price, uint64_t id, int64_t exchange_ns,
                         uint32_t slot) noexcept {
  const uint32_t i = touch(b);
  BookSlot* sl = seg_.book_slots(b);
  slot = held_slot(b, side, price, id, slot);
  if (slot >= book_slots_) [[unlikely]] {
    return refuse(b, slot);
  }
  std::atomic_ref<uint32_t>(sl[slot].side).store(kSlotFree, std::memory_order_release);
  const int s = index(side);
  b.count[s].store(b.count[s].load(std::memory_order_relaxed) - 1, std::memory_order_release);
  book_state_[i].top_dirty = true;
  b.updates.store(b.updates.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  emit_level(b, RecordKind::kBookDelete, side_flag(side), price, 0, id, exchange_ns, i);
  return true;
}

void Writer::book_top(Book& b, uint32_t bid_slot, uint32_t ask_slot) noexcept {
  const bool moved = b.best[0].load(std::memory_order_relaxed) != bid_slot ||
                     b.best[1].load(std::memory_order_relaxed) != ask_slot;
  const uint32_t i = moved ? touch(b) : index_of(b);
  if (moved) {
    b.best[0].store(bid_slot < book_slots_ ? bid_slot : kNoLevel, std::memory_order_release);
    b.best[1].store(ask_slot < book_slots_ ? ask_slot : kNoLevel, std::memory_order_release);
  }
  book_state_[i].top_dirty = false;
}

// Each side's best level by a scan of the slots in use: for books changed through kAnySlot
// calls. Among equal prices the higher slot counts as better (Reader::copy_book's order).
void Writer::find_top(Book& b) noexcept {
  const BookSlot* sl = seg_.book_slots(b);
  const uint32_t high = b.high.load(std::memory_order_relaxed);
  uint32_t best[2] = {kNoLevel, kNoLevel};
  for (uint32_t k = 0; k < high; ++k) {
    const uint32_t side = sl[k].side;
    if (side == kSlotFree) continue;
    const int s = side == kSlotAsk ? 1 : 0;
    const double p = sl[k].price;
    if (best[s] == kNoLevel || (s == 0 ? p >= sl[best[s]].price : p <= sl[best[s]].price)) {
      best[s] = k;
    }
  }
  for (int s = 0; s < 2; ++s)
    b.best[s].store(best[s], std::memory_order_release);
  book_state_[index_of(b)].top_dirty = false;
}

void Writer::book_stale(Book& b) noexcept {
  const uint32_t i = touch(b);
  if (!b.stale.load(std::memory_order_relaxed)) {
    b.stale.store(1, std::memory_order_release);
    auto& g = stats_.stale_books;
    g.store(g.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  auto& m = stats_.stale_marks;
  m.store(m.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  emit_level(b, RecordKind::kStale, 0, 0, 0, 0, 0, i);
}

void Writer::stale_all_books() noexcept {
  const bool own_frame = !in_frame_;
  if (own_frame) begin_frame(realtime_ns());
  for (uint32_t i = 0; i < books_used_; ++i) {
    if (!book_state_[i].book->stale.load(std::memory_order_relaxed))
      book_stale(*book_state_[i].book);
  }
  if (own_frame) end_frame();
}

// ---- generic tables
// -------------------------------------------------------------------------------

void Writer::row(uint16_t table, uint32_t symbol, Action action, std::string_view json,
                 int64_t exchange_ns) noexcept {
  const size_t slots = (json.size() + kTextBytes - 1) / kTextBytes;
  if (slots > (ring_mask_ + 1) / 4) {
    stats_.segment_full.fetch_add(1, std::memory_order_relaxed);
    return;  // a row larger than a quarter of the ring: the ring is far too small
  }
  const auto flags = static_cast<uint8_t>(static_cast<unsigned>(action) << kRowActionShift);
  emit(record_head(RecordKind::kRow, flags, table, symbol), exchange_ns,
       static_cast<int64_t>(json.size()), json);
}

void Writer::table_clear(uint16_t table, uint32_t symbol, bool drop_rows) noexcept {
  if (table < h_.max_tables) {
    DirEntry& e = seg_.table_entry(table);
    e.used.store((e.used.load(std::memory_order_relaxed) | kDirPartial) & ~kDirStale,
                 std::memory_order_release);
  }
  emit(record_head(RecordKind::kTableClear, 0, table, symbol), 0, 0);
  // Cold (partials): tombstone every row the partial covers.
  for (uint32_t i = 0; drop_rows && i < h_.row_slots; ++i) {
    RowSlot& rs = seg_.row_slot(i);
    if (rs.h.state == 1 && rs.h.table == table && (symbol == kNoSymbol || rs.h.symbol == symbol)) {
      RowHeader h = rs.h;  // the producer reads what only it writes
      h.state = 2;
      row_state(rs, h);
    }
  }
}

void Writer::table_stale(uint16_t table) noexcept {
  if (table < h_.max_tables) {
    DirEntry& e = seg_.table_entry(table);
    e.used.store(e.used.load(std::memory_order_relaxed) | kDirStale, std::memory_order_release);
  }
  emit(record_head(RecordKind::kStale, 0, table, kNoSymbol), 0, 0);
}

uint32_t Writer::row_find(uint16_t table, std::string_view key, uint64_t hash,
                          bool for_insert) noexcept {
  const uint32_t mask = h_.row_slots - 1;
  uint32_t tomb = UINT32_MAX;
  for (uint32_t n = 0, i = static_cast<uint32_t>(hash) & mask; n <= mask; ++n, i = (i + 1) & mask) {
    const RowSlot& rs = seg_.row_slot(i);
    if (rs.h.state == 0) return for_insert ? (tomb != UINT32_MAX ? tomb : i) : UINT32_MAX;
    if (rs.h.state == 2) {
      if (tomb == UINT32_MAX) tomb = i;
      continue;
    }
    if (rs.h.hash == hash && rs.h.table == table && rs.h.key_bytes == key.size() &&
        std::memcmp(rs.h.key, key.data(), key.size()) == 0) {
      return i;
    }
  }
  return for_insert ? tomb : UINT32_MAX;
}

bool Writer::row_put(uint16_t table, std::string_view key, uint32_t symbol,
                     std::string_view json) noexcept {
  if (key.empty()) key = kEmptyKey;  // an empty view may be null: memcpy/memcmp must not see it
  const uint64_t hash = row_hash(table, key);
  const uint32_t i = key.size() <= kMaxKeyBytes && json.size() <= h_.row_bytes
                         ? row_find(table, key, hash, true)
                         : UINT32_MAX;
  if (i == UINT32_MAX) {
    stats_.segment_full.fetch_add(1, std::memory_order_relaxed);
    // A row that outgrew row_bytes: its last version that fitted must not stay readable as if
    // current. Absent (and counted) is what a reader can act on.
    if (json.size() > h_.row_bytes) row_erase(table, key);
    return false;
  }
  RowSlot& rs = seg_.row_slot(i);
  // Word by word from registers (see store_word). A row found under its key (live: row_find
  // returns a live slot only for that key) keeps its key words; only its symbol, length and text
  // change.
  const bool held = rs.h.state == 1;  // the producer reads what only it writes
  auto* w = reinterpret_cast<unsigned char*>(&rs.h);
  write_begin(rs.seq);
  if (!held) {
    store_word(w + offsetof(RowHeader, state),
               two(1, table | static_cast<uint32_t>(key.size()) << 16));
    store_word(w + offsetof(RowHeader, hash), hash);
    store_text(w + offsetof(RowHeader, key), key);
  }
  store_word(w + offsetof(RowHeader, symbol), two(symbol, static_cast<uint32_t>(json.size())));
  store_text(seg_.row_text(rs), json);
  write_end(rs.seq);
  return true;
}

void Writer::row_erase(uint16_t table, std::string_view key) noexcept {
  if (key.empty()) key = kEmptyKey;
  if (key.size() > kMaxKeyBytes) return;
  const uint32_t i = row_find(table, key, row_hash(table, key), false);
  if (i == UINT32_MAX) return;
  RowSlot& rs = seg_.row_slot(i);
  RowHeader h = rs.h;
  h.state = 2;
  row_state(rs, h);
}

void Writer::row_state(RowSlot& rs, const RowHeader& h) noexcept {
  write_begin(rs.seq);
  store_words(&rs.h, &h, sizeof(RowHeader) / 8);
  write_end(rs.seq);
}

// ---- trades and quotes
// ----------------------------------------------------------------------------

// The 4-byte fields that share a word (two()).
static_assert(offsetof(TradeQuoteBody, has_quote) == offsetof(TradeQuoteBody, has_trade) + 4 &&
              offsetof(TradeQuoteBody, has_bid) == offsetof(TradeQuoteBody, trade_side) + 4 &&
              offsetof(TradeQuoteBody, reserved0) == offsetof(TradeQuoteBody, has_ask) + 4);

// Trades and quotes: the words that changed, from registers (see store_word), under the symbol's
// seqlock. tq_ keeps the flags that share a word with them.
void Writer::trade(uint32_t symbol, int64_t ts_ns, double price, int64_t size, Side side) noexcept {
  if (symbol >= h_.max_symbols) return;
  TradeQuoteBody& t = tq_[symbol];
  t.has_trade = 1;
  t.trade_side = static_cast<uint32_t>(side);
  TradeQuote& dst = seg_.trade_quote(symbol);
  auto* w = reinterpret_cast<unsigned char*>(&dst.body);
  write_begin(dst.seq);
  store_word(w + offsetof(TradeQuoteBody, has_trade), two(1, t.has_quote));
  store_word(w + offsetof(TradeQuoteBody, trade_ns), static_cast<uint64_t>(ts_ns));
  store_word(w + offsetof(TradeQuoteBody, trade_price), std::bit_cast<uint64_t>(price));
  store_word(w + offsetof(TradeQuoteBody, trade_size), static_cast<uint64_t>(size));
  store_word(w + offsetof(TradeQuoteBody, trade_side), two(t.trade_side, t.has_bid));
  write_end(dst.seq);
}

void Writer::quote(uint32_t symbol, int64_t ts_ns, bool has_bid, double bid_price, int64_t bid_size,
                   bool has_ask, double ask_price, int64_t ask_size) noexcept {
  if (symbol >= h_.max_symbols) return;
  TradeQuoteBody& t = tq_[symbol];
  t.has_quote = 1;
  t.has_bid = has_bid;
  TradeQuote& dst = seg_.trade_quote(symbol);
  auto* w = reinterpret_cast<unsigned char*>(&dst.body);
  write_begin(dst.seq);
  store_word(w + offsetof(TradeQuoteBody, has_trade), two(t.has_trade, 1));
  store_word(w + offsetof(TradeQuoteBody, trade_side), two(t.trade_side, has_bid));
  store_word(w + offsetof(TradeQuoteBody, has_ask), two(has_ask, 0));
  store_word(w + offsetof(TradeQuoteBody, quote_ns), static_cast<uint64_t>(ts_ns));
  store_word(w + offsetof(TradeQuoteBody, bid_price),
             std::bit_cast<uint64_t>(has_bid ? bid_price : 0.0));
  store_word(w + offsetof(TradeQuoteBody, ask_price),
             std::bit_cast<uint64_t>(has_ask ? ask_price : 0.0));
  store_word(w + offsetof(TradeQuoteBody, bid_size), static_cast<uint64_t>(has_bid ? bid_size : 0));
  store_word(w + offsetof(TradeQuoteBody, ask_size), static_cast<uint64_t>(has_ask ? ask_size : 0));
  write_end(dst.seq);
}

}  // namespace bmx::shm
