#include "shm/writer.hpp"

#include <algorithm>
#include <bit>
#include <cstring>

#include "shm/words.hpp"

namespace bmx::shm {

namespace {

constexpr size_t kRecordWords = sizeof(RecordBody) / 8;
constexpr size_t kTextBytes = kTextSlotBytes;
constexpr size_t kLevelWords = sizeof(Level) / 8;

uint8_t side_flag(Side side) noexcept {
  return side == Side::kSell ? kFlagSell : 0;
}

double sign_of(Side side) noexcept {
  return side == Side::kBuy ? 1.0 : -1.0;
}

uint64_t row_hash(uint16_t table, std::string_view key) noexcept {
  return shm::row_hash(table, key.data(), key.size());
}

// First position in [begin, end) whose level's price * sg is >= x (kStrict: > x); the levels
// ascend by price * sg. Galloping from the back: most changes of a BitMEX book fall within its
// top few dozen levels, where probes 1, 2, 4, 8... from the best find the window in a few hot
// cache lines; a binary search over a whole side (5557 bids in 2021) missed on every step. A
// level at depth d costs about 2 log2(d) probes.
template <bool kStrict>
size_t bound_from_back(const Level* lv, size_t begin, size_t end, double sg, double x) noexcept {
  const auto below = [&](size_t i) {
    const double k = lv[i].price * sg;
    return kStrict ? k <= x : k < x;
  };
  size_t lo = begin, hi = end;  // the answer is in [lo, hi]; every level in [hi, end) is not below
  for (size_t step = 1; hi - lo > step; step *= 2) {
    if (below(hi - step)) {
      lo = hi - step + 1;
      break;
    }
    hi -= step;
  }
  size_t len = hi - lo;
  while (len > 0) {
    const size_t half = len / 2;
    if (below(lo + half)) {
      lo += half + 1;
      len -= half + 1;
    } else {
      len = half;
    }
  }
  return lo;
}

}  // namespace

Writer::Writer(Segment& segment)
    : seg_(segment),
      h_(segment.header()),
      next_seq_(h_.next_seq.load(std::memory_order_relaxed)),
      ring_mask_(h_.ring_slots - 1),
      level_slots_(h_.level_slots),
      book_levels_(h_.book_levels) {
  if (!segment.writable()) throw std::invalid_argument("shm::Writer needs a writable segment");
  books_ = reinterpret_cast<const char*>(&seg_.book(0));
  book_shift_ = static_cast<uint32_t>(std::countr_zero(h_.book_bytes));
  const uint64_t odd = h_.book_bytes >> book_shift_;
  book_inverse_ = odd;  // right to 3 bits (odd * odd = 1 mod 8); each step doubles that
  for (int i = 0; i < 5; ++i)
    book_inverse_ *= 2 - odd * book_inverse_;
  ring_ = &seg_.slot(0);
  slots_.resize(h_.max_books);
  touched_.reserve(h_.max_books);
  by_table_.resize(h_.max_tables);
  tq_.resize(h_.max_symbols);
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
    seg_.stats().segment_full.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  raise_count(seg_.directory().symbols, id + 1);
  return true;
}

bool Writer::set_table(uint32_t id, std::string_view name, TableKind kind) noexcept {
  if (id >= h_.max_tables || !name_entry(seg_.table_entry(id), name, static_cast<uint32_t>(kind))) {
    seg_.stats().segment_full.fetch_add(1, std::memory_order_relaxed);
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
  RecordBody r{};
  r.kind = static_cast<uint8_t>(RecordKind::kLink);
  r.symbol = kNoSymbol;
  r.size = static_cast<int64_t>(s);
  emit(r);
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
  publish_ns_ = realtime_ns();
}

// Writes the record straight into its slot (kBusy while written, then the body); only its
// sequence is held back (publish_pending) until the next record or the end of the frame shows
// whether it is the frame's last. A reader sees the slot as not yet written until then, exactly
// as while the body was being stored. No copy of the record is kept. `body` is complete (times
// included); the caller has published the previous record.
inline void Writer::put_record(const RecordBody& body, uint32_t book_slot) noexcept {
  const uint64_t seq = next_seq_;
  Record& dst = ring_[seq & ring_mask_];
  dst.seq.store(kBusy, std::memory_order_relaxed);
  open_write();
  copy_words(&dst.body, &body, kRecordWords);
  std::memcpy(&pending_head_, &body, 8);
  pending_ = &dst;
  pending_seq_ = seq;
  next_seq_ = seq + 1;
  ++frame_records_;
  if (book_slot != kNoSlot) slots_[book_slot].last_seq = seq;
}

// Segment::levels() without reading the header: the side's buffer follows the Book.
Level* Writer::levels(const Book& b, int side) const noexcept {
  return reinterpret_cast<Level*>(const_cast<Book*>(&b) + 1) + size_t{level_slots_} * side;
}

// A book record, built in place.
inline void Writer::emit_level(const Book& b, RecordKind kind, uint8_t flags, double price,
                               int64_t size, uint64_t id, int64_t exchange_ns,
                               uint32_t book_slot) noexcept {
  publish_pending(false);
  const RecordBody body{static_cast<uint8_t>(kind),
                        flags,
                        b.table,
                        b.symbol,
                        recv_ns_,
                        exchange_ns,
                        publish_ns_,
                        price,
                        size,
                        id};
  put_record(body, book_slot);
}

void Writer::emit(const RecordBody& r, std::string_view text) noexcept {
  publish_pending(false);
  RecordBody body = r;
  body.recv_ns = recv_ns_;
  body.publish_ns = publish_ns_;
  put_record(body, kNoSlot);
  // Text after the record's body but before its sequence: a reader that sees the record's
  // sequence sees its text.
  const uint64_t seq = next_seq_;
  const uint64_t text_slots = text.size() == 0 ? 0 : (text.size() + kTextBytes - 1) / kTextBytes;
  for (uint64_t i = 0; i < text_slots; ++i) {
    const size_t at = i * kTextBytes;
    if (text.size() - at >= kTextBytes) {
      write_slot(seq + i, text.data() + at);
    } else {
      char chunk[kTextBytes] = {};
      std::memcpy(chunk, text.data() + at, text.size() - at);
      write_slot(seq + i, chunk);
    }
  }
  next_seq_ = seq + text_slots;
}

// Writes one slot: mark it busy, write the body, then store its sequence (release).
void Writer::write_slot(uint64_t seq, const void* body) noexcept {
  Record& dst = ring_[seq & ring_mask_];
  dst.seq.store(kBusy, std::memory_order_relaxed);
  open_write();
  copy_words(&dst.body, body, kRecordWords);
  dst.seq.store(seq, std::memory_order_release);
}

// Lets readers see the record put_record() wrote last; `last` flags it as the frame's last first.
void Writer::publish_pending(bool last) noexcept {
  if (!pending_) return;
  if (last) {  // kind, flags, table, symbol: the body's first word
    uint64_t head = pending_head_;
    auto* bytes = reinterpret_cast<unsigned char*>(&head);
    bytes[offsetof(RecordBody, flags)] |= kFlagLastInFrame;
    store_words(&pending_->body, &head, 1);
  }
  pending_->seq.store(pending_seq_, std::memory_order_release);
  pending_ = nullptr;
}

void Writer::end_frame() noexcept {
  publish_pending(true);
  for (const uint32_t i : touched_) {
    Book& b = *slots_[i].book;
    b.stamp.store(slots_[i].last_seq, std::memory_order_release);
    b.last_recv_ns.store(recv_ns_, std::memory_order_release);
    write_end(b.seq);
  }
  touched_.clear();
  Stats& st = seg_.stats();
  st.frames.store(st.frames.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  st.records.store(st.records.load(std::memory_order_relaxed) + frame_records_,
                   std::memory_order_relaxed);
  frame_records_ = 0;
  h_.next_seq.store(next_seq_, std::memory_order_release);
  // A gauge for tools, sampled: a clock read costs 20-40 ns, a tenth of a delta frame's work.
  if (recv_ns_ > 0 && (frame_no_ & (kLatencySampleEvery - 1)) == 1) {
    st.last_recv_to_publish_ns.store(realtime_ns() - recv_ns_, std::memory_order_relaxed);
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
  if (idx) return slots_[idx - 1].book;
  if (books_used_ == h_.max_books) {
    seg_.stats().segment_full.fetch_add(1, std::memory_order_relaxed);
    return nullptr;
  }
  Book& b = seg_.book(books_used_);
  b.table = table;
  b.symbol = symbol;
  for (int s = 0; s < 2; ++s) {
    b.begin[s].store(level_slots_ / 2, std::memory_order_release);
    b.end[s].store(level_slots_ / 2, std::memory_order_release);
  }
  b.stale.store(1, std::memory_order_release);  // nothing to trust before its partial
  b.used.store(1, std::memory_order_release);
  slots_[books_used_].book = &b;
  idx = ++books_used_;
  return &b;
}

// A book's slot: its offset in the books region over book_bytes. The offset is an exact multiple,
// so the division is a shift and a multiplication by the inverse of book_bytes' odd part modulo
// 2^64 (a 64-bit divide costs tens of cycles, and every level change needs the slot).
inline uint32_t Writer::slot_of(const Book& b) const noexcept {
  const auto off = static_cast<uint64_t>(reinterpret_cast<const char*>(&b) - books_);
  return static_cast<uint32_t>((off >> book_shift_) * book_inverse_);
}

// Opens the book's seqlock once per frame. Returns its slot. Inline: every level change calls it.
inline uint32_t Writer::touch(Book& b) noexcept {
  const uint32_t slot = slot_of(b);
  BookState& st = slots_[slot];
  if (st.frame == frame_no_) return slot;
  st.frame = frame_no_;
  write_begin(b.seq);
  touched_.push_back(slot);  // reserved: no allocation
  return slot;
}

void Writer::book_clear(Book& b) noexcept {
  const uint32_t slot = touch(b);
  for (int s = 0; s < 2; ++s) {
    b.begin[s].store(level_slots_ / 2, std::memory_order_release);
    b.end[s].store(level_slots_ / 2, std::memory_order_release);
  }
  if (b.stale.load(std::memory_order_relaxed)) {
    b.stale.store(0, std::memory_order_release);
    auto& g = seg_.stats().stale_books;
    const uint64_t n = g.load(std::memory_order_relaxed);
    if (n) g.store(n - 1, std::memory_order_relaxed);
  }
  b.updates.store(b.updates.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  emit_level(b, RecordKind::kBookClear, 0, 0, 0, 0, 0, slot);
}

// Index of the level (price, id) in the side's buffer, or SIZE_MAX. Levels are sorted by
// price * sign ascending (best at the back); prices are exact doubles. `depth` (kNoDepth:
// unknown) is tried first.
size_t Writer::find_level(const Book& b, Side side, double price, uint64_t id,
                          uint32_t depth) const noexcept {
  const Level* lv = levels(b, index(side));
  const double sg = sign_of(side);
  const size_t end = b.end[index(side)].load(std::memory_order_relaxed);
  const size_t begin = b.begin[index(side)].load(std::memory_order_relaxed);
  if (depth < end - begin) {
    const size_t i = end - 1 - depth;
    if (lv[i].id == id && lv[i].price == price) [[likely]] {
      return i;
    }
  }
  const size_t lo = bound_from_back<false>(lv, begin, end, sg, price * sg);
  for (size_t i = lo; i < end && lv[i].price == price; ++i) {  // equal prices: by id
    if (lv[i].id == id) return i;
  }
  return SIZE_MAX;
}

bool Writer::book_insert(Book& b, Side side, double price, int64_t size, uint64_t id,
                         int64_t exchange_ns, uint32_t depth) noexcept {
  const uint32_t slot = touch(b);
  if (!place(b, side, price, size, id, depth)) {
    book_stale(b);  // deeper than the segment was sized for (--book-levels)
    seg_.stats().segment_full.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  b.updates.store(b.updates.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  emit_level(b, RecordKind::kBookInsert, side_flag(side), price, size, id, exchange_ns, slot);
  return true;
}

// Puts a level into the segment's copy of a side, keeping it sorted (best at the back) by moving
// the shorter part. False when the side already holds book_levels levels. `depth` (kNoDepth:
// unknown) is where the level goes, if the levels around that position agree.
bool Writer::place(Book& b, Side side, double price, int64_t size, uint64_t id,
                   uint32_t depth) noexcept {
  const int s = index(side);
  Level* lv = levels(b, s);
  uint32_t begin = b.begin[s].load(std::memory_order_relaxed);
  uint32_t end = b.end[s].load(std::memory_order_relaxed);
  if (end - begin >= book_levels_) return false;
  // Upper bound: after every level not better than the new one. The hinted position when its
  // neighbours say so, else a search.
  const double sg = sign_of(side);
  const double x = price * sg;
  size_t pos = end - size_t{depth};  // meaningful only when depth <= end - begin
  const bool hinted = depth <= end - begin && (pos == end || lv[pos].price * sg > x) &&
                      (pos == begin || lv[pos - 1].price * sg <= x);
  if (!hinted) pos = bound_from_back<true>(lv, begin, end, sg, x);
  const bool front = pos - begin < end - pos;
  if ((front && begin == 0) || (!front && end == level_slots_)) {
    // Recentre: the side ran out of room at one end (moves every level once, no allocation).
    const uint32_t n = end - begin, at = (level_slots_ - n) / 2;
    move_words(lv + at, lv + begin, size_t{n} * kLevelWords);
    pos = pos - begin + at;
    begin = at;
    end = at + n;
  }
  if (front) {
    move_words(lv + begin - 1, lv + begin, (pos - begin) * kLevelWords);
    --begin;
    --pos;
  } else {
    move_words(lv + pos + 1, lv + pos, (end - pos) * kLevelWords);
    ++end;
  }
  const Level l{price, size, id};
  copy_words(lv + pos, &l, kLevelWords);
  b.begin[s].store(begin, std::memory_order_release);
  b.end[s].store(end, std::memory_order_release);
  return true;
}

bool Writer::book_update(Book& b, Side side, double old_price, double price, int64_t size,
                         uint64_t id, int64_t exchange_ns, uint32_t depth) noexcept {
  const uint32_t slot = touch(b);
  const int s = index(side);
  const size_t i = find_level(b, side, old_price, id, depth);
  if (i == SIZE_MAX) {
    book_stale(b);  // the segment's copy lost track: cannot happen unless fed inconsistently
    return false;
  }
  Level* lv = levels(b, s);
  if (price == old_price) {
    std::atomic_ref<int64_t>(lv[i].size).store(size, std::memory_order_release);
    b.updates.store(b.updates.load(std::memory_order_relaxed) + 1, std::memory_order_release);
    emit_level(b, RecordKind::kBookUpdate, side_flag(side), price, size, id, exchange_ns, slot);
    return true;
  }
  // The level moved: take it out, put it back at its new price. One record says both; `size`
  // of a moved level's record is its new size, `price` its new price, kFlagHasPrice set.
  erase_level(b, s, i);
  if (!place(b, side, price, size, id, kNoDepth)) {
    book_stale(b);
    return false;
  }
  b.updates.store(b.updates.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  emit_level(b, RecordKind::kBookUpdate, side_flag(side) | kFlagHasPrice, price, size, id,
             exchange_ns, slot);
  return true;
}

bool Writer::book_delete(Book& b, Side side, double price, uint64_t id, int64_t exchange_ns,
                         uint32_t depth) noexcept {
  const uint32_t slot = touch(b);
  const size_t i = find_level(b, side, price, id, depth);
  if (i == SIZE_MAX) {
    book_stale(b);
    return false;
  }
  erase_level(b, index(side), i);
  b.updates.store(b.updates.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  emit_level(b, RecordKind::kBookDelete, side_flag(side), price, 0, id, exchange_ns, slot);
  return true;
}

void Writer::erase_level(Book& b, int s, size_t i) noexcept {
  Level* lv = levels(b, s);
  uint32_t begin = b.begin[s].load(std::memory_order_relaxed);
  uint32_t end = b.end[s].load(std::memory_order_relaxed);
  if (i - begin < end - 1 - i) {
    move_words(lv + begin + 1, lv + begin, (i - begin) * kLevelWords);
    ++begin;
  } else {
    move_words(lv + i, lv + i + 1, (end - 1 - i) * kLevelWords);
    --end;
  }
  b.begin[s].store(begin, std::memory_order_release);
  b.end[s].store(end, std::memory_order_release);
}

void Writer::book_stale(Book& b) noexcept {
  const uint32_t slot = touch(b);
  if (!b.stale.load(std::memory_order_relaxed)) {
    b.stale.store(1, std::memory_order_release);
    auto& g = seg_.stats().stale_books;
    g.store(g.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  auto& m = seg_.stats().stale_marks;
  m.store(m.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  emit_level(b, RecordKind::kStale, 0, 0, 0, 0, 0, slot);
}

void Writer::stale_all_books() noexcept {
  const bool own_frame = !in_frame_;
  if (own_frame) begin_frame(realtime_ns());
  for (uint32_t i = 0; i < books_used_; ++i) {
    if (!slots_[i].book->stale.load(std::memory_order_relaxed)) book_stale(*slots_[i].book);
  }
  if (own_frame) end_frame();
}

// ---- generic tables
// -------------------------------------------------------------------------------

void Writer::row(uint16_t table, uint32_t symbol, Action action, std::string_view json,
                 int64_t exchange_ns) noexcept {
  const size_t slots = (json.size() + kTextBytes - 1) / kTextBytes;
  if (slots > (ring_mask_ + 1) / 4) {
    seg_.stats().segment_full.fetch_add(1, std::memory_order_relaxed);
    return;  // a row larger than a quarter of the ring: the ring is far too small
  }
  RecordBody r{};
  r.kind = static_cast<uint8_t>(RecordKind::kRow);
  r.flags = static_cast<uint8_t>(static_cast<unsigned>(action) << kRowActionShift);
  r.table = table;
  r.symbol = symbol;
  r.size = static_cast<int64_t>(json.size());
  r.exchange_ns = exchange_ns;
  emit(r, json);
}

void Writer::table_clear(uint16_t table, uint32_t symbol, bool drop_rows) noexcept {
  if (table < h_.max_tables) {
    DirEntry& e = seg_.table_entry(table);
    e.used.store((e.used.load(std::memory_order_relaxed) | kDirPartial) & ~kDirStale,
                 std::memory_order_release);
  }
  RecordBody r{};
  r.kind = static_cast<uint8_t>(RecordKind::kTableClear);
  r.table = table;
  r.symbol = symbol;
  emit(r);
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
  RecordBody r{};
  r.kind = static_cast<uint8_t>(RecordKind::kStale);
  r.table = table;
  r.symbol = kNoSymbol;
  emit(r);
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
    seg_.stats().segment_full.fetch_add(1, std::memory_order_relaxed);
    // A row that outgrew row_bytes: its last version that fitted must not stay readable as if
    // current. Absent (and counted) is what a reader can act on.
    if (json.size() > h_.row_bytes) row_erase(table, key);
    return false;
  }
  RowSlot& rs = seg_.row_slot(i);
  RowHeader h{};
  h.state = 1;
  h.table = table;
  h.key_bytes = static_cast<uint16_t>(key.size());
  h.symbol = symbol;
  h.text_bytes = static_cast<uint32_t>(json.size());
  h.hash = hash;
  std::memcpy(h.key, key.data(), key.size());
  write_begin(rs.seq);
  copy_words(&rs.h, &h, sizeof(RowHeader) / 8);
  char* text = seg_.row_text(rs);
  const size_t whole = json.size() / 8;
  copy_words(text, json.data(), whole);
  if (json.size() % 8) {
    char tail[8] = {};
    std::memcpy(tail, json.data() + whole * 8, json.size() % 8);
    copy_words(text + whole * 8, tail, 1);
  }
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

void Writer::publish_tq(uint32_t symbol) noexcept {
  TradeQuote& dst = seg_.trade_quote(symbol);
  write_begin(dst.seq);
  copy_words(&dst.body, &tq_[symbol], sizeof(TradeQuoteBody) / 8);
  write_end(dst.seq);
}

void Writer::trade(uint32_t symbol, int64_t ts_ns, double price, int64_t size, Side side) noexcept {
  if (symbol >= h_.max_symbols) return;
  TradeQuoteBody& t = tq_[symbol];
  t.has_trade = 1;
  t.trade_ns = ts_ns;
  t.trade_price = price;
  t.trade_size = size;
  t.trade_side = static_cast<uint32_t>(side);
  publish_tq(symbol);
}

void Writer::quote(uint32_t symbol, int64_t ts_ns, bool has_bid, double bid_price, int64_t bid_size,
                   bool has_ask, double ask_price, int64_t ask_size) noexcept {
  if (symbol >= h_.max_symbols) return;
  TradeQuoteBody& t = tq_[symbol];
  t.has_quote = 1;
  t.quote_ns = ts_ns;
  t.has_bid = has_bid;
  t.has_ask = has_ask;
  t.bid_price = has_bid ? bid_price : 0;
  t.bid_size = has_bid ? bid_size : 0;
  t.ask_price = has_ask ? ask_price : 0;
  t.ask_size = has_ask ? ask_size : 0;
  publish_tq(symbol);
}

}  // namespace bmx::shm
