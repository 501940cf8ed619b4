#include "reference_model.hpp"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <tuple>

namespace bmxtest {

namespace dom = simdjson::dom;

namespace {

std::string double_text(double v) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

bool all_digits(std::string_view s, bool allow_dot) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (allow_dot && c == '.'))) return false;
  }
  return true;
}

int side_index(std::string_view side) {
  return side == "Buy" ? 0 : side == "Sell" ? 1 : -1;
}

Ladder sorted_side(const RefBook& b, int side) {
  Ladder out;
  for (const auto& [key, level] : b.levels) {
    if (key.first == side) out.emplace_back(level.price, level.size);
  }
  // Bids highest first, asks lowest first. Sizes break ties only so that the order is total.
  std::sort(out.begin(), out.end(), [side](const auto& a, const auto& b2) {
    if (a.first != b2.first) return side == 0 ? a.first > b2.first : a.first < b2.first;
    return a.second < b2.second;
  });
  return out;
}

}  // namespace

std::string data_path(std::string_view relative) {
  return std::string(BMX_TEST_DATA) + "/" + std::string(relative);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string_view> split_capture(std::string_view text) {
  std::vector<std::string_view> frames;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || line.starts_with("wss://") || line.starts_with("ws://") ||
        line.starts_with("configuration:")) {
      continue;
    }
    if (line.front() == '{' || line.front() == '[' || line == "pong") {
      frames.push_back(line);
      continue;
    }
    const size_t colon = line.find(": ");
    const size_t tab = line.find('\t');
    if (tab != std::string_view::npos && all_digits(line.substr(0, tab), false)) {
      frames.push_back(line.substr(tab + 1));
    } else if (colon != std::string_view::npos && all_digits(line.substr(0, colon), true)) {
      frames.push_back(line.substr(colon + 2));
    } else {
      throw std::runtime_error("reference: unexpected capture line: " +
                               std::string(line.substr(0, 60)));
    }
  }
  return frames;
}

std::string canonical(dom::element e) {
  switch (e.type()) {
    case dom::element_type::STRING:
      return "s:" + std::string(std::string_view(e));
    case dom::element_type::INT64:
      return "i:" + std::to_string(int64_t(e));
    case dom::element_type::UINT64:
      return "u:" + std::to_string(uint64_t(e));
    case dom::element_type::DOUBLE:
      return "d:" + double_text(double(e));
    case dom::element_type::BOOL:
      return bool(e) ? "b:true" : "b:false";
    case dom::element_type::NULL_VALUE:
      return "null";
    case dom::element_type::ARRAY:
    case dom::element_type::OBJECT:
      return "j:" + simdjson::minify(e);
  }
  return "?";
}

Ladder RefBook::bids() const {
  return sorted_side(*this, 0);
}
Ladder RefBook::asks() const {
  return sorted_side(*this, 1);
}
bool RefBook::crossed() const {
  const Ladder b = bids();
  const Ladder a = asks();
  return !b.empty() && !a.empty() && b.front().first >= a.front().first;
}

bool ReferenceModel::level_price(const std::string& symbol, int side, uint64_t id,
                                 double& price) const {
  const auto b = books.find(symbol);
  if (b == books.end()) return false;
  const auto l = b->second.levels.find({side, id});
  if (l == b->second.levels.end()) return false;
  price = l->second.price;
  return true;
}

void ReferenceModel::apply(std::string_view frame) {
  ++frames;
  if (frame == "pong") {
    ++control_frames;
    return;
  }
  dom::element doc;
  if (parser_.parse(frame.data(), frame.size()).get(doc)) {
    problems.push_back("frame " + std::to_string(frames) + " does not parse");
    return;
  }
  dom::object obj;
  if (doc.get_object().get(obj)) {
    problems.push_back("frame " + std::to_string(frames) + " is not an object");
    return;
  }
  std::string_view table;
  if (obj["table"].get_string().get(table)) {
    ++control_frames;
    return;
  }
  ++table_frames;
  std::string_view action;
  dom::array data;
  if (obj["action"].get_string().get(action) || obj["data"].get_array().get(data)) {
    problems.push_back("frame " + std::to_string(frames) + ": table frame without action/data");
    return;
  }
  if (action == "partial") ++partial_frames;
  rows[std::string(table)][std::string(action)] += data.size();
  if (table == "orderBookL2") {
    apply_book(action, obj, data);
  } else {
    apply_keyless(std::string(table), action, obj, data);
  }
}

