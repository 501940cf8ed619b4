// The feed engine's hot path: one websocket text frame in, exact table and book state out.
//
//   frame bytes (padded, not copied) -> simdjson On-Demand -> classify -> typed book rows or raw
//   generic rows -> OrderBook / GenericTable -> end-of-frame checks (crossed books)
//
// One FeedEngine belongs to one thread (the network thread in the live feed, the main thread in
// bitmex-replay): nothing in it is shared or locked. After construction it does not allocate while
// applying delta frames (proved by tests/engine_alloc_test.cpp and bench/engine_bench.cpp);
// partials may, since they size the books. Nothing here throws per frame: errors are simdjson error
// codes, turned into counters (Stats) and Events that the owner drains and logs off the hot path.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <simdjson.h>

#include "engine/generic_table.hpp"
#include "engine/interner.hpp"
#include "engine/order_book.hpp"
#include "engine/timestamp.hpp"
#include "shm/types.hpp"

namespace bmx::shm {
class Writer;
struct Book;
}  // namespace bmx::shm

namespace bmx {

// What a text frame turned out to be.
enum class FrameKind : uint8_t {
  kTable,           // {"table":..,"action":..,"data":[..]}
  kInfo,            // the welcome message
  kSubscribe,       // {"success":true,"subscribe":"topic"}
  kUnsubscribe,     // {"success":true,"unsubscribe":"topic"}
  kAuth,            // {"success":true,"request":{"op":"authKeyExpires",..}}
  kError,           // {"status":400,"error":"..."}
  kCancelAllAfter,  // {"now":..,"cancelTime":..}
  kPong,            // the bare text "pong"
  kUnknown,         // valid JSON we have no use for
  kMalformed,       // not JSON, or broken part-way
  kOversized,       // longer than EngineConfig::max_frame_bytes
};
inline constexpr int kFrameKindCount = 11;
std::string_view to_string(FrameKind k) noexcept;

struct EngineConfig {
  uint32_t max_frame_bytes = 16u << 20;  // the 2021 XBTUSD partial is 0.7 MB
  uint32_t max_symbols = 4096;
  uint32_t max_tables = 64;
  uint32_t max_fields_per_row = 256;
  uint32_t book_capacity = 256;  // levels per book before its partial sizes it
};

// Counters a tool can show. Plain integers, written only by the engine's thread.
struct Stats {
  std::array<uint64_t, kFrameKindCount> frames{};
  uint64_t bytes = 0;
  uint64_t rows = 0;                         // table rows received, every action
  uint64_t rows_dropped_before_partial = 0;  // deltas for a table/symbol with no partial yet
  uint64_t rows_dropped_stale = 0;           // deltas for a book marked stale, until its partial
  uint64_t bad_rows = 0;                     // wrong types, missing keys, unusable values
  uint64_t unknown_levels = 0;               // book update/delete of a level it does not hold
  uint64_t unknown_rows = 0;                 // table update/delete of a row it does not hold
  uint64_t duplicate_inserts = 0;            // insert of a level/row already held
  uint64_t crossed_books = 0;                // books found crossed after a frame
  uint64_t books_marked_stale = 0;
  uint64_t tables_marked_stale = 0;
  uint64_t book_growths = 0;       // a delta outgrew a book's capacity (allocation)
  uint64_t books_repaired = 0;     // stale books made whole again by a new partial
  uint64_t link_losses = 0;        // link_lost() calls (connection drops seen by the feed)
  uint64_t capacity_exceeded = 0;  // more symbols, tables or fields than configured
  uint64_t events_lost = 0;        // events not drained in time
};

enum class EventKind : uint8_t {
  kMalformedFrame,
  kOversizedFrame,
  kUnknownFrame,
  kBadRow,
  kUnknownLevel,
  kUnknownRow,
  kCrossedBook,
  kDroppedBeforePartial,
  kCapacityExceeded,
  kBookGrew,
  kErrorFrame,
  kSubscribed,
  kUnsubscribed,
  kInfo,
  kAuth,
  kCancelAllAfter,
};
std::string_view to_string(EventKind k) noexcept;

// One thing worth telling a person or the connection logic. Fixed size, no pointers: produced on
// the hot path, formatted elsewhere.
struct Event {
  static constexpr uint16_t kNoTable = UINT16_MAX;
  EventKind kind = EventKind::kUnknownFrame;
  uint16_t table = kNoTable;
  uint32_t symbol = kNoSymbol;
  uint64_t frame = 0;  // frame number, from 1
  int64_t value = 0;   // a status code, a level id, a row count
  uint16_t text_len = 0;
  char text[118] = {};  // an excerpt: the error message, the topic, the frame start
  [[nodiscard]] std::string_view excerpt() const noexcept { return {text, text_len}; }
};

struct LastTrade {
  int64_t timestamp_ns = 0;
  double price = 0;
  int64_t size = 0;
  Side side = Side::kBuy;
  bool valid = false;
};
struct LastQuote {
  int64_t timestamp_ns = 0;
  double bid_price = 0, ask_price = 0;
  int64_t bid_size = 0, ask_size = 0;
  bool has_bid = false, has_ask = false, valid = false;
};

struct FrameResult {
  FrameKind kind = FrameKind::kUnknown;
  Action action = Action::kInsert;  // meaningful for kTable
  uint16_t table = Event::kNoTable;
};

class FeedEngine {
 public:
  // One book of one book table (orderBookL2, orderBookL2_25) for one symbol.
  struct BookEntry {
    explicit BookEntry(uint32_t capacity) : book(capacity) {}
    OrderBook book;
    bool has_partial = false;
    bool stale = false;
    uint64_t partial_frame = 0;
    uint64_t image_frame = 0;  // the frame whose partial rows last went in (bulk: end_frame sorts)
    uint64_t touched_frame = 0;
    shm::Book* shm = nullptr;  // its copy in the segment, when publishing
  };
  struct TableEntry {
    std::string name;
    uint16_t id = 0;
    bool is_book = false;
    bool is_trade = false;
    bool is_quote = false;
    bool whole_partial = false;  // book tables: a partial without a symbol filter was seen
    std::array<uint64_t, kActionCount> rows{};
    std::vector<uint8_t> typed_slot;  // field id -> typed slot (trade/quote), else kNotTyped
    std::vector<std::unique_ptr<BookEntry>> books;  // by symbol id (book tables)
    std::unique_ptr<GenericTable> generic;          // every other table
  };

