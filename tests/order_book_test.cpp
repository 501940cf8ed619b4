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

TEST(OrderBook, OperationsReportThePriceTheLevelHadBefore) {
  OrderBook b;
  double old = -1;
  EXPECT_EQ(b.insert(kBuy, 1, 100.5, 10, old), Result::kOk);
  EXPECT_EQ(old, -1);  // a new level: left alone
  EXPECT_EQ(b.insert(kSell, 2, 101.25, 20, old), Result::kOk);
  EXPECT_EQ(old, -1);
  EXPECT_EQ(b.update(kBuy, 1, 11, false, 0, old), Result::kOk);
  EXPECT_EQ(old, 100.5);
  EXPECT_EQ(b.update(kSell, 2, 21, false, 0, old), Result::kOk);
  EXPECT_EQ(old, 101.25);  // an ask's key is its negated price: reported as the price
  EXPECT_EQ(b.update(kSell, 2, 22, true, 102.0, old), Result::kOk);  // moves
  EXPECT_EQ(old, 101.25);
  EXPECT_EQ(b.insert(kSell, 2, 103.0, 23, old), Result::kDuplicateInsert);
  EXPECT_EQ(old, 102.0);
  EXPECT_EQ(b.bulk_insert(kBuy, 1, 99.0, 12, old), Result::kDuplicateInsert);
  EXPECT_EQ(old, 100.5);
  EXPECT_EQ(b.remove(kSell, 2, old), Result::kOk);
  EXPECT_EQ(old, 103.0);
  old = -1;
  EXPECT_EQ(b.remove(kSell, 2, old), Result::kUnknownLevel);
  EXPECT_EQ(b.update(kBuy, 7, 1, false, 0, old), Result::kUnknownLevel);
  EXPECT_EQ(old, -1);  // unknown: left alone
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

// ---- Every operation against a reference, at every depth ----------------------------------------

// A book and an independent model of it (std::map per side), driven together. check() compares
// every level of both sides, ids included, best first.
struct Checked {
  OrderBook book;
  std::map<uint64_t, std::pair<double, int64_t>> ref[2];  // side -> id -> (price, size)

  explicit Checked(uint32_t capacity = 256) : book(capacity) {}

  void insert(Side side, uint64_t id, double price, int64_t size) {
    ASSERT_EQ(book.insert(side, id, price, size), Result::kOk) << id;
    ref[static_cast<int>(side)][id] = {price, size};
  }
  void update(Side side, uint64_t id, int64_t size, bool has_price, double price) {
    ASSERT_EQ(book.update(side, id, size, has_price, price), Result::kOk) << id;
    auto& l = ref[static_cast<int>(side)][id];
    l.second = size;
    if (has_price) l.first = price;
  }
  void remove(Side side, uint64_t id) {
    ASSERT_EQ(book.remove(side, id), Result::kOk) << id;
    ref[static_cast<int>(side)].erase(id);
  }
  // A delete that carries a price, as rows do since 2023 (`price` may be wrong: the level still
  // goes, and the price reported is the one it had).
  void remove_priced(Side side, uint64_t id, double price) {
    double old_price = -1;
    ASSERT_EQ(book.remove(side, id, true, price, old_price), Result::kOk) << id;
    ASSERT_EQ(old_price, ref[static_cast<int>(side)][id].first) << id;
    ref[static_cast<int>(side)].erase(id);
  }
  // The reference's levels best first; equal prices by id (tests that make ties check them apart).
  std::vector<bmx::BookLevel> want(Side side) const {
    std::vector<bmx::BookLevel> out;
    for (const auto& [id, l] : ref[static_cast<int>(side)])
      out.push_back(bmx::BookLevel{l.first, l.second, id});
    std::sort(out.begin(), out.end(), [side](const auto& a, const auto& b) {
      if (a.price != b.price) return side == kBuy ? a.price > b.price : a.price < b.price;
      return a.id < b.id;
    });
    return out;
  }
  std::vector<bmx::BookLevel> got(Side side) const {
    std::vector<bmx::BookLevel> out;
    for (uint32_t i = 0; i < book.depth(side); ++i)
      out.push_back(book.level(side, i));
    std::stable_sort(out.begin(), out.end(), [side](const auto& a, const auto& b) {
      if (a.price != b.price) return side == kBuy ? a.price > b.price : a.price < b.price;
      return a.id < b.id;
    });
    return out;
  }
  // Every level equal, in order; also the book's own order must be by price (ties aside).
  void check(const char* where = "") const {
    for (Side side : {kBuy, kSell}) {
      for (uint32_t i = 1; i < book.depth(side); ++i) {
        const double better = book.level(side, i - 1).price, worse = book.level(side, i).price;
        ASSERT_TRUE(side == kBuy ? better >= worse : better <= worse)
            << where << " side " << int(side) << " level " << i << " out of order";
      }
      const auto w = want(side);
      const auto g = got(side);
      ASSERT_EQ(g.size(), w.size()) << where;
      for (size_t i = 0; i < w.size(); ++i) {
        ASSERT_EQ(g[i].price, w[i].price) << where << " level " << i;
        ASSERT_EQ(g[i].size, w[i].size) << where << " level " << i;
        ASSERT_EQ(g[i].id, w[i].id) << where << " level " << i;
      }
      if (w.empty()) {
        ASSERT_EQ(book.best(side), nullptr) << where;
      } else {
        ASSERT_NE(book.best(side), nullptr) << where;
        ASSERT_EQ(book.best(side)->price, w.front().price) << where;
      }
    }
    const bool crossed =
        !ref[0].empty() && !ref[1].empty() && want(kBuy).front().price >= want(kSell).front().price;
    ASSERT_EQ(book.crossed(), crossed) << where;
  }
};

// finish_bulk takes a side that arrived in price order (either way) without sorting it: every
// order a partial may come in ends as the same book, checked against the std::map reference:
// descending and ascending prices, one level out of place at either end or in the middle, and a
// repeated level whose new price breaks the order.
TEST(OrderBook, BulkInAnyOrderEndsSorted) {
  enum Order {
    kDescending,
    kAscending,
    kFirstMisplaced,
    kLastMisplaced,
    kMiddleMisplaced,
    kRepeatBreaksIt
  };
  for (Order order : {kDescending, kAscending, kFirstMisplaced, kLastMisplaced, kMiddleMisplaced,
                      kRepeatBreaksIt}) {
    for (Side side : {kBuy, kSell}) {
      Checked c(16);
      std::vector<double> prices;
      for (int i = 0; i < 300; ++i)
        prices.push_back(1000.0 - 0.5 * i);  // descending, as BitMEX lists a partial
      if (order == kAscending) std::reverse(prices.begin(), prices.end());
      if (order == kFirstMisplaced) std::swap(prices.front(), prices[150]);
      if (order == kLastMisplaced) std::swap(prices.back(), prices[10]);
      if (order == kMiddleMisplaced) std::swap(prices[100], prices[101]);
      uint64_t id = 1;
      for (double p : prices) {
        ASSERT_EQ(c.book.bulk_insert(side, id, p, int64_t(id)), Result::kOk);
        c.ref[static_cast<int>(side)][id] = {p, int64_t(id)};
        ++id;
      }
      if (order == kRepeatBreaksIt) {  // level 100 again, now the worst on either side
        const double p = side == kBuy ? 100.0 : 5000.0;
        ASSERT_EQ(c.book.bulk_insert(side, 100, p, 7), Result::kDuplicateInsert);
        c.ref[static_cast<int>(side)][100] = {p, 7};
      }
      c.book.finish_bulk();
      ASSERT_NO_FATAL_FAILURE(c.check(("order " + std::to_string(order)).c_str()));
      // And the tiers work after it: deltas at the best and deep.
      ASSERT_NO_FATAL_FAILURE(c.insert(side, 9000, side == kBuy ? 1000.25 : 849.75, 1));
      ASSERT_NO_FATAL_FAILURE(c.remove(side, 200));
      ASSERT_NO_FATAL_FAILURE(c.check("deltas after it"));
    }
  }
}

// A side of 600 levels; at every depth from the best to past the worst: an insert there, an update
// of its size, a move of it to the best and back, and its delete. The depths cross every internal
// boundary (the 64 levels counted first, the top tier's 64..192 levels, the two ends of each
// array).
TEST(OrderBook, EveryDepthInsertsUpdatesMovesAndDeletesCorrectly) {
  for (Side side : {kBuy, kSell}) {
    Checked c(2048);
    const double sign = side == kBuy ? -1.0 : 1.0;  // deeper: lower bids, higher asks
    for (uint64_t i = 0; i < 600; ++i)
      ASSERT_NO_FATAL_FAILURE(c.insert(side, 1000 + i, 500.0 + sign * double(2 * i), 1));
    ASSERT_NO_FATAL_FAILURE(c.check("built"));
    for (uint64_t d = 0; d <= 600; ++d) {
      // Between the levels at depths d - 1 and d (an odd tick), or past the worst.
      const double price = 500.0 + sign * (double(2 * d) - 1.0);
      ASSERT_NO_FATAL_FAILURE(c.insert(side, 5, price, 7));
      ASSERT_EQ(c.book.level(side, static_cast<uint32_t>(d)).id, 5u) << d;
      ASSERT_NO_FATAL_FAILURE(c.update(side, 5, 8, false, 0.0));
      ASSERT_NO_FATAL_FAILURE(c.update(side, 5, 9, true, price));
      ASSERT_NO_FATAL_FAILURE(c.update(side, 5, 10, true, 500.0 - sign * 1000.0));  // new best
      ASSERT_EQ(c.book.best(side)->id, 5u) << d;
      ASSERT_NO_FATAL_FAILURE(c.update(side, 5, 11, true, price));  // back to depth d
      ASSERT_EQ(c.book.level(side, static_cast<uint32_t>(d)).id, 5u) << d;
      ASSERT_NO_FATAL_FAILURE(c.check("inserted"));
      ASSERT_NO_FATAL_FAILURE(c.remove(side, 5));
      ASSERT_NO_FATAL_FAILURE(c.check("removed"));
    }
    // Delete at every depth, deepest first and from the top alternately: both tiers drain.
    for (uint64_t i = 0; i < 600; ++i) {
      const uint64_t id = i % 2 ? 1000 + i / 2 : 1599 - i / 2;
      ASSERT_NO_FATAL_FAILURE(c.remove(side, id));
      if (i % 37 == 0) {
        ASSERT_NO_FATAL_FAILURE(c.check("draining"));
      }
    }
    ASSERT_NO_FATAL_FAILURE(c.check("empty"));
  }
}

// Inserts that always land at the best end, then always at the worst end, exhaust the free room of
// one end of the arrays after the other; the arrays recentre and nothing is lost.
TEST(OrderBook, ArraysRecentreWhenOneEndRunsOutOfRoom) {
  Checked c(64);
  c.book.reserve(3000);
  for (uint64_t i = 0; i < 2500; ++i)  // each a new best bid, each a new best ask
    ASSERT_NO_FATAL_FAILURE(c.insert(kBuy, i, 1000.0 + double(i), 1));
  ASSERT_NO_FATAL_FAILURE(c.check("best end"));
  for (uint64_t i = 0; i < 400; ++i)  // each a new worst bid
    ASSERT_NO_FATAL_FAILURE(c.insert(kBuy, 10000 + i, 999.0 - double(i), 2));
  ASSERT_NO_FATAL_FAILURE(c.check("worst end"));
  for (uint64_t i = 0; i < 2000; ++i)  // delete from the best, then insert below the worst
    ASSERT_NO_FATAL_FAILURE(c.remove(kBuy, 2499 - i));
  for (uint64_t i = 0; i < 2000; ++i)
    ASSERT_NO_FATAL_FAILURE(c.insert(kBuy, 20000 + i, 500.0 - double(i) * 0.125, 3));
  ASSERT_NO_FATAL_FAILURE(c.check("after churn"));
  EXPECT_FALSE(c.book.grew());
}

// Equal prices never occur in a sane book, but the book must not lose a level over them: ties that
// straddle the seam between the tiers are still found by id.
TEST(OrderBook, EqualPricesAcrossTheWholeSideAreFoundById) {
  Checked c(1024);
  for (uint64_t i = 0; i < 400; ++i)
    ASSERT_NO_FATAL_FAILURE(c.insert(kSell, i, 100.0, int64_t(i)));
  for (uint64_t i = 0; i < 400; ++i)
    EXPECT_EQ(c.book.level(kSell, uint32_t(i)).price, 100.0);
  ASSERT_NO_FATAL_FAILURE(c.check("ties"));
  for (uint64_t i = 0; i < 400; i += 3)
    ASSERT_NO_FATAL_FAILURE(c.update(kSell, i, 5, true, 100.0));
  for (uint64_t i = 0; i < 400; i += 2)
    ASSERT_NO_FATAL_FAILURE(c.remove(kSell, i));
  ASSERT_NO_FATAL_FAILURE(c.check("half removed"));
  for (uint64_t i = 1; i < 400; i += 2)
    ASSERT_NO_FATAL_FAILURE(c.update(kSell, i, 6, true, 99.0 + double(i % 5)));
  ASSERT_NO_FATAL_FAILURE(c.check("moved apart"));
}

// A long random walk of both eras' traffic against the reference: 2021 ids that encode the price
// (shared by the bid and the ask at one price, updates without a price) and arbitrary 64-bit ids
// with a price on every row (updates that keep or move the price). Depths are mostly near the top,
// some deep, as on BitMEX.
TEST(OrderBook, RandomTrafficOfBothIdErasMatchesTheReference) {
  for (int era = 0; era < 2; ++era) {
    Checked c(256);
    std::mt19937_64 rng(era ? 2023 : 2021);
    std::vector<std::pair<Side, uint64_t>> live;
    auto tick_of = [&](Side side) {
      // Distance from the touch in ticks: mostly small, sometimes up to 2000.
      const uint64_t r = rng() % 100;
      const uint64_t dist = r < 60 ? rng() % 8 : r < 90 ? rng() % 64 : rng() % 2000;
      return side == kBuy ? 50000 - 1 - int64_t(dist) : 50000 + int64_t(dist);
    };
    for (int step = 0; step < 40000; ++step) {
      const uint64_t r = rng() % 100;
      if (live.empty() || r < 40) {
        const Side side = rng() % 2 ? kBuy : kSell;
        const int64_t tick = tick_of(side);
        const double price = double(tick) * 0.5;
        const uint64_t id = era == 0 ? 8800000000ull - uint64_t(tick) : rng();
        auto& side_ref = c.ref[static_cast<int>(side)];
        if (side_ref.count(id)) continue;
        if (era == 0 && c.ref[1 - static_cast<int>(side)].count(id)) continue;  // one side a price
        bool taken = false;  // one level a price per side, as a sane book has
        for (const auto& [other, l] : side_ref)
          taken = taken || l.first == price;
        if (taken) continue;
        ASSERT_NO_FATAL_FAILURE(c.insert(side, id, price, int64_t(1 + rng() % 100000)));
        live.emplace_back(side, id);
      } else {
        const size_t k = rng() % live.size();
        const auto [side, id] = live[k];
        if (r < 75) {
          ASSERT_NO_FATAL_FAILURE(c.remove(side, id));
          live[k] = live.back();
          live.pop_back();
        } else if (era == 0 || r < 90) {  // keep the price (given or not)
          const double price = c.ref[static_cast<int>(side)][id].first;
          ASSERT_NO_FATAL_FAILURE(c.update(side, id, int64_t(1 + rng() % 1000), era == 1, price));
        } else {  // 2023: a new price moves the level
          const double price = double(tick_of(side)) * 0.5 + 0.25;  // off the others' grid
          ASSERT_NO_FATAL_FAILURE(c.update(side, id, int64_t(1 + rng() % 1000), true, price));
        }
      }
      if (step % 997 == 0) {
        ASSERT_NO_FATAL_FAILURE(c.check("walk"));
      }
    }
    ASSERT_NO_FATAL_FAILURE(c.check("end"));
    for (const auto& [side, id] : live)
      ASSERT_NO_FATAL_FAILURE(c.remove(side, id));
    ASSERT_NO_FATAL_FAILURE(c.check("emptied"));
    EXPECT_EQ(c.book.size(), 0u);
  }
}

// A partial bigger than the top tier, then deltas at every depth: the bulk path fills both tiers.
TEST(OrderBook, PartialOfManyLevelsThenDeltasAtEveryDepth) {
  Checked c(16);
  std::mt19937_64 rng(5);
  std::vector<uint64_t> order(3000);
  for (uint64_t i = 0; i < order.size(); ++i)
    order[i] = i;
  std::shuffle(order.begin(), order.end(), rng);
  for (uint64_t i : order) {
    const Side side = i % 2 ? kBuy : kSell;
    const double price = side == kBuy ? 1000.0 - double(i) : 1001.0 + double(i);
    ASSERT_EQ(c.book.bulk_insert(side, i, price, int64_t(i)), Result::kOk);
    c.ref[static_cast<int>(side)][i] = {price, int64_t(i)};
  }
  c.book.finish_bulk();
  c.book.reserve(c.book.size() * 2);
  ASSERT_NO_FATAL_FAILURE(c.check("partial"));
  for (uint64_t i = 0; i < 3000; i += 7) {
    const Side side = i % 2 ? kBuy : kSell;
    ASSERT_NO_FATAL_FAILURE(c.update(side, i, 1, false, 0.0));
    if (i % 3 == 0) {
      ASSERT_NO_FATAL_FAILURE(c.remove(side, i));
    }
  }
  for (uint64_t i = 0; i < 1500; i += 11)
    ASSERT_NO_FATAL_FAILURE(c.insert(kBuy, 100000 + i, 1000.5 - double(i), 2));
  ASSERT_NO_FATAL_FAILURE(c.check("deltas"));
}

// ---- The price ladder: a book whose prices lie on a grid ----------------------------------------

// A partial whose prices lie on a grid (here 0.5) puts each side's best levels in a price ladder.
// A random walk of both eras' traffic against the reference: the market drifts and jumps by more
// than the ladder's window (4096 ticks) both ways, so the window follows it up and down, levels
// fall below it into the sorted deep tier and come back; deletes of the best drain the window.
// Every depth hint is checked against the reference's rank. Then a price on a finer grid moves the
// book to it, and one on no decimal grid at all takes it off the grid, still exact.
TEST(OrderBook, RandomTrafficOnAPriceGridMatchesTheReference) {
  for (int era = 0; era < 2; ++era) {
    Checked c(4096);
    std::mt19937_64 rng(era ? 4242 : 2121);
    std::vector<std::pair<Side, uint64_t>> live;
    int64_t mid = 60000;  // in ticks of 0.5
    const auto id_of = [&](int64_t tick) {
      return era == 0 ? 8800000000ull - uint64_t(tick) : rng();
    };
    // A rank as the publisher needs it: levels strictly better than `price` on `side`.
    const auto rank = [&](Side side, double price) {
      uint32_t n = 0;
      for (const auto& [id, l] : c.ref[static_cast<int>(side)])
        n += side == kBuy ? l.first > price : l.first < price;
      return n;
    };
    const auto free_price = [&](Side side, double price) {
      for (const auto& [id, l] : c.ref[static_cast<int>(side)])
        if (l.first == price) return false;
      return true;
    };
    for (int64_t d = 0; d < 300; ++d) {  // the partial: 300 levels a side, every tick
      for (Side side : {kBuy, kSell}) {
        const int64_t tick = side == kBuy ? mid - 1 - d : mid + d;
        const uint64_t id = id_of(tick);
        ASSERT_EQ(c.book.bulk_insert(side, id, double(tick) * 0.5, 10 + d), Result::kOk);
        c.ref[static_cast<int>(side)][id] = {double(tick) * 0.5, 10 + d};
        live.emplace_back(side, id);
      }
    }
    c.book.finish_bulk();
    c.book.reserve(4096);
    ASSERT_TRUE(c.book.on_grid());
    ASSERT_NO_FATAL_FAILURE(c.check("partial"));
    uint64_t inserts = 0, removes = 0, deep_removes = 0;
    for (int step = 0; step < 60000; ++step) {
      if (step % 5000 == 4999) {  // a jump past the window, up or down
        mid += (rng() % 2 ? 1 : -1) * int64_t(3000 + rng() % 6000);
        ASSERT_NO_FATAL_FAILURE(c.check("before a jump"));
      } else if (step % 50 == 0) {
        mid += int64_t(rng() % 9) - 4;
      }
      const uint64_t r = rng() % 100;
      if (live.empty() || r < 50) {
        const Side side = rng() % 2 ? kBuy : kSell;
        const uint64_t q = rng() % 100;
        const int64_t dist = int64_t(q < 40 ? rng() % 8 : q < 70 ? rng() % 64 : rng() % 6000);
        const int64_t tick = side == kBuy ? mid - 1 - dist : mid + dist;
        const double price = double(tick) * 0.5;
        const uint64_t id = id_of(tick);
        auto& side_ref = c.ref[static_cast<int>(side)];
        if (side_ref.count(id) || !free_price(side, price)) continue;
        if (era == 0 && c.ref[1 - static_cast<int>(side)].count(id)) continue;
        ASSERT_NO_FATAL_FAILURE(c.insert(side, id, price, int64_t(1 + rng() % 100000)));
        live.emplace_back(side, id);
        ++inserts;
        continue;
      }
      // An existing level: the best one often (drains the window), else any.
      size_t k = rng() % live.size();
      if (r < 58) {
        const bmx::BookLevel* best = c.book.best(rng() % 2 ? kBuy : kSell);
        if (best != nullptr) {
          for (size_t i = 0; i < live.size(); ++i)
            if (live[i].second == best->id &&
                c.ref[static_cast<int>(live[i].first)].count(best->id) &&
                c.ref[static_cast<int>(live[i].first)][best->id].first == best->price)
              k = i;
        }
      }
      const auto [side, id] = live[k];
      const double price = c.ref[static_cast<int>(side)][id].first;
      if (r < 72) {
        const uint32_t want = rank(side, price);
        if (era == 0) {
          ASSERT_NO_FATAL_FAILURE(c.remove(side, id));
        } else {  // 2023 rows carry the price; one in eight here a wrong one
          ASSERT_NO_FATAL_FAILURE(c.remove_priced(side, id, r % 8 ? price : price + 0.5));
        }
        live[k] = live.back();
        live.pop_back();
        ++removes;
        deep_removes += want >= 64;
      } else if (era == 0 || r < 90) {  // keep the price (given or not)
        ASSERT_NO_FATAL_FAILURE(c.update(side, id, int64_t(1 + rng() % 1000), era == 1, price));
      } else {  // 2023: a new price on the grid moves the level
        const int64_t tick = mid + int64_t(rng() % 200) - 100;
        const double to = double(tick) * 0.5;
        if (!free_price(side, to)) continue;
        ASSERT_NO_FATAL_FAILURE(c.update(side, id, int64_t(1 + rng() % 1000), true, to));
      }
      if (step % 499 == 0) {
        ASSERT_NO_FATAL_FAILURE(c.check("walk"));
      }
    }
    ASSERT_NO_FATAL_FAILURE(c.check("walk end"));
    EXPECT_TRUE(c.book.on_grid()) << "every price lay on the 0.5 grid";
    EXPECT_EQ(c.book.ids_encode_prices(), era == 0) << "2021 ids never needed the index";
    EXPECT_EQ(c.book.regrids(), 0u);
    EXPECT_GT(inserts, 10000u);
    EXPECT_GT(removes, 10000u);
    EXPECT_GT(deep_removes, 100u) << "removes at depth 64 and below too";

    // A price on a finer grid (0.25): the book moves to that grid.
    const int64_t tick = mid + 3;
    ASSERT_TRUE(free_price(kSell, double(tick) * 0.5 + 0.25));
    ASSERT_NO_FATAL_FAILURE(c.insert(kSell, 1, double(tick) * 0.5 + 0.25, 5));
    EXPECT_TRUE(c.book.on_grid());
    EXPECT_EQ(c.book.regrids(), 1u);
    ASSERT_NO_FATAL_FAILURE(c.check("finer grid"));
    // One on no decimal grid: the sorted tiers from now on, with every level kept.
    ASSERT_NO_FATAL_FAILURE(c.insert(kBuy, 2, double(mid - 3) * 0.5 + 1.0 / 3.0, 5));
    EXPECT_FALSE(c.book.on_grid());
    ASSERT_NO_FATAL_FAILURE(c.check("off the grid"));
    for (int i = 0; i < 2000 && !live.empty(); ++i) {
      const size_t k = rng() % live.size();
      ASSERT_NO_FATAL_FAILURE(c.remove(live[k].first, live[k].second));
      live[k] = live.back();
      live.pop_back();
    }
    ASSERT_NO_FATAL_FAILURE(c.check("off the grid, after removes"));
  }
}

// An equal price (never in a sane book) cannot share a ladder cell: the book leaves the grid and
// keeps both levels, found by id. The next partial puts it back on a grid.
TEST(OrderBook, EqualPriceOnAGridLeavesItAndLosesNothing) {
  Checked c(256);
  for (uint64_t i = 0; i < 50; ++i) {
    ASSERT_EQ(c.book.bulk_insert(kBuy, i, 100.0 - double(i), 1), Result::kOk);
    c.ref[0][i] = {100.0 - double(i), 1};
  }
  c.book.finish_bulk();
  ASSERT_TRUE(c.book.on_grid());
  ASSERT_NO_FATAL_FAILURE(c.insert(kBuy, 1000, 90.0, 7));  // the price of id 10
  EXPECT_FALSE(c.book.on_grid());
  ASSERT_NO_FATAL_FAILURE(c.check("tie"));
  ASSERT_NO_FATAL_FAILURE(c.remove(kBuy, 10));
  ASSERT_NO_FATAL_FAILURE(c.remove(kBuy, 1000));
  ASSERT_NO_FATAL_FAILURE(c.check("tie removed"));
  c.book.clear();
  c.ref[0].clear();
  ASSERT_EQ(c.book.bulk_insert(kSell, 7, 0.00001234, 3), Result::kOk);
  ASSERT_EQ(c.book.bulk_insert(kSell, 8, 0.00001236, 4), Result::kOk);
  c.ref[1][7] = {0.00001234, 3};
  c.ref[1][8] = {0.00001236, 4};
  c.book.finish_bulk();
  EXPECT_TRUE(c.book.on_grid()) << "eight decimals are a grid too";
  const uint64_t regrids = c.book.regrids();  // the tie above was one
  ASSERT_NO_FATAL_FAILURE(c.insert(kSell, 9, 0.00001235, 5));
  ASSERT_NO_FATAL_FAILURE(c.insert(kBuy, 10, 0.00001233, 5));
  EXPECT_TRUE(c.book.on_grid());
  EXPECT_EQ(c.book.regrids(), regrids + 1) << "0.00001235 is on a finer grid than the partial's";
  ASSERT_NO_FATAL_FAILURE(c.check("small prices"));
}

// The grid is guessed from a sample of each side's levels (the ends and every 16th); a level the
// sample missed that needs a finer grid (a half among whole prices, deep in the side) is still
// found, by the search over every level, and keeps the book exact on the finer grid.
TEST(OrderBook, AFinerPriceTheSampleMissedStillSetsTheGrid) {
  Checked c(256);
  for (uint64_t i = 0; i < 100; ++i) {
    const double price = i == 37 ? 962.5 : 1000.0 - double(i);  // 37: not in the sample
    ASSERT_EQ(c.book.bulk_insert(kBuy, i, price, 1), Result::kOk);
    c.ref[0][i] = {price, 1};
    ASSERT_EQ(c.book.bulk_insert(kSell, 1000 + i, 1001.0 + 2.0 * double(i), 1), Result::kOk);
    c.ref[1][1000 + i] = {1001.0 + 2.0 * double(i), 1};
  }
  c.book.finish_bulk();
  EXPECT_TRUE(c.book.on_grid());
  ASSERT_NO_FATAL_FAILURE(c.check("partial"));
  // Half ticks elsewhere are on that grid: no new grid needed.
  ASSERT_NO_FATAL_FAILURE(c.insert(kBuy, 500, 1000.5, 2));
  ASSERT_NO_FATAL_FAILURE(c.insert(kSell, 501, 1002.5, 2));
  EXPECT_EQ(c.book.regrids(), 0u);
  ASSERT_NO_FATAL_FAILURE(c.remove(kBuy, 37));
  ASSERT_NO_FATAL_FAILURE(c.check("deltas"));
}

// A partial with no grid (a price with more than 12 decimals) or a price too large for the grid
// keeps the book in the sorted tiers; so does a book built without a partial.
TEST(OrderBook, PricesWithoutAGridStayInTheSortedTiers) {
  OrderBook a(64);
  ASSERT_EQ(a.bulk_insert(kBuy, 1, 100.0, 1), Result::kOk);
  ASSERT_EQ(a.bulk_insert(kBuy, 2, 100.0 / 3.0, 1), Result::kOk);
  a.finish_bulk();
  EXPECT_FALSE(a.on_grid());
  EXPECT_EQ(bids(a), (Ladder{{100.0, 1}, {100.0 / 3.0, 1}}));
  OrderBook b(64);
  ASSERT_EQ(b.bulk_insert(kSell, 1, 1e15, 1), Result::kOk);
  ASSERT_EQ(b.bulk_insert(kSell, 2, 0.5, 1), Result::kOk);
  b.finish_bulk();
  EXPECT_FALSE(b.on_grid()) << "2e15 ticks of 0.5 do not fit the ladder's ticks";
  EXPECT_EQ(asks(b), (Ladder{{0.5, 1}, {1e15, 1}}));
  OrderBook c(64);
  ASSERT_EQ(c.insert(kBuy, 1, 100.0, 1), Result::kOk);
  EXPECT_FALSE(c.on_grid());
}

// Since 2023 every row carries its price: on a grid, an update or delete finds its level from the
// price (the index only when the price is not the level's), with the same results as by id.
TEST(OrderBook, RowsThatCarryAPriceFindTheirLevelByItWithTheSameResults) {
  Checked c(256);
  for (uint64_t i = 0; i < 40; ++i) {
    const uint64_t bid = 0x9000000000000000ull + i * 7919, ask = 0x3000000000000000ull + i * 104729;
    ASSERT_EQ(c.book.bulk_insert(kBuy, bid, 1000.0 - 0.5 * double(i), 10), Result::kOk);
    ASSERT_EQ(c.book.bulk_insert(kSell, ask, 1000.5 + 0.5 * double(i), 20), Result::kOk);
    c.ref[0][bid] = {1000.0 - 0.5 * double(i), 10};
    c.ref[1][ask] = {1000.5 + 0.5 * double(i), 20};
  }
  c.book.finish_bulk();
  ASSERT_TRUE(c.book.on_grid());
  ASSERT_FALSE(c.book.ids_encode_prices());
  const uint64_t b3 = 0x9000000000000000ull + 3 * 7919, b4 = b3 + 7919, b5 = b4 + 7919;
  ASSERT_NO_FATAL_FAILURE(c.update(kBuy, b3, 33, true, 998.5));   // its own price
  ASSERT_NO_FATAL_FAILURE(c.update(kBuy, b4, 44, true, 990.25));  // a new one: moves
  ASSERT_NO_FATAL_FAILURE(c.remove_priced(kBuy, b5, 997.5));      // its own price
  ASSERT_NO_FATAL_FAILURE(c.remove_priced(kBuy, b3, 999.0));      // another level's price
  ASSERT_NO_FATAL_FAILURE(c.check("priced rows"));
  double old_price = -1;
  // An id the book does not hold, at a price a level holds: unknown, nothing changes.
  EXPECT_EQ(c.book.remove(kBuy, 12345, true, 999.0, old_price), Result::kUnknownLevel);
  EXPECT_EQ(c.book.update(kBuy, 12345, 1, true, 999.0, old_price), Result::kUnknownLevel);
  EXPECT_EQ(old_price, -1.0);
  ASSERT_NO_FATAL_FAILURE(c.check("unknown ids at a held price"));
}

// Deletes found by their price must still take their level out of the index: churn many times the
// capacity through a book on a grid. A cell left behind would fill the index until an insert
// re-seeds it (rehashes() counts that), and an id deleted must be unknown afterwards.
TEST(OrderBook, PricedDeletesLeaveNothingBehindInTheIndex) {
  OrderBook b(64);
  for (uint64_t i = 0; i < 8; ++i)
    ASSERT_EQ(b.bulk_insert(kSell, ~i, 100.0 + 0.5 * double(i), 1), Result::kOk);
  b.finish_bulk();
  ASSERT_TRUE(b.on_grid());
  std::mt19937_64 rng(99);
  std::vector<std::pair<uint64_t, double>> live;
  for (uint64_t i = 0; i < 8; ++i)
    live.emplace_back(~i, 100.0 + 0.5 * double(i));
  for (int i = 0; i < 20000; ++i) {
    if (live.size() >= 40) {
      const auto [id, price] = live.front();
      live.erase(live.begin());
      double old_price = 0;
      ASSERT_EQ(b.remove(kSell, id, true, price, old_price), Result::kOk) << i;
      ASSERT_EQ(old_price, price);
      ASSERT_EQ(b.remove(kSell, id), Result::kUnknownLevel) << i;
    }
    double price = 0;
    for (bool held = true; held;) {
      price = 100.0 + 0.5 * double(rng() % 200);
      held =
          std::any_of(live.begin(), live.end(), [&](const auto& l) { return l.second == price; });
    }
    const uint64_t id = rng();
    ASSERT_EQ(b.insert(kSell, id, price, 1), Result::kOk) << i;
    live.emplace_back(id, price);
  }
  EXPECT_EQ(b.size(), live.size());
  EXPECT_EQ(b.rehashes(), 0u);
  for (const auto& [id, price] : live)
    EXPECT_EQ(b.level_price(kSell, id), price) << id;
}

// ---- The 2021 id encoding -----------------------------------------------------------------------

// XBTUSD before 2023: id = 100000000 * 88 - price / 0.01, prices on a grid of 0.5.
uint64_t xbt_id(double price) {
  return 8800000000ull - static_cast<uint64_t>(price * 100);
}

// A partial of `n` bids from 30000 down and `n` asks from 30000.5 up, every tick, with the 2021
// ids, plus `far` bids from 27000 down (6000 ticks below the best: the deep tier).
void xbt_partial(Checked& c, int n, int far) {
  for (int i = 0; i < n; ++i) {
    const double bid = 30000.0 - 0.5 * i, ask = 30000.5 + 0.5 * i;
    ASSERT_EQ(c.book.bulk_insert(kBuy, xbt_id(bid), bid, 100 + i), Result::kOk);
    ASSERT_EQ(c.book.bulk_insert(kSell, xbt_id(ask), ask, 200 + i), Result::kOk);
    c.ref[0][xbt_id(bid)] = {bid, 100 + i};
    c.ref[1][xbt_id(ask)] = {ask, 200 + i};
  }
  for (int i = 0; i < far; ++i) {
    const double bid = 27000.0 - 0.5 * i;
    ASSERT_EQ(c.book.bulk_insert(kBuy, xbt_id(bid), bid, 7), Result::kOk);
    c.ref[0][xbt_id(bid)] = {bid, 7};
  }
  c.book.finish_bulk();
}

// Ids that encode their prices: every row without a price still reaches its level (in the ladder
// and in the deep tier), ids that no level has are unknown, a repeated insert replaces, and the
// book never needs its index.
TEST(OrderBook, IdsThatEncodePricesFindTheirLevelsWithoutTheIndex) {
  Checked c(1024);
  ASSERT_NO_FATAL_FAILURE(xbt_partial(c, 200, 5));
  ASSERT_TRUE(c.book.on_grid());
  ASSERT_TRUE(c.book.ids_encode_prices());
  ASSERT_NO_FATAL_FAILURE(c.check("partial"));
  EXPECT_EQ(c.book.level_price(kBuy, xbt_id(29990.0)), 29990.0);
  EXPECT_EQ(c.book.level_price(kBuy, xbt_id(26999.0)), 26999.0);
  EXPECT_EQ(c.book.level_price(kSell, xbt_id(29990.0)), 0.0) << "no such ask";
  EXPECT_EQ(c.book.level(kBuy, 0).id, xbt_id(30000.0));
  EXPECT_EQ(c.book.level(kSell, 4).id, xbt_id(30002.5));
  // Updates and deletes as 2021 sent them: no price.
  ASSERT_NO_FATAL_FAILURE(c.update(kBuy, xbt_id(30000.0), 55, false, 0));
  ASSERT_NO_FATAL_FAILURE(c.update(kBuy, xbt_id(26998.5), 66, false, 0));  // deep tier
  ASSERT_NO_FATAL_FAILURE(c.remove(kBuy, xbt_id(26999.5)));                // deep tier
  ASSERT_NO_FATAL_FAILURE(c.remove(kSell, xbt_id(30000.5)));               // the best ask
  ASSERT_NO_FATAL_FAILURE(c.remove(kBuy, xbt_id(29950.0)));
  ASSERT_NO_FATAL_FAILURE(c.check("deltas"));
  // Ids no level has: an empty tick in the window, one below every level, one above the best, one
  // between two ticks, one far outside any price, and the largest id.
  for (const uint64_t id : {xbt_id(29950.0), xbt_id(20000.0), xbt_id(31000.0), xbt_id(29990.0) + 1,
                            uint64_t{5}, uint64_t{UINT64_MAX}}) {
    EXPECT_EQ(c.book.remove(kBuy, id), Result::kUnknownLevel) << id;
    EXPECT_EQ(c.book.update(kBuy, id, 1, false, 0), Result::kUnknownLevel) << id;
  }
  EXPECT_EQ(c.book.remove(kSell, xbt_id(30000.5)), Result::kUnknownLevel) << "deleted above";
  ASSERT_NO_FATAL_FAILURE(c.check("unknown ids changed nothing"));
  // Inserts in the encoding: into a gap, above the best bid, far below every level.
  ASSERT_NO_FATAL_FAILURE(c.insert(kBuy, xbt_id(29950.0), 29950.0, 9));
  ASSERT_NO_FATAL_FAILURE(c.insert(kSell, xbt_id(30000.5), 30000.5, 8));
  ASSERT_NO_FATAL_FAILURE(c.insert(kBuy, xbt_id(20000.0), 20000.0, 3));
  ASSERT_NO_FATAL_FAILURE(c.check("inserts"));
  // The same level again: replaced, reported.
  double old_price = 0;
  EXPECT_EQ(c.book.insert(kBuy, xbt_id(20000.0), 20000.0, 4, old_price), Result::kDuplicateInsert);
  EXPECT_EQ(old_price, 20000.0);
  c.ref[0][xbt_id(20000.0)].second = 4;
  ASSERT_NO_FATAL_FAILURE(c.remove(kBuy, xbt_id(20000.0)));
  ASSERT_NO_FATAL_FAILURE(c.check("replaced, then deleted"));
  EXPECT_TRUE(c.book.ids_encode_prices());
  EXPECT_EQ(c.book.index_rebuilds(), 0u);
}

// Every row that breaks the encoding (an id that does not match its price, an update to a new
// price, a book that must grow) makes the book rebuild its index and go on exactly, levels added
// without the index included.
TEST(OrderBook, ARowThatBreaksTheIdEncodingRebuildsTheIndexAndLosesNothing) {
  {
    Checked c(1024);
    ASSERT_NO_FATAL_FAILURE(xbt_partial(c, 100, 3));
    ASSERT_NO_FATAL_FAILURE(c.insert(kBuy, xbt_id(29900.0), 29900.0, 1));  // in the encoding
    ASSERT_TRUE(c.book.ids_encode_prices());
    ASSERT_NO_FATAL_FAILURE(c.insert(kBuy, 12345, 29800.0, 2));  // not
    EXPECT_FALSE(c.book.ids_encode_prices());
    EXPECT_EQ(c.book.index_rebuilds(), 1u);
    ASSERT_NO_FATAL_FAILURE(c.check("left the encoding"));
    ASSERT_NO_FATAL_FAILURE(c.update(kBuy, xbt_id(29900.0), 5, false, 0));
    ASSERT_NO_FATAL_FAILURE(c.remove(kBuy, xbt_id(26999.5)));
    ASSERT_NO_FATAL_FAILURE(c.remove(kBuy, 12345));
    ASSERT_NO_FATAL_FAILURE(c.remove(kSell, xbt_id(30010.0)));
    ASSERT_NO_FATAL_FAILURE(c.check("through the index"));
    // The next partial learns the encoding again.
    c.book.clear();
    c.ref[0].clear();
    c.ref[1].clear();
    ASSERT_NO_FATAL_FAILURE(xbt_partial(c, 50, 0));
    EXPECT_TRUE(c.book.ids_encode_prices());
    ASSERT_NO_FATAL_FAILURE(c.check("new partial"));
  }
  {
    Checked c(1024);
    ASSERT_NO_FATAL_FAILURE(xbt_partial(c, 100, 3));
    ASSERT_NO_FATAL_FAILURE(c.update(kSell, xbt_id(30010.0), 9, true, 30100.0));  // moves
    EXPECT_FALSE(c.book.ids_encode_prices());
    ASSERT_NO_FATAL_FAILURE(c.check("moved"));
    ASSERT_NO_FATAL_FAILURE(c.remove(kSell, xbt_id(30010.0)));
    ASSERT_NO_FATAL_FAILURE(c.check("moved, then deleted"));
  }
  {
    Checked c(64);  // the partial fills it
    ASSERT_NO_FATAL_FAILURE(xbt_partial(c, 32, 0));
    ASSERT_TRUE(c.book.ids_encode_prices());
    ASSERT_NO_FATAL_FAILURE(c.insert(kBuy, xbt_id(29000.0), 29000.0, 1));
    EXPECT_TRUE(c.book.grew());
    EXPECT_FALSE(c.book.ids_encode_prices());
    ASSERT_NO_FATAL_FAILURE(c.remove(kBuy, xbt_id(30000.0)));
    ASSERT_NO_FATAL_FAILURE(c.check("grown"));
  }
}

// Random traffic in the 2021 encoding, over several partials, in each of which one row at a
// random moment breaks the encoding (an insert with an arbitrary id, or an update to a new price):
// the book must match the std::map reference before and after it, unknown ids must stay unknown,
// and each new partial must learn the encoding again.
TEST(OrderBook, RandomTrafficThatBreaksTheIdEncodingOnceMatchesTheReference) {
  std::mt19937_64 rng(2021);
  const auto id_of = [](int64_t tick) { return uint64_t{8800000000} - uint64_t(tick); };
  for (int phase = 0; phase < 6; ++phase) {
    Checked c(1024);
    int64_t mid = 60000;  // ticks of 0.5
    std::vector<std::pair<Side, uint64_t>> live;
    const auto free_tick = [&](Side side, int64_t tick) {
      const double price = double(tick) * 0.5;
      for (const auto& [id, l] : c.ref[static_cast<int>(side)])
        if (l.first == price) return false;
      return true;
    };
    for (int64_t d = 0; d < 200; ++d) {
      for (Side side : {kBuy, kSell}) {
        const int64_t tick = side == kBuy ? mid - 1 - d : mid + d;
        ASSERT_EQ(c.book.bulk_insert(side, id_of(tick), double(tick) * 0.5, 1 + d), Result::kOk);
        c.ref[static_cast<int>(side)][id_of(tick)] = {double(tick) * 0.5, 1 + d};
        live.emplace_back(side, id_of(tick));
      }
    }
    c.book.finish_bulk();
    ASSERT_TRUE(c.book.ids_encode_prices()) << "phase " << phase;
    const int break_at = phase == 5 ? -1 : int(rng() % 3000);
    for (int step = 0; step < 3000; ++step) {
      if (step % 40 == 0) mid += int64_t(rng() % 9) - 4;
      const Side side = rng() % 2 ? kBuy : kSell;
      auto& side_ref = c.ref[static_cast<int>(side)];
      const int64_t dist = int64_t(rng() % 100 < 80 ? rng() % 64 : rng() % 6000);
      const int64_t tick = side == kBuy ? mid - 1 - dist : mid + dist;
      if (step == break_at) {
        if (phase % 2 == 0) {  // an id that does not encode the price
          if (!free_tick(side, tick)) {
            ASSERT_EQ(c.book.remove(side, id_of(tick)), Result::kOk);
            side_ref.erase(id_of(tick));
            std::erase(live, std::pair<Side, uint64_t>{side, id_of(tick)});
          }
          const uint64_t id = rng() | (uint64_t{1} << 62);
          ASSERT_NO_FATAL_FAILURE(c.insert(side, id, double(tick) * 0.5, 3));
          live.emplace_back(side, id);
        } else if (!live.empty() && free_tick(live.back().first, tick)) {  // a moving update
          ASSERT_NO_FATAL_FAILURE(
              c.update(live.back().first, live.back().second, 4, true, double(tick) * 0.5));
        } else {
          ASSERT_NO_FATAL_FAILURE(c.insert(side, 77, double(tick) * 0.5 + 0.25, 3));  // off
          live.emplace_back(side, 77);
        }
        EXPECT_FALSE(c.book.ids_encode_prices()) << "phase " << phase << " step " << step;
        ASSERT_NO_FATAL_FAILURE(c.check("just broken"));
        continue;
      }
      const uint64_t r = rng() % 100;
      if (r < 40 || live.empty()) {
        if (!free_tick(side, tick) || side_ref.count(id_of(tick))) continue;
        ASSERT_NO_FATAL_FAILURE(c.insert(side, id_of(tick), double(tick) * 0.5, 1 + int64_t(r)));
        live.emplace_back(side, id_of(tick));
      } else if (r < 75) {
        const size_t k = rng() % live.size();
        ASSERT_NO_FATAL_FAILURE(c.remove(live[k].first, live[k].second));
        live[k] = live.back();
        live.pop_back();
      } else if (r < 92) {
        const auto [s, id] = live[rng() % live.size()];
        ASSERT_NO_FATAL_FAILURE(c.update(s, id, 1 + int64_t(rng() % 1000), false, 0));
      } else if (r < 96) {  // a repeated insert of a live level: replaced, reported
        const auto [s, id] = live[rng() % live.size()];
        auto& l = c.ref[static_cast<int>(s)][id];
        ASSERT_EQ(c.book.insert(s, id, l.first, 555), Result::kDuplicateInsert);
        l.second = 555;
      } else {  // ids the book does not hold
        const uint64_t id = r % 2 ? id_of(tick) : rng();
        if (side_ref.count(id)) continue;
        ASSERT_EQ(c.book.remove(side, id), Result::kUnknownLevel) << id;
        ASSERT_EQ(c.book.update(side, id, 5, false, 0), Result::kUnknownLevel) << id;
      }
      if (step % 250 == 0) {
        ASSERT_NO_FATAL_FAILURE(c.check("walk"));
      }
    }
    ASSERT_NO_FATAL_FAILURE(c.check("phase end"));
    EXPECT_EQ(c.book.ids_encode_prices(), break_at < 0) << "phase " << phase;
  }
}

// Partials whose ids follow no such rule keep the index: arbitrary ids, one id out of line, a
// single level (no rule can be learnt from one).
TEST(OrderBook, PartialsWhoseIdsDoNotEncodeTheirPricesKeepTheIndex) {
  OrderBook a(256);
  std::mt19937_64 rng(7);
  for (int i = 0; i < 20; ++i)
    ASSERT_EQ(a.bulk_insert(kBuy, rng(), 100.0 - i, 1), Result::kOk);
  a.finish_bulk();
  EXPECT_TRUE(a.on_grid());
  EXPECT_FALSE(a.ids_encode_prices());
  OrderBook b(256);
  for (int i = 0; i < 20; ++i)
    ASSERT_EQ(b.bulk_insert(kSell, xbt_id(30000.0 + i) + (i == 13), 30000.0 + i, 1), Result::kOk);
  b.finish_bulk();
  EXPECT_FALSE(b.ids_encode_prices());
  ASSERT_EQ(b.remove(kSell, xbt_id(30013.0) + 1), Result::kOk);
  OrderBook d(256);
  ASSERT_EQ(d.bulk_insert(kBuy, xbt_id(30000.0), 30000.0, 1), Result::kOk);
  d.finish_bulk();
  EXPECT_FALSE(d.ids_encode_prices());
}

// ---- The index against pathological ids ---------------------------------------------------------

// Ids that share their low bits (multiples of 2^k), that differ only in high bits, or that run
// consecutively (2021) must all spread over the index: every one found, none lost, no clustering
// bad enough to trigger a re-seed.
TEST(OrderBook, StructuredIdsSpreadOverTheIndex) {
  for (int shift : {0, 1, 2, 8, 16, 20, 32, 40, 48, 51}) {
    Checked c(4096);
    for (uint64_t j = 1; j <= 3000; ++j) {
      const Side side = j % 2 ? kBuy : kSell;
      const double price = side == kBuy ? 10000.0 - double(j) : 10000.0 + double(j);
      ASSERT_NO_FATAL_FAILURE(c.insert(side, j << shift, price, 1)) << "shift " << shift;
    }
    for (uint64_t j = 1; j <= 3000; j += 2)
      ASSERT_NO_FATAL_FAILURE(c.remove(kBuy, j << shift)) << "shift " << shift;
    for (uint64_t j = 2; j <= 3000; j += 4)
      ASSERT_NO_FATAL_FAILURE(c.update(kSell, j << shift, 9, false, 0.0)) << "shift " << shift;
    ASSERT_NO_FATAL_FAILURE(c.check("structured ids"));
    EXPECT_EQ(c.book.rehashes(), 0u) << "shift " << shift;
    EXPECT_EQ(c.book.remove(kBuy, 1ull << shift), Result::kUnknownLevel);
  }
}

// Ids crafted so that all of them hash to one home bucket under the first multiplier: the index
// notices the long probes, re-seeds its hash (in place, once) and keeps every level.
TEST(OrderBook, IdsCraftedToCollideMakeTheIndexReseedAndLoseNothing) {
  const uint64_t a = OrderBook::kFirstMultiplier;
  uint64_t inverse = a;  // a^-1 mod 2^64 by Newton's iteration
  for (int i = 0; i < 6; ++i)
    inverse *= 2 - a * inverse;
  ASSERT_EQ(a * inverse, 1u);
  // Products with equal top 20 bits hash to one bucket in any index of up to 2^20 buckets.
  std::vector<uint64_t> ids;
  for (uint64_t j = 1; ids.size() < 600; ++j) {
    const uint64_t group = ((uint64_t{0xabcde} << 44) | (j << 8)) * inverse;
    if (group >> 62) continue;  // id = group * 4 must keep every bit
    ids.push_back(group << 2);
  }
  Checked c(2048);
  for (size_t i = 0; i < ids.size(); ++i)
    ASSERT_NO_FATAL_FAILURE(c.insert(kSell, ids[i], 100.0 + double(i), int64_t(i)));
  EXPECT_GE(c.book.rehashes(), 1u)
      << "the crafted ids did not collide: did kFirstMultiplier change?";
  EXPECT_LE(c.book.rehashes(), 3u);
  ASSERT_NO_FATAL_FAILURE(c.check("after re-seed"));
  for (size_t i = 0; i < ids.size(); i += 2)
    ASSERT_NO_FATAL_FAILURE(c.remove(kSell, ids[i]));
  for (size_t i = 1; i < ids.size(); i += 2)
    ASSERT_NO_FATAL_FAILURE(c.update(kSell, ids[i], 5, false, 0.0));
  ASSERT_NO_FATAL_FAILURE(c.check("after deletes"));
  // A copy and a clear keep working with the re-seeded hash.
  OrderBook copy = c.book;
  EXPECT_EQ(copy.remove(kSell, ids[1]), Result::kOk);
  c.book.clear();
  EXPECT_EQ(c.book.remove(kSell, ids[1]), Result::kUnknownLevel);
}

// Deleting from a full index bucket moves back the cells that probed past it: after heavy churn of
// colliding and ordinary ids, every live one is still found and every deleted one is not.
TEST(OrderBook, ChurnThroughFullIndexBucketsKeepsEveryProbeChain) {
  std::mt19937_64 rng(99);
  Checked c(64);  // a small index: 32 buckets at capacity, many of them full
  std::vector<uint64_t> live, dead;
  for (int step = 0; step < 20000; ++step) {
    if (live.size() < 60 && (live.empty() || rng() % 2)) {
      const uint64_t id = (rng() % 4096) << (rng() % 3 == 0 ? 40 : 0);
      if (c.ref[0].count(id)) continue;
      ASSERT_NO_FATAL_FAILURE(c.insert(kBuy, id, double(1 + rng() % 100000) * 0.01, 1));
      live.push_back(id);
    } else {
      const size_t k = rng() % live.size();
      ASSERT_NO_FATAL_FAILURE(c.remove(kBuy, live[k]));
      dead.push_back(live[k]);
      live[k] = live.back();
      live.pop_back();
    }
  }
  for (uint64_t id : live)
    ASSERT_NO_FATAL_FAILURE(c.update(kBuy, id, 2, false, 0.0));
  for (uint64_t id : dead) {
    if (!c.ref[0].count(id)) {
      EXPECT_EQ(c.book.update(kBuy, id, 1, false, 0.0), Result::kUnknownLevel);
    }
  }
  ASSERT_NO_FATAL_FAILURE(c.check("churn"));
}

// The index marks a free cell with an all-ones tag; a level whose tag would be all ones (hash bits
// all set, id ending in binary 11, ask side) must still be stored, found and told apart from its
// neighbour ending in 10, whose tag it then shares.
TEST(OrderBook, LevelsWhoseTagWouldMarkAFreeCellAreKept) {
  const uint64_t a = OrderBook::kFirstMultiplier;
  uint64_t inverse = a;
  for (int i = 0; i < 6; ++i)
    inverse *= 2 - a * inverse;
  std::vector<uint64_t> groups;
  for (uint64_t j = 0; groups.size() < 8; ++j) {
    const uint64_t group =
        ((~uint64_t{0} << 35) | (j << 4)) * inverse;  // product's top 29 bits set
    if (group >> 62 == 0) groups.push_back(group);
  }
  Checked c(256);
  for (size_t i = 0; i < groups.size(); ++i) {
    for (uint64_t low = 0; low < 4; ++low) {
      const uint64_t id = groups[i] << 2 | low;
      ASSERT_NO_FATAL_FAILURE(c.insert(kSell, id, 100.0 + double(4 * i + low), int64_t(low)));
      ASSERT_NO_FATAL_FAILURE(c.insert(kBuy, id, 50.0 - double(4 * i + low), int64_t(low)));
    }
  }
  ASSERT_NO_FATAL_FAILURE(c.check("all-ones tags"));
  for (size_t i = 0; i < groups.size(); ++i) {
    ASSERT_NO_FATAL_FAILURE(c.remove(kSell, groups[i] << 2 | 3));
    ASSERT_NO_FATAL_FAILURE(c.update(kSell, groups[i] << 2 | 2, 9, false, 0.0));
    EXPECT_EQ(c.book.remove(kSell, groups[i] << 2 | 3), Result::kUnknownLevel);
  }
  ASSERT_NO_FATAL_FAILURE(c.check("after deletes"));
}

}  // namespace

