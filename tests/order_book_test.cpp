// OrderBook: the (side, id) -> (price, size) book with best-at-back sorted sides. Expected values
// are written by hand, or come from a std::map reference inside the test.
#include "engine/order_book.hpp"

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "test_support.hpp"

namespace {

using bmx::OrderBook;
using bmx::Side;
using bmxtest::Ladder;
using Result = OrderBook::Result;

constexpr Side kBuy = Side::kBuy;
constexpr Side kSell = Side::kSell;

Ladder bids(const OrderBook& b) {
  return bmxtest::ladder(b, kBuy);
}
Ladder asks(const OrderBook& b) {
  return bmxtest::ladder(b, kSell);
}

TEST(OrderBook, StartsEmptyWithNoBestLevels) {
  OrderBook b;
  EXPECT_EQ(b.size(), 0u);
  EXPECT_EQ(b.depth(kBuy), 0u);
  EXPECT_EQ(b.depth(kSell), 0u);
  EXPECT_EQ(b.best(kBuy), nullptr);
  EXPECT_EQ(b.best(kSell), nullptr);
  EXPECT_FALSE(b.crossed());
}

TEST(OrderBook, InsertsKeepBidsHighestFirstAndAsksLowestFirst) {
  OrderBook b;
  EXPECT_EQ(b.insert(kBuy, 1, 100.0, 10), Result::kOk);
  EXPECT_EQ(b.insert(kBuy, 2, 101.5, 20), Result::kOk);
  EXPECT_EQ(b.insert(kBuy, 3, 99.0, 30), Result::kOk);
  EXPECT_EQ(b.insert(kSell, 4, 103.0, 40), Result::kOk);
  EXPECT_EQ(b.insert(kSell, 5, 102.0, 50), Result::kOk);
  EXPECT_EQ(b.insert(kSell, 6, 104.5, 60), Result::kOk);

  EXPECT_EQ(bids(b), (Ladder{{101.5, 20}, {100.0, 10}, {99.0, 30}}));
  EXPECT_EQ(asks(b), (Ladder{{102.0, 50}, {103.0, 40}, {104.5, 60}}));
  EXPECT_EQ(b.size(), 6u);
  EXPECT_EQ(b.level(kBuy, 0).id, 2u);
  EXPECT_EQ(b.level(kSell, 2).id, 6u);
}

TEST(OrderBook, BestAccessorsReturnTheTopLevel) {
  OrderBook b;
  ASSERT_EQ(b.insert(kBuy, 10, 32186.0, 5), Result::kOk);
  ASSERT_EQ(b.insert(kBuy, 11, 32186.5, 1407700), Result::kOk);
  ASSERT_EQ(b.insert(kSell, 12, 32187.0, 36000), Result::kOk);
  ASSERT_EQ(b.insert(kSell, 13, 32190.0, 7), Result::kOk);

  const bmx::BookLevel* bid = b.best(kBuy);
  const bmx::BookLevel* ask = b.best(kSell);
  ASSERT_NE(bid, nullptr);
  ASSERT_NE(ask, nullptr);
  EXPECT_EQ(bid->price, 32186.5);
  EXPECT_EQ(bid->size, 1407700);
  EXPECT_EQ(bid->id, 11u);
  EXPECT_EQ(ask->price, 32187.0);
  EXPECT_EQ(ask->size, 36000);
  EXPECT_EQ(ask->id, 12u);

  // Deleting the best promotes the next one.
  EXPECT_EQ(b.remove(kBuy, 11), Result::kOk);
  EXPECT_EQ(b.best(kBuy)->price, 32186.0);
  EXPECT_EQ(b.remove(kSell, 12), Result::kOk);
  EXPECT_EQ(b.best(kSell)->price, 32190.0);
}

TEST(OrderBook, OrdersPricesAcrossNineteenOrdersOfMagnitude) {
  // The two captures hold prices from 32186.5 (XBTUSD) down to 1.6425e-06 (TRXU21): no fixed
  // decimal scale fits them all. Inserted in a scrambled order.
  const std::vector<double> prices = {1.6425e-06, 32186.5,   0.05454, 1.6426e-06,
                                      438.55,     1.814e-05, 32186.0, 1.6424e-06,
                                      3.5385,     0.8762,    1e-12,   17.287};
  OrderBook bid_book, ask_book;
  uint64_t id = 1;
  for (double p : prices) {
    ASSERT_EQ(bid_book.insert(kBuy, id, p, static_cast<int64_t>(id)), Result::kOk);
    ASSERT_EQ(ask_book.insert(kSell, id, p, static_cast<int64_t>(id)), Result::kOk);
    ++id;
  }
  const std::vector<double> descending = {32186.5,    32186.0,    438.55,     17.287,
                                          3.5385,     0.8762,     0.05454,    1.814e-05,
                                          1.6426e-06, 1.6425e-06, 1.6424e-06, 1e-12};
  std::vector<double> got_bids, got_asks;
  for (const auto& [p, s] : bids(bid_book))
    got_bids.push_back(p);
  for (const auto& [p, s] : asks(ask_book))
    got_asks.push_back(p);
  EXPECT_EQ(got_bids, descending);
  std::vector<double> ascending(descending.rbegin(), descending.rend());
  EXPECT_EQ(got_asks, ascending);
  EXPECT_EQ(bid_book.best(kBuy)->price, 32186.5);
  EXPECT_EQ(ask_book.best(kSell)->price, 1e-12);
}

TEST(OrderBook, UpdateWithoutPriceKeepsTheLevelPrice) {
  OrderBook b;
  ASSERT_EQ(b.insert(kSell, 8796323950, 32186.5, 60000), Result::kOk);
  EXPECT_EQ(b.update(kSell, 8796323950, 75000, /*has_price=*/false, 0.0), Result::kOk);
  EXPECT_EQ(asks(b), (Ladder{{32186.5, 75000}}));
}

TEST(OrderBook, UpdateWithSamePriceOnlyChangesSize) {
  OrderBook b;
  ASSERT_EQ(b.insert(kBuy, 1, 10.0, 1), Result::kOk);
  ASSERT_EQ(b.insert(kBuy, 2, 11.0, 2), Result::kOk);
  EXPECT_EQ(b.update(kBuy, 1, 5, true, 10.0), Result::kOk);
  EXPECT_EQ(bids(b), (Ladder{{11.0, 2}, {10.0, 5}}));
}

TEST(OrderBook, UpdateWithNewPriceMovesTheLevel) {
  OrderBook b;
  ASSERT_EQ(b.insert(kBuy, 1, 100.0, 1), Result::kOk);
  ASSERT_EQ(b.insert(kBuy, 2, 99.0, 2), Result::kOk);
  ASSERT_EQ(b.insert(kBuy, 3, 98.0, 3), Result::kOk);
  // The worst bid becomes the best.
  EXPECT_EQ(b.update(kBuy, 3, 33, true, 101.0), Result::kOk);
  EXPECT_EQ(bids(b), (Ladder{{101.0, 33}, {100.0, 1}, {99.0, 2}}));
  EXPECT_EQ(b.best(kBuy)->id, 3u);
  // The best bid becomes the worst.
  EXPECT_EQ(b.update(kBuy, 3, 34, true, 97.0), Result::kOk);
  EXPECT_EQ(bids(b), (Ladder{{100.0, 1}, {99.0, 2}, {97.0, 34}}));
  // A move into the middle, on the ask side.
  ASSERT_EQ(b.insert(kSell, 4, 200.0, 4), Result::kOk);
  ASSERT_EQ(b.insert(kSell, 5, 210.0, 5), Result::kOk);
  ASSERT_EQ(b.insert(kSell, 6, 220.0, 6), Result::kOk);
  EXPECT_EQ(b.update(kSell, 4, 44, true, 215.0), Result::kOk);
  EXPECT_EQ(asks(b), (Ladder{{210.0, 5}, {215.0, 44}, {220.0, 6}}));
  // The moved level is still found by its id afterwards.
  EXPECT_EQ(b.remove(kSell, 4), Result::kOk);
  EXPECT_EQ(asks(b), (Ladder{{210.0, 5}, {220.0, 6}}));
}

TEST(OrderBook, UpdateOrDeleteOfUnknownLevelIsReportedAndChangesNothing) {
  OrderBook b;
  ASSERT_EQ(b.insert(kBuy, 1, 100.0, 1), Result::kOk);
  ASSERT_EQ(b.insert(kSell, 2, 101.0, 2), Result::kOk);
  EXPECT_EQ(b.update(kBuy, 99, 5, false, 0.0), Result::kUnknownLevel);
  EXPECT_EQ(b.remove(kSell, 99), Result::kUnknownLevel);
  // Same id, other side: a different level.
  EXPECT_EQ(b.update(kSell, 1, 5, false, 0.0), Result::kUnknownLevel);
  EXPECT_EQ(b.remove(kBuy, 2), Result::kUnknownLevel);
  EXPECT_EQ(bids(b), (Ladder{{100.0, 1}}));
  EXPECT_EQ(asks(b), (Ladder{{101.0, 2}}));
}

TEST(OrderBook, DeleteTwiceIsUnknownTheSecondTime) {
  OrderBook b;
  ASSERT_EQ(b.insert(kBuy, 1, 100.0, 1), Result::kOk);
  EXPECT_EQ(b.remove(kBuy, 1), Result::kOk);
  EXPECT_EQ(b.remove(kBuy, 1), Result::kUnknownLevel);
  EXPECT_EQ(b.size(), 0u);
  EXPECT_EQ(b.best(kBuy), nullptr);
}

TEST(OrderBook, SameIdOnBothSidesIsTwoLevels) {
  OrderBook b;
  ASSERT_EQ(b.insert(kBuy, 7, 100.0, 1), Result::kOk);
  ASSERT_EQ(b.insert(kSell, 7, 101.0, 2), Result::kOk);
  EXPECT_EQ(b.size(), 2u);
  EXPECT_EQ(b.remove(kBuy, 7), Result::kOk);
  EXPECT_EQ(asks(b), (Ladder{{101.0, 2}}));
}

TEST(OrderBook, DuplicateInsertIsReportedAndReplacesTheLevel) {
  OrderBook b;
  ASSERT_EQ(b.insert(kBuy, 1, 100.0, 1), Result::kOk);
  ASSERT_EQ(b.insert(kBuy, 2, 99.0, 2), Result::kOk);
  EXPECT_EQ(b.insert(kBuy, 2, 101.0, 22), Result::kDuplicateInsert);
  EXPECT_EQ(b.size(), 2u);
  EXPECT_EQ(bids(b), (Ladder{{101.0, 22}, {100.0, 1}}));
}

TEST(OrderBook, CrossedWhenBestBidReachesBestAsk) {
  OrderBook b;
  ASSERT_EQ(b.insert(kBuy, 1, 100.0, 1), Result::kOk);
  EXPECT_FALSE(b.crossed());  // one side only
  ASSERT_EQ(b.insert(kSell, 2, 100.5, 1), Result::kOk);
  EXPECT_FALSE(b.crossed());
  ASSERT_EQ(b.insert(kBuy, 3, 100.5, 1), Result::kOk);
  EXPECT_TRUE(b.crossed()) << "a bid equal to the ask is crossed (locked)";
  ASSERT_EQ(b.update(kBuy, 3, 1, true, 101.0), Result::kOk);
  EXPECT_TRUE(b.crossed());
  ASSERT_EQ(b.remove(kBuy, 3), Result::kOk);
  EXPECT_FALSE(b.crossed());
  ASSERT_EQ(b.remove(kSell, 2), Result::kOk);
  EXPECT_FALSE(b.crossed());
}

TEST(OrderBook, ClearEmptiesTheBookAndKeepsItUsable) {
  OrderBook b(16);
  for (uint64_t i = 1; i <= 40; ++i)
    ASSERT_EQ(b.insert(i % 2 ? kBuy : kSell, i, i % 2 ? 100.0 - double(i) : 100.0 + double(i),
                       int64_t(i)),
              Result::kOk);
  const uint32_t cap = b.capacity();
  b.clear();
  EXPECT_EQ(b.size(), 0u);
  EXPECT_EQ(b.best(kBuy), nullptr);
  EXPECT_EQ(b.best(kSell), nullptr);
  EXPECT_EQ(b.capacity(), cap) << "clear keeps the memory";
  EXPECT_EQ(b.remove(kBuy, 1), Result::kUnknownLevel) << "old ids are gone";
  EXPECT_EQ(b.insert(kBuy, 1, 5.0, 50), Result::kOk) << "an old id is new again";
  EXPECT_EQ(b.insert(kSell, 2, 6.0, 60), Result::kOk);
  EXPECT_EQ(bids(b), (Ladder{{5.0, 50}}));
  EXPECT_EQ(asks(b), (Ladder{{6.0, 60}}));
}

TEST(OrderBook, BulkInsertedLevelsAreOrderedByFinishBulk) {
  // A partial lists levels by descending price, asks first: the worst order for the bid side.
  OrderBook b(16);
  const double ask_prices[] = {105.0, 104.0, 103.5, 102.0};
  const double bid_prices[] = {101.0, 100.5, 99.0, 98.0, 97.0};
  uint64_t id = 1;
  for (double p : ask_prices)
    ASSERT_EQ(b.bulk_insert(kSell, id++, p, 10), Result::kOk);
  for (double p : bid_prices)
    ASSERT_EQ(b.bulk_insert(kBuy, id++, p, 20), Result::kOk);
  b.finish_bulk();
  EXPECT_EQ(asks(b), (Ladder{{102.0, 10}, {103.5, 10}, {104.0, 10}, {105.0, 10}}));
  EXPECT_EQ(bids(b), (Ladder{{101.0, 20}, {100.5, 20}, {99.0, 20}, {98.0, 20}, {97.0, 20}}));
  EXPECT_EQ(b.best(kBuy)->id, 5u);
  EXPECT_EQ(b.best(kSell)->id, 4u);
  // Deltas after it work as on any book.
  EXPECT_EQ(b.insert(kBuy, 100, 99.5, 1), Result::kOk);
  EXPECT_EQ(b.remove(kBuy, 5), Result::kOk);
  EXPECT_EQ(b.update(kSell, 2, 11, true, 101.5), Result::kOk);
  EXPECT_EQ(bids(b), (Ladder{{100.5, 20}, {99.5, 1}, {99.0, 20}, {98.0, 20}, {97.0, 20}}));
  EXPECT_EQ(asks(b), (Ladder{{101.5, 11}, {102.0, 10}, {103.5, 10}, {105.0, 10}}));
}

TEST(OrderBook, RepeatedLevelInOneBulkKeepsTheLastOne) {
  OrderBook b;
  ASSERT_EQ(b.bulk_insert(kBuy, 1, 100.0, 1), Result::kOk);
  ASSERT_EQ(b.bulk_insert(kBuy, 2, 99.0, 2), Result::kOk);
  EXPECT_EQ(b.bulk_insert(kBuy, 1, 98.0, 3), Result::kDuplicateInsert);
  b.finish_bulk();
  EXPECT_EQ(b.size(), 2u);
  EXPECT_EQ(bids(b), (Ladder{{99.0, 2}, {98.0, 3}}));
  EXPECT_EQ(b.remove(kBuy, 1), Result::kOk);
  EXPECT_EQ(bids(b), (Ladder{{99.0, 2}}));
}

TEST(OrderBook, BulkInsertPastCapacityGrowsAndKeepsEveryLevel) {
  OrderBook b(16);
  std::mt19937_64 rng(7);
  std::map<uint64_t, double> ref;
  for (uint64_t i = 0; i < 1000; ++i) {
    const double p = double(1 + rng() % 100000) / 8.0;
    ASSERT_EQ(b.bulk_insert(kSell, i, p, 1), Result::kOk);
    ref[i] = p;
  }
  b.finish_bulk();
  EXPECT_TRUE(b.grew());
  std::vector<double> want;
  for (const auto& [id, p] : ref)
    want.push_back(p);
  std::sort(want.begin(), want.end());
  std::vector<double> got;
  for (const auto& [p, s] : asks(b))
    got.push_back(p);
  EXPECT_EQ(got, want);
  for (const auto& [id, p] : ref)
    ASSERT_EQ(b.remove(kSell, id), Result::kOk) << id;
}

TEST(OrderBook, ReserveMakesRoomWithoutGrowingLater) {
  OrderBook b(16);
  b.reserve(500);
  EXPECT_GE(b.capacity(), 500u);
  for (uint64_t i = 0; i < 500; ++i)
    ASSERT_EQ(b.insert(kBuy, i, 1.0 + double(i), 1), Result::kOk);
  EXPECT_FALSE(b.grew());
}

// A std::map reference: side -> id -> (price, size).
struct RefSideBook {
  std::map<uint64_t, std::pair<double, int64_t>> levels[2];
  Ladder ladder(Side side) const {
    Ladder out;
    for (const auto& [id, l] : levels[static_cast<int>(side)])
      out.push_back(l);
    std::sort(out.begin(), out.end(), [side](const auto& a, const auto& b) {
      if (a.first != b.first) return side == kBuy ? a.first > b.first : a.first < b.first;
      return a.second < b.second;
    });
    return out;
  }
};

// Sorts equal prices by size, as the reference does: equal prices never occur in a sane book, but
// the random walk below may produce them.
Ladder normalised(Ladder l, Side side) {
  std::sort(l.begin(), l.end(), [side](const auto& a, const auto& b) {
    if (a.first != b.first) return side == kBuy ? a.first > b.first : a.first < b.first;
    return a.second < b.second;
  });
  return l;
}

TEST(OrderBook, GrowthPastCapacityKeepsEveryLevelCorrect) {
  OrderBook b(16);
  RefSideBook ref;
  std::mt19937_64 rng(12345);
  const uint32_t initial = b.capacity();
  EXPECT_FALSE(b.grew());
  // Bids below 1000, asks above; ids are arbitrary 63-bit numbers, as since 2023.
  std::vector<std::pair<Side, uint64_t>> live;
  for (int i = 0; i < 3000; ++i) {
    const Side side = rng() % 2 ? kBuy : kSell;
    const uint64_t id = rng() >> 1;
    const double tick = double(1 + rng() % 20000) * 0.5;
    const double price = side == kBuy ? 1000.0 - tick * 0.01 : 1000.0 + tick * 0.01;
    const auto size = static_cast<int64_t>(1 + rng() % 100000);
    ASSERT_EQ(b.insert(side, id, price, size), Result::kOk);
    ref.levels[static_cast<int>(side)][id] = {price, size};
    live.emplace_back(side, id);
  }
  EXPECT_TRUE(b.grew());
  EXPECT_GT(b.capacity(), initial);
  EXPECT_GE(b.capacity(), b.size());
  b.reset_grew();
  EXPECT_FALSE(b.grew());

  // Delete half, update a quarter (half of them with a new price), in random order.
  std::shuffle(live.begin(), live.end(), rng);
  for (size_t i = 0; i < live.size(); ++i) {
    const auto [side, id] = live[i];
    auto& side_ref = ref.levels[static_cast<int>(side)];
    if (i % 2 == 0) {
      ASSERT_EQ(b.remove(side, id), Result::kOk);
      side_ref.erase(id);
    } else if (i % 4 == 1) {
      const auto size = static_cast<int64_t>(1 + rng() % 1000);
      const bool move = rng() % 2;
      const double price = side == kBuy ? 1000.0 - double(1 + rng() % 10000) * 0.01
                                        : 1000.0 + double(1 + rng() % 10000) * 0.01;
      ASSERT_EQ(b.update(side, id, size, move, price), Result::kOk);
      side_ref[id].second = size;
      if (move) side_ref[id].first = price;
    }
  }
  EXPECT_EQ(b.size(), ref.levels[0].size() + ref.levels[1].size());
  EXPECT_EQ(normalised(bids(b), kBuy), ref.ladder(kBuy));
  EXPECT_EQ(normalised(asks(b), kSell), ref.ladder(kSell));
  EXPECT_EQ(b.best(kBuy)->price, ref.ladder(kBuy).front().first);
  EXPECT_EQ(b.best(kSell)->price, ref.ladder(kSell).front().first);
  // Every surviving id is still found, every deleted one is not.
  for (size_t i = 0; i < live.size(); ++i) {
    const auto [side, id] = live[i];
    const bool alive = ref.levels[static_cast<int>(side)].count(id) != 0;
    EXPECT_EQ(b.remove(side, id), alive ? Result::kOk : Result::kUnknownLevel);
  }
  EXPECT_EQ(b.size(), 0u);
}

TEST(OrderBook, ManyInsertsAndDeletesAtTheTopNeverDegradeTheIndex) {
  // Backward-shift deletion must keep probe chains intact: churn far more ids than the capacity.
  OrderBook b(64);
  std::map<uint64_t, int64_t> ref;
  for (uint64_t i = 0; i < 20000; ++i) {
    ASSERT_EQ(b.insert(kSell, i * 7919, 100.0 + double(i % 50), int64_t(i)), Result::kOk);
    ref[i * 7919] = int64_t(i);
    if (i >= 40) {
      const uint64_t old = (i - 40) * 7919;
      ASSERT_EQ(b.remove(kSell, old), Result::kOk) << i;
      ref.erase(old);
    }
  }
  EXPECT_EQ(b.size(), 40u);
  for (const auto& [id, size] : ref) {
    ASSERT_EQ(b.update(kSell, id, size + 1, false, 0.0), Result::kOk) << id;
  }
}

// The engine reads ids as unsigned 64-bit: every bit of the id, and the side, tell levels apart.
TEST(OrderBook, IdsThatDifferOnlyInTheTopBitAreDistinctLevels) {
  OrderBook b;
  ASSERT_EQ(b.insert(kBuy, 5, 100.0, 1), Result::kOk);
  EXPECT_EQ(b.insert(kBuy, 5 | (uint64_t{1} << 63), 99.0, 2), Result::kOk);
  EXPECT_EQ(b.size(), 2u);
}

TEST(OrderBook, CopiesAreDeepAndIndependent) {
  OrderBook a(16);
  for (uint64_t i = 1; i <= 20; ++i)
    ASSERT_EQ(a.insert(kBuy, i, double(i), int64_t(i)), Result::kOk);
  OrderBook b = a;
  EXPECT_EQ(bids(b), bids(a));
  EXPECT_EQ(b.remove(kBuy, 20), Result::kOk);
  EXPECT_EQ(b.update(kBuy, 1, 100, false, 0.0), Result::kOk);
  EXPECT_EQ(a.depth(kBuy), 20u) << "the source keeps its levels";
  EXPECT_EQ(a.best(kBuy)->id, 20u);
  EXPECT_EQ(a.level(kBuy, 19).size, 1);
  // Assigning over a book with other levels and another capacity replaces everything.
  OrderBook c(1024);
  ASSERT_EQ(c.insert(kSell, 99, 5.0, 5), Result::kOk);
  c = b;
  EXPECT_EQ(bids(c), bids(b));
  EXPECT_EQ(c.depth(kSell), 0u);
  EXPECT_EQ(c.remove(kSell, 99), Result::kUnknownLevel);
  EXPECT_EQ(c.remove(kBuy, 19), Result::kOk);
  EXPECT_EQ(b.depth(kBuy), 19u);
}

}  // namespace