  explicit FeedEngine(const EngineConfig& config = {});
  FeedEngine(const FeedEngine&) = delete;
  FeedEngine& operator=(const FeedEngine&) = delete;

  // Applies one text frame. `data` must stay valid with `capacity - len >= SIMDJSON_PADDING`
  // readable bytes after the frame (any content): the frame is parsed where it lies, never copied.
  // Network thread only; no lock or syscall; no allocation on delta frames; no exception except
  // std::bad_alloc from a partial or a growth (counted).
  FrameResult on_frame(const char* data, size_t len, size_t capacity, int64_t recv_ns);

  // Publishes every state change from now on into a shared-memory segment through `writer` (which
  // must outlive the engine, or be detached with nullptr): names every symbol and table already
  // known, republishes nothing else (call it before the first frame), then marks the segment
  // ready. Cold path.
  void publish_to(shm::Writer* writer);

  [[nodiscard]] const Stats& stats() const noexcept { return stats_; }
  [[nodiscard]] const Interner& symbols() const noexcept { return symbols_; }
  [[nodiscard]] const std::vector<TableEntry>& tables() const noexcept { return tables_; }
  [[nodiscard]] uint16_t find_table(std::string_view name) const noexcept;
  // The book of `symbol` in `table` (default orderBookL2), or nullptr.
  [[nodiscard]] const BookEntry* book(std::string_view symbol,
                                      std::string_view table = "orderBookL2") const noexcept;
  [[nodiscard]] const GenericTable* table(std::string_view name) const noexcept;
  [[nodiscard]] const LastTrade* last_trade(std::string_view symbol) const noexcept;
  [[nodiscard]] const LastQuote* last_quote(std::string_view symbol) const noexcept;
  [[nodiscard]] uint64_t frame_count() const noexcept { return frame_no_; }