// ---- Slots for a publisher's copy ---------------------------------------------------------------

// The segment keeps each level in the slot the engine's book keeps it in, so last_slot() must name
// the level an operation touched, a level must keep its slot while it lives (whatever moves in the
// price order: ladder slides, spills between tiers, price moves, growth), no two live levels may
// share one, slots stay below the most levels held at once since the last clear(), and
// best_slot() must name the best level. Checked against a std::map of each side's levels and the
// slot each got when it was inserted; in a price ladder and in the sorted tiers.
TEST(OrderBook, LevelsKeepTheirSlotsWhileTheyLive) {
  for (const bool grid : {true, false}) {
    OrderBook b(64);                                  // small: the deltas make it grow
    std::map<double, uint64_t> ref[2];                // [side]: price -> id
    std::map<std::pair<int, uint64_t>, uint32_t> at;  // (side, id) -> slot given at insert
    size_t peak = 0;
    const auto live = [&] { return ref[0].size() + ref[1].size(); };
    const auto check_slot = [&](Side side, uint64_t id) {
      const uint32_t slot = b.last_slot();
      ASSERT_EQ(at.at({static_cast<int>(side), id}), slot) << "a level changed its slot";
    };
    const auto check_best = [&] {
      for (const Side side : {kBuy, kSell}) {
        const auto& m = ref[static_cast<int>(side)];
        if (m.empty()) {
          ASSERT_EQ(b.best_slot(side), OrderBook::kNoSlot);
          continue;
        }
        const uint64_t id = side == kBuy ? m.rbegin()->second : m.begin()->second;
        ASSERT_EQ(b.best_slot(side), at.at({static_cast<int>(side), id}));
      }
    };
    std::mt19937_64 rng(11);
    for (uint64_t i = 0; i < 600; ++i) {
      const Side side = i % 2 ? kBuy : kSell;
      const double price = side == kBuy ? 5000.0 - double(i) : 5001.0 + double(i);
      ASSERT_EQ(b.bulk_insert(side, i, price, 1), Result::kOk);
      at[{static_cast<int>(side), i}] = b.last_slot();
      ref[static_cast<int>(side)][price] = i;
    }
    if (!grid) {  // a price on no decimal grid: the sorted tiers
      ASSERT_EQ(b.bulk_insert(kBuy, 999, 1000.0 / 3.0, 1), Result::kOk);
      at[{0, 999}] = b.last_slot();
      ref[0][1000.0 / 3.0] = 999;
    }
    b.finish_bulk();
    peak = live();
    ASSERT_NO_FATAL_FAILURE(check_best());
    uint64_t next_id = 1000, moves = 0;
    for (int step = 0; step < 20000; ++step) {
      const Side side = rng() % 2 ? kBuy : kSell;
      const int s = static_cast<int>(side);
      auto& m = ref[s];
      const uint64_t op = rng() % 7;
      if (op < 3 || m.size() < 10) {  // insert at a free price, mostly near the top
        const uint64_t spread = rng() % 4 == 0 ? 2000 : 80;
        const double off = double(rng() % spread) + 0.5 * double(rng() % 2);
        const double price = side == kBuy ? 5000.0 - off : 5001.0 + off;
        if (m.count(price)) continue;
        ASSERT_EQ(b.insert(side, next_id, price, 3), Result::kOk);
        const uint32_t slot = b.last_slot();
        for (const auto& [key, held] : at)
          ASSERT_NE(held, slot) << "a live level's slot";
        at[{s, next_id}] = slot;
        m[price] = next_id++;
        peak = std::max(peak, live());
        ASSERT_LT(slot, peak) << "slots stay below the most levels held at once";
      } else {
        auto it = std::next(m.begin(), static_cast<std::ptrdiff_t>(rng() % m.size()));
        const uint64_t id = it->second;
        if (op == 3) {
          ASSERT_EQ(b.update(side, id, 9, false, 0.0), Result::kOk);
          ASSERT_NO_FATAL_FAILURE(check_slot(side, id));
        } else if (op == 4) {  // a price move, to a free price
          const double to =
              side == kBuy ? 5000.0 - double(rng() % 500) : 5001.0 + double(rng() % 500);
          if (m.count(to)) continue;
          ASSERT_EQ(b.update(side, id, 9, true, to), Result::kOk);
          ASSERT_NO_FATAL_FAILURE(check_slot(side, id));
          m.erase(it);
          m[to] = id;
          ++moves;
        } else {
          ASSERT_EQ(b.remove(side, id), Result::kOk);
          ASSERT_NO_FATAL_FAILURE(check_slot(side, id));
          at.erase({s, id});
          m.erase(it);
        }
      }
      ASSERT_NO_FATAL_FAILURE(check_best());
    }
    EXPECT_EQ(b.on_grid(), grid);
    EXPECT_GT(moves, 1000u);
    EXPECT_GT(b.capacity(), 600u) << "the book grew on the way";
  }
}
