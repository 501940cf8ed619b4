// The producer's side of a segment: the one thread that publishes records, books, rows, trades and
// quotes. Never waits for a reader: readers keep their own cursors, and a slow one is overrun and
// told so.
//
// Frame protocol (hot path, network thread):
//   begin_frame(recv_ns)
//     book_*()/row()/trade()/quote() as the frame's rows are applied
//   end_frame()      the frame's last record gets kFlagLastInFrame, books touched by the frame
//                    close their seqlock stamped with their last record, next_seq is published
// Each record's sequence is held back one step (the "pending" record: its body is already in its
// slot) so that the last one of a frame can be flagged before readers see it. Nothing between
// begin_frame and end_frame allocates, locks, throws or makes a system call.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "shm/clock.hpp"
#include "shm/layout.hpp"
#include "shm/segment.hpp"
#include "shm/types.hpp"

namespace bmx::shm {

class Writer {
 public:
  // `segment` must be writable and outlive the Writer. Cold path.
  explicit Writer(Segment& segment);

  // ---- directory and lifecycle (cold) -----------------------------------------------------------
  // Names dense id `id`. Returns false (and counts segment_full) when the id does not fit.
  [[gnu::cold]] bool set_symbol(uint32_t id, std::string_view name) noexcept;
  [[gnu::cold]] bool set_table(uint32_t id, std::string_view name, TableKind kind) noexcept;
  void set_ready() noexcept;  // everything is described: readers may attach
  [[gnu::cold]] void set_link(LinkState s) noexcept;
  void heartbeat(int64_t monotonic_ns) noexcept;
  [[nodiscard]] Stats& stats() noexcept { return stats_; }

  // ---- frames
  // -------------------------------------------------------------------------------------
  void begin_frame(int64_t recv_ns) noexcept;
  void end_frame() noexcept;

  // ---- books
  // -------------------------------------------------------------------------------------- The book
  // slot of (table, symbol), created on first use; nullptr when every slot is taken (counted in
  // stats().segment_full).
  [[gnu::cold]] Book* book(uint16_t table, uint32_t symbol) noexcept;
  // A partial resets the book: clears it, un-stales it, publishes kBookClear.
  [[gnu::cold]] void book_clear(Book& b) noexcept;
  // One level change, applied to the segment's book and published as a record. `price` is the
  // level's price (for a delete: the price it had).
  //
  // `slot` is where the level lives: the caller's own stable slot for it (the feed passes its
  // order book's pool slot, so that the change is one store into the segment: no search, no
  // shift, no read), below book_slots. The caller vouches that an insert's slot is free and that
  // an update's or a delete's holds (side, id): the writer does not read the slot to check (a
  // load that would miss on every deep level), debug builds assert it. kAnySlot, for tools and
  // tests that keep no book of their own: the writer takes the lowest free slot for an insert and
  // finds the level by a scan otherwise, O(levels).
  //
  // Returns false, and marks the book stale, when the slot is past the book's room (the book is
  // deeper than --book-levels; also counted in segment_full) or a kAnySlot update or delete finds
  // no such level.
  static constexpr uint32_t kAnySlot = UINT32_MAX;
  bool book_insert(Book& b, Side side, double price, int64_t size, uint64_t id,
                   int64_t exchange_ns = 0, uint32_t slot = kAnySlot) noexcept;
  bool book_update(Book& b, Side side, double old_price, double price, int64_t size, uint64_t id,
                   int64_t exchange_ns = 0, uint32_t slot = kAnySlot) noexcept;
  bool book_delete(Book& b, Side side, double price, uint64_t id, int64_t exchange_ns = 0,
                   uint32_t slot = kAnySlot) noexcept;
  // The slots of each side's best level after this frame's changes (kNoLevel: the side is
  // empty), from the caller's own book: O(1). A book whose levels changed without it being told
  // its best since has them found by end_frame() with a scan, O(levels).
  void book_top(Book& b, uint32_t bid_slot, uint32_t ask_slot) noexcept;
  // The book cannot be trusted until its next partial (unknown level, crossed, lost frame).
  [[gnu::cold]] void book_stale(Book& b) noexcept;
  [[gnu::cold]] void stale_all_books() noexcept;  // the link dropped: nothing is current any more

  // ---- generic tables
  // ---------------------------------------------------------------------------- A row as received
  // (its JSON text from the frame), published to the ring.
  void row(uint16_t table, uint32_t symbol, Action action, std::string_view json,
           int64_t exchange_ns = 0) noexcept;
  // A table's partial: its rows for `symbol` (kNoSymbol: every row) are about to be replaced.
  // `drop_rows` false: the caller takes the replaced rows out itself (row_erase), because the
  // partial's filter selects them by more than their symbol; only the record is published.
  [[gnu::cold]] void table_clear(uint16_t table, uint32_t symbol, bool drop_rows = true) noexcept;
  // Current state of a keyed row: its whole JSON text after merges. False when the row does not fit
  // (key or text too long, region full): counted in stats().segment_full, and a text too long
  // also takes the row's previous version out of the segment (readers find no row, not an old
  // one).
  bool row_put(uint16_t table, std::string_view key, uint32_t symbol,
               std::string_view json) noexcept;
  void row_erase(uint16_t table, std::string_view key) noexcept;
  // The table's rows cannot be trusted until its next partial (an update for a row it does not
  // hold, a frame lost, the link lost): flags it in the directory (kDirStale, cleared by
  // table_clear) and publishes kStale for the table (symbol kNoSymbol).
  [[gnu::cold]] void table_stale(uint16_t table) noexcept;

