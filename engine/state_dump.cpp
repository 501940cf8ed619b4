#include "engine/state_dump.hpp"

#include <algorithm>
#include <utility>
#include <vector>

#include "engine/json_text.hpp"
#include "shm/json_out.hpp"

namespace bmx {

void append_double(std::string& out, double v) {
  json_out::append_double(out, v);
}

namespace {

using json_out::append_int;

void append_side(std::string& out, const OrderBook& book, Side side) {
  out += '[';
  for (uint32_t i = 0; i < book.depth(side); ++i) {
    const BookLevel& l = book.level(side, i);
    if (i) out += ',';
    out += '[';
    append_double(out, l.price);
    out += ',';
    append_int(out, l.size);
    out += ']';
  }
  out += ']';
}

}  // namespace

std::string dump_state(const FeedEngine& engine) {
  std::string out = "{\"books\":{";
  // Collect (name, book) sorted by name so the output is stable.
  std::vector<std::pair<std::string, const OrderBook*>> books;
  const uint16_t l2 = engine.find_table("orderBookL2");
  for (const auto& t : engine.tables()) {
    if (!t.is_book) continue;
    const bool is_25 = t.name == "orderBookL2_25";
    for (uint32_t s = 0; s < t.books.size(); ++s) {
      const auto& b = t.books[s];
      if (!b || !b->has_partial) continue;
      std::string name(engine.symbols().name(s));
      if (is_25 && l2 != Event::kNoTable && engine.book(name) && engine.book(name)->has_partial) {
        name += "@orderBookL2_25";
      }
      books.emplace_back(std::move(name), &b->book);
    }
  }
  std::sort(books.begin(), books.end());
  bool first = true;
  for (const auto& [name, book] : books) {
    if (!first) out += ',';
    first = false;
    out += '"';
    json::append_escaped(name, out);
    out += "\":{\"bids\":";
    append_side(out, *book, Side::kBuy);
    out += ",\"asks\":";
    append_side(out, *book, Side::kSell);
    out += '}';
  }
  out += "},\"tables\":{";
  first = true;
  for (const auto& t : engine.tables()) {
    if (t.is_book || !t.generic->has_partial()) continue;
    if (!first) out += ',';
    first = false;
    out += '"';
    json::append_escaped(t.name, out);
    out += "\":{";
    std::vector<std::pair<std::string_view, const GenericTable::Row*>> rows;
    t.generic->for_each(
        [&](std::string_view key, const GenericTable::Row& row) { rows.emplace_back(key, &row); });
    std::sort(rows.begin(), rows.end());
    bool first_row = true;
    for (const auto& [key, row] : rows) {
      if (!first_row) out += ',';
      first_row = false;
      out += '"';
      out += key;  // already JSON-escaped (canonical key form)
      out += "\":";
      t.generic->append_json(*row, out);
    }
    out += '}';
  }
  out += "}}\n";
  return out;
}

}  // namespace bmx