  // The connection to the exchange is gone: nothing the engine holds is current any more. Marks
  // every book and keyed table stale (deltas are dropped until each one's next partial, which
  // replaces it) and publishes the stale marks as one frame. Counted in Stats::link_losses, not in
  // the integrity counters. Network thread; no allocation.
  [[gnu::cold]] void link_lost();

  // Hands every pending event to `f` (oldest first) and forgets them. Owner's thread.
  template <class F>
  void drain_events(F&& f) {
    for (size_t i = 0; i < event_count_; ++i)
      f(events_[i]);
    event_count_ = 0;
  }

 private:
  struct BookRow;
  struct FrameHeader;

  FrameResult apply_frame(const char* data, size_t len, size_t capacity);
  void publish_stats() noexcept;
  void publish_level(BookEntry& b, Action action, Side side, uint64_t id, double old_price,
                     double price, int64_t size) noexcept;
  void publish_row(TableEntry& t, uint32_t symbol, Action action, std::string_view text) noexcept;
  std::string_view row_text(const char* start) noexcept;
  // gnu::cold (here and on emit, mark_*_stale, sniff_table): the paths of bad input and events,
  // kept out of the frame path's instruction-cache lines; branches to them laid out as not taken.
  [[gnu::cold]] FrameResult fail(FrameKind kind, const FrameHeader& h, std::string_view excerpt);
  [[gnu::cold]] void classify_control(FrameHeader& h);
  bool read_table(simdjson::ondemand::value& v, FrameHeader& h);
  static void read_action(simdjson::ondemand::value& v, FrameHeader& h) noexcept;
  bool top_field(simdjson::ondemand::field& f, FrameHeader& h);
  [[gnu::cold]] bool parse_partial_keys(simdjson::ondemand::value& v, FrameHeader& h);
  [[gnu::cold]] bool parse_partial_filter(simdjson::ondemand::value& v, FrameHeader& h);
  bool on_data(simdjson::ondemand::value& v, FrameHeader& h);
  bool process_data(simdjson::ondemand::array data, FrameHeader& h);
  bool book_rows(simdjson::ondemand::array data, TableEntry& t, FrameHeader& h);
  bool generic_rows(simdjson::ondemand::array data, TableEntry& t, FrameHeader& h);
  [[gnu::cold]] bool begin_partial(TableEntry& t, FrameHeader& h);
  BookEntry* book_for(TableEntry& t, uint32_t symbol, Action action);
  [[gnu::cold]] void mark_book_stale(BookEntry& b);
  [[gnu::cold]] void mark_table_books_stale(TableEntry& t);
  [[gnu::cold]] void mark_table_stale(TableEntry& t);  // a generic table; publishes it
  void end_frame(FrameHeader& h);
  // Typed slots of trade and quote rows: 0 timestamp, 1 price / bidPrice, 2 size / bidSize,
  // 3 side / askPrice, 4 askSize. Fields of no slot land in slot kNotTyped, which nothing reads.
  static constexpr uint8_t kTypedSlots = 5;
  static constexpr uint8_t kNotTyped = kTypedSlots;
  static constexpr uint16_t kAbsent = UINT16_MAX;
  // A generic row as read from the frame: its fields (raw tokens inside the frame) and where the
  // typed fields and the symbol are among them.
  struct GenericRow {
    std::vector<RawField> slots;  // max_fields_per_row entries; the first `count` are the row
    uint32_t count = 0;
    [[nodiscard]] std::span<const RawField> fields() const noexcept {
      return {slots.data(), count};
    }
    std::array<uint16_t, kTypedSlots + 1> typed_at{};  // last field of each slot, or kAbsent
    uint16_t symbol_at = kAbsent;                      // first "symbol" field, or kAbsent
    uint32_t symbol = kNoSymbol;
    std::string_view text;  // the row as received, in the frame (only when publishing)
    bool bad = false;       // more distinct fields than configured
    // The timestamp field's value (typed slot 0) once row_stamp() has parsed it: a trade or quote
    // row's time goes into its ring record and into the last trade or quote, parsed once.
    mutable int64_t stamp_ns = 0;
    mutable bool stamped = false;
  };
  bool read_generic_row(simdjson::ondemand::object& row, const TableEntry& t, GenericRow& r);
  bool apply_generic_row(TableEntry& t, const GenericRow& r, Action action, uint16_t tid);
  void commit_typed(const TableEntry& t, const GenericRow& r);
  [[nodiscard]] int64_t row_time(const TableEntry& t, const GenericRow& r) const noexcept;
  [[nodiscard]] int64_t row_stamp(const GenericRow& r) const noexcept;
  mutable BitmexTimestamps timestamps_;  // row_stamp's parser (it remembers the last minute)
  [[gnu::cold]] uint16_t table_id(std::string_view name);
  [[nodiscard, gnu::cold]] uint16_t sniff_table(std::string_view text) const noexcept;
  uint32_t symbol_id(std::string_view sym);
  uint32_t symbol_of_token(std::string_view tok, bool may_add);
  bool symbol_text(std::string_view tok, std::string_view& text) noexcept;
  char symbol_scratch_[64] = {};  // symbol_text's decoded escaped spellings
  struct SymbolCacheEntry {
    uint64_t head = 0, tail = 0;  // the name's first and last 8 bytes (see symbol_of_token)
    uint32_t length = 0;
    uint32_t id = kNoSymbol;
  };
  std::array<SymbolCacheEntry, 64> symbol_cache_{};
  [[gnu::cold]] Event* emit(EventKind kind, uint16_t table = Event::kNoTable,
                            uint32_t symbol = kNoSymbol, int64_t value = 0,
                            std::string_view text = {}) noexcept;