void ReferenceModel::apply_book(std::string_view action, dom::object frame, dom::array data) {
  auto& seen = partial_seen_["orderBookL2"];
  if (action == "partial") {
    std::string_view filter_symbol;
    if (!frame["filter"]["symbol"].get_string().get(filter_symbol)) {
      books[std::string(filter_symbol)].levels.clear();
      seen[std::string(filter_symbol)] = true;
    } else {
      for (auto& [sym, b] : books)
        b.levels.clear();
      seen["*"] = true;
    }
  }
  for (dom::element row : data) {
    std::string_view symbol, side_text;
    uint64_t id = 0;
    if (row["symbol"].get_string().get(symbol) || row["side"].get_string().get(side_text) ||
        row["id"].get_uint64().get(id) || side_index(side_text) < 0) {
      problems.push_back("frame " + std::to_string(frames) + ": book row without symbol/side/id");
      continue;
    }
    const std::string sym(symbol);
    if (!seen.count(sym) && !seen.count("*")) {
      problems.push_back("frame " + std::to_string(frames) + ": " + sym + " delta before partial");
      continue;
    }
    if (action == "partial") seen[sym] = true;
    RefBook& book = books[sym];
    const std::pair<int, uint64_t> key{side_index(side_text), id};
    double price = 0;
    int64_t size = 0;
    const bool has_price = !row["price"].get_double().get(price);
    const bool has_size = !row["size"].get_int64().get(size);
    const auto it = book.levels.find(key);
    const std::string where = "frame " + std::to_string(frames) + ": " + sym + " " +
                              std::string(side_text) + " id " + std::to_string(id);
    if (action == "partial" || action == "insert") {
      if (!has_price || !has_size) {
        problems.push_back(where + ": insert without price/size");
        continue;
      }
      if (it != book.levels.end()) problems.push_back(where + ": duplicate insert");
      book.levels[key] = RefBook::Level{price, size};
    } else if (action == "update") {
      if (it == book.levels.end() || !has_size) {
        problems.push_back(where + ": update of unknown level or without size");
        continue;
      }
      it->second.size = size;
      if (has_price) it->second.price = price;
    } else if (action == "delete") {
      if (it == book.levels.end()) {
        problems.push_back(where + ": delete of unknown level");
        continue;
      }
      book.levels.erase(it);
    } else {
      problems.push_back(where + ": unknown action");
    }
  }
}

void ReferenceModel::apply_keyless(const std::string& table, std::string_view action,
                                   dom::object frame, dom::array data) {
  auto& seen = partial_seen_[table];
  auto& latest = last_rows[table];
  if (action == "partial") {
    dom::array keys;
    if (!frame["keys"].get_array().get(keys) && keys.size() != 0) {
      problems.push_back("model supports only keyless generic tables, not " + table);
    }
    keyless_[table] = true;
    std::string_view filter_symbol;
    if (!frame["filter"]["symbol"].get_string().get(filter_symbol)) {
      latest.erase(std::string(filter_symbol));
      seen[std::string(filter_symbol)] = true;
    } else {
      latest.clear();
      seen["*"] = true;
    }
  } else if (action != "insert") {
    problems.push_back(table + ": model supports partial and insert only");
    return;
  }
  for (dom::element row : data) {
    std::string_view symbol;
    if (row["symbol"].get_string().get(symbol)) {
      problems.push_back(table + ": row without symbol");
      continue;
    }
    const std::string sym(symbol);
    if (action != "partial" && !seen.count(sym) && !seen.count("*")) {
      problems.push_back(table + ": " + sym + " row before partial");
      continue;
    }
    RefRow r;
    dom::object o;
    if (row.get_object().get(o)) continue;
    for (auto field : o)
      r[std::string(field.key)] = canonical(field.value);
    latest[sym] = std::move(r);  // the latest row replaces, it never merges
  }
}

