// An independent, deliberately naive model of the BitMEX realtime protocol, used as the expected
// value for the golden-replay, new-id-era, allocation and CLI tests.
//
// It shares no code with engine/: frames are split from capture files by its own reading of the
// line formats, parsed with the simdjson DOM API (not On-Demand), and books are plain
// std::map<(side, id), (price, size)>. Prices come from the row when it carries one, else from the
// level (2021 ids encoded the price and updates omitted it). Keyless tables (trade, quote) keep the
// latest row per symbol, as canonical field values. Slow and allocating on purpose: it has to be
// obviously right, not fast.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <simdjson.h>

namespace bmxtest {

// Absolute path of a file under tests/data.
std::string data_path(std::string_view relative);
std::string read_file(const std::string& path);

// The frames of a capture, by this model's own reading of the line formats: bare JSON lines,
// cryptofeed's "<unix seconds>: <frame>", and "<ns>\t<frame>"; `wss://`, `ws://`, `configuration:`
// and blank lines skipped. Views into `text`.
std::vector<std::string_view> split_capture(std::string_view text);

// A canonical text for a JSON value, so that two documents can be compared field by field whatever
// the spelling: strings decoded, numbers by type and value, composites minified.
std::string canonical(simdjson::dom::element e);

// (price, size), best first.
using Ladder = std::vector<std::pair<double, int64_t>>;

struct RefBook {
  struct Level {
    double price;
    int64_t size;
  };
  // (side: 0 = Buy, 1 = Sell, id) -> level.
  std::map<std::pair<int, uint64_t>, Level> levels;

  [[nodiscard]] Ladder bids() const;
  [[nodiscard]] Ladder asks() const;
  [[nodiscard]] bool crossed() const;
};

using RefRow = std::map<std::string, std::string>;  // field name -> canonical value

class ReferenceModel {
 public:
  // Applies one frame. Anything a clean session should never contain (an unknown level, a delta
  // before its partial, a frame that does not parse) is recorded in `problems`.
  void apply(std::string_view frame);

  // Price of a level as the model holds it now; false when unknown.
  [[nodiscard]] bool level_price(const std::string& symbol, int side, uint64_t id,
                                 double& price) const;

  std::map<std::string, RefBook> books;                            // orderBookL2, by symbol
  std::map<std::string, std::map<std::string, RefRow>> last_rows;  // keyless tables, by symbol
  std::map<std::string, std::map<std::string, uint64_t>> rows;     // table -> action -> rows
  uint64_t frames = 0;
  uint64_t table_frames = 0;
  uint64_t partial_frames = 0;
  uint64_t control_frames = 0;
  std::vector<std::string> problems;

 private:
  void apply_book(std::string_view action, simdjson::dom::object frame, simdjson::dom::array data);
  void apply_keyless(const std::string& table, std::string_view action, simdjson::dom::object frame,
                     simdjson::dom::array data);

  simdjson::dom::parser parser_;
  std::map<std::string, bool> keyless_;  // table -> its partial announced no keys
  std::map<std::string, std::map<std::string, bool>> partial_seen_;  // table -> symbol
};

// Rewrites a 2021 session into the post-2023 id era: every orderBookL2 level gets a fresh random
// 63-bit id on each partial/insert (ids of levels alive at the same time are distinct), and every
// orderBookL2 row carries its price (updates and deletes take it from the model's state before the
// frame). Other frames pass through unchanged. One frame per line, bare JSON.
std::string convert_to_new_id_era(const std::vector<std::string_view>& frames, uint64_t seed);

// Compares a state dump ({"books":{SYM:{"bids":[[p,s],..],"asks":[..]}},"tables":{..}}) to the
// model: the same books, every level equal, and, when `with_tables`, the same keyless tables with
// the same rows. Returns the differences found (at most `max_diffs`); empty when equal.
std::vector<std::string> compare_dump(std::string_view dump_json, const ReferenceModel& model,
                                      bool with_tables, size_t max_diffs = 20);

// Replays a whole capture file through a fresh model.
ReferenceModel model_of_capture(const std::string& path);

}  // namespace bmxtest
