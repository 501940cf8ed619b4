#include "tools/sim/recording.hpp"

#include <algorithm>
#include <stdexcept>

#include <simdjson.h>

namespace bmx::sim {

Recording Recording::load(const std::vector<std::string>& paths) {
  Recording r;
  simdjson::dom::parser parser;
  for (const auto& path : paths) {
    r.captures_.push_back(Capture::load(path));
    const Capture& cap = r.captures_.back();
    size_t tables_here = 0;
    for (const CapturedFrame& f : cap.frames()) {
      // The capture buffer is padded: parse in place.
      simdjson::dom::element doc;
      if (parser.parse(f.data, f.len, false).get(doc)) continue;  // `pong`, or broken
      simdjson::dom::object obj;
      std::string_view table, action;
      if (doc.get_object().get(obj) || obj["table"].get_string().get(table) ||
          obj["action"].get_string().get(action))
        continue;  // a control frame
      RecordedFrame rf;
      rf.text = {f.data, f.len};
      rf.capacity = cap.capacity(f);
      rf.recv_ns = f.recv_ns;
      rf.table = r.table_id(table);
      rf.partial = action == "partial";
      std::string_view filter_symbol;
      const bool filtered = rf.partial && !obj["filter"]["symbol"].get_string().get(filter_symbol);
      if (filtered) rf.symbols.push_back(r.symbol_id(filter_symbol));
      rf.whole = rf.partial && !filtered;
      simdjson::dom::array data;
      if (!filtered && !obj["data"].get_array().get(data)) {
        for (simdjson::dom::element row : data) {
          std::string_view sym;
          if (row["symbol"].get_string().get(sym)) sym = {};
          const uint32_t id = r.symbol_id(sym);
          if (std::find(rf.symbols.begin(), rf.symbols.end(), id) == rf.symbols.end())
            rf.symbols.push_back(id);
        }
      }
      if (rf.recv_ns != 0 && r.first_recv_ns_ == 0) r.first_recv_ns_ = rf.recv_ns;
      if (rf.partial) r.partials_[rf.table].push_back(static_cast<uint32_t>(r.frames_.size()));
      r.frames_.push_back(std::move(rf));
      ++tables_here;
    }
    if (tables_here == 0) throw std::runtime_error(path + ": no table frame in this capture");
  }
  return r;
}

std::optional<uint16_t> Recording::find_table(std::string_view name) const {
  const auto it = table_ids_.find(std::string(name));
  if (it == table_ids_.end()) return std::nullopt;
  return it->second;
}

std::optional<uint32_t> Recording::find_symbol(std::string_view name) const {
  const auto it = symbol_ids_.find(std::string(name));
  if (it == symbol_ids_.end()) return std::nullopt;
  return it->second;
}

bool Recording::covers(uint32_t pos, uint32_t symbol) const {
  const auto& s = frames_[pos].symbols;
  return std::find(s.begin(), s.end(), symbol) != s.end();
}

uint32_t Recording::partial_for(uint16_t t, uint32_t symbol, uint32_t cursor) const {
  uint32_t before = kNoPos, after = kNoPos;
  for (const uint32_t pos : partials_[t]) {
    if (!covers(pos, symbol)) continue;
    if (pos < cursor) {
      before = pos;
    } else if (after == kNoPos) {
      after = pos;
    }
  }
  return before != kNoPos ? before : after;
}

std::vector<uint32_t> Recording::symbols_of(uint16_t t) const {
  std::vector<uint32_t> out;
  for (const uint32_t pos : partials_[t])
    for (const uint32_t s : frames_[pos].symbols)
      if (std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
  return out;
}

uint16_t Recording::table_id(std::string_view name) {
  const auto [it, added] =
      table_ids_.emplace(std::string(name), static_cast<uint16_t>(tables_.size()));
  if (added) {
    tables_.emplace_back(name);
    partials_.emplace_back();
  }
  return it->second;
}

uint32_t Recording::symbol_id(std::string_view name) {
  const auto [it, added] =
      symbol_ids_.emplace(std::string(name), static_cast<uint32_t>(symbols_.size()));
  if (added) symbols_.emplace_back(name);
  return it->second;
}

}  // namespace bmx::sim