std::string convert_to_new_id_era(const std::vector<std::string_view>& frames, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::set<uint64_t> used;
  using OldKey = std::tuple<std::string, int, uint64_t>;  // (symbol, side, 2021 id)
  struct NewLevel {
    uint64_t id;
    double price;
  };
  std::map<OldKey, NewLevel> current;
  dom::parser parser;
  std::string out;
  auto fresh_id = [&] {
    uint64_t id = 0;
    do {
      id = rng() >> 1;  // BitMEX ids are JSON longs: keep them below 2^63
    } while (id == 0 || !used.insert(id).second);
    return id;
  };
  for (const std::string_view f : frames) {
    dom::element doc;
    std::string_view table, action;
    dom::array data;
    const bool book = f != "pong" && !parser.parse(f.data(), f.size()).get(doc) &&
                      doc.is_object() && !doc["table"].get_string().get(table) &&
                      table == "orderBookL2" && !doc["action"].get_string().get(action) &&
                      !doc["data"].get_array().get(data);
    if (!book) {
      out.append(f);
      out += '\n';
      continue;
    }
    out += R"({"table":"orderBookL2","action":")";
    out += action;
    out += '"';
    if (action == "partial") {
      out += R"(,"keys":["symbol","id","side"])";
      dom::object filter;
      std::string_view filter_symbol;
      if (!doc["filter"].get_object().get(filter)) {
        out += ",\"filter\":" + simdjson::minify(filter);
        if (!filter["symbol"].get_string().get(filter_symbol)) {
          for (auto it = current.begin(); it != current.end();) {
            it = std::get<0>(it->first) == filter_symbol ? current.erase(it) : std::next(it);
          }
        }
      }
    }
    out += R"(,"data":[)";
    bool first = true;
    for (dom::element row : data) {
      const std::string symbol{row["symbol"].get_string().value()};
      const std::string_view side = row["side"].get_string().value();
      const OldKey key{symbol, side_index(side), row["id"].get_uint64().value()};
      NewLevel level{};
      double row_price = 0;
      const bool has_price = !row["price"].get_double().get(row_price);
      if (action == "partial" || action == "insert") {
        level = NewLevel{fresh_id(), row_price};
        current[key] = level;
      } else {
        const auto it = current.find(key);
        if (it == current.end()) throw std::runtime_error("convert: unknown level in " + symbol);
        if (has_price) it->second.price = row_price;
        level = it->second;
        if (action == "delete") current.erase(it);
      }
      if (!first) out += ',';
      first = false;
      out += R"({"symbol":")" + symbol + R"(","id":)" + std::to_string(level.id) + R"(,"side":")" +
             std::string(side) + '"';
      int64_t size = 0;
      if (!row["size"].get_int64().get(size)) out += ",\"size\":" + std::to_string(size);
      out += ",\"price\":" + double_text(level.price) + '}';
    }
    out += "]}\n";
  }
  return out;
}

std::vector<std::string> compare_dump(std::string_view dump_json, const ReferenceModel& model,
                                      bool with_tables, size_t max_diffs) {
  std::vector<std::string> diffs;
  auto diff = [&](std::string d) {
    if (diffs.size() < max_diffs) diffs.push_back(std::move(d));
  };
  dom::parser parser;
  dom::element doc;
  dom::object books, tables;
  if (parser.parse(dump_json.data(), dump_json.size()).get(doc) ||
      doc["books"].get_object().get(books) || doc["tables"].get_object().get(tables)) {
    diffs.push_back("dump is not {\"books\":{..},\"tables\":{..}}");
    return diffs;
  }
  if (books.size() != model.books.size()) {
    diff("dump has " + std::to_string(books.size()) + " books, the model " +
         std::to_string(model.books.size()));
  }
  for (const auto& [symbol, book] : model.books) {
    dom::object b;
    if (books[symbol].get_object().get(b)) {
      diff("dump lacks book " + symbol);
      continue;
    }
    for (const char* side : {"bids", "asks"}) {
      const Ladder want = std::string_view(side) == "bids" ? book.bids() : book.asks();
      dom::array got;
      if (b[side].get_array().get(got)) {
        diff(symbol + ": no " + side);
        continue;
      }
      if (got.size() != want.size()) {
        diff(symbol + " " + side + ": " + std::to_string(got.size()) + " levels, expected " +
             std::to_string(want.size()));
        continue;
      }
      size_t i = 0;
      for (dom::element level : got) {
        double price = 0;
        int64_t size = 0;
        if (level.at(0).get_double().get(price) || level.at(1).get_int64().get(size) ||
            price != want[i].first || size != want[i].second) {
          diff(symbol + " " + side + "[" + std::to_string(i) + "] = " + simdjson::minify(level) +
               ", expected [" + double_text(want[i].first) + "," + std::to_string(want[i].second) +
               "]");
        }
        ++i;
      }
    }
  }
  if (!with_tables) return diffs;
  if (tables.size() != model.last_rows.size()) {
    diff("dump has " + std::to_string(tables.size()) + " tables, the model " +
         std::to_string(model.last_rows.size()));
  }
  for (const auto& [name, by_symbol] : model.last_rows) {
    dom::object t;
    if (tables[name].get_object().get(t)) {
      diff("dump lacks table " + name);
      continue;
    }
    if (t.size() != by_symbol.size()) {
      diff(name + ": " + std::to_string(t.size()) + " rows, expected " +
           std::to_string(by_symbol.size()));
    }
    for (const auto& [symbol, want] : by_symbol) {
      dom::object row;
      if (t[symbol].get_object().get(row)) {
        diff(name + ": no row " + symbol);
        continue;
      }
      RefRow got;
      for (auto field : row)
        got[std::string(field.key)] = canonical(field.value);
      if (got != want) diff(name + " " + symbol + ": row differs: " + simdjson::minify(row));
    }
  }
  return diffs;
}

ReferenceModel model_of_capture(const std::string& path) {
  const std::string text = read_file(path);
  ReferenceModel model;
  for (const std::string_view f : split_capture(text))
    model.apply(f);
  return model;
}

}  // namespace bmxtest
