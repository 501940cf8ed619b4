// Freezes the shared-memory layout. Producer and consumers are separate programs, possibly built
// at different times: if any size or offset below changes, a reader built before the change would
// read garbage. When this test fails, bump shm::kLayoutVersion in shm/layout.hpp and then update
// the frozen values here, in the same commit.
#include <gtest/gtest.h>

#include <cstddef>

#include "shm/layout.hpp"

namespace bmx::shm {
namespace {

TEST(ShmLayout, VersionMatchesTheFrozenValues) {
  EXPECT_EQ(kLayoutVersion, 2u) << "layout changed: update the frozen sizes and offsets below";
  EXPECT_EQ(kMagic, 0x31304d4853584d42ULL);
}

TEST(ShmLayout, HeaderIsFrozen) {
  EXPECT_EQ(sizeof(Header), 320u);
  EXPECT_EQ(offsetof(Header, magic), 0u);
  EXPECT_EQ(offsetof(Header, layout_version), 8u);
  EXPECT_EQ(offsetof(Header, header_bytes), 12u);
  EXPECT_EQ(offsetof(Header, total_bytes), 16u);
  EXPECT_EQ(offsetof(Header, stats_offset), 24u);
  EXPECT_EQ(offsetof(Header, dir_offset), 32u);
  EXPECT_EQ(offsetof(Header, ring_offset), 40u);
  EXPECT_EQ(offsetof(Header, books_offset), 48u);
  EXPECT_EQ(offsetof(Header, trades_offset), 56u);
  EXPECT_EQ(offsetof(Header, rows_offset), 64u);
  EXPECT_EQ(offsetof(Header, ring_slots), 72u);
  EXPECT_EQ(offsetof(Header, max_symbols), 76u);
  EXPECT_EQ(offsetof(Header, max_tables), 80u);
  EXPECT_EQ(offsetof(Header, max_books), 84u);
  EXPECT_EQ(offsetof(Header, book_levels), 88u);
  EXPECT_EQ(offsetof(Header, book_slots), 92u);
  EXPECT_EQ(offsetof(Header, row_slots), 96u);
  EXPECT_EQ(offsetof(Header, row_bytes), 100u);
  EXPECT_EQ(offsetof(Header, book_bytes), 104u);
  EXPECT_EQ(offsetof(Header, producer_pid), 108u);
  EXPECT_EQ(offsetof(Header, start_time_ns), 112u);
  // Each on its own cache line: what readers poll never shares a line with what the producer
  // writes every frame.
  EXPECT_EQ(offsetof(Header, epoch), 128u);
  EXPECT_EQ(offsetof(Header, ready), 136u);
  EXPECT_EQ(offsetof(Header, heartbeat_ns), 192u);
  EXPECT_EQ(offsetof(Header, link_state), 200u);
  EXPECT_EQ(offsetof(Header, next_seq), 256u);
}

TEST(ShmLayout, StatsAndDirectoryAreFrozen) {
  EXPECT_EQ(sizeof(Stats), 128u);
  EXPECT_EQ(offsetof(Stats, frames), 0u);
  EXPECT_EQ(offsetof(Stats, records), 8u);
  EXPECT_EQ(offsetof(Stats, stale_books), 48u);
  EXPECT_EQ(offsetof(Stats, segment_full), 80u);
  EXPECT_EQ(offsetof(Stats, last_recv_to_publish_ns), 88u);
  EXPECT_EQ(sizeof(DirEntry), 40u);
  EXPECT_EQ(offsetof(DirEntry, used), 32u);
  EXPECT_EQ(offsetof(DirEntry, kind), 36u);
  EXPECT_EQ(sizeof(Directory), 64u);
}

TEST(ShmLayout, RingRecordsAreFrozen) {
  EXPECT_EQ(sizeof(Record), 64u);
  EXPECT_EQ(offsetof(Record, seq), 0u);
  EXPECT_EQ(offsetof(Record, body), 8u);
  EXPECT_EQ(offsetof(RecordBody, kind), 0u);
  EXPECT_EQ(offsetof(RecordBody, flags), 1u);
  EXPECT_EQ(offsetof(RecordBody, table), 2u);
  EXPECT_EQ(offsetof(RecordBody, symbol), 4u);
  EXPECT_EQ(offsetof(RecordBody, recv_ns), 8u);
  EXPECT_EQ(offsetof(RecordBody, exchange_ns), 16u);
  EXPECT_EQ(offsetof(RecordBody, publish_ns), 24u);
  EXPECT_EQ(offsetof(RecordBody, price), 32u);
  EXPECT_EQ(offsetof(RecordBody, size), 40u);
  EXPECT_EQ(offsetof(RecordBody, id), 48u);
  EXPECT_EQ(sizeof(TextSlot), 64u);
  EXPECT_EQ(offsetof(TextSlot, bytes), 8u);
  EXPECT_EQ(static_cast<int>(RecordKind::kBookClear), 0);
  EXPECT_EQ(static_cast<int>(RecordKind::kRow), 4);
  EXPECT_EQ(static_cast<int>(RecordKind::kLink), 7);
  EXPECT_EQ(kFlagLastInFrame, 1);
  EXPECT_EQ(kFlagSell, 2);
  EXPECT_EQ(kFlagHasPrice, 4);
  EXPECT_EQ(kRowActionShift, 4);
}

TEST(ShmLayout, StateRegionsAreFrozen) {
  EXPECT_EQ(sizeof(Level), 24u);
  EXPECT_EQ(sizeof(Book), 128u);
  EXPECT_EQ(offsetof(Book, seq), 0u);
  EXPECT_EQ(offsetof(Book, stamp), 8u);
  EXPECT_EQ(offsetof(Book, updates), 16u);
  EXPECT_EQ(offsetof(Book, last_recv_ns), 24u);
  EXPECT_EQ(offsetof(Book, used), 32u);
  EXPECT_EQ(offsetof(Book, table), 36u);
  EXPECT_EQ(offsetof(Book, symbol), 40u);
  EXPECT_EQ(offsetof(Book, stale), 44u);
  EXPECT_EQ(offsetof(Book, best), 48u);
  EXPECT_EQ(offsetof(Book, count), 56u);
  EXPECT_EQ(offsetof(Book, high), 64u);  // what top() reads is the first line
  EXPECT_EQ(sizeof(BookSlot), 32u);
  EXPECT_EQ(offsetof(BookSlot, id), 16u);
  EXPECT_EQ(offsetof(BookSlot, side), 24u);
  EXPECT_EQ(kSlotFree, 0u);
  EXPECT_EQ(kSlotBid, 1u);
  EXPECT_EQ(kSlotAsk, 2u);
  EXPECT_EQ(sizeof(TradeQuote), 128u);
  EXPECT_EQ(offsetof(TradeQuote, body), 8u);
  EXPECT_EQ(offsetof(TradeQuoteBody, trade_price), 16u);
  EXPECT_EQ(offsetof(TradeQuoteBody, bid_price), 56u);
  EXPECT_EQ(offsetof(TradeQuoteBody, ask_size), 80u);
  EXPECT_EQ(sizeof(RowSlot), 128u);
  EXPECT_EQ(offsetof(RowSlot, h), 8u);
  EXPECT_EQ(offsetof(RowHeader, hash), 16u);
  EXPECT_EQ(offsetof(RowHeader, key), 24u);
}

TEST(ShmLayout, RegionOffsetsOfTheDefaultConfiguration) {
  const Offsets o = layout_of(SegmentConfig{});
  EXPECT_EQ(o.stats, 4096u);
  EXPECT_EQ(o.dir, 8192u);
  EXPECT_EQ(o.ring, 8192u + 45056u);  // 64 + (1024 + 64) * 40 bytes, rounded to pages
  EXPECT_EQ(o.books - o.ring, 262144u * 64u);
  EXPECT_EQ(o.book_bytes, 524416u);  // 128 + 2 * 8192 slots * 32
  EXPECT_EQ(o.row_slot_bytes, 128u + 4096u);
  EXPECT_EQ(o.total % 4096, 0u);
}

}  // namespace
}  // namespace bmx::shm