  // ---- trades and quotes
  // -------------------------------------------------------------------------
  void trade(uint32_t symbol, int64_t ts_ns, double price, int64_t size, Side side) noexcept;
  void quote(uint32_t symbol, int64_t ts_ns, bool has_bid, double bid_price, int64_t bid_size,
             bool has_ask, double ask_price, int64_t ask_size) noexcept;

  [[nodiscard]] uint64_t next_seq() const noexcept { return next_seq_; }
  [[nodiscard]] Segment& segment() noexcept { return seg_; }

 private:
  static constexpr uint32_t kNoBook = UINT32_MAX;
  // Stats::last_recv_to_publish_ns is measured on one frame in this many (the first included).
  static constexpr uint64_t kLatencySampleEvery = 64;
  // Producer-private bookkeeping per book.
  struct BookState {
    Book* book = nullptr;
    uint64_t frame = 0;      // frame that last opened its seqlock
    uint64_t last_seq = 0;   // its last record
    bool top_dirty = false;  // levels changed since its best was last set
  };

  void put_record(uint64_t head, int64_t exchange_ns, double price, int64_t size, uint64_t id,
                  uint32_t book) noexcept;
  void emit_level(const Book& b, RecordKind kind, uint8_t flags, double price, int64_t size,
                  uint64_t id, int64_t exchange_ns, uint32_t book) noexcept;
  void emit(uint64_t head, int64_t exchange_ns, int64_t size, std::string_view text = {}) noexcept;
  void publish_pending(bool last) noexcept;
  void write_slot(uint64_t seq, std::string_view text, size_t at, size_t n) noexcept;
  uint32_t touch(Book& b) noexcept;
  [[nodiscard]] uint32_t index_of(const Book& b) const noexcept;
  // gnu::cold: paths the feed never takes (kAnySlot callers, refusals) stay out of the hot code's
  // instruction-cache lines, and branches to them are laid out as not taken.
  [[nodiscard, gnu::cold]] uint32_t find_slot(const Book& b, Side side, double price,
                                              uint64_t id) const noexcept;
  [[nodiscard]] uint32_t held_slot(const Book& b, Side side, double price, uint64_t id,
                                   uint32_t slot) const noexcept;
  [[nodiscard, gnu::cold]] uint32_t free_slot(const Book& b) const noexcept;
  [[gnu::cold]] bool refuse(Book& b, uint32_t slot) noexcept;
  [[gnu::cold]] void find_top(Book& b) noexcept;
  uint32_t row_find(uint16_t table, std::string_view key, uint64_t hash, bool for_insert) noexcept;
  void row_state(RowSlot& rs, const RowHeader& h) noexcept;

  Segment& seg_;
  Header& h_;
  Stats& stats_;
  uint64_t next_seq_ = 1;
  Record* ring_ = nullptr;  // slot 0; a record's slot is ring_[seq & ring_mask_]
  uint32_t ring_mask_ = 0;
  uint32_t book_slots_ = 0;
  const char* books_ = nullptr;  // the first book; index_of() divides offsets from it
  uint32_t book_shift_ = 0;      // book_bytes = odd << book_shift_
  uint64_t book_inverse_ = 0;    // odd * book_inverse_ = 1 modulo 2^64
  bool in_frame_ = false;
  RealtimeClock clock_;  // publish_ns: the TSC, calibrated against CLOCK_REALTIME
  int64_t recv_ns_ = 0;
  int64_t publish_ns_ = 0;
  uint64_t frame_records_ = 0;
  uint64_t frames_ = 0;   // Stats::frames, as last stored
  uint64_t records_ = 0;  // Stats::records, as last stored
  uint64_t frame_no_ = 0;
  // The record whose sequence is held back so that the frame's last one can be flagged: its slot
  // (nullptr: none), sequence, and the first word of its body.
  Record* pending_ = nullptr;
  uint64_t pending_seq_ = 0;
  uint64_t pending_head_ = 0;
  std::vector<BookState> book_state_;            // by book index
  std::vector<uint32_t> touched_;                // books whose seqlock this frame opened
  std::vector<std::vector<uint32_t>> by_table_;  // [table][symbol] -> book index + 1
  uint32_t books_used_ = 0;
  std::vector<TradeQuoteBody> tq_;  // private copies: the flags beside the words that change
};

}  // namespace bmx::shm