  EngineConfig config_;
  simdjson::ondemand::parser parser_;
  Interner symbols_;
  Interner table_names_;
  std::vector<TableEntry> tables_;
  std::vector<LastTrade> trades_;
  std::vector<LastQuote> quotes_;
  GenericRow row_;      // scratch: the generic row being read
  GenericRow pending_;  // a keyless insert held back until the next row shows it is not replaced
  std::vector<std::pair<BookEntry*, uint32_t>> touched_;  // books touched by this frame
  std::vector<uint32_t> key_ids_;                         // scratch: a partial's keys
  std::vector<RawField> filter_;                          // scratch: a partial's filter
  // A partial's keys and filter, as raw text inside the frame (names without quotes).
  static constexpr uint8_t kMaxPartialKeys = 16;
  std::array<std::string_view, kMaxPartialKeys> partial_keys_{};
  std::array<std::pair<std::string_view, std::string_view>, kMaxPartialKeys> partial_filter_{};
  std::string_view last_table_name_;  // one-entry cache of the table directory
  uint16_t last_table_id_ = Event::kNoTable;
  std::array<Event, 1024> events_{};
  size_t event_count_ = 0;
  uint64_t frame_no_ = 0;
  int64_t recv_ns_ = 0;  // receive time of the frame being applied (stamped on records)
  Stats stats_;
  shm::Writer* out_ = nullptr;  // the segment's producer, when publishing
  // The engine's counters as publish_stats() last stored them into the segment: each is stored
  // again only when it changed (most change rarely; every store into the segment counts).
  struct PublishedStats {
    uint64_t drops = 0, bad = 0, resyncs = 0, reconnects = 0;
  } published_;
  simdjson::ondemand::document* doc_ = nullptr;  // the frame being parsed (row text spans)
  std::string row_json_;                         // scratch: one row's whole JSON text (reserved)
  std::string row_key_;                          // scratch: one row's key (reserved)
};

}  // namespace bmx
