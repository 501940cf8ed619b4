// The shared-memory segment's layout: plain, trivially copyable structs over one POSIX
// shared-memory object, written by exactly one producer (the feed) and read by any number of
// consumers that map it read-only. Every field that both sides touch while the producer runs is
// accessed through std::atomic (lock-free, so plain loads and stores on x86): readers never take a
// lock, and the producer never waits for a reader.
//
//   offset 0        Header          magic, layout version, region offsets, pid, epoch, heartbeat,
//                                   connection state, `ready` (stored last)
//   header.stats    Stats           counters for tools
//   header.dir      Directory       symbol and table names by dense id
//   header.ring     Ring            2^k 64-byte slots, each one record (or text continuation)
//   header.books    Book[n]         per (book table, symbol): seqlock, stamp, best slots, level
//   slots header.trades   TradeQuote[s]   last trade and quote per symbol, seqlocked header.rows
//   RowSlot[r]      current rows of keyed tables, open addressing by (table, key)
//
// Change anything here and bump kLayoutVersion: tests/shm_layout_test.cpp freezes the size and
// offset of every shared struct and fails until the version and the frozen values agree.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

namespace bmx::shm {

inline constexpr uint64_t kMagic = 0x31304d4853584d42ULL;  // "BMXSHM01", little-endian
inline constexpr uint32_t kLayoutVersion = 2;
inline constexpr size_t kCacheLine = 64;
inline constexpr size_t kNameBytes = 32;  // symbol and table names, NUL-padded

static_assert(std::atomic<uint64_t>::is_always_lock_free, "shared atomics must be lock-free");
static_assert(std::atomic<uint32_t>::is_always_lock_free, "shared atomics must be lock-free");

// What the producer's link to the exchange is doing; readers and bitmex-top show it.
enum class LinkState : uint32_t {
  kStarting = 0,
  kConnecting = 1,
  kLive = 2,
  kReconnecting = 3,  // every book is marked stale until its new partial
  kReplaying = 4,     // a recorded session is being published
  kFinished = 5,      // the replay ended; the producer holds the segment open (--hold)
  kStopped = 6,       // clean shutdown
};

struct alignas(kCacheLine) Header {
  // Fixed at creation, before `ready`.
  uint64_t magic;
  uint32_t layout_version;
  uint32_t header_bytes;
  uint64_t total_bytes;
  uint64_t stats_offset, dir_offset, ring_offset, books_offset, trades_offset, rows_offset;
  uint32_t ring_slots;   // power of two
  uint32_t max_symbols;  // directory entries and TradeQuote slots
  uint32_t max_tables;   // directory entries
  uint32_t max_books;    // Book slots
  uint32_t book_levels;  // levels per side a Book is sized for
  uint32_t book_slots;   // level slots per Book, both sides together: 2 * book_levels
  uint32_t row_slots;    // RowSlot count (power of two)
  uint32_t row_bytes;    // bytes of JSON text a RowSlot holds
  uint32_t book_bytes;   // size of one Book, levels included
  int32_t producer_pid;
  int64_t start_time_ns;  // CLOCK_REALTIME at creation
  // Read by every reader on every poll; written only when a producer (re)initialises: a line of
  // its own, so that it stays shared in every reader's cache.
  alignas(kCacheLine) std::atomic<uint64_t> epoch;  // new whenever a producer (re)initialises
  std::atomic<uint32_t> ready;                      // 1 once everything above is valid
  // Written every ~100 ms.
  alignas(kCacheLine) std::atomic<int64_t> heartbeat_ns;  // CLOCK_MONOTONIC
  std::atomic<uint32_t> link_state;                       // LinkState
  // Written at the end of every frame; read by readers only when they attach or were lapped.
  alignas(kCacheLine) std::atomic<uint64_t> next_seq;  // sequence of the next ring record
};

// Counters for tools: written by the producer only (relaxed), read by anyone.
struct alignas(kCacheLine) Stats {
  std::atomic<uint64_t> frames;
  std::atomic<uint64_t> records;
  std::atomic<uint64_t> bytes;
  std::atomic<uint64_t> rows;
  std::atomic<uint64_t> drops;        // rows dropped (before partial, while stale)
  std::atomic<uint64_t> bad;          // malformed/oversized/unknown frames and bad rows
  std::atomic<uint64_t> stale_books;  // books currently stale
  std::atomic<uint64_t> stale_marks;  // times a book was marked stale
  std::atomic<uint64_t> resyncs;      // partials that repaired a stale book
  std::atomic<uint64_t> reconnects;
  std::atomic<uint64_t> segment_full;             // rows or books the segment had no room for
  std::atomic<int64_t> last_recv_to_publish_ns;   // receive -> end of publish, 1 frame in 64
  std::atomic<int64_t> last_exchange_to_recv_ns;  // exchange timestamp -> receive, last frame
  std::atomic<uint64_t> reserved[3];
};

// One directory entry. `name` and `kind` are written before `used` (release) and never change
// while the epoch lasts; tables also get kDirPartial once their first partial arrived, and
// kDirStale while the producer cannot trust their rows (from a kStale record for the whole table
// until the table's next partial).
struct DirEntry {
  char name[kNameBytes];
  std::atomic<uint32_t> used;  // kDirNamed | kDirPartial | kDirStale
  uint32_t kind;               // tables: TableKind; symbols: 0
};
inline constexpr uint32_t kDirNamed = 1;
inline constexpr uint32_t kDirPartial = 2;
inline constexpr uint32_t kDirStale = 4;

enum class TableKind : uint32_t { kGeneric = 0, kBook = 1, kTrade = 2, kQuote = 3 };

// Directory header; the entries follow: max_symbols symbols, then max_tables tables.
struct alignas(kCacheLine) Directory {
  std::atomic<uint32_t> symbols;  // entries in use (dense ids 0..symbols-1)
  std::atomic<uint32_t> tables;
  uint32_t reserved[14];
};

// ---- ring ---------------------------------------------------------------------------------------

enum class RecordKind : uint8_t {
  kBookClear = 0,   // a partial reset this book (symbol, table); its levels follow as kBookInsert
  kBookInsert = 1,  // a level added
  kBookUpdate = 2,  // a level's size (and maybe price) changed
  kBookDelete = 3,  // a level removed
  kRow = 4,         // a generic table row: `size` bytes of JSON in the following slots
  kTableClear = 5,  // a partial reset what it covers: symbol set, or every row (kNoSymbol)
  kStale = 6,       // the book (symbol, table) or a whole table went stale
  kLink = 7,        // the producer's LinkState changed (value in `size`)
  kText = 8,        // (never a record's kind: continuation slots of a kRow carry 56 bytes each)
};

inline constexpr uint8_t kFlagLastInFrame = 1;  // the last record of a websocket frame
inline constexpr uint8_t kFlagSell = 2;         // book records: the ask side
inline constexpr uint8_t kFlagHasPrice = 4;     // book update: the price moved
inline constexpr int kRowActionShift = 4;       // kRow: Action in flags bits 4-5
inline constexpr size_t kTextSlotBytes = 56;    // JSON bytes per continuation slot

// What a record says. Plain data: readers receive copies of it.
struct RecordBody {
  uint8_t kind;         // RecordKind
  uint8_t flags;        // kFlag*; kRow: the row's bmx::Action in bits 4-5 (row_action())
  uint16_t table;       // dense table id
  uint32_t symbol;      // dense symbol id, or kNoSymbol
  int64_t recv_ns;      // CLOCK_REALTIME when the frame arrived
  int64_t exchange_ns;  // the row's timestamp, when it has one; else 0
  int64_t publish_ns;   // CLOCK_REALTIME when the producer began publishing the frame
  double price;         // book records: the level's price (for a delete, the price it had)
  int64_t size;         // book records: the level's size; kRow: bytes of JSON text that follow
  uint64_t id;          // book records: the level's id
};
static_assert(sizeof(RecordBody) == 56);

// One ring slot: one record. `seq` is the slot's own seqlock word: the producer stores kBusy,
// writes the body, then stores the record's sequence (release). A reader expecting sequence s
// reads seq == s, copies, and checks seq again: anything else means not yet written (< s or
// kBusy) or overwritten (> s: the reader was lapped).
struct alignas(kCacheLine) Record {
  std::atomic<uint64_t> seq;
  RecordBody body;
};
static_assert(sizeof(Record) == 64);

// A continuation slot of a kRow record.
struct alignas(kCacheLine) TextSlot {
  std::atomic<uint64_t> seq;
  char bytes[kTextSlotBytes];
};
static_assert(sizeof(TextSlot) == 64);
inline constexpr uint64_t kBusy = UINT64_MAX;  // a slot being written

// ---- state regions ------------------------------------------------------------------------------

struct Level {
  double price;
  int64_t size;
  uint64_t id;
};

// One level of a book, in the slot its producer keeps it in. The feed keeps each level in the
// slot its own order book holds it in (a level never moves while it lives), so that a change is
// one store into one slot: no search, no shift. `side` says whether the slot holds a level.
struct BookSlot {
  double price;
  int64_t size;
  uint64_t id;
  uint32_t side;  // kSlotFree, kSlotBid, kSlotAsk
  uint32_t reserved;
};
static_assert(sizeof(BookSlot) == 32);
inline constexpr uint32_t kSlotFree = 0;
inline constexpr uint32_t kSlotBid = 1;
inline constexpr uint32_t kSlotAsk = 2;
inline constexpr uint32_t kNoLevel = UINT32_MAX;  // Book::best of an empty side

// One book: a header of two lines, then `book_slots` BookSlots (both sides, in no order). The
// best level of each side is the slot `best[side]` names: O(1). A reader that wants the ladder
// copies the slots below `high` and sorts them (Reader::copy_book). `seq` is a seqlock (odd while
// the producer changes the book); `stamp` is the ring sequence of the last record the book
// reflects.
struct alignas(kCacheLine) Book {
  // What a reader of the top reads: one line.
  std::atomic<uint64_t> seq;
  std::atomic<uint64_t> stamp;
  std::atomic<uint64_t> updates;      // records applied since creation
  std::atomic<int64_t> last_recv_ns;  // receive time (CLOCK_REALTIME) of the last frame it changed
  std::atomic<uint32_t> used;         // 1 once table/symbol are set
  uint16_t table;
  uint16_t reserved0;
  uint32_t symbol;
  std::atomic<uint32_t> stale;    // 1 while the book cannot be trusted (until a partial)
  std::atomic<uint32_t> best[2];  // [side]: slot of the best level; kNoLevel when the side is empty
  std::atomic<uint32_t> count[2];  // [side]: levels held
  // What a copy of the whole book reads besides.
  alignas(kCacheLine) std::atomic<uint32_t> high;  // every slot at or above it is free
  uint32_t reserved1[15];
  // Followed by BookSlot slots[book_slots].
};
static_assert(sizeof(Book) == 128);

// Last trade and quote of one symbol, under one seqlock.
struct TradeQuoteBody {
  uint32_t has_trade, has_quote;
  int64_t trade_ns;
  double trade_price;
  int64_t trade_size;
  uint32_t trade_side;  // bmx::Side
  uint32_t has_bid, has_ask, reserved0;
  int64_t quote_ns;
  double bid_price, ask_price;
  int64_t bid_size, ask_size;
  uint64_t reserved1;
};
static_assert(sizeof(TradeQuoteBody) == 96);
struct alignas(kCacheLine) TradeQuote {
  std::atomic<uint64_t> seq;
  TradeQuoteBody body;
};
static_assert(sizeof(TradeQuote) == 128);

// One row of a keyed table, as JSON text, found by (table, key) with linear probing under a
// seqlock. A deleted row becomes a tombstone so that probe chains stay intact.
struct RowHeader {
  uint32_t state;  // 0 empty, 1 live, 2 tombstone
  uint16_t table;
  uint16_t key_bytes;
  uint32_t symbol;
  uint32_t text_bytes;
  uint64_t hash;
  char key[96];
};
static_assert(sizeof(RowHeader) == 120);
struct alignas(kCacheLine) RowSlot {
  std::atomic<uint64_t> seq;
  RowHeader h;
  // Followed by row_bytes of JSON text.
};
static_assert(sizeof(RowSlot) == 128);
inline constexpr size_t kMaxKeyBytes = sizeof(RowHeader::key);
// The empty key (a keyless table's row without a symbol), with a pointer that is never null.
inline constexpr std::string_view kEmptyKey{""};

// Where a row's probe starts: FNV-1a over the table id and the key. Never 0.
inline uint64_t row_hash(uint16_t table, const char* key, size_t n) noexcept {
  uint64_t h = 0xcbf29ce484222325ULL ^ table;
  for (size_t i = 0; i < n; ++i) {
    h ^= static_cast<unsigned char>(key[i]);
    h *= 0x100000001b3ULL;
  }
  return h | 1;
}

// Sizes a producer chooses; readers learn them from the header.
struct SegmentConfig {
  uint32_t ring_slots = 1u << 18;  // 16 MiB of records
  uint32_t max_symbols = 1024;
  uint32_t max_tables = 64;
  uint32_t max_books = 64;
  uint32_t book_levels = 8192;  // per side (room for twice as many, both sides together); 2021
                                // XBTUSD had 5557 bids
  uint32_t row_slots = 4096;
  uint32_t row_bytes = 4096;  // an instrument row is ~2.5 KB of JSON
};

// Byte offsets of each region for a configuration; every region starts on a 4 KiB page.
struct Offsets {
  uint64_t stats, dir, ring, books, trades, rows, total;
  uint32_t book_bytes, row_slot_bytes;
};
Offsets layout_of(const SegmentConfig& c) noexcept;

static_assert(std::is_trivially_destructible_v<Header>);
static_assert(std::is_standard_layout_v<Header> && std::is_standard_layout_v<Record> &&
              std::is_standard_layout_v<Book> && std::is_standard_layout_v<RowSlot>);

}  // namespace bmx::shm
