// The engine's state as one JSON document, the contract that bitmex-replay --dump-state, the
// example strategy and the tests share:
//
//   {"books":  {SYMBOL: {"bids": [[price, size], ...], "asks": [[price, size], ...]}},
//    "tables": {TABLE: {KEY: ROW}}}
//
// Bids highest first, asks lowest first, every level. Books of orderBookL2 are keyed by symbol; an
// orderBookL2_25 book is keyed "SYMBOL" too unless the same symbol also has an orderBookL2 book,
// then "SYMBOL@orderBookL2_25". Only books and tables that received a partial appear. KEY is the
// row's key values joined by '|' in the partial's key order (the symbol for keyless tables); ROW is
// the row's fields after every merge, values exactly as the exchange wrote them. Prices are written
// in the shortest form that parses back to the same double. Cold path: allocates freely.
#pragma once

#include <string>

#include "engine/feed_engine.hpp"

namespace bmx {

std::string dump_state(const FeedEngine& engine);
// Shortest round-trip text of a double ("32186.5", "1.6425e-06").
void append_double(std::string& out, double v);

}  // namespace bmx
