#include "consumers/local_book.hpp"

#include "shm/json_out.hpp"

#include <algorithm>
#include <cstdio>

namespace bmx::consumer {

namespace {

template <class Side>
void put(Side& side, std::unordered_map<uint64_t, double>& ids, const shm::Level& l) {
  side[l.price] = l;
  ids[l.id] = l.price;
}

template <class Side>
bool erase(Side& side, std::unordered_map<uint64_t, double>& ids, uint64_t id) {
  const auto it = ids.find(id);
  if (it == ids.end()) return false;
  side.erase(it->second);
  ids.erase(it);
  return true;
}

}  // namespace

bool LocalBooks::resync(shm::Reader& reader) {
  ++resyncs_;
  books_.clear();
  reader.seek_to_head();
  shm::BookCopy c;
  bool ok = true;
  for (const auto& [table, symbol] : reader.books()) {
    if (!reader.copy_book(table, symbol, c)) {
      ok = false;
      continue;
    }
    LocalBook& b = books_[{table, symbol}];
    b.stamp = c.stamp;
    b.stale = c.stale;
    b.has_partial = c.stamp != 0;  // a book with no record yet has seen no partial
    for (const shm::Level& l : c.bids)
      put(b.bids, b.bid_ids, l);
    for (const shm::Level& l : c.asks)
      put(b.asks, b.ask_ids, l);
  }
  return ok;
}

void LocalBooks::apply(const shm::Delta& d) {
  using shm::RecordKind;
  const RecordKind k = d.kind();
  if (k != RecordKind::kBookClear && k != RecordKind::kBookInsert && k != RecordKind::kBookUpdate &&
      k != RecordKind::kBookDelete && k != RecordKind::kStale) {
    return;
  }
  if (d.body.symbol == kNoSymbol) return;  // a whole (generic) table went stale: no book
  LocalBook& b = books_[{d.body.table, d.body.symbol}];
  if (d.seq <= b.stamp) return;  // already in the snapshot
  b.stamp = d.seq;
  ++b.applied;
  const bool sell = d.side() == Side::kSell;
  const shm::Level l{d.body.price, d.body.size, d.body.id};
  switch (k) {
    case RecordKind::kBookClear:
      b.bids.clear();
      b.asks.clear();
      b.bid_ids.clear();
      b.ask_ids.clear();
      b.stale = false;
      b.has_partial = true;
      break;
    case RecordKind::kBookInsert:
      sell ? put(b.asks, b.ask_ids, l) : put(b.bids, b.bid_ids, l);
      break;
    case RecordKind::kBookUpdate: {
      // The record carries the level's (new) price: drop the old entry by id, put it back.
      const bool had = sell ? erase(b.asks, b.ask_ids, l.id) : erase(b.bids, b.bid_ids, l.id);
      if (!had) ++problems_;
      sell ? put(b.asks, b.ask_ids, l) : put(b.bids, b.bid_ids, l);
      break;
    }
    case RecordKind::kBookDelete:
      if (!(sell ? erase(b.asks, b.ask_ids, l.id) : erase(b.bids, b.bid_ids, l.id))) ++problems_;
      break;
    case RecordKind::kStale:
      b.stale = true;
      break;
    default:
      break;
  }
}

const LocalBook* LocalBooks::find(uint16_t table, uint32_t symbol) const {
  const auto it = books_.find({table, symbol});
  return it == books_.end() ? nullptr : &it->second;
}

std::string LocalBooks::check(const shm::Reader& reader, uint16_t table, uint32_t symbol) const {
  shm::BookCopy c;
  if (!reader.copy_book(table, symbol, c)) return "the segment's book could not be copied";
  const LocalBook* b = find(table, symbol);
  if (!b) return c.bids.empty() && c.asks.empty() ? "" : "no local copy of a non-empty book";
  auto compare = [](const char* what, const auto& mine, const std::vector<shm::Level>& theirs) {
    if (mine.size() != theirs.size()) {
      return std::string(what) + ": " + std::to_string(mine.size()) + " levels here, " +
             std::to_string(theirs.size()) + " in the segment";
    }
    size_t i = 0;
    for (const auto& [price, l] : mine) {
      const shm::Level& t = theirs[i++];
      if (l.price != t.price || l.size != t.size || l.id != t.id) {
        char buf[160];
        std::snprintf(buf, sizeof buf, "%s level %zu: %.10g x %lld here, %.10g x %lld there", what,
                      i - 1, l.price, static_cast<long long>(l.size), t.price,
                      static_cast<long long>(t.size));
        return std::string(buf);
      }
    }
    return std::string();
  };
  std::string diff = compare("bids", b->bids, c.bids);
  if (diff.empty()) diff = compare("asks", b->asks, c.asks);
  return diff;
}

// ---- dump
// -----------------------------------------------------------------------------------------

namespace {

using json_out::append_double;
using json_out::append_int;

template <class Side>
void append_side(std::string& out, const Side& side) {
  out += '[';
  bool first = true;
  for (const auto& [price, l] : side) {
    if (!first) out += ',';
    first = false;
    out += '[';
    append_double(out, l.price);
    out += ',';
    append_int(out, l.size);
    out += ']';
  }
  out += ']';
}

}  // namespace

std::string dump_state(const shm::Reader& reader, const LocalBooks& books) {
  std::string out = "{\"books\":{";
  const auto l2 = reader.table_id("orderBookL2");
  std::vector<std::pair<std::string, const LocalBook*>> named;
  for (const auto& [key, b] : books.all()) {
    if (!b.has_partial) continue;
    std::string name(reader.symbol_name(key.second));
    if (reader.table_name(key.first) == "orderBookL2_25" && l2) {
      const LocalBook* full = books.find(*l2, key.second);
      if (full && full->has_partial) name += "@orderBookL2_25";
    }
    named.emplace_back(std::move(name), &b);
  }
  std::sort(named.begin(), named.end());
  bool first = true;
  for (const auto& [name, b] : named) {
    if (!first) out += ',';
    first = false;
    out += '"';
    json_out::append_escaped(name, out);
    out += "\":{\"bids\":";
    append_side(out, b->bids);
    out += ",\"asks\":";
    append_side(out, b->asks);
    out += '}';
  }
  out += "},\"tables\":{";
  first = true;
  for (uint32_t i = 0; i < reader.table_count(); ++i) {
    const auto t = static_cast<uint16_t>(i);
    if (reader.table_kind(t) == shm::TableKind::kBook || !reader.table_has_partial(t)) continue;
    if (!first) out += ',';
    first = false;
    out += '"';
    json_out::append_escaped(reader.table_name(t), out);
    out += "\":{";
    auto rows = reader.rows(t);
    std::sort(rows.begin(), rows.end());
    bool first_row = true;
    for (const auto& [key, json] : rows) {
      if (!first_row) out += ',';
      first_row = false;
      out += '"';
      out += key;  // canonical key form: already escaped
      out += "\":";
      out += json;
    }
    out += '}';
  }
  out += "}}\n";
  return out;
}

}  // namespace bmx::consumer
